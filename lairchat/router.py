# -*- test-case-name: tests.test_protocol -*-
"""
From a parsed request to the lines of its reply: find the command, apply
the login gate, validate, run, and turn every failure into one C{ERROR}
line.  Nothing a command raises escapes this module.  (Flood control
happens before: the connection waits until a request's budget allows it,
see L{rate_class}.)
"""

import secrets
from typing import Any

from attrs import frozen
from twisted.logger import Logger

from lairchat.command import Reply
from lairchat.context import RequestContext, ServerContext
from lairchat.errors import AuthRequired, ChatError, InternalError, InvalidInput, SecurityViolation
from lairchat.wire import Request, render, render_error, render_ok, split_arguments, with_label

PLAIN_LINE_COMMAND = "SEND_MESSAGE"
"""The command that a line which is not a command is answered like."""


@frozen
class Outcome:
    """
    What the connection writes for one request.

    @ivar lines: the reply, labelled, ending in its one C{OK} or C{ERROR}.
    @ivar after: event lines written right after the reply.
    @ivar close: whether the connection is closed after writing.
    """

    lines: tuple
    after: tuple = ()
    close: bool = False


def find_command(server: ServerContext, request: Request, connection: Any) -> tuple[Any, list[str]]:
    """
    The command a request names, with its split arguments.  A line whose
    name is no command is a chat message to the current room.

    @raise ChatError: login is needed, or the arguments do not fit.
    """
    command = server.registry.get(request.command)
    if command is None:
        if connection.user is None:
            raise AuthRequired("log in first: LOGIN:<user>:<password> or REGISTER:<user>:<password>")
        plain = server.registry.get(PLAIN_LINE_COMMAND)
        if plain is None or connection.current_room is None:
            raise InvalidInput("you are in no room: JOIN_ROOM:<room> first", name="NO_CURRENT_ROOM")
        return plain, [connection.current_room, request.text]
    if command.needs_login and connection.user is None:
        raise AuthRequired("log in first: LOGIN:<user>:<password> or REGISTER:<user>:<password>")
    low, high = command.arity
    return command, split_arguments(request.rest, low, high, command.syntax)


def _named_command(server: ServerContext, request: Request) -> Any:
    """
    The command a request names, or for a line that names no command the
    one plain lines are answered like (L{None} when there is none).
    """
    return server.registry.get(request.command) or server.registry.get(PLAIN_LINE_COMMAND)


def rate_class(server: ServerContext, request: Request) -> str:
    """The rate class a request draws from: its command's (see L{_named_command})."""
    return getattr(_named_command(server, request), "rate_class", "default")


class Router:
    """Dispatches requests to the commands of a L{ServerContext}."""

    log = Logger()

    def __init__(self, server: ServerContext) -> None:
        self.server = server

    def pipelined(self, connection: Any, request: Request) -> bool:
        """
        Whether a request may start before the replies to the requests
        before it (its command is C{pipelined} and someone is logged in):
        see L{lairchat.protocol.ChatProtocol._drain}.
        """
        return connection.user is not None and getattr(_named_command(self.server, request), "pipelined", False)

    async def dispatch(self, connection: Any, request: Request, queued: Any = None) -> Outcome:
        """
        Run one request for C{connection} and return what to write.  Never
        raises.  C{queued}: see L{RequestContext.queued}.
        """
        started = self.server.clock.seconds()
        outcome, name, result = await self._dispatch(connection, request, queued)
        self.server.metrics.observe(name, result, self.server.clock.seconds() - started)
        return outcome

    async def _dispatch(self, connection: Any, request: Request, queued: Any = None) -> tuple[Outcome, str, str]:
        """
        Run one request; return what to write, the command's name (or
        C{UNKNOWN}) and the outcome (C{ok} or the error NAME) for metrics.
        """
        label = request.label
        command = None
        try:
            command, arguments = find_command(self.server, request, connection)
            parsed = command.parse(arguments)
            reply = await command.run(RequestContext(self.server, connection, label, queued), parsed)
            if not isinstance(reply, Reply):
                raise TypeError(f"{command.name} answered {reply!r}, not a Reply")
        except ChatError as error:
            name = command.name if command is not None else "UNKNOWN"
            if error.code == SecurityViolation.code:
                self.server.intrusion.note(getattr(connection, "address", None), "security_violation")
            return Outcome((with_label(label, render_error(error)),), close=error.closes), name, error.name
        except Exception:
            reference = secrets.token_hex(6)
            self.log.failure("request failed, reference {reference}: {line!r}", reference=reference,
                             line=request.name)
            error = InternalError(f"something went wrong on our side; reference {reference}")
            name = command.name if command is not None else "UNKNOWN"
            return Outcome((with_label(label, render_error(error)),)), name, error.name
        lines = [with_label(label, line) for line in reply.lines]
        lines.append(with_label(label, render_ok(command.name, *reply.fields)))
        return Outcome(tuple(lines), reply.after, reply.close), command.name, "ok"


__all__ = ["Outcome", "Router", "find_command", "rate_class", "render"]
