"""
What ends an IRC command early: L{Numeric}, a numeric reply (or a
C{FAIL}) raised by a command and written by
L{lairchat.irc.commands.CommandTable.dispatch}.  Its own module so the
command modules (L{lairchat.irc.commands}, L{lairchat.irc.users},
L{lairchat.irc.channels}) share it without importing one another.
"""

from typing import Any


class Numeric(Exception):
    """A reply that ends a command: a numeric (or C{FAIL}) and its parameters, without the target nick."""

    def __init__(self, command: str, *params: Any) -> None:
        super().__init__(command, *params)
        self.command = command
        self.params = params
