# -*- test-case-name: tests.test_irc_protocol -*-
"""
The IRC connection: the line front end's connection rules, IRC's words.

L{IRCProtocol} is a L{lairchat.protocol.ChatProtocol} underneath, so an IRC
client is held to exactly the same rules as a telnet one: admission
through the server's one connection gate (L{IRCFactory} is a
L{lairchat.protocol.FrontEndFactory}), intrusion-detection refusals, the
login timeout, TCP keepalive, flood control that delays (IRC's fakelag),
requests answered one at a time and in order, and a client that stops
reading cut off.  What differs is said here: how bytes become messages
(IRC's limits, C{417 ERR_INPUTTOOLONG} for an over-long line, which does
not close the connection), how refusals and timeouts read (C{ERROR},
C{FAIL}), and how events are shown (L{lairchat.irc.render}, per
connection capabilities).  The commands are in L{lairchat.irc.commands}.
"""

import itertools
from typing import Any

from twisted.internet.defer import Deferred

from lairchat import events
from lairchat.context import ServerContext
from lairchat.errors import ChatError, InvalidEncoding, InvalidLength, LineTooLong, Timeout
from lairchat.irc.commands import CommandTable
from lairchat.irc.message import MAX_LINE, InputTooLong, MalformedMessage, check_length, message, parse, serialize
from lairchat.irc.render import mask, render_event, variant
from lairchat.irc.service import service_rate_class
from lairchat.protocol import REFUSAL_RATE_CLASS, ChatProtocol, FrontEndFactory

_UNRENDERED = object()
"""A cache entry not filled yet."""

RATE_CLASSES = {"PRIVMSG": "message", "NOTICE": "message", "TAGMSG": "message", "PASS": "auth",
                "AUTHENTICATE": "auth",
                "OPER": "auth",
                "JOIN": "default", "PART": "default"}
"""
The flood-control budget each IRC command draws from (C{default} for the
rest); a C{PRIVMSG} to the service draws on its line command's
(L{lairchat.irc.service.service_rate_class}).
"""

_ECHOED = (events.MessageSent, events.ReplySent, events.DirectMessageSent, events.TagsSent)
"""Events a connection that caused them sees again when it asked for C{echo-message}."""

_ECHOED_WITH = ((events.ReactionAdded, frozenset({"echo-message", "message-tags"})),
                (events.MessageDeleted, frozenset({"draft/message-redaction"})))
"""
Events a connection that caused them sees again when it asked for all
these capabilities: its reaction as a C{TAGMSG}, its deletion as a C{REDACT}.
"""


class InputTooLongError(InvalidLength):
    """A line over IRC's limits: answered C{417}, the connection stays."""


def closing_line(error: ChatError) -> str:
    """The C{ERROR} line IRC servers write before they close a connection."""
    return serialize(message("ERROR", f"Closing link: {error.message}"))


class IRCProtocol(ChatProtocol):
    """
    One IRC client connection.

    @ivar nick: the nick the client goes by (the username once logged
        in), or L{None} before C{NICK}.
    @ivar ident: the user name of C{USER}, or L{None} before it.
    @ivar realname: the real name of C{USER}.
    @ivar caps: the capabilities the client enabled.
    @ivar cap_version: the C{CAP LS} version it asked for (301 or 302).
    @ivar negotiating: whether C{CAP} negotiation holds registration back.
    @ivar registered: whether the welcome (C{001}...) was sent.
    @ivar credentials: C{(account, password)} from C{PASS}, or L{None}.
    @ivar sasl: the SASL exchange in progress (a L{lairchat.irc.commands.SaslExchange}) or L{None}.
    @ivar guest: whether C{user} is an ephemeral guest (C{--irc-guests}),
        deleted when this connection closes.
    @ivar guest_gone: fires once a guest's removal after the close is done
        (at once for a connection that was no guest).
    @ivar quit_reason: what a guest's rooms read in its C{QUIT} when this
        connection closes; L{None} once its C{QUIT} command told them.
    """

    PLAIN_KEY = None
    """IRC lines depend on each connection's capabilities: every event goes through L{receive}."""

    MAX_LENGTH = MAX_LINE

    def __init__(self, server: ServerContext, commands: CommandTable) -> None:
        super().__init__(server, commands)
        self.MAX_LENGTH = MAX_LINE
        self.nick: str | None = None
        self.ident: str | None = None
        self.realname = ""
        self.caps: set[str] = set()
        self.cap_version = 301
        self.negotiating = False
        self.registered = False
        self.credentials: tuple[str, str] | None = None
        self.sasl: Any = None
        self.guest = False
        self.guest_gone: Deferred = Deferred()
        self.quit_reason: str | None = "Connection closed"
        self._discarding = False
        self._batch_refs = itertools.count(1)
        self._echoes: list | None = None

    # What differs from the line front end

    def greeting(self) -> list[str]:
        """IRC servers say nothing until the client registers."""
        return []

    @property
    def display_nick(self) -> str:
        """The nick numerics address: the client's, or C{*} before it has one."""
        return self.nick or "*"

    @property
    def source(self) -> str:
        """This connection's own mask (C{nick!nick@server})."""
        return mask(self.display_nick, self.server.config.server_name)

    def error_lines(self, label: str | None, error: ChatError) -> list[str]:
        """
        An error outside a command's reply: C{417} for an over-long line;
        C{ERROR} before a close (a timeout, a flood cut-off, a block);
        otherwise a C{FAIL} standard reply.
        """
        server_name = self.server.config.server_name
        if isinstance(error, (InputTooLongError, LineTooLong)):
            return [serialize(message("417", self.display_nick, "Input line was too long", source=server_name))]
        if error.closes or isinstance(error, Timeout):
            return [closing_line(error)]
        if isinstance(error, InvalidEncoding):
            return [serialize(message("FAIL", "*", "INVALID_UTF8", error.message, source=server_name))]
        return [serialize(message("FAIL", "*", error.name, error.message, source=server_name))]

    def new_batch_ref(self) -> str:
        """A batch reference no other batch of this connection has (IRCv3 C{batch})."""
        return f"b{next(self._batch_refs)}"

    def collect_echoes(self) -> None:
        """
        Until L{stop_collecting_echoes}, keep this connection's own echoed
        messages (C{echo-message}) for the reply in progress instead of
        writing them: a labeled reply holds them.
        """
        self._echoes = []

    def stop_collecting_echoes(self) -> list:
        """The echoes kept since L{collect_echoes} (as lines), and write them at once again."""
        echoes, self._echoes = self._echoes or [], None
        return echoes

    def connectionLost(self, reason: Any = None) -> None:
        """Forget the connection as the line front end does; a guest then quits its rooms and is deleted."""
        guest = self.user if self.guest else None
        super().connectionLost(reason)
        if guest is None:
            self.guest_gone.callback(None)
            return
        self.router.guest_closed(self, guest).chainDeferred(self.guest_gone)

    # Framing: bytes first, IRC's limits, never a close for a long line

    def dataReceived(self, data: bytes) -> None:
        """
        Split bytes into lines at LF (a CR before it is dropped).  A line
        over L{MAX_LENGTH} bytes, or an unfinished one that grows past it,
        is answered C{417} and skipped up to its end; nothing is decoded
        before it is framed.
        """
        if self._discarding:
            end = data.find(self.delimiter)
            if end < 0:
                return
            self._discarding = False
            data = data[end + 1:]
        buffer = self._buffer + data
        while not self._refusing:
            line, found, rest = buffer.partition(self.delimiter)
            if not found:
                break
            buffer = rest
            if len(line) > self.MAX_LENGTH:
                self._too_long()
            else:
                self.lineReceived(line)
        else:
            buffer = b""
        if len(buffer) > self.MAX_LENGTH:
            buffer = b""
            self._discarding = True
            self._too_long()
        self._buffer = buffer

    def _too_long(self) -> None:
        """Answer an over-long line with C{417}, in its turn."""
        self._enqueue((None, InputTooLongError("input line too long")), REFUSAL_RATE_CLASS)

    def lineReceived(self, line: bytes) -> None:
        """
        Check IRC's limits, decode, parse, and queue the message charged
        to its command's budget.  Bad UTF-8 is answered with a C{FAIL}; a
        line that is no IRC message is dropped (as IRC servers do), and
        counted by intrusion detection.
        """
        if self._refusing:
            return
        line = line.rstrip(b"\r")
        if not line.strip(b" "):
            return
        try:
            check_length(line)
        except InputTooLong:
            self._too_long()
            return
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            self.server.intrusion.note(self.address, "malformed_line")
            self._enqueue((None, InvalidEncoding("message rejected: it was not valid UTF-8")), REFUSAL_RATE_CLASS)
            return
        try:
            parsed = parse(text)
        except MalformedMessage:
            self.server.intrusion.note(self.address, "malformed_line")
            return
        charged_to = service_rate_class(self.server, parsed) or RATE_CLASSES.get(parsed.command.upper(), "default")
        self._enqueue(parsed, charged_to)

    # Events

    def receive(self, event: events.Event, is_origin: bool, cache: dict) -> bool:
        """
        An event for this connection's user: nothing before the welcome;
        the connection's own messages again with C{echo-message} (kept for
        the reply while it is a labeled one); a
        password change elsewhere ends the connection (an IRC client cannot
        be logged out and stay); the rest as the line front end decides
        (L{lairchat.protocol.EventReceiver.receive}), shown as IRC lines.
        """
        if not self.registered or self.user is None or self._closed:
            return False
        if is_origin and (isinstance(event, _ECHOED) and "echo-message" in self.caps
                          or any(isinstance(event, kind) and wanted <= self.caps for kind, wanted in _ECHOED_WITH)):
            if self._echoes is not None:
                self._echoes += render_event(event, self.user.id, self.user.username, self.server.config.server_name,
                                             frozenset(self.caps))
                return True
            return self._show(event, cache)
        if isinstance(event, events.SessionsRevoked):
            if is_origin or self.session_id == event.kept_session:
                return False
            shown = self._show(event, cache)
            self.write_lines([closing_line(ChatError("your password was changed elsewhere"))])
            self.close()
            return shown
        if isinstance(event, events.AccountSuspended):
            shown = self._show(event, cache)
            self.write_lines([closing_line(ChatError("this account is suspended"))])
            self.close()
            return shown
        return super().receive(event, is_origin, cache)

    def _show(self, event: events.Event, cache: dict) -> bool:
        """Write an event's IRC lines, rendered once per variant through C{cache}; whether there were any."""
        caps = frozenset(self.caps)
        key = variant(event, self.user.id, caps)
        data = cache.get(key, _UNRENDERED)
        if data is _UNRENDERED:
            lines = render_event(event, self.user.id, self.user.username, self.server.config.server_name, caps,
                                 self._realname_of)
            data = cache[key] = "".join(serialize(m) + "\r\n" for m in lines).encode("utf-8") or None
        if data is None:
            return False
        self.write_data(data)
        return True


    def _realname_of(self, user_id: int) -> str | None:
        """The real name (of C{USER}) of a user's IRC connection on this node, if any."""
        for connection in self.server.hub.connections_of(user_id):
            realname = getattr(connection, "realname", "")
            if realname:
                return realname
        return None


class IRCFactory(FrontEndFactory):
    """
    The IRC front end's factory: an L{IRCProtocol} per admitted
    connection, over one shared L{CommandTable}.
    """

    def __init__(self, server: ServerContext) -> None:
        self.commands = CommandTable(server)
        super().__init__(server)

    def make_protocol(self) -> IRCProtocol:
        """An L{IRCProtocol} on this factory's commands."""
        return IRCProtocol(self.server, self.commands)

    def render_refusal(self, error: ChatError) -> str:
        """A refused connection reads C{ERROR :Closing link: ...}."""
        return closing_line(error)
