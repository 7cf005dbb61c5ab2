"""
lairchat: a line-protocol chat server for terminal users and bots.

The layers, bottom up: L{lairchat.wire} (pure parsing and rendering),
L{lairchat.errors} and L{lairchat.validation} (the error model and the field
rules), L{lairchat.store} (all SQL), L{lairchat.hub} (who is online where),
the command plugins in the top-level C{commands} package, and the wiring in
L{lairchat.protocol}, L{lairchat.router} and L{lairchat.tap}.
"""

__version__ = "1.0.0"
