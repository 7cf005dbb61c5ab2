"""
Conformance to the wire contract, end to end: the real service on a TCP
port, clients over sockets, the real database.  Every request of the
contract's command tables and every event of its event table is made to
happen, and each line it produces is checked for its exact shape: the kind,
the number and order of its fields, timestamps in epoch milliseconds.  Also
the grammar (case, labels, plain lines, argument splitting), the error codes
and the example session, and that C{HELP} and C{docs/protocol.md} cover
every registered command.

Where the contract leaves a choice, the expectations follow
C{docs/protocol.md}.
"""

import os
import re
import time

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lairchat import __version__
from lairchat.plugins import load_commands
from lairchat.sweeper import sweep
from lairchat.wire import render
from tests.invitation_fixtures import ban
from tests.support import LineClient, start_server

PASSWORD = "correct horse 9"

DAY_MS = 24 * 3600 * 1000

PUBLIC_COMMANDS = {"HELP", "SHOW_HELP", "PING", "QUIT", "REGISTER", "LOGIN", "RESUME"}
"""The commands the contract accepts before login, aliases included."""

CONTRACT_COMMANDS = (
    # Session and accounts
    "HELP", "SHOW_HELP", "PING", "QUIT", "REGISTER", "LOGIN", "RESUME", "LOGOUT", "CHANGE_PASSWORD", "WHOAMI",
    "REQUEST_USER_LIST",
    # Rooms
    "CREATE_ROOM", "JOIN_ROOM", "LEAVE_ROOM", "LIST_ROOMS", "ROOM_INFO", "ROOM_MEMBERS", "SET_TOPIC", "SET_ROLE",
    "KICK_USER", "BAN_USER", "UNBAN_USER",
    # Messages
    "SEND_MESSAGE", "REPLY_MESSAGE", "EDIT_MESSAGE", "DELETE_MESSAGE", "REACT_MESSAGE", "UNREACT_MESSAGE",
    "GET_HISTORY", "GET_THREAD", "GET_REACTIONS", "SEARCH_MESSAGES", "MARK_READ", "UNREAD", "DM", "DM_HISTORY",
    "LIST_CONVERSATIONS",
    # Invitations
    "INVITE_USER", "INVITE_AS", "INVITE_MULTIPLE", "ACCEPT_INVITATION", "DECLINE_INVITATION",
    "ACCEPT_ALL_INVITATIONS", "ACCEPT_ALL", "DECLINE_ALL_INVITATIONS", "LIST_INVITATIONS",
    "LIST_SENT_INVITATIONS", "LIST_ROOM_INVITATIONS", "VIEW_INVITATION", "REVOKE_INVITATION",
    "INVITATION_STATS", "SET_INVITE_TEMPLATE",
    # Server administration
    "SERVER_STATS", "AUDIT_LOG", "SET_USER_ROLE", "SUSPEND_USER", "UNSUSPEND_USER",
)
"""Every request name of the contract's section 5."""

STAT_KEYS = ("sent", "received", "pending", "accepted", "declined", "expired", "revoked", "acceptance_rate",
             "median_response_ms")
"""The keys of INVITATION_STATS, in the order the contract lists them."""

DOCS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "protocol.md")


class RawLineClient(LineClient):
    """A L{LineClient} that also keeps each line exactly as it came, CR included."""

    def __init__(self) -> None:
        super().__init__()
        self.raw: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        """Keep the raw line, then queue it as usual."""
        self.raw.append(line)
        super().lineReceived(line)


async def connect_raw(testcase, server) -> RawLineClient:
    """A connection whose greeting has not been read yet."""
    client = RawLineClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", server.port), client)
    testcase.addCleanup(client.close)
    return client


async def reply_of(client: LineClient, label: str) -> list[str]:
    """
    The lines of the reply to a request sent with C{@label=<label>}, label
    included, read off the wire; other lines go to the client's events.
    """
    prefix = f"@label={label} "
    lines = []
    while True:
        line = await client.line()
        if not line.startswith(prefix):
            client.events.append(line)
            continue
        lines.append(line)
        if line[len(prefix):].startswith(("OK:", "ERROR:")):
            return lines


async def login(server, name: str) -> LineClient:
    """Another connection, logged in as C{name}."""
    client = await server.connect()
    await client.ok(f"LOGIN:{name}:{PASSWORD}")
    return client


class ConformanceTestCase(TestCase):
    """Shape assertions shared by the tests of every section."""

    def assertShape(self, line: str, kind: str, count: int) -> list[str]:
        """
        C{line} is C{<kind>:} and exactly C{count} fields, the last of which
        may hold colons; return the fields.
        """
        parts = line.split(":", count)
        self.assertEqual(parts[0], kind, line)
        self.assertEqual(len(parts), count + 1, line)
        return parts[1:]

    def assertTimestamp(self, value: str, around_ms: int | None = None) -> int:
        """
        C{value} is epoch milliseconds (13 digits) within an hour of
        C{around_ms} (default: now); return it.
        """
        self.assertRegex(value, r"^\d{13}$")
        around = int(time.time() * 1000) if around_ms is None else around_ms
        self.assertLess(abs(int(value) - around), 3600 * 1000, value)
        return int(value)

    def assertOne(self, reply: list[str], prefix: str) -> str:
        """A reply of one line, starting with C{prefix}; the line."""
        self.assertEqual(len(reply), 1, reply)
        self.assertTrue(reply[0].startswith(prefix), (prefix, reply))
        return reply[0]

    def assertIdentifier(self, value: str) -> int:
        """C{value} is a decimal id; return it."""
        self.assertRegex(value, r"^[1-9]\d*$")
        return int(value)


# Sections 1 to 3: framing, requests, replies


class FramingAndGrammarTests(ConformanceTestCase):
    """The greeting, line endings, case, labels, plain lines, argument splitting."""

    async def test_greeting_and_line_endings(self):
        """
        The server greets with C{WELCOME:lairchat:<version>:<server-name>} and
        a C{SYSTEM_MESSAGE} on how to log in; its lines end in CRLF, and a
        client's CRLF is accepted.
        """
        server = await start_server(self)
        client = await connect_raw(self, server)
        self.assertEqual(await client.line(), f"WELCOME:lairchat:{__version__}:lair")
        greeting = await client.line()
        self.assertTrue(greeting.startswith("SYSTEM_MESSAGE:"), greeting)
        self.assertIn("LOGIN:<user>:<password>", greeting)
        self.assertIn("REGISTER:<user>:<password>", greeting)
        client.transport.write(b"PING:crlf\r\n")
        self.assertEqual(await client.line(), "OK:PING:crlf")
        self.assertEqual(client.raw, [f"WELCOME:lairchat:{__version__}:lair\r".encode(),
                                      greeting.encode() + b"\r", b"OK:PING:crlf\r"])

    async def test_commands_are_case_insensitive(self):
        """Any case of a command's name works, aliases too; the OK names it in capitals."""
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        self.assertEqual(await alice.request("ping:x"), ["OK:PING:x"])
        self.assertEqual(await alice.request("Create_Room:hall"), ["OK:CREATE_ROOM:hall"])
        self.assertEqual(await bob.request("join_room:general"), ["ERROR:1501:NOT_FOUND:no room named general"])
        self.assertEqual(await bob.request("join_room:hall"), ["OK:JOIN_ROOM:hall"])
        self.assertEqual(await bob.request("wHoAmI"), ["OK:WHOAMI:bob:user"])
        self.assertEqual((await bob.request("show_help"))[-1].split(":")[:2], ["OK", "HELP"])
        self.assertEqual(await bob.request("accept_all"), ["OK:ACCEPT_ALL_INVITATIONS:0:0"])

    async def test_labels_on_every_reply_line_never_on_events(self):
        """
        Every line of a labelled reply, data lines and the final line, OK or
        ERROR, carries the label; the events the request causes do not.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")
        label = "Az09._-" + "x" * 25
        alice.send(f"@label={label} HELP")
        lines = await reply_of(alice, label)
        self.assertGreater(len(lines), 50)
        for line in lines:
            self.assertTrue(line.startswith(f"@label={label} HELP:") or line.startswith(f"@label={label} OK:HELP:"),
                            line)
        alice.send("@label=s1 SEND_MESSAGE:hall:hi")
        [ok] = await reply_of(alice, "s1")
        self.assertRegex(ok, r"^@label=s1 OK:SEND_MESSAGE:hall:\d+:\d{13}$")
        event = await bob.event("")
        self.assertEqual(event, f"MESSAGE:hall:{ok.split(':')[3]}:alice:{ok.split(':')[4]}:hi")
        alice.send("@label=e1 JOIN_ROOM:nowhere")
        self.assertEqual(await reply_of(alice, "e1"), ["@label=e1 ERROR:1501:NOT_FOUND:no room named nowhere"])
        anonymous = await server.connect()
        anonymous.send("@label=e2 WHOAMI")
        [refused] = await reply_of(anonymous, "e2")
        self.assertTrue(refused.startswith("@label=e2 ERROR:1001:AUTH_REQUIRED:"), refused)
        self.assertEqual(alice.events + bob.events + anonymous.events, [])

        # Deliveries after a labelled LOGIN are events: no label.
        await server.user("carol")
        [invited] = await alice.request("INVITE_USER:carol:hall")
        _, number, _, _, expires = self.assertShape(invited, "OK", 5)
        anonymous.send(f"@label=L1 LOGIN:carol:{PASSWORD}")
        [logged_in] = await reply_of(anonymous, "L1")
        self.assertRegex(logged_in, r"^@label=L1 OK:LOGIN:carol:[0-9a-f]{64}$")
        self.assertEqual(await anonymous.line(), f"INVITATION_RECEIVED:{number}:alice:hall:member:{expires}:")

    async def test_unlabelled_reply(self):
        """Without a label, no reply line has one; empty lines get no reply at all."""
        server = await start_server(self)
        client = await server.connect()
        client.send("")
        client.send("\r")
        client.send("@label=x ")
        self.assertEqual(await client.request("PING:after"), ["OK:PING:after"])
        self.assertEqual(client.events, [])
        client.send("HELP")
        line = await client.line()
        while not line.startswith("OK:"):
            self.assertTrue(line.startswith("HELP:"), line)
            line = await client.line()
        self.assertRegex(line, r"^OK:HELP:\d+$")

    async def test_label_on_framing_refusals(self):
        """
        A request refused for its bytes (invalid UTF-8, a control character,
        a line too long) is still answered under its well-formed label.
        """
        server = await start_server(self, max_line=1024)
        client = await server.connect()
        client.send(b"@label=f1 PING:\xff")
        self.assertEqual(await client.line(), "@label=f1 ERROR:1114:INVALID_ENCODING:the line is not valid UTF-8")
        client.send(b"@label=f2 PING:a\x07b")
        self.assertEqual(await client.line(),
                         "@label=f2 ERROR:1114:INVALID_CHARACTERS:control characters are not allowed")
        self.assertEqual(await client.request("PING:still here"), ["OK:PING:still here"])
        client.send(b"@label=f3 PING:" + b"x" * 2000)
        self.assertEqual(await client.line(), "@label=f3 ERROR:1113:LINE_TOO_LONG:a line holds at most 1024 bytes")
        await client.closed

    async def test_malformed_label_is_an_ordinary_line(self):
        """
        A line starting with C{@} but no well-formed label tag is a chat
        message to the current room (C{@bob hi} mentions bob).
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        for text in ("@bob hi", "@label=has space PING", "@label=" + "x" * 33 + " PING", "@label=a!b PING"):
            [ok] = await alice.request(text)
            command, room, message_id, ts = self.assertShape(ok, "OK", 4)
            self.assertEqual((command, room), ("SEND_MESSAGE", "hall"))
            self.assertEqual(await bob.event("MESSAGE:"), f"MESSAGE:hall:{message_id}:alice:{ts}:{text}")
        alice.send("@label=p plain: text")
        [ok] = await reply_of(alice, "p")
        self.assertRegex(ok, r"^@label=p OK:SEND_MESSAGE:hall:\d+:\d{13}$")
        _, _, _, message_id, ts = ok.split(" ", 1)[1].split(":")
        self.assertEqual(await bob.event("MESSAGE:"), f"MESSAGE:hall:{message_id}:alice:{ts}:plain: text")

    async def test_plain_lines(self):
        """
        A line whose first word is no command is answered like SEND_MESSAGE
        to the current room; with none, C{1111 NO_CURRENT_ROOM}; before
        login, C{1001}.
        """
        server = await start_server(self)
        anonymous = await server.connect()
        self.assertOne(await anonymous.request("hello there"), "ERROR:1001:AUTH_REQUIRED:")
        alice = await server.user("alice")
        self.assertOne(await alice.request("hello there"), "ERROR:1111:NO_CURRENT_ROOM:")
        self.assertOne(await alice.request("NOT_A_COMMAND:x"), "ERROR:1111:NO_CURRENT_ROOM:")
        await alice.ok("CREATE_ROOM:hall")
        [ok] = await alice.request("NOT_A_COMMAND:x: y")
        self.assertRegex(ok, r"^OK:SEND_MESSAGE:hall:\d+:\d{13}$")
        [line] = (await alice.ok("GET_HISTORY:hall"))[:-1]
        self.assertTrue(line.endswith(":alice:" + line.split(":")[4] + ":0:0:NOT_A_COMMAND:x: y"), line)

    async def test_arguments_split_up_to_the_arity(self):
        """
        The last argument takes the rest of the line, colons included; too
        few or too many arguments are C{1112 INVALID_FORMAT}.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        await alice.ok("CREATE_ROOM:hall")
        [ok] = await alice.request("SEND_MESSAGE:hall:a:b::c:")
        message_id = ok.split(":")[3]
        history = await alice.ok("GET_HISTORY:hall")
        self.assertTrue(history[0].startswith(f"HISTORY:hall:{message_id}:alice:"), history)
        self.assertTrue(history[0].endswith(":0:0:a:b::c:"), history)
        self.assertEqual(await alice.request("PING:a:b"), ["OK:PING:a:b"])
        self.assertOne(await alice.request("WHOAMI:x"), "ERROR:1112:INVALID_FORMAT:")
        self.assertOne(await alice.request("SEND_MESSAGE:hall"), "ERROR:1112:INVALID_FORMAT:")
        self.assertOne(await alice.request("SET_ROLE:hall:alice"), "ERROR:1112:INVALID_FORMAT:")

    async def test_names_and_text_limits(self):
        """
        Names follow the contract's patterns and are unique regardless of
        case; C{lobby} and C{latest} are reserved; a text holds 1 to 4000
        characters.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        anonymous = await server.connect()
        self.assertOne(await anonymous.request(f"REGISTER:ALICE:{PASSWORD}"), "ERROR:1211:CONFLICT:")
        self.assertOne(await anonymous.request(f"REGISTER:9lives:{PASSWORD}"), "ERROR:1111:INVALID_INPUT:")
        self.assertOne(await anonymous.request(f"REGISTER:ab:{PASSWORD}"), "ERROR:1113:INVALID_LENGTH:")
        self.assertOne(await anonymous.request(f"REGISTER:{'a' * 21}:{PASSWORD}"), "ERROR:1113:INVALID_LENGTH:")
        self.assertOne(await anonymous.request("REGISTER:carol:short1"), "ERROR:1113:INVALID_LENGTH:")
        self.assertOne(await anonymous.request("REGISTER:carol:nodigitshere"), "ERROR:1111:INVALID_INPUT:")
        self.assertEqual(await alice.request("CREATE_ROOM:" + "h" * 50), ["OK:CREATE_ROOM:" + "h" * 50])
        self.assertOne(await alice.request("CREATE_ROOM:" + "h" * 51), "ERROR:1113:INVALID_LENGTH:")
        self.assertOne(await alice.request("CREATE_ROOM:" + "H" * 50), "ERROR:1211:CONFLICT:")
        self.assertOne(await alice.request("CREATE_ROOM:lobby"), "ERROR:1111:INVALID_INPUT:")
        self.assertOne(await alice.request("CREATE_ROOM:LATEST"), "ERROR:1111:INVALID_INPUT:")
        self.assertOne(await alice.request("CREATE_ROOM:1hall"), "ERROR:1111:INVALID_INPUT:")
        room = "h" * 50
        alice.send("@label=" + "L" * 32 + f" SEND_MESSAGE:{room}:" + "\U0001d11e" * 4000 + "\r")
        [ok] = await reply_of(alice, "L" * 32)
        self.assertTrue(ok.startswith("@label=" + "L" * 32 + f" OK:SEND_MESSAGE:{room}:"), ok)
        await alice.ok("CREATE_ROOM:hall")
        self.assertOne(await alice.request("SEND_MESSAGE:hall:" + "x" * 4001), "ERROR:1113:INVALID_LENGTH:")
        self.assertOne(await alice.request("SEND_MESSAGE:hall:"), "ERROR:1113:INVALID_LENGTH:")
        [ok] = await alice.request("SEND_MESSAGE:hall:tab\there")
        self.assertTrue(ok.startswith("OK:SEND_MESSAGE:hall:"), ok)


class ErrorCodeTests(ConformanceTestCase):
    """The error codes of the contract's section 3, each for a representative refusal."""

    async def test_auth_required_for_every_non_public_command(self):
        """
        Before login, exactly C{HELP}, C{PING}, C{QUIT}, C{REGISTER},
        C{LOGIN} and C{RESUME} (and the alias C{SHOW_HELP}) are accepted;
        every other registered name gets C{1001 AUTH_REQUIRED}.
        """
        registry = load_commands()
        self.assertEqual({name for name, command in registry.items() if not command.needs_login}, PUBLIC_COMMANDS)
        server = await start_server(self)
        client = await server.connect()
        for name, command in sorted(registry.items()):
            if command.needs_login:
                self.assertOne(await client.request(name), "ERROR:1001:AUTH_REQUIRED:")
                self.assertOne(await client.request(f"{name.lower()}:x:y"), "ERROR:1001:AUTH_REQUIRED:")

    async def test_refusals(self):
        """
        C{ERROR:<code>:<NAME>:<message>}: 1002, 1111, 1112, 1113, 1114,
        1211, 1404, 1501, 1502, with a message and nothing else.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        carol = await server.user("carol")
        await alice.ok("CREATE_ROOM:hall")
        await alice.ok("CREATE_ROOM:den:private")
        await bob.ok("JOIN_ROOM:hall")
        invited = await alice.ok("INVITE_USER:carol:den")
        invitation = invited[-1].split(":")[2]
        await alice.ok(f"REVOKE_INVITATION:{invitation}")
        await alice.ok("BAN_USER:hall:carol")
        cases = [
            (bob, "SET_TOPIC:hall:mine", "1002:PERMISSION_DENIED"),
            (bob, "BAN_USER:hall:alice", "1002:PERMISSION_DENIED"),
            (alice, "CREATE_ROOM:hall:secret", "1111:INVALID_INPUT"),
            (alice, "GET_HISTORY:hall:0", "1111:INVALID_INPUT"),
            (alice, "GET_HISTORY:hall:ten", "1112:INVALID_FORMAT"),
            (alice, "EDIT_MESSAGE:abc:x", "1112:INVALID_FORMAT"),
            (alice, "SET_TOPIC:hall:" + "t" * 501, "1113:INVALID_LENGTH"),
            (alice, "REACT_MESSAGE:1:" + "e" * 33, "1113:INVALID_LENGTH"),
            (alice, "CREATE_ROOM:hall", "1211:CONFLICT"),
            (alice, "INVITE_USER:bob:hall", "1211:CONFLICT"),
            (carol, "JOIN_ROOM:hall", "1404:ACCESS_DENIED"),
            (carol, "JOIN_ROOM:den", "1404:ACCESS_DENIED"),
            (bob, "JOIN_ROOM:den", "1404:ACCESS_DENIED"),
            (carol, "SEND_MESSAGE:hall:hi", "1404:ACCESS_DENIED"),
            (bob, "ROOM_INFO:den", "1501:NOT_FOUND"),
            (bob, "ROOM_INFO:nowhere", "1501:NOT_FOUND"),
            (bob, "DM:nobody:hi", "1501:NOT_FOUND"),
            (bob, "GET_THREAD:999999", "1501:NOT_FOUND"),
            (bob, "VIEW_INVITATION:999999", "1501:NOT_FOUND"),
            (carol, f"ACCEPT_INVITATION:{invitation}", "1502:GONE"),
            (alice, f"ACCEPT_INVITATION:{invitation}", "1501:NOT_FOUND"),
            (bob, f"DECLINE_INVITATION:{invitation}", "1501:NOT_FOUND"),
            (alice, f"REVOKE_INVITATION:{invitation}", "1502:GONE"),
        ]
        for client, line, expected in cases:
            reply = await client.request(line)
            self.assertEqual(len(reply), 1, (line, reply))
            code, name, message = self.assertShape(reply[0], "ERROR", 3)
            self.assertEqual(f"{code}:{name}", expected, (line, reply))
            self.assertTrue(message, (line, reply))

    async def test_control_characters_and_encoding(self):
        """C{1114}: control characters in any field, or bytes that are not UTF-8; the connection stays."""
        server = await start_server(self)
        alice = await server.user("alice")
        self.assertOne(await alice.request(b"CREATE_ROOM:ha\x1bll"), "ERROR:1114:INVALID_CHARACTERS:")
        self.assertOne(await alice.request(b"PING:\xc0\x80"), "ERROR:1114:INVALID_ENCODING:")
        self.assertOne(await alice.request(b"SEND_MESSAGE:hall:a\x7fb"), "ERROR:1114:INVALID_CHARACTERS:")
        self.assertEqual(await alice.request("WHOAMI"), ["OK:WHOAMI:alice:user"])

    async def test_rate_limited(self):
        """
        C{1110 RATE_LIMITED}, saying in whole seconds when to retry, once an
        address has made its registrations for the hour (requests that are
        merely too fast are delayed, not refused: see test_flood_e2e).
        """
        server = await start_server(self, rate_limits=True, registrations_per_hour=1)
        client = await server.connect()
        await client.ok("REGISTER:alice:correct horse 9")
        limited = self.assertOne(await client.request("REGISTER:bob:correct horse 9"), "ERROR:1110:RATE_LIMITED:")
        self.assertRegex(limited, r"retry in [1-9]\d* s$")
        self.assertEqual(await client.request("PING"), ["OK:PING"])

    async def test_credentials_and_sessions(self):
        """
        C{1004} for a wrong user or password alike, C{1005} after repeated
        failures (saying until when), C{1003} for a dead token.  (The first
        delay is set long so that the test does not depend on its speed.)
        """
        server = await start_server(self, login_delay_seconds=600)
        client = await server.connect()
        token = (await client.ok(f"REGISTER:alice:{PASSWORD}"))[-1].split(":")[3]
        await client.ok("LOGOUT")
        wrong_password = await client.request("LOGIN:alice:wrong horse 9")
        self.assertEqual(wrong_password, await client.request(f"LOGIN:nobody:{PASSWORD}"))
        self.assertOne(wrong_password, "ERROR:1004:INVALID_CREDENTIALS:")
        self.assertOne(await client.request(f"RESUME:{token}"), "ERROR:1003:SESSION_EXPIRED:")
        for _ in range(3):
            self.assertOne(await client.request("LOGIN:alice:wrong horse 9"), "ERROR:1004:INVALID_CREDENTIALS:")
        locked = self.assertOne(await client.request("LOGIN:alice:wrong horse 9"), "ERROR:1005:ACCOUNT_LOCKED:")
        self.assertRegex(locked, r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
        self.assertOne(await client.request(f"LOGIN:alice:{PASSWORD}"), "ERROR:1005:ACCOUNT_LOCKED:")


# Section 5: Session and accounts


class SessionAndAccountTests(ConformanceTestCase):
    """Every request of the Session and accounts table."""

    async def test_help_lists_every_command(self):
        """
        C{HELP} (and C{SHOW_HELP}), before login too: one
        C{HELP:<COMMAND>:<syntax>:<summary>} line per registered command,
        aliases not repeated, then C{OK:HELP:<n>}.
        """
        registry = load_commands()
        commands = sorted({id(c): c for c in registry.values()}.values(), key=lambda c: c.name)
        server = await start_server(self)
        client = await server.connect()
        reply = await client.request("HELP")
        self.assertEqual(reply[-1], f"OK:HELP:{len(commands)}")
        self.assertEqual(reply[:-1], [render("HELP", c.name, c.syntax, c.summary) for c in commands])
        for line, command in zip(reply, commands):
            # The syntax holds colons of its own, so the summary, the last
            # field, holds none: the line splits unambiguously.
            kind, name, rest = line.split(":", 2)
            syntax, summary = rest.rsplit(":", 1)
            self.assertEqual((kind, name, syntax, summary), ("HELP", command.name, command.syntax, command.summary))
            self.assertTrue(syntax.startswith(name), line)
            self.assertTrue(summary, line)
        self.assertEqual({c.name for c in commands} | {a for c in commands for a in c.aliases}, set(registry))
        self.assertEqual(await client.request("SHOW_HELP"), reply)
        for name in CONTRACT_COMMANDS:
            self.assertIn(name, registry)

    async def test_ping_and_quit(self):
        """C{OK:PING[:<token>]}; C{OK:QUIT}, then the server closes."""
        server = await start_server(self)
        client = await server.connect()
        self.assertEqual(await client.request("PING"), ["OK:PING"])
        self.assertEqual(await client.request("PING:abc-123"), ["OK:PING:abc-123"])
        self.assertEqual(await client.request("QUIT:bye now"), ["OK:QUIT"])
        await client.closed
        alice = await server.user("alice")
        self.assertEqual(await alice.request("QUIT"), ["OK:QUIT"])
        await alice.closed

    async def test_accounts_and_sessions(self):
        """
        C{REGISTER}, C{LOGIN} (then deliveries), C{RESUME}, C{WHOAMI},
        C{REQUEST_USER_LIST}, C{LOGOUT}: each success line exactly.
        """
        server = await start_server(self)
        first = await server.connect()
        [registered] = await first.request(f"REGISTER:alice:{PASSWORD}")
        self.assertRegex(registered, r"^OK:REGISTER:alice:[0-9a-f]{64}$")
        second = await server.connect()
        [logged_in] = await second.request(f"LOGIN:Alice:{PASSWORD}")
        self.assertRegex(logged_in, r"^OK:LOGIN:alice:[0-9a-f]{64}$")
        token = logged_in.split(":")[3]
        self.assertNotEqual(token, registered.split(":")[3])
        third = await server.connect()
        self.assertEqual(await third.request(f"RESUME:{token}"), ["OK:RESUME:alice"])
        self.assertEqual(await third.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        bob = await server.user("bob")
        self.assertEqual(await bob.request("REQUEST_USER_LIST"), ["USER:alice", "USER:bob", "OK:REQUEST_USER_LIST:2"])
        self.assertEqual(await second.request("LOGOUT"), ["OK:LOGOUT"])
        self.assertEqual(await second.request("PING"), ["OK:PING"])
        self.assertOne(await second.request("WHOAMI"), "ERROR:1001:AUTH_REQUIRED:")
        self.assertOne(await second.request(f"RESUME:{token}"), "ERROR:1003:SESSION_EXPIRED:")

    async def test_change_password(self):
        """
        C{OK:CHANGE_PASSWORD}; the other sessions are revoked, the old
        password no longer works, the new one does.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        other = await login(server, "alice")
        self.assertEqual(await alice.request(f"CHANGE_PASSWORD:{PASSWORD}:new horse 10"), ["OK:CHANGE_PASSWORD"])
        self.assertEqual(await other.event("SYSTEM_MESSAGE:"), "SYSTEM_MESSAGE:your password was changed; log in again")
        self.assertOne(await other.request("WHOAMI"), "ERROR:1001:AUTH_REQUIRED:")
        self.assertOne(await other.request(f"LOGIN:alice:{PASSWORD}"), "ERROR:1004:INVALID_CREDENTIALS:")
        self.assertRegex((await other.request("LOGIN:alice:new horse 10"))[-1], r"^OK:LOGIN:alice:[0-9a-f]{64}$")
        self.assertEqual(await alice.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        self.assertOne(await alice.request("CHANGE_PASSWORD:wrong horse 9:newer horse 11"),
                       "ERROR:1004:INVALID_CREDENTIALS:")


# Section 5: Rooms, and the room events of section 4


class RoomTests(ConformanceTestCase):
    """Every request of the Rooms table, with the events each causes."""

    async def test_create_join_list_info_members(self):
        """
        C{CREATE_ROOM}, C{JOIN_ROOM} (C{USER_JOINED} to the room),
        C{LIST_ROOMS}, C{ROOM_INFO}, C{ROOM_MEMBERS}, C{LEAVE_ROOM}
        (C{USER_LEFT}), and C{PRESENCE}.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        self.assertEqual(await alice.request("CREATE_ROOM:hall"), ["OK:CREATE_ROOM:hall"])
        self.assertEqual(await alice.request("CREATE_ROOM:den:private"), ["OK:CREATE_ROOM:den"])
        self.assertEqual(await alice.request("CREATE_ROOM:pub:public"), ["OK:CREATE_ROOM:pub"])
        self.assertEqual(await bob.request("JOIN_ROOM:HALL"), ["OK:JOIN_ROOM:hall"])
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")

        self.assertEqual(await bob.request("LIST_ROOMS"),
                         ["ROOM:hall:public:2:", "ROOM:pub:public:1:", "OK:LIST_ROOMS:2"])
        self.assertEqual(await alice.request("LIST_ROOMS"),
                         ["ROOM:den:private:1:", "ROOM:hall:public:2:", "ROOM:pub:public:1:", "OK:LIST_ROOMS:3"])

        [info] = await bob.request("ROOM_INFO:hall")
        room, privacy, owner, members, created, topic = self.assertShape(info, "OK", 7)[1:]
        self.assertEqual((room, privacy, owner, members, topic), ("hall", "public", "alice", "2", ""))
        self.assertTrue(info.startswith("OK:ROOM_INFO:"), info)
        self.assertTimestamp(created)

        self.assertEqual(await bob.request("ROOM_MEMBERS:hall"),
                         ["MEMBER:hall:alice:owner:online", "MEMBER:hall:bob:member:online", "OK:ROOM_MEMBERS:2"])

        # PRESENCE to those who share a room.
        await bob.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")
        self.assertEqual(await alice.request("ROOM_MEMBERS:hall"),
                         ["MEMBER:hall:alice:owner:online", "MEMBER:hall:bob:member:offline", "OK:ROOM_MEMBERS:2"])
        bob = await login(server, "bob")
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:online")

        # LEAVE_ROOM: named, or the current room.
        self.assertEqual(await bob.request("JOIN_ROOM:pub"), ["OK:JOIN_ROOM:pub"])
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:pub:bob")
        self.assertEqual(await bob.request("LEAVE_ROOM"), ["OK:LEAVE_ROOM:pub"])
        self.assertEqual(await alice.event("USER_LEFT:"), "USER_LEFT:pub:bob")
        self.assertEqual(await bob.request("LEAVE_ROOM:hall"), ["OK:LEAVE_ROOM:hall"])
        self.assertEqual(await alice.event("USER_LEFT:"), "USER_LEFT:hall:bob")
        self.assertOne(await bob.request("LEAVE_ROOM:hall"), "ERROR:1404:ACCESS_DENIED:")

    async def test_topic_roles_and_moderation(self):
        """
        C{SET_TOPIC} (C{TOPIC_CHANGED}), C{SET_ROLE} (C{ROLE_CHANGED}),
        C{KICK_USER} (C{USER_KICKED}, to the room and the user),
        C{BAN_USER} and C{UNBAN_USER} (C{USER_BANNED}).
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        carol = await server.user("carol")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        await carol.ok("JOIN_ROOM:hall")

        self.assertEqual(await alice.request("SET_TOPIC:hall:Rust: and more"), ["OK:SET_TOPIC:hall"])
        self.assertEqual(await bob.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:hall:alice:Rust: and more")
        self.assertEqual(await carol.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:hall:alice:Rust: and more")
        self.assertEqual((await bob.request("ROOM_INFO:hall"))[0].split(":", 7)[7], "Rust: and more")
        self.assertEqual((await bob.request("LIST_ROOMS"))[0], "ROOM:hall:public:3:Rust: and more")

        self.assertEqual(await alice.request("SET_ROLE:hall:bob:moderator"), ["OK:SET_ROLE:hall:bob:moderator"])
        self.assertEqual(await bob.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:bob:moderator:alice")
        self.assertEqual(await carol.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:bob:moderator:alice")
        self.assertOne(await bob.request("SET_ROLE:hall:carol:guest"), "ERROR:1002:PERMISSION_DENIED:")

        self.assertEqual(await bob.request("KICK_USER:hall:carol:spam: really"), ["OK:KICK_USER:hall:carol"])
        self.assertEqual(await alice.event("USER_KICKED:"), "USER_KICKED:hall:carol:bob:spam: really")
        self.assertEqual(await carol.event("USER_KICKED:"), "USER_KICKED:hall:carol:bob:spam: really")
        await carol.ok("JOIN_ROOM:hall")
        self.assertEqual(await bob.request("KICK_USER:hall:carol"), ["OK:KICK_USER:hall:carol"])
        self.assertEqual(await carol.event("USER_KICKED:"), "USER_KICKED:hall:carol:bob:")
        await carol.ok("JOIN_ROOM:hall")

        self.assertOne(await bob.request("BAN_USER:hall:carol"), "ERROR:1002:PERMISSION_DENIED:")
        self.assertEqual(await alice.request("BAN_USER:hall:carol:bye"), ["OK:BAN_USER:hall:carol"])
        self.assertEqual(await bob.event("USER_BANNED:"), "USER_BANNED:hall:carol:alice:bye")
        self.assertEqual(await carol.event("USER_BANNED:"), "USER_BANNED:hall:carol:alice:bye")
        self.assertOne(await carol.request("JOIN_ROOM:hall"), "ERROR:1404:ACCESS_DENIED:")
        self.assertEqual(await alice.request("UNBAN_USER:hall:carol"), ["OK:UNBAN_USER:hall:carol"])
        self.assertEqual(await carol.request("JOIN_ROOM:hall"), ["OK:JOIN_ROOM:hall"])

        # The last owner leaves: the room hears who became owner, and by whom.
        self.assertEqual(await alice.request("LEAVE_ROOM:hall"), ["OK:LEAVE_ROOM:hall"])
        self.assertEqual(await carol.event("USER_LEFT:"), "USER_LEFT:hall:alice")
        self.assertEqual(await carol.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:bob:owner:alice")

    async def test_private_room_and_ban_revokes_invitations(self):
        """
        A private room is invisible to outsiders and entered by invitation;
        a ban revokes the banned user's pending invitation
        (C{INVITATION_REVOKED} to them).
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        await alice.ok("CREATE_ROOM:den:private")
        self.assertEqual(await bob.request("LIST_ROOMS"), ["OK:LIST_ROOMS:0"])
        self.assertOne(await bob.request("ROOM_INFO:den"), "ERROR:1501:NOT_FOUND:")
        self.assertOne(await bob.request("ROOM_MEMBERS:den"), "ERROR:1501:NOT_FOUND:")
        self.assertOne(await bob.request("JOIN_ROOM:den"), "ERROR:1404:ACCESS_DENIED:")
        invitation = (await alice.ok("INVITE_USER:bob:den"))[-1].split(":")[2]
        await bob.event("INVITATION_RECEIVED:")
        self.assertEqual(await alice.request("BAN_USER:den:bob:go away"), ["OK:BAN_USER:den:bob"])
        self.assertEqual(await bob.event("USER_BANNED:"), "USER_BANNED:den:bob:alice:go away")
        self.assertEqual(await bob.event("INVITATION_REVOKED:"), f"INVITATION_REVOKED:{invitation}:den:alice")
        self.assertOne(await bob.request(f"ACCEPT_INVITATION:{invitation}"), "ERROR:1502:GONE:")
        self.assertOne(await alice.request("BAN_USER:den:bob"), "ERROR:1211:CONFLICT:")
        await alice.ok("UNBAN_USER:den:bob")
        invitation = (await alice.ok("INVITE_USER:bob:den"))[-1].split(":")[2]
        self.assertEqual(await bob.request("ACCEPT_INVITATION:den"), [f"OK:ACCEPT_INVITATION:{invitation}:den"])
        [info] = await bob.request("ROOM_INFO:den")
        self.assertEqual(self.assertShape(info, "OK", 7)[:5], ["ROOM_INFO", "den", "private", "alice", "2"])


# Section 5: Messages, and the message events of section 4


class MessageTests(ConformanceTestCase):
    """Every request of the Messages table, with the events each causes."""

    async def test_room_messages(self):
        """
        C{SEND_MESSAGE} and plain lines (C{MESSAGE}), C{REPLY_MESSAGE}
        (C{REPLY}), C{EDIT_MESSAGE} (C{MESSAGE_EDITED}), C{REACT_MESSAGE} /
        C{UNREACT_MESSAGE} (C{REACTION_ADDED} / C{REACTION_REMOVED}),
        C{GET_REACTIONS}, C{GET_HISTORY}, C{GET_THREAD}, C{SEARCH_MESSAGES},
        C{UNREAD}, C{MARK_READ}, C{DELETE_MESSAGE} (C{MESSAGE_DELETED}).
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        carol = await server.user("carol")
        await alice.ok("CREATE_ROOM:hall")
        alice_too = await login(server, "alice")
        await bob.ok("JOIN_ROOM:hall")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")

        [sent] = await alice.request("SEND_MESSAGE:hall:hi: there")
        command, room, first, ts1 = self.assertShape(sent, "OK", 4)
        self.assertEqual((command, room), ("SEND_MESSAGE", "hall"))
        self.assertIdentifier(first)
        self.assertTimestamp(ts1)
        self.assertEqual(await bob.event("MESSAGE:"), f"MESSAGE:hall:{first}:alice:{ts1}:hi: there")
        self.assertEqual(await alice_too.event("MESSAGE:"), f"MESSAGE:hall:{first}:alice:{ts1}:hi: there")

        [plain] = await bob.request("what: now?")
        command, room, second, ts2 = self.assertShape(plain, "OK", 4)
        self.assertEqual((command, room), ("SEND_MESSAGE", "hall"))
        self.assertGreater(int(second), int(first))
        self.assertEqual(await alice.event("MESSAGE:"), f"MESSAGE:hall:{second}:bob:{ts2}:what: now?")

        [replied] = await bob.request(f"REPLY_MESSAGE:{first}:re: hi")
        command, room, third, ts3 = self.assertShape(replied, "OK", 4)
        self.assertEqual((command, room), ("REPLY_MESSAGE", "hall"))
        self.assertTimestamp(ts3)
        self.assertEqual(await alice.event("REPLY:"), f"REPLY:hall:{third}:{first}:bob:{ts3}:re: hi")

        self.assertEqual(await alice.request(f"EDIT_MESSAGE:{first}:hi: again"), [f"OK:EDIT_MESSAGE:{first}"])
        edited = await bob.event("MESSAGE_EDITED:")
        room, message_id, editor, ts, text = self.assertShape(edited, "MESSAGE_EDITED", 5)
        self.assertEqual((room, message_id, editor, text), ("hall", first, "alice", "hi: again"))
        self.assertTimestamp(ts)
        self.assertOne(await bob.request(f"EDIT_MESSAGE:{first}:mine"), "ERROR:1002:PERMISSION_DENIED:")

        self.assertEqual(await bob.request(f"REACT_MESSAGE:{first}:\U0001f44d"),
                         [f"OK:REACT_MESSAGE:{first}:\U0001f44d"])
        self.assertEqual(await alice.event("REACTION_ADDED:"), f"REACTION_ADDED:hall:{first}:bob:\U0001f44d")
        await alice.ok(f"REACT_MESSAGE:{first}:\U0001f44d")
        self.assertEqual(await bob.event("REACTION_ADDED:"), f"REACTION_ADDED:hall:{first}:alice:\U0001f44d")
        await alice.ok(f"REACT_MESSAGE:{first}:tada")
        self.assertEqual(await bob.event("REACTION_ADDED:"), f"REACTION_ADDED:hall:{first}:alice:tada")
        self.assertOne(await alice.request(f"REACT_MESSAGE:{first}:tada"), "ERROR:1211:CONFLICT:")
        self.assertEqual(await bob.request(f"GET_REACTIONS:{first}"),
                         [f"REACTION:{first}:\U0001f44d:2:bob,alice", f"REACTION:{first}:tada:1:alice",
                          f"OK:GET_REACTIONS:{first}:2"])
        self.assertEqual(await alice.request(f"UNREACT_MESSAGE:{first}:tada"), [f"OK:UNREACT_MESSAGE:{first}:tada"])
        self.assertEqual(await bob.event("REACTION_REMOVED:"), f"REACTION_REMOVED:hall:{first}:alice:tada")
        self.assertOne(await alice.request(f"UNREACT_MESSAGE:{first}:tada"), "ERROR:1501:NOT_FOUND:")

        history = [
            f"HISTORY:hall:{first}:alice:{ts1}:0:1:hi: again",
            f"HISTORY:hall:{second}:bob:{ts2}:0:0:what: now?",
            f"HISTORY:hall:{third}:bob:{ts3}:{first}:0:re: hi",
        ]
        self.assertEqual(await alice.request("GET_HISTORY:hall"), [*history, "OK:GET_HISTORY:hall:3"])
        self.assertEqual(await alice.request("GET_HISTORY:2"), [*history[1:], "OK:GET_HISTORY:hall:2"])
        self.assertEqual(await alice.request(f"GET_HISTORY:hall:1:{third}"), [history[1], "OK:GET_HISTORY:hall:1"])
        self.assertEqual(await alice.request(f"GET_HISTORY:hall::{third}"), [*history[:2], "OK:GET_HISTORY:hall:2"])
        self.assertEqual(await bob.request(f"GET_THREAD:{third}"),
                         [history[0], history[2], f"OK:GET_THREAD:{first}:2"])
        self.assertOne(await carol.request("GET_HISTORY:hall"), "ERROR:1404:ACCESS_DENIED:")

        self.assertEqual(await bob.request("SEARCH_MESSAGES:again"),
                         [f"SEARCH_RESULT:hall:{first}:alice:{ts1}:hi: again", "OK:SEARCH_MESSAGES:1"])
        self.assertEqual(await carol.request("SEARCH_MESSAGES:again"), ["OK:SEARCH_MESSAGES:0"])

        self.assertEqual(await alice.request("UNREAD"), ["UNREAD:hall:2", "OK:UNREAD:1"])
        self.assertEqual(await alice.request(f"MARK_READ:hall:{second}"), [f"OK:MARK_READ:hall:{second}"])
        self.assertEqual(await alice.request("UNREAD"), ["UNREAD:hall:1", "OK:UNREAD:1"])
        await alice.ok(f"MARK_READ:hall:{third}")
        self.assertEqual(await alice.request("UNREAD"), ["OK:UNREAD:0"])

        self.assertEqual(await bob.request(f"DELETE_MESSAGE:{second}"), [f"OK:DELETE_MESSAGE:{second}"])
        self.assertEqual(await alice.event("MESSAGE_DELETED:"), f"MESSAGE_DELETED:hall:{second}:bob")
        self.assertOne(await bob.request(f"DELETE_MESSAGE:{first}"), "ERROR:1002:PERMISSION_DENIED:")
        self.assertEqual(await alice.request(f"DELETE_MESSAGE:{third}"), [f"OK:DELETE_MESSAGE:{third}"])
        self.assertEqual(await bob.event("MESSAGE_DELETED:"), f"MESSAGE_DELETED:hall:{third}:alice")
        self.assertEqual(await bob.request("GET_HISTORY:hall"), [history[0], "OK:GET_HISTORY:hall:1"])
        self.assertEqual(await bob.request("SEARCH_MESSAGES:now"), ["OK:SEARCH_MESSAGES:0"])
        self.assertEqual(bob.events + alice.events, [])

    async def test_direct_messages(self):
        """
        C{DM} (C{PRIVATE_MESSAGE} to the recipient and the sender's other
        connections), C{DM_HISTORY}, C{LIST_CONVERSATIONS}, C{UNREAD} of a
        conversation, C{SEND_MESSAGE:@<user>}, a reply in a conversation, and
        delivery at login of what arrived offline.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        alice_too = await login(server, "alice")
        bob = await server.user("bob")
        [sent] = await alice.request("DM:Bob:hello: you")
        command, user, message_id, ts = self.assertShape(sent, "OK", 4)
        self.assertEqual((command, user), ("DM", "bob"))
        self.assertTimestamp(ts)
        expected = f"PRIVATE_MESSAGE:alice:bob:{message_id}:{ts}:hello: you"
        self.assertEqual(await bob.event("PRIVATE_MESSAGE:"), expected)
        self.assertEqual(await alice_too.event("PRIVATE_MESSAGE:"), expected)

        self.assertEqual(await alice.request("DM_HISTORY:bob"),
                         [f"HISTORY:@bob:{message_id}:alice:{ts}:0:0:hello: you", "OK:DM_HISTORY:bob:1"])
        self.assertEqual(await bob.request("DM_HISTORY:alice:10"),
                         [f"HISTORY:@alice:{message_id}:alice:{ts}:0:0:hello: you", "OK:DM_HISTORY:alice:1"])
        self.assertEqual(await bob.request("LIST_CONVERSATIONS"),
                         [f"CONVERSATION:alice:{ts}:1", "OK:LIST_CONVERSATIONS:1"])
        self.assertEqual(await alice.request("LIST_CONVERSATIONS"),
                         [f"CONVERSATION:bob:{ts}:0", "OK:LIST_CONVERSATIONS:1"])
        self.assertEqual(await bob.request("UNREAD"), ["UNREAD:@alice:1", "OK:UNREAD:1"])
        self.assertEqual(await bob.request(f"MARK_READ:@alice:{message_id}"), [f"OK:MARK_READ:@alice:{message_id}"])

        [answered] = await bob.request("SEND_MESSAGE:@alice:hi back")
        command, room, answer_id, answer_ts = self.assertShape(answered, "OK", 4)
        self.assertEqual((command, room), ("SEND_MESSAGE", "@alice"))
        self.assertEqual(await alice.event("PRIVATE_MESSAGE:"),
                         f"PRIVATE_MESSAGE:bob:alice:{answer_id}:{answer_ts}:hi back")
        [replied] = await alice.request(f"REPLY_MESSAGE:{answer_id}:ok")
        command, room, reply_id, reply_ts = self.assertShape(replied, "OK", 4)
        self.assertEqual((command, room), ("REPLY_MESSAGE", "@bob"))
        self.assertEqual(await bob.event("REPLY:"), f"REPLY:@alice:{reply_id}:{answer_id}:alice:{reply_ts}:ok")
        self.assertOne(await alice.request("DM:alice:me"), "ERROR:1111:INVALID_INPUT:")
        self.assertOne(await alice.request("DM:nobody:hi"), "ERROR:1501:NOT_FOUND:")

        await bob.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")
        [sent] = await alice.request("DM:bob:while you were out")
        _, _, offline_id, offline_ts = self.assertShape(sent, "OK", 4)
        bob = await server.connect()
        [ok] = await bob.request(f"LOGIN:bob:{PASSWORD}")
        self.assertTrue(ok.startswith("OK:LOGIN:bob:"), ok)
        self.assertEqual(await bob.event("PRIVATE_MESSAGE:"),
                         f"PRIVATE_MESSAGE:alice:bob:{offline_id}:{offline_ts}:while you were out")


# Section 5: Invitations, and the invitation events of section 4


class InvitationTests(ConformanceTestCase):
    """Every request of the Invitations table, with the events each causes."""

    async def setUp(self):
        self.server = await start_server(self)
        self.alice = await self.server.user("alice")
        self.bob = await self.server.user("bob")
        self.carol = await self.server.user("carol")
        self.dave = await self.server.user("dave")
        await self.alice.ok("CREATE_ROOM:club:private")

    def assertInvitation(self, line, id_, sender, recipient, room, status, role, message):
        """
        C{INVITATION:<id>:<from>:<to>:<room>:<status>:<role>:<created_ts>:<expires_ts>:<message>},
        expiring seven days after it was made.
        """
        fields = self.assertShape(line, "INVITATION", 9)
        self.assertEqual(fields[:6] + fields[8:], [str(id_), sender, recipient, room, status, role, message])
        created = self.assertTimestamp(fields[6])
        self.assertEqual(int(fields[7]) - created, 7 * DAY_MS)

    async def test_invite_accept_decline_and_view(self):
        """
        C{INVITE_USER} (C{INVITATION_RECEIVED}), the three lists,
        C{VIEW_INVITATION}, C{ACCEPT_INVITATION} (C{INVITATION_ACCEPTED},
        C{USER_JOINED}), C{INVITE_AS}, C{DECLINE_INVITATION}
        (C{INVITATION_DECLINED}).
        """
        alice, bob, carol = self.alice, self.bob, self.carol
        [ok] = await alice.request("INVITE_USER:Bob:club:Join us: now!")
        command, first, user, room, expires = self.assertShape(ok, "OK", 5)
        self.assertEqual((command, user, room), ("INVITE_USER", "bob", "club"))
        self.assertTimestamp(expires, int(time.time() * 1000) + 7 * DAY_MS)
        self.assertEqual(await bob.event("INVITATION_RECEIVED:"),
                         f"INVITATION_RECEIVED:{first}:alice:club:member:{expires}:Join us: now!")

        for client, line in ((bob, "LIST_INVITATIONS"), (alice, "LIST_SENT_INVITATIONS:pending"),
                             (alice, "LIST_ROOM_INVITATIONS:club")):
            reply = await client.request(line)
            self.assertEqual(len(reply), 2, reply)
            self.assertInvitation(reply[0], first, "alice", "bob", "club", "pending", "member", "Join us: now!")
            self.assertEqual(reply[0].split(":")[8], expires)
            self.assertEqual(reply[1], f"OK:{line.split(':')[0]}:1")
        self.assertEqual(await bob.request("LIST_INVITATIONS:accepted"), ["OK:LIST_INVITATIONS:0"])

        reply = await bob.request(f"VIEW_INVITATION:{first}")
        self.assertEqual(len(reply), 3, reply)
        self.assertInvitation(reply[0], first, "alice", "bob", "club", "pending", "member", "Join us: now!")
        fields = self.assertShape(reply[1], "INVITATION_EVENT", 5)
        self.assertEqual(fields[0:1] + fields[2:], [first, "pending", "alice", "sent"])
        self.assertTimestamp(fields[1])
        self.assertEqual(reply[2], f"OK:VIEW_INVITATION:{first}")

        self.assertEqual(await bob.request(f"ACCEPT_INVITATION:{first}"), [f"OK:ACCEPT_INVITATION:{first}:club"])
        self.assertEqual(await alice.event("INVITATION_ACCEPTED:"), f"INVITATION_ACCEPTED:{first}:bob:club")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:club:bob")
        self.assertOne(await bob.request(f"ACCEPT_INVITATION:{first}"), "ERROR:1502:GONE:")
        reply = await bob.request(f"VIEW_INVITATION:{first}")
        self.assertInvitation(reply[0], first, "alice", "bob", "club", "accepted", "member", "Join us: now!")
        self.assertEqual(reply[2].split(":")[3:], ["accepted", "bob", ""])

        [ok] = await alice.request("INVITE_AS:carol:club:moderator")
        command, second, user, room, expires = self.assertShape(ok, "OK", 5)
        self.assertEqual((command, user, room), ("INVITE_AS", "carol", "club"))
        self.assertEqual(await carol.event("INVITATION_RECEIVED:"),
                         f"INVITATION_RECEIVED:{second}:alice:club:moderator:{expires}:")
        self.assertEqual(await carol.request("DECLINE_INVITATION:latest:busy: sorry"),
                         [f"OK:DECLINE_INVITATION:{second}:club"])
        self.assertEqual(await alice.event("INVITATION_DECLINED:"), f"INVITATION_DECLINED:{second}:carol:club")
        reply = await alice.request(f"VIEW_INVITATION:{second}")
        self.assertInvitation(reply[0], second, "alice", "carol", "club", "declined", "moderator", "")
        fields = self.assertShape(reply[2], "INVITATION_EVENT", 5)
        self.assertEqual(fields[2:], ["declined", "carol", "busy: sorry"])
        self.assertOne(await carol.request(f"DECLINE_INVITATION:{second}"), "ERROR:1502:GONE:")

    async def test_bulk_revoke_stats_and_template(self):
        """
        C{INVITE_MULTIPLE} (C{INVITE_RESULT}), C{REVOKE_INVITATION}
        (C{INVITATION_REVOKED}), C{ACCEPT_ALL_INVITATIONS} / C{ACCEPT_ALL}
        and C{DECLINE_ALL_INVITATIONS} (C{ACCEPT_RESULT}),
        C{INVITATION_STATS}, C{SET_INVITE_TEMPLATE}.
        """
        alice, bob, carol, dave = self.alice, self.bob, self.carol, self.dave
        await alice.ok("CREATE_ROOM:den")
        await alice.ok("CREATE_ROOM:attic")
        await alice.ok("INVITE_USER:bob:den")
        await alice.ok("JOIN_ROOM:club")
        reply = await alice.request("INVITE_MULTIPLE:club:carol,dave,nobody,alice,bob:hi all")
        self.assertEqual(len(reply), 6, reply)
        carol_id = self.assertShape(reply[0], "INVITE_RESULT", 3)
        self.assertEqual(carol_id[:2], ["carol", "OK"])
        dave_id = self.assertShape(reply[1], "INVITE_RESULT", 3)
        self.assertEqual(dave_id[:2], ["dave", "OK"])
        failed = [self.assertShape(line, "INVITE_RESULT", 4) for line in reply[2:4]]
        self.assertEqual([f[:3] for f in failed], [["nobody", "ERROR", "1501"], ["alice", "ERROR", "1211"]])
        self.assertTrue(all(f[3] for f in failed), failed)
        self.assertEqual(reply[4].split(":")[:3], ["INVITE_RESULT", "bob", "OK"])
        self.assertEqual(reply[5], "OK:INVITE_MULTIPLE:3:2")
        received = await carol.event("INVITATION_RECEIVED:")
        self.assertTrue(received.startswith(f"INVITATION_RECEIVED:{carol_id[2]}:alice:club:member:"), received)
        self.assertTrue(received.endswith(":hi all"), received)

        self.assertEqual(await alice.request(f"REVOKE_INVITATION:{dave_id[2]}"), [f"OK:REVOKE_INVITATION:{dave_id[2]}"])
        self.assertEqual(await dave.event("INVITATION_REVOKED:"), f"INVITATION_REVOKED:{dave_id[2]}:club:alice")
        self.assertTrue((await dave.event("INVITATION_RECEIVED:")).startswith(f"INVITATION_RECEIVED:{dave_id[2]}:"))

        # bob holds two pending invitations (den, club); one of them is refused: he is banned from den.
        await ban(self.server.server.store, (await self.server.server.store.rooms.by_name("den")).id,
                  await self.server.server.store.users.by_name("bob"))
        reply = await bob.request("ACCEPT_ALL")
        self.assertEqual(len(reply), 3, reply)
        den_fields = self.assertShape(reply[0], "ACCEPT_RESULT", 5)
        self.assertEqual(den_fields[1:4], ["den", "ERROR", "1404"])
        self.assertTrue(den_fields[4])
        self.assertEqual(reply[1].split(":")[2:], ["club", "OK"])
        self.assertEqual(len(reply[1].split(":")), 4)
        self.assertEqual(reply[2], "OK:ACCEPT_ALL_INVITATIONS:1:1")

        await alice.ok("INVITE_USER:carol:attic")
        reply = await carol.request("DECLINE_ALL_INVITATIONS:no thanks")
        self.assertEqual([line.split(":")[2:] for line in reply[:-1]], [["club", "OK"], ["attic", "OK"]])
        self.assertEqual(reply[-1], "OK:DECLINE_ALL_INVITATIONS:2:0")
        self.assertEqual(await carol.request("ACCEPT_ALL_INVITATIONS"), ["OK:ACCEPT_ALL_INVITATIONS:0:0"])

        reply = await alice.request("INVITATION_STATS")
        self.assertEqual([self.assertShape(line, "STAT", 2)[0] for line in reply[:-1]], list(STAT_KEYS))
        self.assertEqual(reply[:-1], ["STAT:sent:5", "STAT:received:0", "STAT:pending:1", "STAT:accepted:1",
                                      "STAT:declined:2", "STAT:expired:0", "STAT:revoked:1",
                                      "STAT:acceptance_rate:0.333", reply[8]])
        self.assertRegex(reply[8], r"^STAT:median_response_ms:\d+$")
        self.assertEqual(reply[-1], "OK:INVITATION_STATS:alice")
        reply = await alice.request("INVITATION_STATS:club")
        self.assertEqual([line.split(":")[1] for line in reply[:-1]], list(STAT_KEYS))
        self.assertEqual(reply[-1], "OK:INVITATION_STATS:club")
        self.assertOne(await alice.request("INVITATION_STATS:*"), "ERROR:1002:PERMISSION_DENIED:")

        self.assertEqual(await alice.request("SET_INVITE_TEMPLATE:club:Hi {recipient}: join {room}"),
                         ["OK:SET_INVITE_TEMPLATE:club"])
        await alice.ok("INVITE_USER:dave:club")
        received = await dave.event("INVITATION_RECEIVED:")
        self.assertTrue(received.endswith(":member:" + received.split(":")[5] + ":Hi dave: join club"), received)
        self.assertOne(await bob.request("SET_INVITE_TEMPLATE:club:mine"), "ERROR:1002:PERMISSION_DENIED:")

    async def test_reminder_and_expiry(self):
        """
        C{INVITATION_REMINDER:<id>:<room>:<expires_ts>} to an online
        recipient with under a day left; C{INVITATION_EXPIRED:<id>:<room>}
        to both parties once it is due; answering it then is C{1502 GONE}.
        """
        [ok] = await self.alice.request("INVITE_USER:bob:club")
        _, number, _, _, expires = self.assertShape(ok, "OK", 5)
        await self.bob.event("INVITATION_RECEIVED:")
        server = self.server.server
        await sweep(server, int(expires) - 3600 * 1000)
        self.assertEqual(await self.bob.event("INVITATION_REMINDER:"), f"INVITATION_REMINDER:{number}:club:{expires}")
        await sweep(server, int(expires) - 1800 * 1000)
        await self.bob.no_event("INVITATION_REMINDER:")
        await sweep(server, int(expires) + 1)
        self.assertEqual(await self.bob.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:club")
        self.assertEqual(await self.alice.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:club")
        self.assertOne(await self.bob.request(f"ACCEPT_INVITATION:{number}"), "ERROR:1502:GONE:")
        self.assertOne(await self.alice.request(f"REVOKE_INVITATION:{number}"), "ERROR:1502:GONE:")


# Section 5: Server administration


class AdministrationTests(ConformanceTestCase):
    """Every request of the Server administration table."""

    async def test_admin_requests(self):
        """
        C{SERVER_STATS}, C{AUDIT_LOG}, C{SET_USER_ROLE}, C{SUSPEND_USER},
        C{UNSUSPEND_USER}, and C{1002} for anyone else.
        """
        server = await start_server(self, admins=("root",))
        root = await server.user("root")
        bob = await server.user("bob")
        self.assertEqual(await root.request("WHOAMI"), ["OK:WHOAMI:root:admin"])
        for line in ("SERVER_STATS", "AUDIT_LOG", "SET_USER_ROLE:bob:admin", "SUSPEND_USER:root",
                     "UNSUSPEND_USER:root", "INVITATION_STATS:*"):
            self.assertOne(await bob.request(line), "ERROR:1002:PERMISSION_DENIED:")

        reply = await root.request("SERVER_STATS")
        self.assertEqual(reply[-1], "OK:SERVER_STATS")
        stats = dict(self.assertShape(line, "STAT", 2) for line in reply[:-1])
        self.assertEqual(
            list(stats),
            ["users", "suspended_users", "rooms", "conversations", "messages", "pending_invitations",
             "live_sessions", "online_users", "connections", "deliveries", "uptime_s", "version"],
        )
        self.assertEqual((stats["users"], stats["online_users"], stats["version"]), ("2", "2", __version__))

        reply = await root.request("AUDIT_LOG:5")
        self.assertEqual(reply[-1], f"OK:AUDIT_LOG:{len(reply) - 1}")
        self.assertEqual(len(reply), 3)
        for line in reply[:-1]:
            ts, actor, action, target, outcome, detail = self.assertShape(line, "AUDIT", 6)
            self.assertTimestamp(ts)
            self.assertIn(outcome, ("ok", "failed", "refused"))
        newest = self.assertShape((await root.request("AUDIT_LOG:1"))[0], "AUDIT", 6)
        self.assertEqual(newest[1:5], ["bob", "register", "bob", "ok"])

        reply = await root.request("INVITATION_STATS:*")
        self.assertEqual([self.assertShape(line, "STAT", 2)[0] for line in reply[:-1]], list(STAT_KEYS))
        self.assertEqual(reply[-1], "OK:INVITATION_STATS:*")

        self.assertEqual(await root.request("SET_USER_ROLE:Bob:admin"), ["OK:SET_USER_ROLE:bob:admin"])
        self.assertEqual(await bob.request("WHOAMI"), ["OK:WHOAMI:bob:admin"])
        self.assertEqual(await root.request("SET_USER_ROLE:bob:user"), ["OK:SET_USER_ROLE:bob:user"])
        self.assertEqual(await bob.request("WHOAMI"), ["OK:WHOAMI:bob:user"])

        self.assertEqual(await root.request("SUSPEND_USER:bob:spam: lots"), ["OK:SUSPEND_USER:bob"])
        self.assertEqual(await bob.event("SYSTEM_MESSAGE:"), "SYSTEM_MESSAGE:your account was suspended: spam: lots")
        await bob.closed
        again = await server.connect()
        self.assertOne(await again.request(f"LOGIN:bob:{PASSWORD}"), "ERROR:1404:ACCESS_DENIED:")
        self.assertEqual(await root.request("UNSUSPEND_USER:bob"), ["OK:UNSUSPEND_USER:bob"])
        self.assertTrue((await again.request(f"LOGIN:bob:{PASSWORD}"))[-1].startswith("OK:LOGIN:bob:"))
        newest = self.assertShape((await root.request("AUDIT_LOG:1"))[0], "AUDIT", 6)
        self.assertEqual(newest[1:5], ["bob", "login", "bob", "ok"])


# Section 6: the example session


class ExampleSessionTests(ConformanceTestCase):
    """The telnet session of the contract's section 6, line by line."""

    async def test_example_session(self):
        """
        LOGIN, then the pending invitation as an event; a labelled
        C{ACCEPT_INVITATION:LATEST}; a plain line with a colon answered as
        C{SEND_MESSAGE}; the other member's message as a C{MESSAGE} event.
        """
        server = await start_server(self)
        await server.user("alice")
        bob = await server.user("bob")
        await bob.ok("CREATE_ROOM:rustaceans:private")
        [invited] = await bob.request("INVITE_USER:alice:rustaceans:Join us!")
        _, number, _, _, expires = self.assertShape(invited, "OK", 5)

        alice = await connect_raw(self, server)
        self.assertEqual(await alice.line(), f"WELCOME:lairchat:{__version__}:lair")
        self.assertTrue((await alice.line()).startswith("SYSTEM_MESSAGE:Welcome to lair! LOGIN:<user>:<password> "
                                                        "or REGISTER:<user>:<password>"))
        alice.send(f"LOGIN:alice:{PASSWORD}")
        self.assertRegex(await alice.line(), r"^OK:LOGIN:alice:[0-9a-f]{64}$")
        self.assertEqual(await alice.line(), f"INVITATION_RECEIVED:{number}:bob:rustaceans:member:{expires}:Join us!")
        alice.send("@label=a1 ACCEPT_INVITATION:LATEST")
        self.assertEqual(await alice.line(), f"@label=a1 OK:ACCEPT_INVITATION:{number}:rustaceans")
        alice.send("hello everyone: glad to be here")
        sent = await alice.line()
        command, room, message_id, ts = self.assertShape(sent, "OK", 4)
        self.assertEqual((command, room), ("SEND_MESSAGE", "rustaceans"))
        self.assertTimestamp(ts)
        self.assertEqual(await bob.event("INVITATION_ACCEPTED:"), f"INVITATION_ACCEPTED:{number}:alice:rustaceans")
        self.assertEqual(await bob.event("USER_JOINED:"), "USER_JOINED:rustaceans:alice")
        self.assertEqual(await bob.event("MESSAGE:"),
                         f"MESSAGE:rustaceans:{message_id}:alice:{ts}:hello everyone: glad to be here")
        [welcomed] = await bob.request("welcome alice!")
        _, _, welcome_id, welcome_ts = self.assertShape(welcomed, "OK", 4)
        self.assertEqual(await alice.line(), f"MESSAGE:rustaceans:{welcome_id}:bob:{welcome_ts}:welcome alice!")


# The registry and the documentation


class DocumentationTests(SynchronousTestCase):
    """The user-facing reference covers every registered command."""

    def test_protocol_doc_mentions_every_command(self):
        """
        C{docs/protocol.md} names every command and alias of the registry,
        in backquotes, alone or followed by its arguments.
        """
        with open(DOCS, encoding="utf-8") as f:
            doc = f.read()
        missing = [name for name in sorted(load_commands())
                   if not re.search(r"`" + re.escape(name) + r"(`|:|\[)", doc)]
        self.assertEqual(missing, [])

    def test_contract_commands_registered(self):
        """Every request of the contract is a registered command or alias, with a syntax naming it."""
        registry = load_commands()
        for name in CONTRACT_COMMANDS:
            self.assertIn(name, registry)
            command = registry[name]
            self.assertTrue(command.syntax.startswith(command.name), command.syntax)
        self.assertIs(registry["SHOW_HELP"], registry["HELP"])
        self.assertIs(registry["ACCEPT_ALL"], registry["ACCEPT_ALL_INVITATIONS"])
