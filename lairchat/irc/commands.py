# -*- test-case-name: tests.test_irc_protocol -*-
"""
The IRC commands: registration (C{CAP}, C{NICK}, C{USER}, C{PASS}, SASL
C{AUTHENTICATE}), then C{JOIN}, C{PART}, C{PRIVMSG}, C{NOTICE}, C{TAGMSG},
C{REDACT}, C{TOPIC}, C{NAMES}, C{PING}, C{PONG} and C{QUIT}; the commands about users
(C{WHO}, C{WHOIS}, C{AWAY}, C{OPER}) are in L{lairchat.irc.users}, those
about channels (C{LIST}, C{KICK}, C{MODE}, C{INVITE}) in
L{lairchat.irc.channels}, history and read markers (C{CHATHISTORY},
C{MARKREAD}) in L{lairchat.irc.history}, the service nick that runs
line-protocol commands (a C{PRIVMSG} to it) in L{lairchat.irc.service},
all bases of L{CommandTable}.

Each parses its message, calls one operation of L{lairchat.domain} and
renders the answer as IRC numerics; a refusal of the domain
(L{lairchat.errors.ChatError}) becomes the numeric IRC has for it.  The
connection's IRC state (nick, capabilities, registration) is the
connection's own (L{lairchat.irc.protocol.IRCProtocol}); the core knows
nothing of it.  Nothing a command raises escapes L{CommandTable.dispatch}.
"""

import base64
import binascii
import secrets
from typing import Any
from weakref import WeakValueDictionary

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger

from lairchat import __version__, validation
from lairchat.context import RequestContext, ServerContext
from lairchat.domain import Actor, accounts, invitations, messages, rooms
from lairchat.domain.accounts import Attachment
from lairchat.errors import (
    AccessDenied, AccountLocked, ChatError, Conflict, Gone, InternalError, InvalidCredentials, NotFound,
    PermissionDenied, SecurityViolation,
)
from lairchat.events import Origin
from lairchat.irc.channels import ChannelCommands, room_of
from lairchat.irc.history import CHATHISTORY_MAX, HistoryCommands
from lairchat.irc.batch import labeled
from lairchat.irc.message import Message, echoed, message, parse, serialize, serialize_tags
from lairchat.irc.render import (
    ISUPPORT_PREFIX, REACT_TAG, REPLY_TAG, channel, mask, plain_text, prefixes, render_event,
)
from lairchat.irc.replies import Numeric
from lairchat.irc.service import ServiceCommands, is_service
from lairchat.irc.users import ConnectionMarks, UserCommands
from lairchat.router import Outcome, Router

CAPABILITIES = ("account-notify", "account-tag", "away-notify", "batch", "cap-notify", "draft/chathistory",
                "draft/message-redaction", "draft/read-marker", "echo-message", "extended-join", "labeled-response",
                "message-tags", "multi-prefix", "sasl", "server-time", "userhost-in-names")
"""The capabilities this server offers (only those it implements)."""

TAGGED = frozenset({"PRIVMSG", "NOTICE", "TAGMSG"})
"""Commands whose message tags matter (their client-only tags are relayed): called with C{tags=}."""

SASL_MECHANISMS = ("PLAIN",)
"""The SASL mechanisms offered."""

SASL_CHUNK = 400
"""Bytes of base64 in one C{AUTHENTICATE} line; a full one means more follow."""

SASL_MAX = 4 * SASL_CHUNK
"""The most base64 bytes one SASL payload may have (a username, a password and some slack)."""

BEFORE_REGISTRATION = frozenset({"CAP", "NICK", "USER", "PASS", "AUTHENTICATE", "PING", "PONG", "QUIT"})
"""Commands answered before the client registered; the others get C{451}."""

LOGIN_HELP = ("You are not logged in: connect with SASL PLAIN, or PASS <account>:<password>, "
              "with an account made on the line protocol (REGISTER:<user>:<password>). "
              "Until then you cannot join channels or send messages.")
"""The notice a client registered without credentials reads."""


class SaslExchange:
    """
    A SASL PLAIN exchange in progress: the base64 chunks received so far.

    @ivar mechanism: the mechanism asked for.
    @ivar chunks: the chunks of the payload.
    """

    def __init__(self, mechanism: str) -> None:
        self.mechanism = mechanism
        self.chunks: list[str] = []

    def size(self) -> int:
        """Base64 bytes received."""
        return sum(len(c) for c in self.chunks)


def decode_plain(payload: str) -> tuple[str, str, str]:
    """
    The authorization identity, authentication identity and password of a
    base64 SASL PLAIN payload.

    @raise ValueError: not base64, not UTF-8, or not three NUL-separated parts.
    """
    try:
        raw = base64.b64decode(payload, validate=True)
    except binascii.Error as error:
        raise ValueError(f"not base64: {error}") from None
    parts = raw.decode("utf-8").split("\0")
    if len(parts) != 3:
        raise ValueError("a PLAIN payload has three parts")
    return parts[0], parts[1], parts[2]


class CommandTable(ChannelCommands, UserCommands, HistoryCommands, ServiceCommands):
    """
    Answers IRC messages for L{lairchat.irc.protocol.IRCProtocol}
    connections of one server, one at a time per connection (the
    connection queues them): C{dispatch} has the interface of
    L{lairchat.router.Router.dispatch}.

    @ivar line_router: the line protocol's router, for the requests sent
        to the service nick.
    @ivar _departures: the removals of guests whose connection closed, under way.
    @ivar anonymous_nicks: the connections of this node registered with
        neither an account nor a guest, by lower-cased nick (weakly held),
        so that two of them do not share a nick (L{claim_nick}).
    """

    log = Logger()

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.marks = ConnectionMarks()
        self.line_router = Router(server)
        self.anonymous_nicks: WeakValueDictionary = WeakValueDictionary()
        self._departures: set[Deferred] = set()

    # Dispatch

    def pipelined(self, connection: Any, request: Message) -> bool:
        """IRC messages are answered one after another (see L{lairchat.router.Router.pipelined})."""
        return False

    async def dispatch(self, connection: Any, request: Message) -> Outcome:
        """
        Run one message for C{connection}; the lines to write.  Never
        raises.  With C{labeled-response}, a request's C{label} comes back
        on its reply (L{lairchat.irc.batch.labeled}), the connection's own
        echoed messages (C{echo-message}) included in it: every reply of
        every command is labeled here.
        """
        started = self.server.clock.seconds()
        command = request.command.upper()
        method = getattr(self, f"irc_{command}", None)
        name = f"IRC_{command}" if method is not None else "IRC_UNKNOWN"
        result = "ok"
        close = False
        label = request.tags.get("label") if "labeled-response" in connection.caps else None
        if label is not None:
            # the connection's own echoes (echo-message) are part of the reply
            connection.collect_echoes()
        try:
            if method is None:
                raise Numeric("421", request.command, "Unknown command")
            if command not in BEFORE_REGISTRATION and not connection.registered:
                raise Numeric("451", "You have not registered")
            if command in TAGGED:
                lines = await method(connection, request.params, tags=request.tags)
            else:
                lines = await method(connection, request.params)
            if lines is CLOSE:
                lines, close = [], True
            elif lines and lines[-1] is CLOSE:
                lines, close = lines[:-1], True
        except Numeric as reply:
            result = reply.command
            lines = [self.numeric(connection, reply.command, *reply.params)]
            if command == "NOTICE":
                lines = []
        except ChatError as error:
            result = error.name
            if error.code == SecurityViolation.code:
                self.server.intrusion.note(connection.address, "security_violation")
            lines = [] if command == "NOTICE" and not error.closes else [self.fail(command, error)]
            close = error.closes
        except Exception:
            reference = secrets.token_hex(6)
            self.log.failure("IRC request failed, reference {reference}: {command!r}", reference=reference,
                             command=command)
            result = "INTERNAL_ERROR"
            lines = [self.fail(command, InternalError(f"something went wrong on our side; reference {reference}"))]
        finally:
            echoes = connection.stop_collecting_echoes()
        try:
            if label is not None:
                lines = labeled(label, [*echoes, *(parse(line) if isinstance(line, str) else line for line in lines)],
                                connection.caps, connection.new_batch_ref, self.server.config.server_name)
            written = tuple(serialize(line) if isinstance(line, Message) else line for line in lines)
        except ValueError:
            reference = secrets.token_hex(6)
            self.log.failure("IRC reply unwritable, reference {reference}: {command!r}", reference=reference,
                             command=command)
            result = "INTERNAL_ERROR"
            error = InternalError(f"something went wrong on our side; reference {reference}")
            written, close = (serialize(self.fail(command, error)),), False
        self.server.metrics.observe(name, result, self.server.clock.seconds() - started)
        return Outcome(written, close=close)

    # Rendering

    def numeric(self, connection: Any, command: str, *params: Any) -> Message:
        """
        A reply from the server; a numeric's first parameter is the
        client's nick.  The middle parameters, which often repeat what the
        client sent, are made writable (L{echoed}).
        """
        server_name = self.server.config.server_name
        params = tuple(echoed(str(p)) for p in params[:-1]) + params[-1:]
        if command == "FAIL":
            return message(command, *params, source=server_name)
        return message(command, connection.display_nick, *params, source=server_name)

    def fail(self, command: str, error: ChatError) -> Message:
        """A C{FAIL} standard reply for a refusal IRC has no numeric for."""
        return message("FAIL", echoed(command), error.name, error.message, source=self.server.config.server_name)

    def actor(self, connection: Any) -> Actor:
        """Who the connection's requests act as, for the domain."""
        return Actor(self.server, connection.user, Origin(self.server.node, connection.connection_id),
                     connection.address)

    def require_login(self, connection: Any, command: str) -> None:
        """
        Refuse a command of a client registered without an account.

        @raise Numeric: C{FAIL <command> ACCOUNT_REQUIRED}.
        """
        if connection.user is None:
            raise Numeric("FAIL", command, "ACCOUNT_REQUIRED", "log in first (SASL PLAIN or PASS <account>:<password>)")

    # Registration

    async def irc_CAP(self, connection: Any, params: tuple) -> list:
        """C{CAP LS [302]}, C{LIST}, C{REQ}, C{END}: capability negotiation (IRCv3.2)."""
        if not params:
            raise Numeric("461", "CAP", "Not enough parameters")
        sub = params[0].upper()
        target = connection.display_nick
        server_name = self.server.config.server_name
        if sub == "LS":
            if not connection.registered:
                connection.negotiating = True
            if len(params) > 1 and params[1].isdigit() and int(params[1]) >= 302:
                connection.cap_version = 302
                connection.caps.add("cap-notify")
            offered = [f"sasl={','.join(SASL_MECHANISMS)}" if c == "sasl" and connection.cap_version >= 302 else c
                       for c in CAPABILITIES]
            return [message("CAP", target, "LS", " ".join(offered), source=server_name)]
        if sub == "LIST":
            return [message("CAP", target, "LIST", " ".join(sorted(connection.caps)), source=server_name)]
        if sub == "REQ":
            if not connection.registered:
                connection.negotiating = True
            wanted = params[1] if len(params) > 1 else ""
            names = wanted.split()
            if not names or any(n.lstrip("-") not in CAPABILITIES for n in names):
                return [message("CAP", target, "NAK", wanted, source=server_name)]
            for name in names:
                if name.startswith("-"):
                    connection.caps.discard(name[1:])
                else:
                    connection.caps.add(name)
            return [message("CAP", target, "ACK", wanted, source=server_name)]
        if sub == "END":
            connection.negotiating = False
            return await self.registration(connection)
        raise Numeric("410", params[0], "Invalid CAP command")

    def claim_nick(self, connection: Any, nick: str) -> bool:
        """
        Hold C{nick} for a connection registered with no account and no
        guest (without C{--irc-guests}; these nicks live only in this
        node's memory); whether it was free of other such connections.
        """
        holder = self.anonymous_nicks.get(nick.lower())
        if holder is not None and holder is not connection and holder.user is None and not holder._closed:
            return False
        self.release_nick(connection)
        self.anonymous_nicks[nick.lower()] = connection
        return True

    def release_nick(self, connection: Any) -> None:
        """Let go of the nick L{claim_nick} held for C{connection} (it logged in)."""
        if connection.nick is not None and self.anonymous_nicks.get(connection.nick.lower()) is connection:
            del self.anonymous_nicks[connection.nick.lower()]

    def valid_nick(self, nick: str) -> bool:
        """Whether C{nick} may be asked for: a username, or (with C{--irc-guests}) an IRC nick."""
        try:
            validation.username(nick)
            return True
        except ChatError:
            pass
        if not self.server.config.irc_guests:
            return False
        try:
            validation.guest_nick(nick)
            return True
        except ChatError:
            return False

    async def irc_NICK(self, connection: Any, params: tuple) -> list:
        """
        Choose a nick.  It must be a valid username (or, with
        C{--irc-guests}, an IRC nick); once logged in it is the account's
        name and does not change.  A guest may change it to a free one.
        """
        if not params or not params[0]:
            raise Numeric("431", "No nickname given")
        nick = params[0]
        if not self.valid_nick(nick):
            raise Numeric("432", nick, "Erroneous nickname: a nick is a lairchat username")
        if is_service(nick):
            raise Numeric("433", nick, "Nickname is already in use: it is the server's service")
        if connection.guest and connection.user is not None:
            if nick == connection.user.username:
                return []
            try:
                renamed = await accounts.rename_guest(self.actor(connection), nick)
            except Conflict:
                raise Numeric("433", nick, "Nickname is already in use") from None
            old = connection.source
            connection.user = renamed
            connection.nick = renamed.username
            return [message("NICK", renamed.username, source=old)]
        if connection.user is not None and connection.registered:
            if nick.lower() == connection.user.username.lower():
                return []
            raise Numeric("FAIL", "NICK", "CANNOT_CHANGE_NICK", "your nick is your account name")
        if connection.registered:
            if not self.claim_nick(connection, nick):
                raise Numeric("433", nick, "Nickname is already in use")
            old, connection.nick = connection.source, nick
            return [message("NICK", nick, source=old)]
        connection.nick = nick
        return await self.registration(connection)

    async def irc_USER(self, connection: Any, params: tuple) -> list:
        """C{USER <user> <mode> <unused> :<real name>}; an empty user name or real name is C{461}."""
        if connection.registered:
            raise Numeric("462", "You may not reregister")
        if len(params) < 4 or not params[0] or not params[3]:
            raise Numeric("461", "USER", "Not enough parameters")
        connection.ident, connection.realname = params[0], params[3]
        return await self.registration(connection)

    async def irc_PASS(self, connection: Any, params: tuple) -> list:
        """
        C{PASS <account>:<password>} (or C{PASS <password>} for the account
        of the nick): the login made when registration completes.
        """
        if connection.registered:
            raise Numeric("462", "You may not reregister")
        if not params or not params[0]:
            raise Numeric("461", "PASS", "Not enough parameters")
        account, colon, password = params[0].partition(":")
        connection.credentials = (account, password) if colon else (None, params[0])
        return []

    async def irc_AUTHENTICATE(self, connection: Any, params: tuple) -> list:
        """SASL PLAIN: C{AUTHENTICATE PLAIN}, C{+}, base64 chunks of 400 bytes, C{*} to abort."""
        if not params or not params[0]:
            raise Numeric("461", "AUTHENTICATE", "Not enough parameters")
        argument = params[0]
        exchange = connection.sasl
        if argument == "*":
            connection.sasl = None
            raise Numeric("906", "SASL authentication aborted")
        if exchange is None:
            if connection.user is not None and not connection.guest:
                raise Numeric("907", "You have already authenticated using SASL")
            if argument.upper() not in SASL_MECHANISMS:
                return [self.numeric(connection, "908", ",".join(SASL_MECHANISMS), "are available SASL mechanisms"),
                        self.numeric(connection, "904", "SASL authentication failed")]
            connection.sasl = SaslExchange(argument.upper())
            return [message("AUTHENTICATE", "+")]
        if len(argument) > SASL_CHUNK:
            connection.sasl = None
            raise Numeric("905", "SASL message too long")
        if argument != "+":
            exchange.chunks.append(argument)
        if exchange.size() > SASL_MAX:
            connection.sasl = None
            raise Numeric("905", "SASL message too long")
        if len(argument) == SASL_CHUNK:
            return []
        connection.sasl = None
        try:
            authorization, account, password = decode_plain("".join(exchange.chunks))
        except (ValueError, UnicodeDecodeError):
            raise Numeric("904", "SASL authentication failed: malformed PLAIN payload") from None
        if authorization and authorization.lower() != account.lower():
            raise Numeric("904", "SASL authentication failed: you can only log in as yourself")
        guest = connection.user if connection.guest else None
        failure = await self.log_in(connection, account, password)
        if failure is not None:
            raise Numeric("904", f"SASL authentication failed: {failure}")
        username = connection.user.username
        self.release_nick(connection)
        if guest is not None:
            # a guest that logs in to an account stops being one
            connection.guest = False
            await self.guest_left(connection, guest, None, account=username)
        # 900 and 903 first (to the nick the client had), then the nick
        # becomes the account's name
        lines = [self.numeric(connection, "900", connection.source, username, f"You are now logged in as {username}"),
                 self.numeric(connection, "903", "SASL authentication successful")]
        if connection.registered and connection.nick != username:
            old, connection.nick = connection.source, username
            lines.append(message("NICK", username, source=old))
        if connection.registered:
            lines += await self.after_login(connection)
        return lines

    async def log_in(self, connection: Any, account: str, password: str) -> str | None:
        """
        Log C{connection} in to an existing account, through the domain
        (throttling, auditing and suspension checks included); L{None}, or
        why it failed.
        """
        try:
            # accounts made by an operator (lairchat-admin --any-name) may
            # have names the protocol's rule refuses, IRC nicks among them
            username = validation.any_username(account)
            if validation.has_control_characters(password) or not 1 <= len(password) <= validation.ANY_PASSWORD_MAX:
                raise InvalidCredentials(accounts.WRONG_CREDENTIALS)
            await accounts.login(self.actor(connection), username, password,
                                 Attachment(connection.log_in, connection.log_out))
        except (InvalidCredentials, AccountLocked, AccessDenied) as refusal:
            return refusal.message
        except ChatError as refusal:
            if refusal.closes:
                raise
            return refusal.message
        return None

    async def registration(self, connection: Any) -> list:
        """
        Complete registration once C{NICK} and C{USER} came and capability
        negotiation ended: log in with C{PASS}'s credentials if any (a wrong
        password closes the connection, as IRC does); without an account,
        become a guest with C{--irc-guests} (C{433} when the nick is an
        account's or a connected guest's: registration waits for another
        C{NICK}); without guests, C{433} too when another connection here
        without an account holds the nick; then the welcome.
        """
        if connection.registered or connection.negotiating or connection.nick is None or connection.ident is None:
            return []
        if connection.user is None and connection.credentials is not None:
            account, password = connection.credentials
            connection.credentials = None
            failure = await self.log_in(connection, account or connection.nick, password)
            if failure is not None:
                return [self.numeric(connection, "464", f"Password incorrect: {failure}"),
                        message("ERROR", "Closing link: password incorrect"), CLOSE]
        if connection.user is None and self.server.config.irc_guests:
            try:
                await accounts.start_guest(self.actor(connection), connection.nick,
                                           Attachment(connection.log_in, connection.log_out))
            except Conflict:
                return [self.numeric(connection, "433", connection.nick, "Nickname is already in use")]
            connection.guest = True
        if connection.user is None and not self.claim_nick(connection, connection.nick):
            return [self.numeric(connection, "433", connection.nick, "Nickname is already in use")]
        if connection.user is not None:
            connection.nick = connection.user.username
        connection.registered = True
        lines = self.welcome(connection)
        if connection.user is None:
            lines.append(message("NOTICE", connection.display_nick, LOGIN_HELP, source=self.server.config.server_name))
        else:
            lines += await self.after_login(connection)
        return lines

    def isupport(self) -> list[str]:
        """The tokens of C{005 RPL_ISUPPORT}."""
        config = self.server.config
        return [
            "CASEMAPPING=ascii", "CHANTYPES=#", f"PREFIX={ISUPPORT_PREFIX}", f"NICKLEN={30 if config.irc_guests else 20}", "CHANNELLEN=51",
            f"TOPICLEN={validation.TOPIC_MAX}", f"NETWORK={config.server_name}", "TARGMAX=PRIVMSG:1,NOTICE:1",
            "UTF8ONLY", f"CHATHISTORY={CHATHISTORY_MAX}", "MSGREFTYPES=msgid,timestamp",
        ]

    def welcome(self, connection: Any) -> list:
        """C{001}-C{005} and the message of the day."""
        config = self.server.config
        nick = connection.display_nick
        version = f"lairchat-{__version__}"
        return [
            self.numeric(connection, "001", f"Welcome to the {config.server_name} IRC network, {nick}"),
            self.numeric(connection, "002", f"Your host is {config.server_name}, running version {version}"),
            self.numeric(connection, "003", "This server is lairchat: IRC and the line protocol on the same rooms"),
            self.numeric(connection, "004", config.server_name, version, "o", "bhinost"),
            self.numeric(connection, "005", *self.isupport(), "are supported by this server"),
            self.numeric(connection, "375", f"- {config.server_name} Message of the day - "),
            self.numeric(connection, "372", "- Rooms are channels; a private message is a direct message."),
            self.numeric(connection, "376", "End of /MOTD command."),
        ]

    async def after_login(self, connection: Any) -> list:
        """
        What a registered client reads once logged in: a C{JOIN} (with
        topic and names) for every room the account is a member of, since
        membership outlives connections; then what waited for it (direct
        messages that came while it was offline, pending invitations).
        """
        user = connection.user
        actor = self.actor(connection)
        member_of = self.server.hub.rooms_of(user.id)
        lines: list = []
        for summary in await rooms.visible_rooms(actor):
            if summary.room.id in member_of and not summary.room.is_direct:
                lines += await self.joined(connection, summary.room)
        context = RequestContext(self.server, connection)
        server_name = self.server.config.server_name
        caps = frozenset(connection.caps)
        for extension in self.server.extensions:
            try:
                found = await extension.login_events(context, user)
            except Exception:
                self.log.failure("login deliveries failed for {user}", user=user.username)
                continue
            for event in found:
                lines += render_event(event, user.id, user.username, server_name, caps)
        connection.caught_up()
        return lines

    def guest_closed(self, connection: Any, user: Any) -> Deferred:
        """
        A guest's connection closed: L{guest_left} with the connection's
        C{QUIT} reason, kept until done so that L{settled} waits for it.
        """
        done = Deferred.fromCoroutine(self.guest_left(connection, user, connection.quit_reason))
        if not done.called:
            self._departures.add(done)
            done.addBoth(lambda result: (self._departures.discard(done), result)[1])
        return done

    def settled(self) -> Deferred:
        """Fires once the guest removals under way are done (the server stops after them)."""
        return gatherResults(list(self._departures))

    async def guest_left(self, connection: Any, user: Any, reason: str | None, account: str = "") -> None:
        """
        A guest's connection closed, saying C{reason} (L{None}: its C{QUIT}
        told its rooms already), or it logged in to C{account} (which
        clients with C{account-notify} in its rooms read as C{ACCOUNT}): it
        leaves its rooms and is deleted (L{accounts.end_guest}); never
        raises.
        """
        actor = Actor(self.server, user, Origin(self.server.node, connection.connection_id), connection.address)
        try:
            await accounts.end_guest(actor, reason, account)
        except Exception:
            self.log.failure("guest {nick} not removed", nick=user.username)

    # Channels

    async def joined(self, connection: Any, room: Any) -> list:
        """
        The lines of a channel the client is in: its C{JOIN} (with its
        account and real name, with C{extended-join}), topic and names,
        and with C{draft/read-marker} its read marker (C{MARKREAD}, before
        the end of the names).
        """
        name = channel(room.name)
        extended = ()
        if "extended-join" in connection.caps:
            extended = ("*" if connection.guest else connection.user.username, connection.realname or connection.nick)
        lines: list = [message("JOIN", name, *extended, source=connection.source)]
        if room.topic:
            lines.append(self.numeric(connection, "332", name, room.topic))
        lines += await self.names(connection, room.name)
        if "draft/read-marker" in connection.caps:
            lines.insert(-1, await self.read_marker_line(connection, name))
        return lines

    async def names(self, connection: Any, room_name: str) -> list:
        """
        C{353} (members with their role prefixes; with
        C{userhost-in-names}, each as its full C{nick!user@host}) and C{366}.
        """
        roster = await rooms.members(self.actor(connection), room_name)
        name = channel(roster.room.name)
        symbol = "@" if roster.room.privacy == "private" else "="
        if "userhost-in-names" in connection.caps:
            server_name = self.server.config.server_name
            nicks = [prefixes(m.member.role) + mask(m.member.username, server_name) for m in roster.members]
        else:
            nicks = [prefixes(m.member.role) + m.member.username for m in roster.members]
        lines = []
        while nicks:
            batch, size = [], 0
            while nicks and size + len(nicks[0]) + 1 < 400:
                size += len(nicks[0]) + 1
                batch.append(nicks.pop(0))
            lines.append(self.numeric(connection, "353", symbol, name, " ".join(batch)))
        lines.append(self.numeric(connection, "366", name, "End of /NAMES list"))
        return lines

    async def irc_JOIN(self, connection: Any, params: tuple) -> list:
        """
        C{JOIN #room[,#room...]}: join each room, creating it (public, the
        joiner its owner) when there is none.  A private room needs an
        accepted invitation (C{473}); a ban refuses (C{474}).
        """
        if not params or not params[0]:
            raise Numeric("461", "JOIN", "Not enough parameters")
        self.require_login(connection, "JOIN")
        if params[0] == "0":
            return []
        actor = self.actor(connection)
        lines: list = []
        for target in params[0].split(","):
            try:
                name = room_of(target)
                try:
                    room = await rooms.join(actor, name)
                except NotFound:
                    try:
                        room = await rooms.create(actor, name, "public")
                    except Conflict:
                        room = await rooms.join(actor, name)
                lines += await self.joined(connection, room)
            except Numeric as reply:
                lines.append(self.numeric(connection, reply.command, *reply.params))
            except AccessDenied as refusal:
                if "banned" not in refusal.message:
                    try:
                        lines += await self.join_invited(connection, name)
                        continue
                    except (AccessDenied, NotFound, Gone) as answer:
                        refusal = answer if isinstance(answer, AccessDenied) else refusal
                code = "474" if "banned" in refusal.message else "473"
                text = "Cannot join channel (+b)" if code == "474" else "Cannot join channel (+i): invitation needed"
                lines.append(self.numeric(connection, code, target, text))
            except NotFound:
                lines.append(self.numeric(connection, "403", target, "No such channel"))
        return lines

    async def join_invited(self, connection: Any, name: str) -> list:
        """
        Join a private room by accepting the client's pending invitation
        to it (through the domain: as the line protocol's
        C{ACCEPT_INVITATION}); its channel lines.

        @raise NotFound: there is no such invitation.
        @raise Gone: it is no longer pending.
        @raise AccessDenied: the client is banned from the room.
        """
        actor = self.actor(connection)
        await invitations.accept(actor, invitations.InvitationRef(room=name))
        return await self.joined(connection, await rooms.join(actor, name))

    async def irc_PART(self, connection: Any, params: tuple) -> list:
        """C{PART #room[,#room...] [:reason]}: leave each room (membership ends, as LEAVE_ROOM)."""
        if not params or not params[0]:
            raise Numeric("461", "PART", "Not enough parameters")
        self.require_login(connection, "PART")
        actor = self.actor(connection)
        said = (plain_text(params[1]) or "")[:validation.TOPIC_MAX] if len(params) > 1 else ""
        reason = (said,) if said else ()
        lines: list = []
        for target in params[0].split(","):
            try:
                room = await rooms.leave(actor, room_of(target), *reason)
                lines.append(message("PART", channel(room.name), *reason, source=connection.source))
            except Numeric as reply:
                lines.append(self.numeric(connection, reply.command, *reply.params))
            except NotFound:
                lines.append(self.numeric(connection, "403", target, "No such channel"))
            except AccessDenied:
                lines.append(self.numeric(connection, "442", target, "You're not on that channel"))
        return lines

    async def irc_TOPIC(self, connection: Any, params: tuple) -> list:
        """C{TOPIC #room} shows the topic (C{332}/C{331}); C{TOPIC #room :text} sets it (moderator and above)."""
        if not params or not params[0]:
            raise Numeric("461", "TOPIC", "Not enough parameters")
        self.require_login(connection, "TOPIC")
        target = params[0]
        name = room_of(target)
        actor = self.actor(connection)
        try:
            if len(params) < 2:
                room = (await rooms.info(actor, name)).room
                if room.topic:
                    return [self.numeric(connection, "332", channel(room.name), room.topic)]
                return [self.numeric(connection, "331", channel(room.name), "No topic is set")]
            topic = params[1]
            validation.text(topic, "topic", validation.TOPIC_MAX, minimum=0)
            room = await rooms.set_topic(actor, name, topic)
        except NotFound:
            raise Numeric("403", target, "No such channel") from None
        except AccessDenied:
            raise Numeric("442", target, "You're not on that channel") from None
        except PermissionDenied:
            raise Numeric("482", target, "You're not channel operator") from None
        return [message("TOPIC", channel(room.name), topic, source=connection.source)]

    async def irc_NAMES(self, connection: Any, params: tuple) -> list:
        """C{NAMES #room}: the members with their role prefixes; an unknown or hidden room ends the list at once."""
        if not params or not params[0]:
            return [self.numeric(connection, "366", "*", "End of /NAMES list")]
        self.require_login(connection, "NAMES")
        lines: list = []
        for target in params[0].split(","):
            try:
                lines += await self.names(connection, room_of(target))
            except (Numeric, NotFound):
                lines.append(self.numeric(connection, "366", target, "End of /NAMES list"))
        return lines

    # Messages

    def relayed_tags(self, connection: Any, tags: dict | None) -> dict:
        """
        The client-only tags (C{+tag}) of a client's message that go on to
        its recipients: only from a client that enabled C{message-tags}.
        """
        if not tags or "message-tags" not in connection.caps:
            return {}
        return {key: value for key, value in tags.items() if key.startswith("+")}

    async def replied(self, actor: Actor, ref: str, reply_to: str | None, text: str, section: str,
                      notice: bool) -> bool:
        """
        Send C{text} (a C{notice} or not) as a reply to the message
        C{reply_to} (a C{+draft/reply} tag) when that is a message of the
        conversation C{ref} the actor may send to; whether it was (otherwise
        the caller sends a plain message).
        """
        if reply_to is None or not reply_to.isdigit():
            return False
        try:
            access = await messages.visible_message(actor, int(reply_to), "send")
            if (await messages.name_for_caller(actor, access.room)).lower() != ref.lower():
                return False
        except ChatError:
            return False
        await messages.reply(actor, int(reply_to), text, section, notice)
        return True

    async def irc_PRIVMSG(self, connection: Any, params: tuple, command: str = "PRIVMSG",
                          tags: dict | None = None) -> list:
        """
        C{PRIVMSG #room :text} sends to a room; C{PRIVMSG nick :text} is a
        direct message (stored and delivered at login when the user is
        offline).  An action is stored as C{/me ...}; other CTCP is dropped.
        C{PRIVMSG <service> :<line>} runs a line-protocol command
        (L{lairchat.irc.service}); a C{NOTICE} to the service is ignored.
        Client-only tags go on to the recipients (not stored); with
        C{+draft/reply=<id>} of a message of the same conversation, the
        message is a reply in its thread.
        """
        if not params or not params[0]:
            raise Numeric("411", f"No recipient given ({command})")
        if len(params) < 2 or not params[1]:
            raise Numeric("412", "No text to send")
        if is_service(params[0]):
            if command == "NOTICE":
                return []
            lines, close = await self.service_request(connection, params[1])
            return lines + [CLOSE] if close else lines
        self.require_login(connection, command)
        target, text = params[0], plain_text(params[1])
        if text is None:
            return []
        if not text.strip():
            raise Numeric("412", "No text to send")
        validation.text(text)
        actor = self.actor(connection)
        relayed = self.relayed_tags(connection, tags)
        reply_to, section = relayed.get(REPLY_TAG), serialize_tags(relayed)
        notice = command == "NOTICE"
        if target.startswith("#"):
            name = room_of(target)
            try:
                if not await self.replied(actor, name, reply_to, text, section, notice):
                    await messages.send_to_room(actor, name, text, section, notice)
            except NotFound:
                raise Numeric("403", target, "No such channel") from None
            except (AccessDenied, PermissionDenied) as refusal:
                raise Numeric("404", target, f"Cannot send to channel: {refusal.message}") from None
            return []
        if not self.valid_nick(target):
            raise Numeric("401", target, "No such nick/channel")
        try:
            if await self.replied(actor, "@" + target, reply_to, text, section, notice):
                recipient = await accounts.known(actor, target)
            else:
                _, recipient = await messages.send_direct(actor, target, text, section, notice)
        except NotFound:
            raise Numeric("401", target, "No such nick/channel") from None
        if command == "PRIVMSG":
            away = await accounts.away(actor, recipient)
            if away:
                return [self.numeric(connection, "301", recipient.username, away)]
        return []

    async def irc_NOTICE(self, connection: Any, params: tuple, tags: dict | None = None) -> list:
        """
        C{NOTICE}: stored as a message marked as a notice (line-protocol
        users read it as any message, IRC clients as a C{NOTICE}); never
        answered with an error, nor with C{301}, as IRC says.
        """
        return await self.irc_PRIVMSG(connection, params, "NOTICE", tags)

    async def irc_TAGMSG(self, connection: Any, params: tuple, tags: dict | None = None) -> list:
        """
        C{TAGMSG <#room|nick>}: client-only tags without a message, relayed
        to the members (or the user) with C{message-tags}, never stored.
        With C{+draft/react=<emoji>} and C{+draft/reply=<id>} of a message
        there, it is a lairchat reaction to that message (as
        C{REACT_MESSAGE}): members with C{message-tags} read it as this
        C{TAGMSG}, the others as a C{NOTICE}.
        """
        if not params or not params[0]:
            raise Numeric("461", "TAGMSG", "Not enough parameters")
        self.require_login(connection, "TAGMSG")
        target = params[0]
        relayed = self.relayed_tags(connection, tags)
        if not relayed:
            return []
        actor = self.actor(connection)
        ref = room_of(target) if target.startswith("#") else "@" + target
        if not target.startswith("#") and not self.valid_nick(target):
            raise Numeric("401", target, "No such nick/channel")
        try:
            if REACT_TAG in relayed and await self.reacted(actor, ref, relayed):
                return []
            await messages.send_tags(actor, ref, serialize_tags(relayed))
        except NotFound:
            if target.startswith("#"):
                raise Numeric("403", target, "No such channel") from None
            raise Numeric("401", target, "No such nick/channel") from None
        except (AccessDenied, PermissionDenied) as refusal:
            raise Numeric("404", target, f"Cannot send to channel: {refusal.message}") from None
        return []

    async def reacted(self, actor: Actor, ref: str, relayed: dict) -> bool:
        """
        Add the reaction of a C{TAGMSG}'s C{+draft/react} to the message its
        C{+draft/reply} names, when that is a message of the conversation
        C{ref}; whether it is one (reacting so twice changes nothing).

        @raise lairchat.errors.InvalidInput: an emoji lairchat cannot keep.
        """
        reply_to = relayed.get(REPLY_TAG)
        if reply_to is None or not reply_to.isdigit():
            return False
        emoji = validation.emoji(relayed[REACT_TAG])
        try:
            access = await messages.visible_message(actor, int(reply_to), "react")
        except ChatError:
            return False
        if (await messages.name_for_caller(actor, access.room)).lower() != ref.lower():
            return False
        try:
            await messages.react(actor, int(reply_to), emoji)
        except Conflict:
            pass
        return True

    async def irc_REDACT(self, connection: Any, params: tuple) -> list:
        """
        C{REDACT <#room|nick> <msgid> [:reason]} (C{draft/message-redaction}):
        delete a message as C{DELETE_MESSAGE} does (one's own, or any as a
        moderator and above).  Clients with the capability read C{REDACT},
        the sender included; the others a C{NOTICE}.  Refusals are
        C{FAIL REDACT INVALID_TARGET}, C{UNKNOWN_MSGID} and
        C{REDACT_FORBIDDEN}.
        """
        if len(params) < 2 or not params[0] or not params[1]:
            raise Numeric("461", "REDACT", "Not enough parameters")
        self.require_login(connection, "REDACT")
        target, msgid = params[0], params[1]
        reason = params[2] if len(params) > 2 else ""
        validation.text(reason, "reason", validation.TOPIC_MAX, minimum=0)
        actor = self.actor(connection)
        try:
            if target.startswith("#"):
                ref = (await rooms.info(actor, room_of(target))).room.name
            else:
                ref = "@" + (await accounts.known(actor, validation.any_username(target))).username
        except (Numeric, ChatError):
            raise Numeric("FAIL", "REDACT", "INVALID_TARGET", target, "no such channel or nick") from None
        unknown = Numeric("FAIL", "REDACT", "UNKNOWN_MSGID", target, msgid, "no such message there")
        if not msgid.isdigit():
            raise unknown
        try:
            access = await messages.visible_message(actor, int(msgid))
            if (await messages.name_for_caller(actor, access.room)).lower() != ref.lower():
                raise unknown
            await messages.delete(actor, int(msgid), reason)
        except (NotFound, AccessDenied):
            raise unknown from None
        except PermissionDenied as refusal:
            raise Numeric("FAIL", "REDACT", "REDACT_FORBIDDEN", target, msgid, refusal.message) from None
        return []

    # Connection

    async def irc_PING(self, connection: Any, params: tuple) -> list:
        """C{PING <token>}: C{PONG <server> :<token>}."""
        if not params or not params[0]:
            raise Numeric("409", "No origin specified")
        server_name = self.server.config.server_name
        return [message("PONG", server_name, params[0], source=server_name)]

    async def irc_PONG(self, connection: Any, params: tuple) -> list:
        """A client's answer to a C{PING}: nothing to do (TCP keepalive watches liveness)."""
        return []

    async def irc_QUIT(self, connection: Any, params: tuple) -> list:
        """C{QUIT [:reason]}: C{ERROR}, then the connection closes (a guest's rooms read C{QUIT :Quit: <reason>})."""
        reason = params[0] if params else "Client quit"
        if connection.guest and connection.user is not None:
            # told now, in this command's turn, as IRC servers do: the
            # others read the QUIT before anything they ask next is answered
            await accounts.guest_quits(self.actor(connection), f"Quit: {reason}")
            connection.quit_reason = None
        return [message("ERROR", f"Closing link: {connection.display_nick} (Quit: {reason})"), CLOSE]


class _Close:
    """The marker ending a reply whose connection then closes."""

    def __repr__(self) -> str:
        return "CLOSE"


CLOSE = _Close()
"""Put last in a command's lines: the connection closes after they are written."""
