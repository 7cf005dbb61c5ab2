"""
The base classes every command plugin builds on: L{Command} (an
L{ICommand} with sensible defaults), L{Reply} (what a command answers),
and L{Extension} (an L{IExtension} whose hooks do nothing).
"""

from typing import Any

from attrs import frozen
from twisted.plugin import IPlugin
from zope.interface import implementer

from lairchat.interfaces import ICommand, IExtension


@frozen
class Reply:
    """
    A command's answer.

    @ivar fields: the fields of the final C{OK:<COMMAND>:...} line.
    @ivar lines: data lines written before the C{OK} line, already rendered.
    @ivar after: event lines written to the same connection right after it.
    @ivar close: whether the server closes the connection after the reply.
    """

    fields: tuple = ()
    lines: tuple = ()
    after: tuple = ()
    close: bool = False

    @classmethod
    def ok(cls, *fields: Any, lines: Any = (), after: Any = (), close: bool = False) -> "Reply":
        """Build a reply: C{Reply.ok('alice', token)} is C{OK:<CMD>:alice:<token>}."""
        return cls(tuple(fields), tuple(lines), tuple(after), close)


@implementer(IPlugin, ICommand)
class Command:
    """
    A command with the defaults most commands share: needs login, no
    arguments, the C{default} rate class.  Subclasses set the attributes and
    write L{run}, and L{parse} when they take arguments.
    """

    name = ""
    aliases: tuple[str, ...] = ()
    syntax = ""
    summary = ""
    arity = (0, 0)
    needs_login = True
    rate_class = "default"
    pipelined = False
    """
    Whether the command may start while the connection's requests before
    it are still under way (their replies still come first): only for a
    command whose change takes its place in commit order as soon as it
    starts (it calls L{lairchat.domain.Actor.place_taken}), so that one
    connection's changes are made in the order it asked for them.
    """

    def parse(self, arguments: list[str]) -> Any:
        """By default the arguments are handed to L{run} as they are."""
        return arguments

    async def run(self, context: Any, parsed: Any) -> Reply:
        """Subclasses do their work here."""
        raise NotImplementedError(self.name)

    def __repr__(self) -> str:
        return f"<command {self.name}>"


@implementer(IPlugin, IExtension)
class Extension:
    """An L{IExtension} whose hooks do nothing; override what you need."""

    def services(self, server: Any) -> list:
        """No services."""
        return []

    async def login_events(self, context: Any, user: Any) -> list:
        """No events at login."""
        return []
