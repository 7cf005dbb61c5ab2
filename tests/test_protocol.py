"""
Tests for L{lairchat.protocol} and L{lairchat.router}: one connection
driven through a L{StringTransport}, on a L{Clock}, over a store double
whose results have already fired.  Nothing here touches the network or the
database; the end-to-end tests do that.
"""

from typing import Any

from attrs import evolve
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from commands import auth, session
from lairchat import __version__
from lairchat.addresses import Networks
from lairchat.command import Command, Extension, Reply
from lairchat.context import Config, ServerContext
from lairchat.errors import Conflict
from lairchat.events import InvitationReceived
from lairchat.login_throttle import Reservation
from lairchat.models import Credentials, User
from lairchat.protocol import QUEUE_LIMIT, ChatFactory
from lairchat.ratelimit import Rate

TOKEN = "ab" * 32
"""The session token the store double hands out."""

PASSWORD = "correct horse 9"


class FakeUsers:
    """The C{users} part of the store double: accounts in a dict."""

    def __init__(self) -> None:
        self.users: dict[str, tuple[User, str]] = {}

    def create(self, username: str, password_hash: str) -> Deferred:
        """A new account, or L{Conflict}."""
        if username.lower() in self.users:
            return fail(Conflict("that username is taken"))
        user = User(id=len(self.users) + 1, username=username, server_role="user", suspended=False, created_ms=0)
        self.users[username.lower()] = (user, password_hash)
        return succeed(user)

    def by_id(self, user_id: int) -> Deferred:
        """The account with this id, or L{None}."""
        found = [user for user, _ in self.users.values() if user.id == user_id]
        return succeed(found[0] if found else None)

    def credentials(self, username: str) -> Deferred:
        """The account and its hash, or L{None}."""
        found = self.users.get(username.lower())
        if found is None:
            return succeed(None)
        return succeed(Credentials(user=found[0], password_hash=found[1], failed_logins=0))

    def set_server_role(self, username: str, role: str) -> Deferred:
        """Change a role."""
        user, password_hash = self.users[username.lower()]
        user = evolve(user, server_role=role)
        self.users[username.lower()] = (user, password_hash)
        return succeed(user)

    def login_succeeded(self, user_id: int) -> Deferred:
        """Nothing to reset."""
        return succeed(None)


class FakeSessions:
    """The C{sessions} part of the store double."""

    def __init__(self) -> None:
        self.opened = 0
        self.revoked: list[int] = []

    def open(self, user_id: int, ttl_seconds: int) -> Deferred:
        """Always the same token, a new id."""
        self.opened += 1
        return succeed((TOKEN, self.opened))

    def revoke(self, session_id: int) -> Deferred:
        """Note the revocation."""
        self.revoked.append(session_id)
        return succeed(None)


class FakeAudit:
    """The C{audit_log} part of the store double: a list."""

    def __init__(self) -> None:
        self.entries: list[tuple] = []

    def record(self, *entry: Any) -> Deferred:
        """Append."""
        self.entries.append(entry)
        return succeed(None)


class FakeLogins:
    """The guessing throttle's part of the store double: it never throttles."""

    def reserve(self, username: str, address: str, now_ms: int, pair_rule: Any, address_rule: Any) -> Deferred:
        """Always allowed, starting no delay."""
        return succeed(Reservation(True))

    def release(self, username: str, address: str, pair_rule: Any, address_rule: Any, correct: bool) -> Deferred:
        """Nothing to give back."""
        return succeed(None)


class FakeStore:
    """What the session and account commands need of the store."""

    def __init__(self) -> None:
        self.users = FakeUsers()
        self.sessions = FakeSessions()
        self.audit = FakeAudit()
        self.logins = FakeLogins()


class FakePasswords:
    """Instant, obviously insecure password hashing."""

    def hash(self, password: str, address: str | None = None) -> Deferred:
        """A readable hash."""
        return succeed("hash:" + password)

    def verify(self, password_hash: str | None, password: str, address: str | None = None) -> Deferred:
        """Whether the readable hash matches."""
        return succeed(password_hash == "hash:" + password)


class Slow(Command):
    """A command that answers when the test says so, with the lines it is given."""

    name = "SLOW"
    syntax = "SLOW[:<tag>]"
    summary = "Wait for the test"
    arity = (0, 1)
    needs_login = False
    rate_class = "free"

    def __init__(self) -> None:
        self.pending: list[Deferred] = []

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """Wait; answer C{OK:SLOW[:<tag>]} after the lines the Deferred fires with."""
        waiting: Deferred = Deferred()
        self.pending.append(waiting)
        lines = await waiting
        return Reply.ok(*parsed, lines=lines)

    def finish(self, *lines: str) -> None:
        """Let the oldest waiting request answer."""
        self.pending.pop(0).callback(list(lines))


class Placed(Command):
    """
    A pipelined command: it takes its place in commit order as soon as it
    starts, and answers when the test says so.
    """

    name = "PLACED"
    syntax = "PLACED:<tag>"
    summary = "Take a place, then wait for the test"
    arity = (1, 1)
    rate_class = "free"
    pipelined = True

    def __init__(self) -> None:
        self.started: list[str] = []
        self.pending: list[Deferred] = []

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """Note the start, take a place, wait; answer C{OK:PLACED:<tag>}."""
        self.started.append(parsed[0])
        context.queued()
        waiting: Deferred = Deferred()
        self.pending.append(waiting)
        await waiting
        return Reply.ok(*parsed)


class Chatty(Command):
    """A command that sends events to its own connection while it runs."""

    name = "CHATTY"
    syntax = "CHATTY"
    summary = "Send events mid-request"
    needs_login = False
    rate_class = "free"

    def __init__(self) -> None:
        self.waiting: Deferred = Deferred()

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """An event, a wait, another event, then a reply with data and after-lines."""
        context.connection.send_event("SYSTEM_MESSAGE:first")
        await self.waiting
        context.connection.send_event("SYSTEM_MESSAGE:second")
        return Reply.ok("done", lines=["DATA:1", "DATA:2"], after=["SYSTEM_MESSAGE:after"])


class Boom(Command):
    """A command with a bug."""

    name = "BOOM"
    syntax = "BOOM"
    summary = "Fail"
    needs_login = False
    rate_class = "free"

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """Divide by zero."""
        return Reply.ok(1 // 0)


class NotAReply(Command):
    """A command that answers something other than a L{Reply}."""

    name = "NOT_A_REPLY"
    syntax = "NOT_A_REPLY"
    summary = "Answer wrongly"
    needs_login = False
    rate_class = "free"

    async def run(self, context: Any, parsed: list[str]) -> Any:
        """Not a Reply."""
        return "OK"


class Limited(Command):
    """A command in the C{auth} rate class that always succeeds."""

    name = "LIMITED"
    syntax = "LIMITED"
    summary = "Draw from the auth bucket"
    needs_login = False
    rate_class = "auth"

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """Succeed."""
        return Reply.ok()


class SendMessage(Command):
    """A stand-in for C{SEND_MESSAGE} that records what plain lines become."""

    name = "SEND_MESSAGE"
    syntax = "SEND_MESSAGE:<room>:<text>"
    summary = "Record"
    arity = (2, 2)

    def __init__(self) -> None:
        self.sent: list[list[str]] = []

    async def run(self, context: Any, parsed: list[str]) -> Reply:
        """Record the arguments."""
        self.sent.append(parsed)
        return Reply.ok(parsed[0], len(self.sent), 0)


class Deliveries(Extension):
    """An extension with one delivery at login."""

    async def login_events(self, context: Any, user: Any) -> list:
        """One invitation."""
        return [InvitationReceived(12, user.id, "bob", "rustaceans", "member", 1795000000000, "Join us!")]


BASE_COMMANDS = [
    session.help_command,
    session.ping,
    session.quit_command,
    session.whoami,
    session.request_user_list,
    auth.register,
    auth.login,
    auth.resume,
    auth.logout,
    auth.change_password,
]
"""The session and account commands, taken from their modules (not from the plugin scan)."""


def registry(*extra: Any) -> dict:
    """The base commands and C{extra}, by each of their names."""
    names: dict = {}
    for command in BASE_COMMANDS + list(extra):
        for name in (command.name, *command.aliases):
            names[name] = command
    return names


class TransportConnection:
    """
    A protocol of a factory on a L{StringTransport}, with helpers to send
    bytes and read the lines written since the last read.  Subclasses
    make the factory and say how a line they send ends (L{line_ending});
    the server ends its lines with CRLF on either front end.
    """

    line_ending = b"\n"
    """What ends a line L{send} is given as a str."""

    def attach(self, factory: Any, transport: StringTransport | None = None) -> None:
        """Build the factory's protocol and connect it to C{transport} (a fresh L{StringTransport})."""
        self.factory = factory
        self.protocol = factory.buildProtocol(None)
        self.transport = transport or StringTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes | str) -> None:
        """Deliver bytes (a str is encoded and given L{line_ending})."""
        if isinstance(data, str):
            data = data.encode("utf-8") + self.line_ending
        self.protocol.dataReceived(data)

    def lines(self) -> list[str]:
        """The lines written since the last call, each checked to end in CRLF."""
        data = self.transport.value()
        self.transport.clear()
        if not data:
            return []
        assert data.endswith(b"\r\n"), data
        return data.decode("utf-8").split("\r\n")[:-1]

    def request(self, line: str) -> list[str]:
        """Send a line and return what was written for it."""
        self.send(line)
        return self.lines()


class Connection(TransportConnection):
    """
    One L{ChatProtocol} on a L{StringTransport} (see L{TransportConnection});
    lines it is sent end with LF.
    """

    def __init__(self, *commands: Any, extensions: Any = (), **settings: Any) -> None:
        self.clock = Clock()
        self.store = FakeStore()
        self.server = ServerContext(
            config=Config(**settings),
            store=self.store,
            clock=self.clock,
            passwords=FakePasswords(),
            registry=registry(*commands),
            extensions=list(extensions),
        )
        self.attach(ChatFactory(self.server))

    def register(self, name: str = "alice") -> None:
        """Log in as a new account through C{REGISTER}."""
        assert self.request(f"REGISTER:{name}:{PASSWORD}") == [f"OK:REGISTER:{name}:{TOKEN}"]


def connect(*commands: Any, **settings: Any) -> Connection:
    """A connection past its greeting."""
    connection = Connection(*commands, **settings)
    connection.lines()
    return connection


def unlabelled(line: str) -> str:
    """A line without its label tag, if it has one."""
    return line.split(" ", 1)[1] if line.startswith("@label=") else line


def is_final(line: str) -> bool:
    """Whether a line ends a reply."""
    return unlabelled(line).startswith(("OK:", "ERROR:"))


class GreetingTests(SynchronousTestCase):
    """
    What a new connection is sent.
    """

    def test_greeting(self):
        """
        C{WELCOME:lairchat:<version>:<server-name>}, then a
        C{SYSTEM_MESSAGE} on how to log in, and nothing else.
        """
        connection = Connection(server_name="testlair")
        welcome, system = connection.lines()
        self.assertEqual(welcome, f"WELCOME:lairchat:{__version__}:testlair")
        self.assertTrue(system.startswith("SYSTEM_MESSAGE:"), system)
        self.assertIn("LOGIN:<user>:<password>", system)
        self.assertIn("REGISTER:<user>:<password>", system)

    def test_tracked(self):
        """
        The factory knows the connection until it is lost.
        """
        connection = Connection()
        self.assertEqual(connection.factory.connections, {connection.protocol})
        connection.protocol.connectionLost(None)
        self.assertEqual(connection.factory.connections, set())


class ReplyTests(SynchronousTestCase):
    """
    Every reply: labelled lines, one final C{OK} or C{ERROR}, in order.
    """

    def test_labels_on_every_line(self):
        """
        Every line of a labelled reply starts with the label, and only the
        last is final: C{OK:HELP:<n>} after n C{HELP} lines.
        """
        connection = connect()
        lines = connection.request("@label=h.1 HELP")
        prefix = "@label=h.1 "
        for line in lines:
            self.assertTrue(line.startswith(prefix), line)
        bare = [line[len(prefix):] for line in lines]
        self.assertEqual(bare[-1], f"OK:HELP:{len(bare) - 1}")
        self.assertEqual([line for line in bare if is_final(line)], [bare[-1]])
        self.assertEqual(len(bare) - 1, len(connection.server.commands()))
        for line in bare[:-1]:
            self.assertTrue(line.startswith("HELP:"), line)

    def test_alias(self):
        """
        C{SHOW_HELP} answers as C{HELP}.
        """
        connection = connect()
        self.assertEqual(connection.request("show_help")[-1], connection.request("HELP")[-1])

    def test_label_on_error(self):
        """
        An error line carries the label too.
        """
        connection = connect()
        [line] = connection.request("@label=z WHOAMI")
        self.assertTrue(line.startswith("@label=z ERROR:1001:AUTH_REQUIRED:"), line)

    def test_unlabelled(self):
        """
        Without a label, the reply has none.
        """
        self.assertEqual(connect().request("PING:x"), ["OK:PING:x"])

    def test_one_final_line_per_request(self):
        """
        Each request of a pipelined batch (successes, refusals, undecodable
        lines) gets exactly one final line, in the order sent; empty lines
        get none.
        """
        connection = connect()
        connection.send(b"PING:1\n@label=a WHOAMI\n\nHELP\n\xff\nLOGIN:x\n\r\nhello\n@label=b PING\n")
        finals = [line for line in connection.lines() if is_final(line)]
        self.assertEqual(
            [line.split(":")[0:2] for line in finals],
            [
                ["OK", "PING"],
                ["@label=a ERROR", "1001"],
                ["OK", "HELP"],
                ["ERROR", "1114"],
                ["ERROR", "1112"],
                ["ERROR", "1001"],
                ["@label=b OK", "PING"],
            ],
        )

    def test_events_carry_no_label(self):
        """
        Deliveries after a labelled C{LOGIN} come after its C{OK}, without
        the label.
        """
        connection = Connection(extensions=[Deliveries()])
        connection.store.users.users["alice"] = (
            User(id=1, username="alice", server_role="user", suspended=False, created_ms=0), "hash:" + PASSWORD)
        connection.lines()
        self.assertEqual(
            connection.request(f"@label=l LOGIN:alice:{PASSWORD}"),
            [f"@label=l OK:LOGIN:alice:{TOKEN}",
             "INVITATION_RECEIVED:12:bob:rustaceans:member:1795000000000:Join us!"],
        )


class OrderTests(SynchronousTestCase):
    """
    Requests are answered one at a time, in the order sent, and a reply is
    never split by an event.
    """

    def test_pipelined_in_order(self):
        """
        A quick request behind a slow one waits for it.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW:a\nPING:b\n")
        self.assertEqual(connection.lines(), [])
        slow.finish("DATA:a")
        self.assertEqual(connection.lines(), ["DATA:a", "OK:SLOW:a", "OK:PING:b"])

    def test_several_slow(self):
        """
        Slow requests are answered in the order sent, one running at a time.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW:1\nSLOW:2\nSLOW:3\n")
        self.assertEqual(len(slow.pending), 1)
        slow.finish()
        self.assertEqual(connection.lines(), ["OK:SLOW:1"])
        slow.finish()
        slow.finish()
        self.assertEqual(connection.lines(), ["OK:SLOW:2", "OK:SLOW:3"])

    def test_pipelined_request_starts_while_those_before_are_under_way(self):
        """
        A pipelined request that arrives on its own while the one before
        it is under way starts at once, not after that one's reply; the
        replies still come in the order sent, and a request of another
        kind still waits for them.
        """
        placed = Placed()
        connection = connect(placed)
        connection.register()
        connection.send(b"PLACED:1\n")
        self.assertEqual(placed.started, ["1"])
        connection.send(b"PLACED:2\n")
        self.assertEqual(placed.started, ["1", "2"])
        placed.pending[1].callback(None)
        connection.send(b"PING:3\nPLACED:4\n")
        self.assertEqual(connection.lines(), [])
        self.assertEqual(placed.started, ["1", "2"])
        placed.pending[0].callback(None)
        self.assertEqual(connection.lines(), ["OK:PLACED:1", "OK:PLACED:2", "OK:PING:3"])
        self.assertEqual(placed.started, ["1", "2", "4"])
        placed.pending[2].callback(None)
        self.assertEqual(connection.lines(), ["OK:PLACED:4"])

    def test_pipelined_refusals_in_order(self):
        """
        A line refused before it is parsed (invalid UTF-8, a control
        character) is answered in its turn, after the replies to the
        requests sent before it.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW:a\n\xff\nPING:\x01\nPING:c\n")
        self.assertEqual(connection.lines(), [])
        slow.finish()
        self.assertEqual(
            connection.lines(),
            [
                "OK:SLOW:a",
                "ERROR:1114:INVALID_ENCODING:the line is not valid UTF-8",
                "ERROR:1114:INVALID_CHARACTERS:control characters are not allowed",
                "OK:PING:c",
            ],
        )

    def test_events_outside_replies(self):
        """
        Events sent while a request runs come before its reply, the reply's
        lines are contiguous, and its after-lines follow its C{OK}.
        """
        chatty = Chatty()
        connection = connect(chatty)
        connection.send("@label=c CHATTY")
        self.assertEqual(connection.lines(), ["SYSTEM_MESSAGE:first"])
        connection.protocol.send_event("MESSAGE:general:1:bob:1000:hi")
        chatty.waiting.callback(None)
        self.assertEqual(
            connection.lines(),
            [
                "MESSAGE:general:1:bob:1000:hi",
                "SYSTEM_MESSAGE:second",
                "@label=c DATA:1",
                "@label=c DATA:2",
                "@label=c OK:CHATTY:done",
                "SYSTEM_MESSAGE:after",
            ],
        )

    def test_reply_in_one_write(self):
        """
        A reply of many lines reaches the transport in one write, so no
        other writer can come between its lines.
        """
        connection = connect()
        writes: list[bytes] = []
        original = connection.transport.write
        connection.transport.write = lambda data: (writes.append(data), original(data))
        connection.send("HELP")
        self.assertEqual(len(writes), 1)
        self.assertGreater(writes[0].count(b"\r\n"), 5)

    def test_reading_paused_while_backlogged(self):
        """
        With too many requests queued the connection stops reading, and
        reads again once the queue has shrunk.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW\n" * (QUEUE_LIMIT + 2))
        self.assertEqual(connection.transport.producerState, "paused")
        while connection.transport.producerState == "paused":
            slow.finish()
        self.assertEqual(connection.transport.producerState, "producing")
        self.assertLess(len(slow.pending) + len(connection.protocol._queue), QUEUE_LIMIT)
        while slow.pending:
            slow.finish()
        self.assertEqual(connection.lines(), ["OK:SLOW"] * (QUEUE_LIMIT + 2))


class GateTests(SynchronousTestCase):
    """
    The login gate and plain lines.
    """

    def test_plain_line_before_login(self):
        """
        A line that is no command, before login, is C{1001 AUTH_REQUIRED}.
        """
        for line in ["hello everyone", "hello: there", "@bob hi"]:
            [reply] = connect().request(line)
            self.assertTrue(reply.startswith("ERROR:1001:AUTH_REQUIRED:"), reply)

    def test_command_before_login(self):
        """
        A command that needs login is C{1001} before it.
        """
        for line in ["WHOAMI", "LOGOUT", "REQUEST_USER_LIST", "CHANGE_PASSWORD:a:b"]:
            [reply] = connect().request(line)
            self.assertTrue(reply.startswith("ERROR:1001:AUTH_REQUIRED:"), (line, reply))

    def test_plain_line_without_room(self):
        """
        After login, with no current room, a plain line is
        C{1111 NO_CURRENT_ROOM}, with or without a C{SEND_MESSAGE} command.
        """
        for commands in [(), (SendMessage(),)]:
            connection = connect(*commands)
            connection.register()
            [reply] = connection.request("hello everyone")
            self.assertTrue(reply.startswith("ERROR:1111:NO_CURRENT_ROOM:"), reply)

    def test_plain_line_to_current_room(self):
        """
        In a room, a plain line (colons and a leading C{@} included) is sent
        there as C{SEND_MESSAGE}.
        """
        send = SendMessage()
        connection = connect(send)
        connection.register()
        connection.protocol.current_room = "general"
        self.assertEqual(connection.request("@label=m hello: world"), ["@label=m OK:SEND_MESSAGE:general:1:0"])
        self.assertEqual(connection.request("@bob hi"), ["OK:SEND_MESSAGE:general:2:0"])
        self.assertEqual(send.sent, [["general", "hello: world"], ["general", "@bob hi"]])

    def test_logged_in(self):
        """
        After C{REGISTER} the connection is its user's, online in the hub;
        losing the connection takes the user offline.
        """
        connection = connect()
        connection.register()
        self.assertEqual(connection.request("whoami"), ["OK:WHOAMI:alice:user"])
        self.assertTrue(connection.server.hub.is_online(1))
        connection.protocol.connectionLost(None)
        self.assertFalse(connection.server.hub.is_online(1))
        self.assertIsNone(self.successResultOf(connection.protocol.lost))

    def test_logout(self):
        """
        C{LOGOUT} revokes the session and leaves the connection anonymous.
        """
        connection = connect()
        connection.register()
        self.assertEqual(connection.request("LOGOUT"), ["OK:LOGOUT"])
        self.assertEqual(connection.store.sessions.revoked, [1])
        self.assertFalse(connection.server.hub.is_online(1))
        self.assertTrue(connection.request("WHOAMI")[0].startswith("ERROR:1001:"))


class ArityTests(SynchronousTestCase):
    """
    Wrong numbers of arguments are C{1112 INVALID_FORMAT} with the usage.
    """

    def test_too_few(self):
        """
        C{LOGIN:alice} lacks the password.
        """
        self.assertEqual(connect().request("LOGIN:alice"),
                         ["ERROR:1112:INVALID_FORMAT:too few arguments; usage: LOGIN:<user>:<password>"])
        self.assertEqual(connect().request("RESUME"),
                         ["ERROR:1112:INVALID_FORMAT:too few arguments; usage: RESUME:<session_token>"])

    def test_too_many(self):
        """
        C{WHOAMI} takes no argument, not even an empty one.
        """
        connection = connect()
        connection.register()
        for line in ["WHOAMI:x", "WHOAMI:"]:
            self.assertEqual(connection.request(line), ["ERROR:1112:INVALID_FORMAT:too many arguments; usage: WHOAMI"])

    def test_last_takes_the_rest(self):
        """
        The last argument keeps its colons.
        """
        self.assertEqual(connect().request("PING:a:b"), ["OK:PING:a:b"])

    def test_validation_after_arity(self):
        """
        Arguments of the right number are then validated (C{1111}-C{1114}).
        """
        [reply] = connect().request("REGISTER:1alice:correct horse 9")
        self.assertTrue(reply.startswith("ERROR:1111:"), reply)
        [reply] = connect().request("REGISTER:alice:short1")
        self.assertTrue(reply.startswith("ERROR:1113:"), reply)


class FailureTests(SynchronousTestCase):
    """
    A command that raises something other than a L{ChatError} is
    C{1301 INTERNAL_ERROR} with a reference id that is also in the log; the
    connection stays.
    """

    def capture(self) -> list[dict]:
        """Every log event published during the test."""
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        return events

    def test_reference_in_reply_and_log(self):
        """
        The C{1301} line names a reference that the logged failure carries,
        and the connection keeps serving.
        """
        events = self.capture()
        connection = connect(Boom())
        [reply] = connection.request("@label=b BOOM")
        prefix = "@label=b ERROR:1301:INTERNAL_ERROR:something went wrong on our side; reference "
        self.assertTrue(reply.startswith(prefix), reply)
        reference = reply[len(prefix):]
        self.assertRegex(reference, r"^[0-9a-f]{12}$")
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["reference"], reference)
        self.assertIn(reference, formatEvent(failures[0]))
        self.assertIsInstance(failures[0]["log_failure"].value, ZeroDivisionError)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(connection.request("PING:still"), ["OK:PING:still"])

    def test_distinct_references(self):
        """
        Two failures have two references.
        """
        connection = connect(Boom())
        first = connection.request("BOOM")[0].rsplit(" ", 1)[1]
        second = connection.request("BOOM")[0].rsplit(" ", 1)[1]
        self.assertNotEqual(first, second)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_not_a_reply(self):
        """
        A command answering something other than a L{Reply} is a bug too.
        """
        connection = connect(NotAReply())
        [reply] = connection.request("NOT_A_REPLY")
        self.assertTrue(reply.startswith("ERROR:1301:INTERNAL_ERROR:"), reply)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertFalse(connection.transport.disconnecting)

    def test_no_internals(self):
        """
        The C{1301} line says nothing about the exception.
        """
        connection = connect(Boom())
        [reply] = connection.request("BOOM")
        self.flushLoggedErrors(ZeroDivisionError)
        for leak in ["ZeroDivision", "division", "Traceback", ".py"]:
            self.assertNotIn(leak, reply)


class FramingTests(SynchronousTestCase):
    """
    The byte-level limits: line length and encoding.
    """

    def test_too_long(self):
        """
        A line over C{max_line} bytes is C{1113 LINE_TOO_LONG} and the
        connection is closed.
        """
        connection = connect(max_line=64)
        connection.send(b"PING:" + b"x" * 100 + b"\n")
        self.assertEqual(connection.lines(), ["ERROR:1113:LINE_TOO_LONG:a line holds at most 64 bytes"])
        self.assertTrue(connection.transport.disconnecting)

    def test_too_long_unterminated(self):
        """
        Bytes over the limit with no line end yet are refused the same way.
        """
        connection = connect(max_line=64)
        connection.send(b"x" * 65)
        self.assertEqual(connection.lines(), ["ERROR:1113:LINE_TOO_LONG:a line holds at most 64 bytes"])
        self.assertTrue(connection.transport.disconnecting)

    def test_nothing_after_too_long(self):
        """
        After C{LINE_TOO_LONG}, more bytes get no answer: neither the lines
        after it nor a second error.
        """
        connection = connect(max_line=64)
        connection.send(b"x" * 65)
        connection.lines()
        connection.send(b"y" * 100)
        connection.send(b"\nPING\n")
        self.assertEqual(connection.lines(), [])

    def test_too_long_after_pending_reply(self):
        """
        A request still running when an over-long line arrives is answered
        first; then C{LINE_TOO_LONG}, then the close.
        """
        slow = Slow()
        connection = connect(slow, max_line=64)
        connection.send(b"SLOW\n" + b"x" * 65)
        self.assertFalse(connection.transport.disconnecting)
        slow.finish()
        self.assertEqual(connection.lines(),
                         ["OK:SLOW", "ERROR:1113:LINE_TOO_LONG:a line holds at most 64 bytes"])
        self.assertTrue(connection.transport.disconnecting)

    def test_longest_line(self):
        """
        A line of exactly C{max_line} bytes is served.
        """
        connection = connect(max_line=64)
        self.assertEqual(connection.request("PING:" + "x" * 59), ["OK:PING:" + "x" * 59])

    def test_default_fits_longest_message(self):
        """
        With the default limit, the longest message (4000 four-byte
        characters) to the longest room name, with the longest label and a
        CR, fits in one line.
        """
        send = SendMessage()
        connection = connect(send)
        connection.register()
        text = "\U0001f600" * 4000
        [reply] = connection.request("@label=" + "L" * 32 + " SEND_MESSAGE:" + "r" * 50 + ":" + text + "\r")
        self.assertTrue(reply.endswith("OK:SEND_MESSAGE:" + "r" * 50 + ":1:0"), reply[:200])
        self.assertEqual(send.sent, [["r" * 50, text]])

    def test_invalid_utf8(self):
        """
        Invalid UTF-8 is C{1114 INVALID_ENCODING}; the connection stays.
        """
        connection = connect()
        connection.send(b"PING:\xff\xfe\n")
        self.assertEqual(connection.lines(), ["ERROR:1114:INVALID_ENCODING:the line is not valid UTF-8"])
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(connection.request("PING:ok"), ["OK:PING:ok"])

    def test_control_characters(self):
        """
        A control character is C{1114 INVALID_CHARACTERS}; the connection
        stays.
        """
        connection = connect()
        connection.send(b"PING:a\x07b\n")
        self.assertEqual(connection.lines(), ["ERROR:1114:INVALID_CHARACTERS:control characters are not allowed"])
        self.assertFalse(connection.transport.disconnecting)

    def test_crlf(self):
        """
        A CRLF line is answered like an LF line; empty lines get nothing.
        """
        connection = connect()
        connection.send(b"\r\n\n")
        self.assertEqual(connection.lines(), [])
        connection.send(b"ping:abc\r\n")
        self.assertEqual(connection.lines(), ["OK:PING:abc"])


class OutputLimitTests(SynchronousTestCase):
    """
    A client that stops reading is cut off once its backlog passes
    C{max_output_buffer}.
    """

    def test_abort_past_limit(self):
        """
        While the transport is paused, writing past the limit aborts the
        connection; up to the limit does not.
        """
        connection = connect(max_output_buffer=4096)
        connection.protocol.pauseProducing()
        line = "SYSTEM_MESSAGE:" + "x" * 1000
        for _ in range(4):
            connection.protocol.send_event(line)
        self.assertFalse(connection.transport.disconnecting)
        connection.protocol.send_event(line)
        self.assertTrue(connection.transport.disconnected)
        written = connection.transport.value()
        connection.protocol.send_event(line)
        self.assertEqual(connection.transport.value(), written)

    def test_replies_count(self):
        """
        Replies count toward the backlog as events do.
        """
        connection = connect(max_output_buffer=128)
        connection.protocol.pauseProducing()
        connection.send("HELP")
        self.assertTrue(connection.transport.disconnected)

    def test_resume_resets(self):
        """
        When the client catches up, the count starts again.
        """
        connection = connect(max_output_buffer=4096)
        line = "SYSTEM_MESSAGE:" + "x" * 1000
        for _ in range(3):
            connection.protocol.pauseProducing()
            for _ in range(4):
                connection.protocol.send_event(line)
            connection.protocol.resumeProducing()
        self.assertFalse(connection.transport.disconnecting)

    def test_unpaused_unlimited(self):
        """
        While the client reads, nothing is counted.
        """
        connection = connect(max_output_buffer=4096)
        for _ in range(20):
            connection.protocol.send_event("SYSTEM_MESSAGE:" + "x" * 1000)
        self.assertFalse(connection.transport.disconnecting)


class QuitTests(SynchronousTestCase):
    """
    C{QUIT} and lost connections.
    """

    def test_quit(self):
        """
        C{QUIT} answers C{OK:QUIT}, closes, and nothing sent after it in the
        same packet is answered.
        """
        connection = connect()
        connection.send(b"@label=q QUIT:bye\nPING\n")
        self.assertEqual(connection.lines(), ["@label=q OK:QUIT"])
        self.assertTrue(connection.transport.disconnecting)

    def test_quit_clears_queue(self):
        """
        Requests queued behind a C{QUIT} are dropped.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW\nQUIT\nPING\n")
        slow.finish()
        self.assertEqual(connection.lines(), ["OK:SLOW", "OK:QUIT"])
        self.assertTrue(connection.transport.disconnecting)

    def test_reply_after_loss_dropped(self):
        """
        A reply that is ready after the connection was lost is not written.
        """
        slow = Slow()
        connection = connect(slow)
        connection.send(b"SLOW\nPING\n")
        connection.protocol.connectionLost(None)
        slow.finish()
        self.assertEqual(connection.lines(), [])


class Peer(TransportConnection):
    """
    Another connection to the server of a L{Connection}, from C{host}.
    """

    def __init__(self, connection: Connection, host: str) -> None:
        self.attach(connection.factory, StringTransport(peerAddress=IPv4Address("TCP", host, 40000)))
        self.lines()


def tiny(**rates: Rate) -> dict:
    """A rate table with only C{rates}, by class."""
    return dict(rates)


UNLIMITED = tiny()
"""A rate table that limits nothing."""


class FloodControlTests(SynchronousTestCase):
    """
    A connection over its budget is answered later, in order and under its
    labels, never refused; past the backlog bound it is cut off.
    """

    def test_delayed_not_refused(self):
        """
        The sixth C{auth}-class request at once (the burst is five) is
        answered once the bucket has a token again, 5 s later, and so on
        for the next: each under its own label, none refused.
        """
        connection = connect(Limited())
        connection.send("".join(f"@label=n{i} LIMITED\n" for i in range(1, 9)).encode())
        self.assertEqual(connection.lines(), [f"@label=n{i} OK:LIMITED" for i in range(1, 6)])
        connection.clock.advance(4.9)
        self.assertEqual(connection.lines(), [])
        connection.clock.advance(0.1)
        self.assertEqual(connection.lines(), ["@label=n6 OK:LIMITED"])
        connection.clock.advance(10)
        self.assertEqual(connection.lines(), ["@label=n7 OK:LIMITED", "@label=n8 OK:LIMITED"])
        # only the login timeout is left
        self.assertEqual(connection.clock.getDelayedCalls(), [connection.protocol._login_timer])

    def test_later_lines_keep_their_turn(self):
        """
        A line that costs nothing (C{PING}) sent behind a delayed one is
        answered after it, not before.
        """
        connection = connect(Limited(), connection_rates=tiny(auth=Rate(1, 1)))
        connection.send(b"@label=a LIMITED\n@label=b LIMITED\n@label=c PING\n")
        self.assertEqual(connection.lines(), ["@label=a OK:LIMITED"])
        connection.clock.advance(1)
        self.assertEqual(connection.lines(), ["@label=b OK:LIMITED", "@label=c OK:PING"])

    def test_delay_holds_back_only_its_connection(self):
        """
        While one connection waits, another (from elsewhere) is answered at
        once.
        """
        connection = connect(Limited(), connection_rates=tiny(auth=Rate(1, 1)))
        connection.send(b"LIMITED\nLIMITED\n")
        self.assertEqual(connection.lines(), ["OK:LIMITED"])
        other = Peer(connection, "10.9.9.9")
        self.assertEqual(other.request("LIMITED"), ["OK:LIMITED"])
        self.assertEqual(connection.lines(), [])

    def test_address_budget_survives_reconnecting(self):
        """
        A new connection from the same address draws on the same address
        budget, so it waits too; one from another address does not.
        """
        connection = connect(Limited(), connection_rates=tiny(auth=Rate(2, 1)), address_rates=tiny(auth=Rate(2, 1)))
        connection.send(b"LIMITED\nLIMITED\n")
        self.assertEqual(connection.lines(), ["OK:LIMITED", "OK:LIMITED"])
        connection.protocol.connectionLost(None)
        again = Peer(connection, "192.168.1.1")
        self.assertEqual(again.request("@label=r LIMITED"), [])
        elsewhere = Peer(connection, "10.0.0.2")
        self.assertEqual(elsewhere.request("LIMITED"), ["OK:LIMITED"])
        connection.clock.advance(1)
        self.assertEqual(again.lines(), ["@label=r OK:LIMITED"])

    def test_exempt_address_has_no_address_budget(self):
        """
        An address in an exempt network has no address budget: a new
        connection from it starts with a full connection budget.
        """
        connection = connect(
            Limited(),
            connection_rates=tiny(auth=Rate(2, 1)),
            address_rates=tiny(auth=Rate(2, 1)),
            exempt_networks=Networks(("192.168.1.0/24",)),
        )
        connection.send(b"LIMITED\nLIMITED\n")
        self.assertEqual(connection.lines(), ["OK:LIMITED", "OK:LIMITED"])
        again = Peer(connection, "192.168.1.1")
        self.assertEqual(again.request("LIMITED"), ["OK:LIMITED"])

    def test_account_budget_shared_by_its_connections(self):
        """
        Once logged in, a connection also draws on its account's budget,
        which the account's other connections (from elsewhere) share.
        """
        connection = connect(
            Limited(), connection_rates=UNLIMITED, address_rates=UNLIMITED,
            account_rates=tiny(default=Rate(2, 1)),
        )
        connection.register("alice")
        self.assertEqual(connection.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        self.assertEqual(connection.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        laptop = Peer(connection, "10.0.0.3")
        self.assertEqual(laptop.request(f"LOGIN:alice:{PASSWORD}")[0], f"OK:LOGIN:alice:{TOKEN}")
        self.assertEqual(laptop.request("@label=w WHOAMI"), [])
        connection.clock.advance(1)
        self.assertEqual(laptop.lines(), ["@label=w OK:WHOAMI:alice:user"])

    def test_cut_off_past_the_backlog(self):
        """
        A line that would wait longer than the backlog bound is answered
        C{1110} under its label (after the replies already due), the lines
        waiting before it are dropped, and the connection is closed.
        """
        connection = connect(Limited(), flood_backlog=10)
        connection.send("".join(f"@label=n{i} LIMITED\n" for i in range(1, 11)).encode())
        lines = connection.lines()
        self.assertEqual(lines[:-1], [f"@label=n{i} OK:LIMITED" for i in range(1, 6)])
        self.assertTrue(lines[-1].startswith("@label=n8 ERROR:1110:RATE_LIMITED:flooding"), lines[-1])
        self.assertIn("disconnected", lines[-1])
        self.assertTrue(connection.transport.disconnecting)
        connection.clock.advance(60)
        self.assertEqual(connection.lines(), [])
        self.assertEqual(connection.server.metrics.registry.get_sample_value(
            "lairchat_requests_refused_total", {"class": "auth", "reason": "flood"}), 1.0)

    def test_cut_off_after_the_request_in_progress(self):
        """
        A cut-off while a request runs comes right after that request's
        reply; the lines queued between them are dropped.
        """
        slow = Slow()
        connection = connect(slow, Limited(), flood_backlog=0, connection_rates=tiny(auth=Rate(1, 1)))
        connection.send(b"SLOW\nLIMITED\n@label=x LIMITED\nPING\n")
        self.assertEqual(connection.lines(), [])
        slow.finish()
        lines = connection.lines()
        self.assertEqual(lines[0], "OK:SLOW")
        self.assertTrue(lines[1].startswith("@label=x ERROR:1110:RATE_LIMITED:"), lines)
        self.assertEqual(len(lines), 2)
        self.assertTrue(connection.transport.disconnecting)

    def test_stops_reading_while_behind(self):
        """
        Delayed lines queue up to L{QUEUE_LIMIT}; then the socket is not
        read until the queue drains.
        """
        connection = connect(Limited(), connection_rates=tiny(auth=Rate(1, 100)), address_rates=UNLIMITED)
        connection.send(b"LIMITED\n" * (QUEUE_LIMIT + 1))
        self.assertEqual(connection.transport.producerState, "paused")
        connection.clock.pump([0.01] * (QUEUE_LIMIT + 1))
        self.assertEqual(len(connection.lines()), QUEUE_LIMIT + 1)
        self.assertEqual(connection.transport.producerState, "producing")

    def test_lost_while_waiting(self):
        """
        A connection lost while it waits leaves no timer behind, writes
        nothing more, and its own buckets are forgotten.
        """
        connection = connect(Limited())
        connection.send(b"LIMITED\n" * 7)
        connection.lines()
        connection.protocol.connectionLost(None)
        self.assertEqual(connection.clock.getDelayedCalls(), [])
        connection.clock.advance(60)
        self.assertEqual(connection.lines(), [])
        self.assertEqual([key for key in connection.server.flood.buckets if key[0] == "connection"], [])

    def test_metrics(self):
        """
        Each delayed request is counted by class, and its delay observed.
        """
        connection = connect(Limited())
        connection.send(b"LIMITED\n" * 7)
        value = connection.server.metrics.registry.get_sample_value
        self.assertEqual(value("lairchat_requests_delayed_total", {"class": "auth"}), 2.0)
        self.assertEqual(value("lairchat_request_delay_seconds_sum"), 15.0)

    def test_free(self):
        """
        C{PING} is never delayed.
        """
        connection = connect()
        for _ in range(200):
            self.assertEqual(connection.request("PING"), ["OK:PING"])

    def test_off(self):
        """
        With rate limits off, nothing is delayed.
        """
        connection = connect(Limited(), rate_limits=False)
        for _ in range(20):
            self.assertEqual(connection.request("LIMITED"), ["OK:LIMITED"])


class RegistrationLimitTests(SynchronousTestCase):
    """
    New accounts per address per hour: refused past the limit with a
    truthful retry time.
    """

    def test_refused_with_retry_time(self):
        """
        Past the limit, C{REGISTER} is C{1110}, saying the true wait in
        whole seconds rounded up: never 0.
        """
        connection = connect(registrations_per_hour=2)
        connection.register("alice")
        connection.register("bob")
        self.assertEqual(connection.request(f"REGISTER:carol:{PASSWORD}"), [
            "ERROR:1110:RATE_LIMITED:too many registrations from your address; retry in 1800 s"])
        connection.clock.advance(1799.5)
        self.assertEqual(connection.request(f"REGISTER:carol:{PASSWORD}"), [
            "ERROR:1110:RATE_LIMITED:too many registrations from your address; retry in 1 s"])
        connection.clock.advance(0.5)
        connection.register("carol")
        self.assertEqual(connection.server.metrics.registry.get_sample_value(
            "lairchat_requests_refused_total", {"class": "auth", "reason": "registrations"}), 2.0)

    def test_mistakes_cost_nothing(self):
        """
        A refused registration (name taken, bad password) does not count.
        """
        connection = connect(registrations_per_hour=1, connection_rates=UNLIMITED, address_rates=UNLIMITED)
        connection.register("alice")
        connection.clock.advance(3600)
        for _ in range(3):
            self.assertEqual(connection.request(f"REGISTER:alice:{PASSWORD}")[0][:15], "ERROR:1211:CONF")
            self.assertEqual(connection.request("REGISTER:bob:short")[0][:11], "ERROR:1113:")
        connection.register("bob")

    def test_per_address(self):
        """
        Another address has its own count; an exempt one has none.
        """
        connection = connect(registrations_per_hour=1, exempt_networks=Networks(("10.0.0.9",)))
        connection.register("alice")
        self.assertEqual(Peer(connection, "10.0.0.8").request(f"REGISTER:bob:{PASSWORD}")[0],
                         f"OK:REGISTER:bob:{TOKEN}")
        exempt = Peer(connection, "10.0.0.9")
        for name in ("carol", "dave", "erin"):
            self.assertEqual(exempt.request(f"REGISTER:{name}:{PASSWORD}")[0], f"OK:REGISTER:{name}:{TOKEN}")

    def test_newcomer_mistakes_are_not_refused(self):
        """
        Three mistyped C{REGISTER}s and two failed C{LOGIN}s, then a sixth
        try: with the default limits nothing is refused for its rate; the
        sixth is only answered later.
        """
        connection = connect()
        connection.send(b"REGISTER:al\nREGISTER:al:x\nREGISTER:alice:short\n"
                        b"LOGIN:alice:wrong 12345\nLOGIN:alice:wrong 12345\n"
                        + f"REGISTER:alice:{PASSWORD}\n".encode())
        lines = connection.lines()
        self.assertEqual(len(lines), 5)
        self.assertFalse([line for line in lines if "1110" in line], lines)
        connection.clock.advance(5)
        self.assertEqual(connection.lines(), [f"OK:REGISTER:alice:{TOKEN}"])
