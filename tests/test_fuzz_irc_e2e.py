# -*- test-case-name: tests.test_fuzz_irc_e2e -*-
"""
Fuzzing the IRC front end of the real server over TCP, on the real
database: a small world (accounts with rooms, messages and an invitation,
made on the line protocol), IRC clients logged in to two of the accounts
and two guests, then a bounded number of generated lines from a seeded
L{random.Random}: every command of the IRC command table in random case,
unknown ones, random tags and sources, parameters drawn from a pool of
channels, nicks, masks and hostile text, line-protocol requests to the
service nick, invalid UTF-8, NULs, bare CRs, empty and over-long lines.

For every batch of lines: nothing is logged as a failure (no traceback
anywhere in the server); every line a client reads is a well-formed IRC
line with a numeric, a C{FAIL} or a normal reply, never an internal error
or an internal detail; the connection stays open unless the batch held a
C{QUIT}.  Afterwards a fresh connection is served and the stored state
holds the invariants of L{tests.test_fuzz_e2e}.  A second test checks
that malformed but parseable commands get IRC's numeric for them.

The seed is shared with the line fuzz (C{LAIRCHAT_FUZZ_SEED}, see
L{tests.test_fuzz_e2e}); C{LAIRCHAT_IRC_FUZZ_LINES} changes how many lines
are sent.
"""

import os
import random
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase

from lairchat.irc.message import MalformedMessage, parse
from lairchat.irc.service import SERVICE_NICK
from tests.support import start_server
from tests.test_fuzz_e2e import INVARIANTS, LEAKS, seed_for_run
from tests.test_fuzz_irc import COMMANDS, NORMAL_REPLIES, Failures
from tests.test_irc_commands_e2e import irc_user, joined
from tests.test_irc_e2e import PASSWORD, IRCClient, account, irc_client

LINES = int(os.environ.get("LAIRCHAT_IRC_FUZZ_LINES", "1200"))
"""Lines the concurrent test sends, spread over the clients."""

ACCOUNTS = ("alice", "bob")
"""The IRC clients logged in to accounts (alice is a server admin and owns hall and den)."""

GUESTS = ("guest_a", "guest-b")
"""The IRC clients that are guests."""

CHANNELS = ["#hall", "#den", "#HALL", "#nowhere", "#", "##", "#a", "#ab", "hall", "&hall", "#" + "c" * 51,
            "#h\u00e4ll", "#hall,#den", "#hall,,#x", ",", "#hall,#", "0", "*", "#bad\u202ename"]
NICKS = ["alice", "ALICE", "bob", "carol", "guest_a", "guest-b", "nobody", "9lives", "-x", "n" * 31,
         SERVICE_NICK, SERVICE_NICK.lower(), "*", "alice,bob", "alice!*@*", "bob!*@*", "*!*@*", "a?", "x" * 200]
WORDS = ["", "0", "1", "-1", "+", "-", "+b", "-b", "b", "+o", "+i", "+q", "+bb", "LS", "302", "REQ", "LIST", "END",
         "sasl", "echo-message message-tags", "-echo-message", "multi-prefix", "PLAIN", "EXTERNAL", "*", "+",
         "AGFsaWNlAHdyb25n", "A" * 400, "A" * 401, "server", "My.Little.Server", "%", "{0}", "\\", "::", "a:b"]
TEXTS = ["hello", "hi there", "", " ", ":", ":)", "\x01ACTION waves\x01", "\x01VERSION\x01", "\x01", "\x02bold\x0f",
         "\x0304,12colour", "tab\there", "bell\x07", "\x7f", "\u202e", "\u200b", "\U0001f44d" * 50, "x" * 450,
         "'; DROP TABLE users;--", "%s %d {0} {room}", "\U0001f468\u200d\U0001f469", "a\u0301", "\ufeff"]
SERVICE_REQUESTS = [
    "HELP", "help", "WHOAMI", "PING:x", "LIST_ROOMS", "UNREAD", "LIST_INVITATIONS", "LIST_INVITATIONS:all",
    "LIST_SENT_INVITATIONS", "INVITATION_STATS", "INVITATION_STATS:hall", "SEARCH_MESSAGES:hello",
    "SEARCH_MESSAGES:\"a phrase\" -x or y", "SEARCH_MESSAGES:", "ROOM_INFO:hall", "ROOM_INFO:den", "ROOM_INFO:nowhere",
    "ROOM_MEMBERS:hall", "GET_HISTORY:hall", "GET_HISTORY:hall:5", "GET_HISTORY:5", "GET_HISTORY:den:0",
    "GET_HISTORY:@bob", "DM_HISTORY:alice", "LIST_CONVERSATIONS", "JOIN_ROOM:hall", "JOIN_ROOM:den",
    "LEAVE_ROOM", "LEAVE_ROOM:hall", "CREATE_ROOM:yard", "SEND_MESSAGE:hall:from the service", "DM:bob:psst",
    "DM:guest-b:hi", "SET_TOPIC:hall:a topic", "INVITE_USER:bob:den", "ACCEPT_INVITATION:LATEST",
    "DECLINE_INVITATION:den", "VIEW_INVITATION:1", "REACT_MESSAGE:1:\U0001f44d", "GET_REACTIONS:1", "GET_THREAD:1",
    "MARK_READ:hall:1", "AUDIT_LOG:5", "SERVER_STATS", "LIST_BLOCKS", "LOGIN:alice:" + PASSWORD, "LOGOUT", "QUIT",
    "REGISTER:zed:secret123x", "RESUME:" + "0" * 64, "hello there", "", "@label=q1 WHOAMI", "@label= PING",
    "NO_SUCH_COMMAND:x", "PING:\x07", "SEND_MESSAGE:hall:" + "y" * 4001, ":", "::::",
]
"""Line-protocol requests for the service; none that changes a password, a role, a suspension or a block
(those would end or lock the fuzzing connections)."""

RAW_LINES = [
    b"", b"\r", b"\r\r", b" ", b":", b"@", b"@ PING x", b": PING", b"PING\x00x", b"PRIVMSG #hall :\xff\xfe",
    b"\xc3", b"NICK \xc0\xaf", b"PING :a\rb", b"\rPING x", b"PRIVMSG #hall :" + b"x" * 600,
    b"@" + b"t" * 5000 + b" PING x", b"@+a=" + b"v" * 4000 + b" PING :t", b"PING " + b"y" * 20000,
    b"JOIN #a,#b,#c,#d,#e,#f,#g,#h", b"\xf4\x90\x80\x80", b"PRIVMSG " + SERVICE_NICK.encode() + b" :\xff",
    b"@label=x PRIVMSG #hall :\x00", b"\t", b"PRIVMSG\t#hall :tab",
]
"""Lines no generator of text makes: bad bytes, NULs, bare CRs, lines over every limit."""

UNKNOWN = ["FOO", "PRIVMSGX", "001", "9", "CHATHISTORY", "TAGMSG", "KILL", "SQUIT", "STATS", "USERHOST", "ISON"]


class RawIRCClient(IRCClient):
    """An L{IRCClient} that, once L{raw} is set, queues the raw bytes of each line instead of parsing it."""

    raw = False

    def lineReceived(self, line: bytes) -> None:
        """Queue the line's bytes (raw) or its parsed message."""
        if self.raw:
            self._messages.put(line)
        else:
            super().lineReceived(line)

    def connectionLost(self, reason: Any = None) -> None:
        """Note the close; a reader waiting for a raw line gets L{None}."""
        super().connectionLost(reason)
        if self.raw:
            self._messages.put(None)


def names_quit(data: bytes) -> bool:
    """Whether a line is a C{QUIT}."""
    try:
        return parse(data.rstrip(b"\r").decode("utf-8")).command.upper() == "QUIT"
    except (UnicodeDecodeError, MalformedMessage):
        return False


class World:
    """The running server, its IRC clients by name, and the generator of lines."""

    def __init__(self, testcase: TestCase, running: Any, seed: int) -> None:
        self.testcase = testcase
        self.running = running
        self.seed = seed
        self.clients: dict[str, RawIRCClient] = {}
        self.sentinels = 0
        self.requests = 0
        self.replies: dict[str, int] = {}

    def fail(self, message: str) -> None:
        """Fail the test, naming the seed."""
        raise AssertionError(f"[seed {self.seed}; LAIRCHAT_FUZZ_SEED={self.seed} replays it] {message}")

    async def connect(self, name: str) -> RawIRCClient:
        """
        A client for C{name} logged in (an account) or registered (a guest,
        under a fresh nick after the first time: another guest may have
        taken the old one), then reading raw lines.
        """
        client = RawIRCClient()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.running.irc_port), client)

        def close() -> Deferred:
            if not client.closed.called:
                client.transport.loseConnection()
            return client.closed

        self.testcase.addCleanup(close)
        if name in ACCOUNTS:
            await client.login(name)
        else:
            nick = name if name not in self.clients else f"{name}{self.sentinels}"
            client.send(f"NICK {nick}")
            client.send(f"USER {nick} 0 * :{nick}")
            await client.until("376")
        client.kept.clear()
        client.raw = True
        self.clients[name] = client
        return client

    async def build(self) -> None:
        """The accounts, rooms, messages and invitation; the IRC clients."""
        alice = await self.running.user("alice", PASSWORD)
        await account(self.running, "bob")
        await account(self.running, "carol")
        for line in ("CREATE_ROOM:hall", "SEND_MESSAGE:hall:hello world", "CREATE_ROOM:den:private",
                     "INVITE_USER:bob:den:come in", "DM:carol:hi carol", "QUIT"):
            await alice.ok(line)
        for name in (*ACCOUNTS, *GUESTS):
            await self.connect(name)

    def parameter(self, rng: random.Random) -> str:
        """One middle parameter."""
        pool = rng.choice((CHANNELS, NICKS, WORDS, TEXTS))
        value = rng.choice(pool)
        if rng.random() < 0.03:
            value += rng.choice(rng.choice((CHANNELS, NICKS, WORDS)))
        return value

    def generate(self, rng: random.Random) -> bytes:
        """One generated line, without its line end."""
        roll = rng.random()
        if roll < 0.05:
            return rng.choice(RAW_LINES)
        if roll < 0.07:
            return bytes(rng.choice(b"ABC #:\x00\x01\r\t\x7f\xff\xc3\xa9 @=!,") for _ in range(rng.randrange(1, 40)))
        if roll < 0.20:
            verb = rng.choice(("PRIVMSG", "privmsg", "NOTICE"))
            return f"{verb} {rng.choice((SERVICE_NICK, SERVICE_NICK.upper()))} :{rng.choice(SERVICE_REQUESTS)}".encode()
        command = rng.choice(UNKNOWN) if rng.random() < 0.05 else rng.choice(COMMANDS)
        if command == "QUIT" and rng.random() < 0.8:
            command = "PING"  # a QUIT ends the batch: keep them rare
        if rng.random() < 0.3:
            command = "".join(c.lower() if rng.random() < 0.5 else c for c in command)
        words = [self.parameter(rng) for _ in range(rng.choice((0, 1, 1, 2, 2, 3, 5)))]
        middle = [w for w in words if w and " " not in w and not w.startswith(":")]
        line = " ".join([command, *middle])
        if rng.random() < 0.6:
            line += " :" + rng.choice(rng.choice((TEXTS, CHANNELS, NICKS, WORDS)))
        if rng.random() < 0.1:
            line = ":" + rng.choice(("alice", "x!y@z", "bob!bob@My.Little.Server")) + " " + line
        if rng.random() < 0.1:
            line = rng.choice(("@label=a1 ", "@+draft/reply=1 ", "@msgid=5;time=x ", "@a\\b=\\s ", "@+x=" + "v" * 500 + " ",
                               "@-bad ", "@= ")) + line
        return line.encode("utf-8")

    async def exchange(self, name: str, batch: list[bytes]) -> tuple[list[bytes], bool]:
        """
        Send a batch of lines and a C{PING} after them; every line read up
        to its C{PONG} (or up to the close), and whether the connection closed.
        """
        self.requests += len(batch)
        client = self.clients[name]
        self.sentinels += 1
        sentinel = f"sentinel{self.sentinels}"
        ends = [b"\r\n", b"\n"]
        client.transport.write(b"".join(data + ends[len(data) % 2] for data in batch)
                               + f"PING :{sentinel}\r\n".encode())
        received: list[bytes] = []
        while True:
            try:
                line = await client.next(timeout=30)
            except TimeoutError:
                self.fail(f"no PONG for {name}'s {batch!r:.300} within 30 s; got {received[-3:]!r:.300}")
            if line is None:
                return received, True
            if b" PONG " in line and line.rstrip(b"\r").endswith(sentinel.encode()):
                return received, False
            received.append(line)

    def check(self, name: str, batch: list[bytes], received: list[bytes], closed: bool) -> None:
        """Every line read is well formed and of an allowed kind; a close only after a QUIT."""
        where = f"{name} sent {[d[:200] for d in batch]!r}"
        closing = []
        for raw in received:
            try:
                line = raw.rstrip(b"\r").decode("utf-8")
                written = parse(line)
            except (UnicodeDecodeError, MalformedMessage) as error:
                self.fail(f"an ill-formed line {raw[:300]!r} ({error}); {where}")
            for leak in LEAKS:
                if leak in line:
                    self.fail(f"a line reveals internals ({leak!r}): {line[:300]!r}; {where}")
            command = written.command
            if not (command.isdigit() and len(command) == 3 or command == "FAIL" or command in NORMAL_REPLIES):
                self.fail(f"a reply of no kind IRC knows: {line[:300]!r}; {where}")
            if command not in ("ERROR", "AUTHENTICATE") and written.source is None:
                self.fail(f"a line without a source: {line[:300]!r}; {where}")
            if "INTERNAL_ERROR" in line or "ERROR:1301" in line:
                self.fail(f"an internal error: {line[:300]!r}; {where}")
            if command == "ERROR":
                closing.append(line)
            self.replies[command] = self.replies.get(command, 0) + 1
        quit_sent = any(names_quit(data) for data in batch)
        if closed:
            if not (closing and "(Quit:" in closing[-1] and quit_sent):
                self.fail(f"the connection was closed (last lines {received[-3:]!r:.400}); {where}")
        elif closing:
            self.fail(f"ERROR {closing} but the connection stays; {where}")

    async def fuzz(self, name: str, rng: random.Random, count: int, failures: Failures) -> None:
        """Send C{count} generated lines from one client, in batches of one to four."""
        while count > 0:
            batch = [self.generate(rng) for _ in range(min(count, rng.choice((1, 1, 2, 4))))]
            count -= len(batch)
            received, closed = await self.exchange(name, batch)
            if failures.found:
                self.fail(f"a failure was logged after {name}'s {batch!r:.400}: {failures.found[0]}")
            self.check(name, batch, received, closed)
            if closed:
                await self.connect(name)

    async def close(self) -> None:
        """Close every client and wait until the server has removed the guests among them."""
        gone = [connection.guest_gone for front_end in self.running.server.front_ends
                for connection in list(front_end.connections) if getattr(connection, "guest", False)]
        for client in self.clients.values():
            client.transport.loseConnection()
        await gatherResults(gone)

    async def check_invariants(self) -> None:
        """The stored state holds the line fuzz's invariants, as guests change them (L{GUEST_INVARIANTS})."""
        db = self.running.server.store.db
        for description, sql in INVARIANTS:
            rows = await db.fetchall(GUEST_INVARIANTS.get(description, sql))
            if rows:
                self.fail(f"broken invariant: {description}: {rows[:5]}")


GUEST_INVARIANTS = {
    "names follow the rules":
        "SELECT 'user', username FROM users WHERE NOT guest AND username !~ '^[A-Za-z][A-Za-z0-9_]{2,19}$' "
        "UNION ALL SELECT 'room', name FROM rooms WHERE kind = 'room' AND (name !~ '^[A-Za-z][A-Za-z0-9_-]{2,49}$' "
        "OR lower(name) IN ('lobby', 'latest'))",
    "a direct conversation has exactly its two parties, both plain members":
        "SELECT r.id, count(m.user_id) FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id "
        "WHERE r.kind = 'direct' GROUP BY r.id, r.direct_key "
        "HAVING count(m.user_id) + (SELECT count(*) FROM unnest(string_to_array(r.direct_key, ':')) AS k(id) "
        "WHERE k.id::bigint NOT IN (SELECT id FROM users)) <> 2 "
        "OR bool_or(m.user_id IS NOT NULL AND m.role <> 'member')",
}
"""
The invariants of L{tests.test_fuzz_e2e.INVARIANTS} that guests change:
a guest's nick follows IRC's rule, not the username rule; and a guest is
deleted when it leaves, so a direct conversation with one keeps only the
other party, and one between two guests no member at all (the messages
stay, anonymised).
"""


class IRCFuzzEndToEndTests(TestCase):
    """Generated hostile IRC lines against the real server."""

    timeout = 300

    async def world(self) -> World:
        """A running server (with guests) and the world built; the seed is printed."""
        seed = seed_for_run()
        print(f"IRC fuzz seed {seed} (LAIRCHAT_FUZZ_SEED={seed} replays it)")
        running = await start_server(self, irc=True, irc_guests=True, admins=("alice",))
        world = World(self, running, seed)
        for pool in (CHANNELS, NICKS, WORDS, TEXTS, SERVICE_REQUESTS):
            for value in pool:
                for leak in LEAKS:
                    self.assertNotIn(leak, value, "the value pool must not hold what only a leak would")
        await world.build()
        return world

    async def test_concurrent_lines(self):
        """
        Two account clients and two guests send generated lines at once, in
        pipelined batches: no failure is logged, every line read is
        well-formed and of a kind IRC knows, never an internal error; a
        connection closes only after a QUIT; afterwards a fresh connection
        is served and the stored state holds the invariants.
        """
        world = await self.world()
        failures = Failures()
        globalLogPublisher.addObserver(failures)
        self.addCleanup(globalLogPublisher.removeObserver, failures)
        names = [*ACCOUNTS, *GUESTS]
        per_client = LINES // len(names)
        runs = [Deferred.fromCoroutine(world.fuzz(name, random.Random(f"{world.seed}:irc:{name}"), per_client, failures))
                for name in names]
        await gatherResults(runs, consumeErrors=True).addErrback(lambda f: f.value.subFailure)
        self.assertEqual(world.requests, per_client * len(names))
        fresh = await irc_client(self, world.running.irc_port)
        fresh.send("PING :alive")
        self.assertEqual((await fresh.expect("PONG")).params[-1], "alive")
        await world.check_invariants()
        await world.close()
        self.assertEqual(failures.found, [])
        print("replies:", sorted(world.replies.items(), key=lambda kv: -kv[1]))


MALFORMED = [
    # (line, the numeric (or command) of the first reply)
    ("FOO", "421"), ("foo bar :baz", "421"), ("NICK", "431"), ("NICK 9lives", "432"), ("NICK :a b", "432"),
    ("NICK " + SERVICE_NICK, "432"),
    ("USER a", "462"), ("PASS x", "462"), ("CAP", "461"), ("CAP FOO", "410"), ("AUTHENTICATE", "461"),
    ("JOIN", "461"), ("JOIN :", "461"), ("JOIN #", "403"), ("JOIN hall", "403"), ("JOIN #a b", "403"),
    ("JOIN #" + "c" * 51, "403"), ("PART", "461"), ("PART #", "403"), ("PART #nowhere", "403"),
    ("PRIVMSG", "411"), ("PRIVMSG #hall", "412"), ("PRIVMSG #hall :", "412"), ("PRIVMSG # :x", "403"),
    ("PRIVMSG #nowhere :x", "403"), ("PRIVMSG 9lives :x", "401"), ("PRIVMSG nobody :x", "401"),
    ("TOPIC", "461"), ("TOPIC #", "403"), ("TOPIC #nowhere", "403"), ("NAMES #", "366"),
    ("KICK", "461"), ("KICK #hall", "461"), ("KICK # bob", "403"), ("KICK #nowhere bob", "403"),
    ("MODE", "461"), ("MODE #", "403"), ("MODE #nowhere", "403"), ("MODE #hall +z", "472"),
    ("INVITE", "461"), ("INVITE bob", "461"), ("INVITE bob #", "403"), ("INVITE nobody #hall", "401"),
    ("WHO", "461"), ("WHOIS", "431"), ("WHOIS nobody", "401"), ("OPER", "461"), ("OPER x", "461"),
    ("PING", "409"),
]
"""Malformed but parseable commands of a logged-in client and what IRC answers them."""


class MalformedCommandTests(TestCase):
    """Malformed but parseable commands get IRC's numeric for them."""

    timeout = 60

    async def test_numerics(self):
        """Too few parameters 461 (431, 411, 409 where IRC says so), unknown 421, bad channels 403, bad nicks 432."""
        running = await start_server(self, irc=True)
        alice = await running.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:hall")
        client = await irc_user(self, running, "bob")
        await joined(client, "#hall")
        got = []
        for line, _ in MALFORMED:
            client.send(line)
            found = await client.sync()
            got.append(found[0].command if found else None)
        self.assertEqual(list(zip([line for line, _ in MALFORMED], got)), MALFORMED)
