"""
lairchat's tests, run with trial.

Hypothesis runs without its per-example deadline here: a test must never
fail because the machine was busy (no timing thresholds in tests).
"""

from hypothesis import settings

settings.register_profile("lairchat", deadline=None)
settings.load_profile("lairchat")
