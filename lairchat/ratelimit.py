# -*- test-case-name: tests.test_ratelimit -*-
"""
Rate limits: a token bucket per connection and rate class, on an injected
clock so tests need no real time.
"""

from typing import Any

from attrs import frozen

from lairchat.errors import RateLimited


@frozen
class Rate:
    """
    A bucket's shape.

    @ivar burst: how many requests may come at once.
    @ivar per_second: how fast the bucket refills.
    """

    burst: float
    per_second: float


DEFAULT_RATES = {
    "auth": Rate(burst=5, per_second=0.2),
    "message": Rate(burst=30, per_second=10),
    "invite": Rate(burst=20, per_second=2),
    "default": Rate(burst=60, per_second=20),
}
"""The rate classes and their shapes; C{free} is never limited."""


class RateLimiter:
    """
    The buckets of one connection.

    @param clock: an L{IReactorTime} (a L{Clock} in tests).
    @param rates: the shapes by class; a class absent from it is unlimited.
    """

    def __init__(self, clock: Any, rates: dict[str, Rate] | None = None) -> None:
        self._clock = clock
        self._rates = DEFAULT_RATES if rates is None else rates
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, rate_class: str) -> None:
        """
        Take one token from the class's bucket.

        @raise RateLimited: the bucket is empty; the message says when to retry.
        """
        rate = self._rates.get(rate_class)
        if rate is None:
            return
        now = self._clock.seconds()
        tokens, then = self._buckets.get(rate_class, (rate.burst, now))
        tokens = min(rate.burst, tokens + (now - then) * rate.per_second)
        if tokens < 1:
            wait = (1 - tokens) / rate.per_second
            self._buckets[rate_class] = (tokens, now)
            raise RateLimited(f"too many requests; retry in {wait:.1f} s")
        self._buckets[rate_class] = (tokens - 1, now)
