# -*- test-case-name: tests.test_fuzz_e2e -*-
"""
Fuzzing the real server over TCP: a small world (four users, public and
private rooms, messages, a thread, a reaction, direct messages, invitations
in every state, a ban), then a bounded number of generated lines from a
seeded L{random.Random}: every registered command in random case, with
random arities and arguments drawn from a pool of hostile values, valid and
invalid labels, invalid UTF-8, control bytes and over-long lines.

For every line: exactly one final C{OK}/C{ERROR} line (none for an empty
line), carrying the request's label when it had a well-formed one; every
C{ERROR} is C{ERROR:<code>:<NAME>:<message>} with a code and NAME of the
contract, never C{1301}; no line anywhere reveals internals; the connection
stays open unless the request was C{QUIT}, an over-long line, or the
account was suspended.  Afterwards a fresh connection still gets C{PING}
answered and the database holds the invariants docs/protocol.md promises.

A second test sends the lines one at a time and checks that every refused
request changed nothing: no stored row and no event.

The seed is printed with every failure. By default the suite uses one fixed
seed, so a run is repeatable; set C{LAIRCHAT_FUZZ_SEED=random} to explore a
fresh one, or C{LAIRCHAT_FUZZ_SEED=<n>} to replay one (and
C{LAIRCHAT_FUZZ_LINES} to change how many lines are sent).
"""

import os
import random
import re
from typing import Any

from twisted.internet.defer import Deferred, TimeoutError, gatherResults
from twisted.trial.unittest import TestCase

from lairchat.plugins import load_commands
from tests.support import start_server
from tests.test_closing import ClosingClient, closing_client

PASSWORD = "fuzz pass 42"
"""The password of the world's users (kept out of the value pool, so a
generated line never changes it)."""

USERS = ("alice", "bob", "carol", "dave")
"""alice is a server admin and owns hall and den; bob is a moderator of hall
and owns attic; carol is a member of hall and den; dave is banned from
hall and holds a pending invitation to attic."""

CONCURRENT_LINES = int(os.environ.get("LAIRCHAT_FUZZ_LINES", "1600"))
"""Lines the concurrent test sends, spread over two connections of each user."""

SEQUENTIAL_LINES = CONCURRENT_LINES // 4
"""Lines the one-at-a-time test sends."""

MAX_LINE = 16384
"""The server's line limit (the default of --max-line)."""

LABEL = re.compile(rb"@label=([A-Za-z0-9._-]{1,32}) ")
"""A well-formed label tag at the start of a line, as bytes."""

FINAL = re.compile(r"(?:@label=([A-Za-z0-9._-]{1,32}) )?((?:OK|ERROR):.*)\Z", re.DOTALL)
"""A final line, with its label if it has one."""

ERROR_LINE = re.compile(r"ERROR:(\d{4}):([A-Z_]+):(.+)\Z", re.DOTALL)
"""The shape of every error line."""

ERROR_NAMES = {
    1001: {"AUTH_REQUIRED", "AUTHENTICATION_FAILED"},
    1002: {"PERMISSION_DENIED"},
    1003: {"SESSION_EXPIRED"},
    1004: {"INVALID_CREDENTIALS"},
    1005: {"ACCOUNT_LOCKED"},
    1110: {"RATE_LIMITED"},
    1111: {"INVALID_INPUT", "NO_CURRENT_ROOM"},
    1112: {"INVALID_FORMAT"},
    1113: {"INVALID_LENGTH", "LINE_TOO_LONG"},
    1114: {"INVALID_CHARACTERS", "INVALID_ENCODING"},
    1211: {"CONFLICT"},
    1212: {"DATABASE_UNAVAILABLE"},
    1303: {"TIMEOUT"},
    1401: {"SECURITY_VIOLATION"},
    1404: {"ACCESS_DENIED"},
    1501: {"NOT_FOUND"},
    1502: {"GONE"},
    1603: {"UNKNOWN_COMMAND"},
}
"""The error codes of docs/protocol.md and the NAMEs each may carry;
C{1301 INTERNAL_ERROR} is left out on purpose: no input may cause it."""

LEAKS = (
    "Traceback", "psycopg", "SELECT ", "INSERT ", "UPDATE ", "DELETE FROM", "/site-packages/",
    "Error(", "Exception", 'File "', ".py", "object at 0x", "<lairchat", "<twisted", "<bound",
    "relation \"", "violates", "constraint", "duplicate key", "syntax error", "NoneType",
    "KeyError", "AttributeError", "IndexError", "TypeError", "ValueError", "Deferred", "Failure",
    "txpostgres", "twisted.", "lairchat.", "SQL",
)
"""Text that only internals would put in a line (the value pool holds none of it)."""

LONG_MESSAGE_PREFIX = "SEND_MESSAGE:hall:"


def case_variants(rng: random.Random, name: str) -> str:
    """A command name in upper, lower, or random mixed case."""
    pick = rng.random()
    if pick < 0.5:
        return name
    if pick < 0.7:
        return name.lower()
    return "".join(c.lower() if rng.random() < 0.5 else c for c in name)


def near_misses(name: str) -> list[str]:
    """Names that look like C{name} but are not a command."""
    return [
        name + "X", name[:-1], " " + name, name + " ", name.replace("_", " "), name.replace("_", "-"),
        # fullwidth letters, a dotless i, a Kelvin sign: no ASCII folding
        "".join(chr(ord(c) + 0xFEE0) if "A" <= c <= "Z" else c for c in name),
        name.lower().replace("i", "\u0131"), name.replace("K", "\u212a"), "\u200b" + name,
    ]


def base_pool() -> list[str]:
    """
    The hostile argument values that do not depend on the world: empties,
    colons, numbers of every shape, reserved and malformed names, Unicode
    oddities, lengths at and over every limit, injection-looking text.
    """
    return [
        "", " ", "  ", "\t", " \t ", ":", "::", ":::::", "a:b", "0", "00", "-1", "-0", "+1", "1.5", "1e3",
        "0x10", "1_000", " 1", "1 ", "\u0663", "\u00b2", "\uff11", "9" * 19, "9223372036854775807",
        "9223372036854775808", "18446744073709551616", "-9223372036854775809", "9" * 40, "1" * 4400,
        "0" * 30 + "1", "lobby", "LOBBY", "Lobby", "latest", "LATEST", "Latest", "*", "**", "@", "@@bob",
        "ab", "a" * 51, "a" * 50, "r" + "x" * 49, "1room", "room name", "hall-", "-hall", "_hall",
        "h\u00e4ll", "nobody", "nowhere", "u" * 21, "u" * 20, "ALICE", "Bob", "@nobody", "@ALICE",
        "@bob", "@carol", "@dave", "@alice", "@hall", "public", "private", "PRIVATE", "secret",
        "owner", "admin", "moderator", "member", "guest", "Owner", "root", "user", "pending",
        "accepted", "declined", "expired", "revoked", "all", "ALL", "bogus",
        "\u200f", "\u200b", "\ufeff", "\u202e", "\u2028", "\u2029", "h\u00e9llo", "\u65e5\u672c\u8a9e",
        "\U0001f44d", "\U0001f600" * 10, "\U0001d518\U0001d52b\U0001d526", "a\u0301", "\u0130",
        "\u00df", "\ufb03", "\u212a", "\U0001f468\u200d\U0001f469\u200d\U0001f467",
        "+1", "tada", "a b", "x" * 32, "x" * 33, "\U0001f44d" * 32, "\U0001f44d" * 33,
        "x" * 500, "x" * 501, "x" * 4000, "x" * 4001, "\U0001f600" * 4000, "y" * 64, "y" * 65,
        "x" * 200, "x" * 201,
        "'; DROP TABLE users;--", "' OR '1'='1", "\"", "'", "\\", "\\\\", "%", "%s", "%d", "%(x)s",
        "%%", "{sender}", "{recipient}", "{room}", "{expires}", "{0}", "{}", "{", "}", "{{}}",
        "{sender.__class__}", "{room!r:>99999}", "{expires:%Y}", "$1", "NULL", "None", "null",
        "true", "<script>alert(1)</script>", "${jndi:ldap://x}", "\\x00", "\\n", "&", "|", "!",
        "(", ")", ":*", "a & b", "\"a phrase\"", "-word", "or", "cat or dog", "hello", "hi there",
        "bob,carol", ",", "bob,,carol", "bob,bob", ",bob", "bob,", "alice,nobody,dave",
        ",".join(f"user{i}" for i in range(25)), "ab" * 32, "zz" * 32, "0" * 64, "AB" * 32,
        "password1", "correct horse 9", "short1", "x" * 129 + "1", "newuser_1",
    ]


class World:
    """
    The running server, its users' connections (streams: C{alice} and
    C{alice#2} are two connections of alice), and the ids and names the
    generated lines draw on.
    """

    def __init__(self, testcase: TestCase, running: Any, seed: int) -> None:
        self.testcase = testcase
        self.running = running
        self.seed = seed
        self.clients: dict[str, ClosingClient] = {}
        self.pool = base_pool() + [value for values in SLOT_VALUES.values() for value in values]
        self.ids: list[str] = []
        self.registry = load_commands()
        self.commands = sorted(self.registry)
        self.sentinels = 0
        self.requests = 0
        self.outcomes: dict[str, int] = {}

    def fail(self, message: str) -> None:
        """Fail the test, naming the seed."""
        raise AssertionError(f"[seed {self.seed}; LAIRCHAT_FUZZ_SEED={self.seed} replays it] {message}")

    async def connect(self) -> ClosingClient:
        """A new connection past its greeting."""
        return await closing_client(self.testcase, self.running)

    async def log_in(self, stream: str) -> ClosingClient:
        """
        The stream's connection logged in as its user, reopened if it was
        closed.  An account the generated lines locked or suspended is put
        right first (an outside repair, so that the fuzzing goes on); a
        suspension by another stream's line in the meantime means one more
        try.
        """
        name = user_of(stream)
        received: list[str] = []
        for _ in range(10):
            client = self.clients.get(stream)
            if client is None or client.is_closed:
                client = self.clients[stream] = await self.connect()
            await self.running.server.store.db.execute(
                "UPDATE users SET suspended = false WHERE lower(username) = lower(%s)", (name,)
            )
            await self.running.server.store.db.execute("DELETE FROM login_throttle")
            received, closed = await self.collect(stream, f"@label=login LOGIN:{name}:{PASSWORD}\n".encode())
            if not closed and any(line.startswith(f"@label=login OK:LOGIN:{name}:") for line in received):
                return client
        self.fail(f"cannot log {name} in again: {received}")

    async def ok(self, name: str, line: str) -> list[str]:
        """A request of the setup, which must succeed; its final line's fields."""
        reply = await self.clients[name].request(line)
        if not reply[-1].startswith("OK:"):
            self.fail(f"setup: {name} {line!r} answered {reply}")
        return reply[-1].split(":")

    async def build(self) -> None:
        """
        Register the users and make the rooms, messages, invitations and the
        ban; add every id and name made to the pool.
        """
        for name in USERS:
            client = self.clients[name] = await self.connect()
            reply = await client.request(f"REGISTER:{name}:{PASSWORD}")
            if not reply[-1].startswith(f"OK:REGISTER:{name}:"):
                self.fail(f"setup: cannot register {name}: {reply}")
        ok = self.ok
        await ok("alice", "CREATE_ROOM:hall")
        await ok("alice", "CREATE_ROOM:den:private")
        await ok("bob", "CREATE_ROOM:attic:private")
        for name in ("bob", "carol", "dave"):
            await ok(name, "JOIN_ROOM:hall")
        await ok("alice", "SET_ROLE:hall:bob:moderator")
        await ok("alice", "BAN_USER:hall:dave:spam")
        accepted = (await ok("alice", "INVITE_USER:carol:den:come in"))[2]
        await ok("carol", f"ACCEPT_INVITATION:{accepted}")
        pending_bob = (await ok("alice", "INVITE_USER:bob:den"))[2]
        pending_dave = (await ok("bob", "INVITE_AS:dave:attic:guest:hi"))[2]
        declined = (await ok("bob", "INVITE_USER:carol:attic"))[2]
        await ok("carol", f"DECLINE_INVITATION:{declined}:no thanks")
        revoked = (await ok("alice", "INVITE_USER:dave:den"))[2]
        await ok("alice", f"REVOKE_INVITATION:{revoked}")
        await ok("alice", "SET_INVITE_TEMPLATE:den:Hi {recipient}, {sender} asks you to {room} until {expires}")
        root = (await ok("alice", "SEND_MESSAGE:hall:hello world"))[3]
        reply = (await ok("bob", f"REPLY_MESSAGE:{root}:hi alice"))[3]
        await ok("carol", f"REACT_MESSAGE:{root}:\U0001f44d")
        den_message = (await ok("alice", "SEND_MESSAGE:den:secret plans"))[3]
        attic_message = (await ok("bob", "SEND_MESSAGE:attic:private note"))[3]
        direct = (await ok("carol", "DM:bob:psst"))[3]
        await ok("alice", "DM:dave:hey dave")
        deleted = (await ok("alice", "SEND_MESSAGE:hall:oops"))[3]
        await ok("alice", f"DELETE_MESSAGE:{deleted}")
        ids = [accepted, pending_bob, pending_dave, declined, revoked, root, reply, den_message,
               attic_message, direct, deleted]
        top = max(int(i) for i in ids)
        self.ids += ids + [str(top + 1), str(top + 1000), "0" + root, "0", "-1", "9" * 30]
        self.pool += self.ids

    def argument(self, rng: random.Random, slot: str | None = None) -> str:
        """
        One argument: most often a value plausible for its slot (an id, a
        room, a user...), else any hostile value, now and then two glued
        together.
        """
        if slot is not None and rng.random() < 0.85:
            values = self.ids if slot == "id" else SLOT_VALUES[slot]
            if slot == "ref" and rng.random() < 0.5:
                values = self.ids
            value = rng.choice(values)
        else:
            value = rng.choice(self.pool)
        if rng.random() < 0.05:
            value += rng.choice(self.pool)
        return value

    def learn(self, final: str | None) -> None:
        """Add the id a successful send or invitation made to the id pool."""
        if final is None:
            return
        fields = final.split(":")
        if fields[:2] in (["OK", "INVITE_USER"], ["OK", "INVITE_AS"]):
            self.ids.append(fields[2])
        elif fields[:2] in (["OK", "SEND_MESSAGE"], ["OK", "REPLY_MESSAGE"], ["OK", "DM"]) and len(fields) > 3:
            self.ids.append(fields[3])

    def generate(self, rng: random.Random) -> bytes:
        """One generated line, without its LF."""
        roll = rng.random()
        if roll < 0.04:
            return rng.choice(RAW_LINES)
        if roll < 0.05:
            return bytes(rng.choice(b"ABC:\x00\x01\r\t\x7f\xff\xc3\xa9 @=") for _ in range(rng.randrange(1, 40)))
        if roll < 0.06:
            # just at the limit (answered, the connection stays) or just over it
            size = MAX_LINE + rng.choice((0, 1, 1000))
            return (LONG_MESSAGE_PREFIX + "x" * (size - len(LONG_MESSAGE_PREFIX))).encode()
        if roll < 0.11:
            text = self.argument(rng)
        else:
            command = rng.choice(self.commands)
            name = rng.choice(near_misses(command)) if rng.random() < 0.03 else case_variants(rng, command)
            low, high = self.registry[command].arity
            slots = SLOTS.get(self.registry[command].name)
            if slots is not None and rng.random() < 0.85:
                count = rng.randint(low, high)
                arguments = [self.argument(rng, slot) for slot in slots[:count]]
                arguments += [self.argument(rng) for _ in range(count - len(arguments))]
            else:
                count = rng.randint(0, 6)
                arguments = [self.argument(rng) for _ in range(count)]
            text = ":".join([name] + arguments)
        label_roll = rng.random()
        if label_roll < 0.45:
            alphabet = "abcXYZ019._-"
            text = "@label=" + "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 32))) + " " + text
        elif label_roll < 0.55:
            text = rng.choice(BAD_LABELS) + text
        if rng.random() < 0.03:
            text += "\r"
        return text.encode("utf-8")

    async def collect(self, stream: str, payload: bytes) -> tuple[list[str], bool]:
        """
        Send bytes and a labelled C{PING} after them; return every line up
        to the C{PING}'s answer (or up to the close), and whether the
        connection closed.
        """
        client = self.clients[stream]
        self.sentinels += 1
        sentinel = f"s{self.sentinels}"
        client.transport.write(payload + f"@label={sentinel} PING:{sentinel}\n".encode())
        answer = f"@label={sentinel} OK:PING:{sentinel}"
        received: list[str] = []
        while True:
            try:
                line = await client.line(timeout=30)
            except TimeoutError:
                self.fail(f"no answer to {stream}'s {payload[:300]!r} within 30 s; "
                          f"got {[r[:100] for r in received[-3:]]} of {len(received)}")
            if line is None:
                return received, True
            if line == answer:
                return received, False
            received.append(line)

    async def exchange(self, stream: str, batch: list[bytes]) -> tuple[list[str], bool]:
        """
        Send a batch of generated lines at once (pipelined); return every
        line since the last exchange up to the answer to a C{PING} sent after
        them (or up to the close), and whether the connection closed.
        """
        self.requests += len(batch)
        client = self.clients[stream]
        earlier, client.events = client.events, []
        received, closed = await self.collect(stream, b"".join(data + b"\n" for data in batch))
        return earlier + received, closed

    async def settle(self, answers: list[str | None]) -> None:
        """
        After a suspension, wait until the suspended user's connections are
        closed (they close after the suspending reply) and log them back in.
        """
        for final in answers:
            if final is not None and final.startswith("OK:SUSPEND_USER:"):
                target = final.split(":")[2].lower()
                for stream, client in list(self.clients.items()):
                    if user_of(stream).lower() == target:
                        if not client.is_closed:
                            closed: Deferred = Deferred()
                            client.closed.addBoth(lambda result: closed.callback(None))
                            await closed
                        await self.log_in(stream)

    def check(self, stream: str, batch: list[bytes], received: list[str], closed: bool) -> list[str | None]:
        """
        Check what a batch of lines got, line by line, in order; return the
        final line (unlabelled) each line got: L{None} for an empty line,
        and for the lines after a close.
        """
        where = f"{stream} sent {shown(batch)}, got {[r[:200] for r in received[:12]]} (closed: {closed})"
        labels = {m.group(1).decode() for m in (LABEL.match(d) for d in batch) if m is not None}
        unlabelled = any(LABEL.match(data) is None for data in batch)
        finals = []
        for line in received:
            for leak in LEAKS:
                if leak in line:
                    self.fail(f"a line reveals internals ({leak!r}): {line[:300]!r}; {where}")
            match = FINAL.match(line)
            if match is not None:
                finals.append(match)
                continue
            label = LABEL.match(line.encode())
            if label is not None and label.group(1).decode() not in labels:
                self.fail(f"a line labelled for another request: {line[:300]!r}; {where}")
            bare = line[label.end():] if label is not None else line
            kind = bare.split(":", 1)[0]
            if kind not in EVENT_KINDS and kind not in DATA_KINDS:
                self.fail(f"a line of no kind the contract knows: {line[:300]!r}; {where}")
            if label is None and kind in DATA_KINDS and not unlabelled:
                self.fail(f"a data line without its request's label: {line[:300]!r}; {where}")
        answers: list[str | None] = []
        ended = None
        for data in batch:
            if ended is not None:
                answers.append(None)
                continue
            if len(data) <= MAX_LINE and expected_finals(data) == 0:
                answers.append(None)
                continue
            if not finals:
                if closed and suspended(received):
                    # another user's line suspended the account: the
                    # connection closed before this line was answered
                    answers.append(None)
                    ended = "suspended"
                    continue
                self.fail(f"no final line for {data[:200]!r}; {where}")
            final = finals.pop(0)
            text = final.group(2)
            answers.append(text)
            label = LABEL.match(data)
            wanted = label.group(1).decode() if label else None
            if final.group(1) != wanted:
                self.fail(f"{data[:200]!r} got {final.group(0)[:200]!r}: label {final.group(1)!r}, "
                          f"not {wanted!r}; {where}")
            kind = ":".join(text.split(":")[:3 if text.startswith("ERROR") else 2])
            self.outcomes[kind] = self.outcomes.get(kind, 0) + 1
            if len(data) > MAX_LINE:
                if not text.startswith("ERROR:1113:LINE_TOO_LONG:"):
                    self.fail(f"an over-long line got {text[:200]!r}, not LINE_TOO_LONG; {where}")
                ended = "too long"
            elif text == "OK:QUIT":
                ended = "quit"
            if text.startswith("ERROR:"):
                error = ERROR_LINE.match(text)
                if error is None:
                    self.fail(f"a malformed error line {text[:200]!r}; {where}")
                code, error_name = int(error.group(1)), error.group(2)
                if code == 1301:
                    self.fail(f"INTERNAL_ERROR for {data[:300]!r}; {where}")
                if error_name not in ERROR_NAMES.get(code, ()):
                    self.fail(f"{code} {error_name} is not an error of the contract; {where}")
        if finals:
            self.fail(f"{len(finals)} final line(s) more than requests; {where}")
        if ended in ("too long", "quit") and not closed:
            self.fail(f"the connection stayed open after a {ended} line; {where}")
        if closed and ended is None and not suspended(received):
            self.fail(f"the connection was closed; {where}")
        return answers

    async def recover(self, stream: str, answers: list[str | None], received: list[str], closed: bool) -> None:
        """
        Log the stream's user back in when a line logged the connection
        out, in as someone else, or closed it.
        """
        relogin = closed or any(line.startswith("SYSTEM_MESSAGE:your password") for line in received)
        for final in answers:
            if final is not None and final.startswith(
                ("OK:LOGOUT", "OK:LOGIN:", "OK:REGISTER:", "OK:RESUME:", "ERROR:1001:AUTH_REQUIRED")
            ):
                relogin = True
        if relogin:
            await self.log_in(stream)

    async def fuzz(self, stream: str, rng: random.Random, count: int) -> None:
        """Send C{count} generated lines on a stream, in batches of one to four."""
        while count > 0:
            batch = [self.generate(rng) for _ in range(min(count, rng.choice((1, 1, 2, 4))))]
            count -= len(batch)
            received, closed = await self.exchange(stream, batch)
            answers = self.check(stream, batch, received, closed)
            for final in answers:
                self.learn(final)
            await self.recover(stream, answers, received, closed)

    async def still_serving(self) -> None:
        """A fresh connection gets PING answered."""
        client = await self.connect()
        reply = await client.request("PING:alive")
        if reply != ["OK:PING:alive"]:
            self.fail(f"PING on a fresh connection answered {reply}")

    async def check_invariants(self) -> None:
        """Every promise of docs/protocol.md the stored state can show."""
        db = self.running.server.store.db
        for description, sql in INVARIANTS:
            rows = await db.fetchall(sql)
            if rows:
                self.fail(f"broken invariant: {description}: {rows[:5]}")
        hub = self.running.server.hub
        suspended_ids = {r[0] for r in await db.fetchall("SELECT id FROM users WHERE suspended")}
        for user_id in suspended_ids:
            if hub.connections_of(user_id):
                self.fail(f"broken invariant: suspended user {user_id} still has connections")
        members = set(await db.fetchall(
            "SELECT m.user_id, lower(r.name) FROM room_members m JOIN rooms r ON r.id = m.room_id "
            "WHERE r.kind = 'room'"
        ))
        for user in hub.online_users():
            for connection in hub.connections_of(user.id):
                room = connection.current_room
                if room is not None and not room.startswith("@") and (user.id, room.lower()) not in members:
                    self.fail(f"broken invariant: {user.username}'s current room {room} is not theirs")


_TEXTS = [
    "hello", "hi there", "x" * 4000, "x" * 4001, "\U0001f600" * 4000, "", " ", "\t", "a:b:c", "::",
    "\u202eevil\u202c", "\u200b", "caf\u00e9 \u65e5\u672c", "{sender} {room} {expires} {recipient}",
    "{0}{1}", "%s%s%n", "'; DROP TABLE users;--", "x" * 500, "x" * 501, "@bob hi", "LATEST",
    "{expires}" * 55, "{room}" * 83,
]
SLOT_VALUES = {
    "user": list(USERS) + ["ALICE", "Dave", "nobody", "newuser_1", "ab", "u" * 21, "@bob", "1bob", ""],
    "room": ["hall", "den", "attic", "HALL", "Den", "@bob", "@alice", "@carol", "@dave", "@nobody", "@",
             "lobby", "latest", "nowhere", "ab", "a" * 51, ""],
    "newroom": ["newroom", "another-room", "hall", "Den", "lobby", "LATEST", "a" * 50, "a" * 51, "x_y-z", "ab"],
    "text": _TEXTS,
    "emoji": ["\U0001f44d", "+1", "tada", "a b", "x" * 32, "x" * 33, "", "\U0001f44d" * 33, "\u200b"],
    "role": ["owner", "admin", "moderator", "member", "guest", "ADMIN", "root", ""],
    "server_role": ["admin", "user", "ADMIN", "owner", ""],
    "status": ["pending", "accepted", "declined", "expired", "revoked", "all", "ALL", "bogus", ""],
    "limit": ["1", "2", "50", "200", "201", "500", "501", "0", "", "-1", "9" * 30],
    "privacy": ["public", "private", "PRIVATE", "secret", ""],
    "ref": ["LATEST", "latest", "hall", "den", "attic", "nowhere", "0", ""],
    "scope": ["hall", "den", "attic", "*", "**", "nowhere", ""],
    "users": ["bob", "carol,dave", "dave,dave", "alice", ",", "bob,,carol", "nobody,carol",
              ",".join(f"user{i}" for i in range(21)), "carol,dave,bob,alice"],
    "password": ["password1", "short1", "x" * 129 + "1", "allletters", "12345678", "pass:word1", ""],
    "token": ["ab" * 32, "zz" * 32, "0" * 64, "AB" * 32, "abc", ""],
    "query": ["hello", "\"hello world\"", "-hello", "hello or plans", "!", "&|()", ":*", "'", "x" * 201, ""],
}
"""Values plausible for each kind of argument, so that many lines get past
validation and reach the rules and the database."""

SLOTS = {
    "ACCEPT_INVITATION": ["ref"], "AUDIT_LOG": ["limit"], "BAN_USER": ["room", "user", "text"],
    "CHANGE_PASSWORD": ["password", "password"], "CREATE_ROOM": ["newroom", "privacy"],
    "DECLINE_ALL_INVITATIONS": ["text"], "DECLINE_INVITATION": ["ref", "text"], "DELETE_MESSAGE": ["id"],
    "DM": ["user", "text"], "DM_HISTORY": ["user", "limit", "id"], "EDIT_MESSAGE": ["id", "text"],
    "GET_HISTORY": ["room", "limit", "id"], "GET_REACTIONS": ["id"], "GET_THREAD": ["id"],
    "INVITATION_STATS": ["scope"], "INVITE_AS": ["user", "room", "role", "text"],
    "INVITE_MULTIPLE": ["room", "users", "text"], "INVITE_USER": ["user", "room", "text"],
    "JOIN_ROOM": ["room"], "KICK_USER": ["room", "user", "text"], "LEAVE_ROOM": ["room"],
    "LIST_INVITATIONS": ["status"], "LIST_ROOM_INVITATIONS": ["room", "status"],
    "LIST_SENT_INVITATIONS": ["status"], "LOGIN": ["user", "password"], "MARK_READ": ["room", "id"],
    "PING": ["text"], "QUIT": ["text"], "REACT_MESSAGE": ["id", "emoji"], "REGISTER": ["user", "password"],
    "REPLY_MESSAGE": ["id", "text"], "RESUME": ["token"], "REVOKE_INVITATION": ["id"],
    "ROOM_INFO": ["room"], "ROOM_MEMBERS": ["room"], "SEARCH_MESSAGES": ["query"],
    "SEND_MESSAGE": ["room", "text"], "SET_INVITE_TEMPLATE": ["room", "text"],
    "SET_ROLE": ["room", "user", "role"], "SET_TOPIC": ["room", "text"],
    "SET_USER_ROLE": ["user", "server_role"], "SUSPEND_USER": ["user", "text"],
    "UNBAN_USER": ["room", "user"], "UNREACT_MESSAGE": ["id", "emoji"], "UNSUSPEND_USER": ["user"],
    "VIEW_INVITATION": ["id"], "ACCEPT_ALL_INVITATIONS": [], "HELP": [], "LIST_CONVERSATIONS": [],
    "LIST_ROOMS": [], "LOGOUT": [], "REQUEST_USER_LIST": [], "SERVER_STATS": [], "UNREAD": [], "WHOAMI": [],
}
"""The kind of each argument of each command (commands not listed get
arguments from the whole pool)."""

EVENT_KINDS = {
    "MESSAGE", "REPLY", "MESSAGE_EDITED", "MESSAGE_DELETED", "REACTION_ADDED", "REACTION_REMOVED",
    "PRIVATE_MESSAGE", "USER_JOINED", "USER_LEFT", "USER_KICKED", "USER_BANNED", "ROLE_CHANGED",
    "TOPIC_CHANGED", "INVITATION_RECEIVED", "INVITATION_ACCEPTED", "INVITATION_DECLINED",
    "INVITATION_REVOKED", "INVITATION_EXPIRED", "INVITATION_REMINDER", "PRESENCE", "SYSTEM_MESSAGE",
}
"""The events of the contract (section 4)."""

DATA_KINDS = {
    "HELP", "USER", "ROOM", "MEMBER", "HISTORY", "REACTION", "SEARCH_RESULT", "UNREAD", "CONVERSATION",
    "INVITE_RESULT", "ACCEPT_RESULT", "INVITATION", "INVITATION_EVENT", "STAT", "AUDIT",
}
"""The data lines of replies (section 5)."""

RAW_LINES = [
    b"\xff", b"\xfe\xff", b"PING:\xc3", b"PING:\xc3(", b"SEND_MESSAGE:hall:\xed\xa0\x80", b"\xf4\x90\x80\x80",
    b"\xc0\xaf", b"\xe0\x80\xaf", b"JOIN_ROOM:hall\x80", b"@label=raw1 PING:\xff", b"@label=raw2 WHOAMI\x00",
    b"\x00", b"PING\x00", b"JOIN_ROOM:\x1b[31mhall", b"SEND_MESSAGE:hall:hi\x07", b"hello\x7f",
    b"PING:a\rb", b"\r\r", b"\r", b"", b"@label=ctl SEND_MESSAGE:hall:a\x0bb", b"DM:bob:\xc2\x85",
    b"DM:bob:\xc2\x9f", b"SEND_MESSAGE:hall:tab\there", b"@label=x\x00 PING", b"\t", b"@label=e ",
    b"@label=e \r", b"@label=raw3 CREATE_ROOM:r\xc3\xa9sum\xc3\xa9", b"LOGIN:alice:\xff\xfe",
    b"@label=cr \rPING", b"PING:\x1f",
]
"""Lines no generator of text produces: invalid UTF-8, control bytes, bare CRs."""

BAD_LABELS = [
    "@label= ", "@label=" + "L" * 33 + " ", "@label=a!b ", "@label=abc", "@labelx=1 ", "@LABEL=a ",
    "@label=a\t", "@label=\u00e9 ", "@label=a  ", "@ label=a ", "@", "@label=a:b ", "@label=ok @label=ok ",
]
"""Label tags that are not well-formed: the line is then an ordinary one."""


def expected_finals(data: bytes) -> int:
    """
    How many final lines the contract owes a line (not over-long): none for
    an empty line (after one trailing CR) or a label with nothing after it,
    else one.
    """
    if data.endswith(b"\r"):
        data = data[:-1]
    if data == b"":
        return 0
    label = LABEL.match(data)
    if label is not None and data[label.end():] == b"":
        return 0
    return 1


def user_of(stream: str) -> str:
    """The user a stream (C{alice} or C{alice#2}) is logged in as."""
    return stream.split("#")[0]


def shown(batch: list[bytes]) -> str:
    """A batch of lines, shortened for a failure message."""
    return repr([data[:300] + (b"..." if len(data) > 300 else b"") for data in batch])


def suspended(received: list[str]) -> bool:
    """Whether the account was suspended while the line was answered."""
    return any(line.startswith("SYSTEM_MESSAGE:your account was suspended") for line in received)


INVARIANTS = [
    ("a room without members is deleted",
     "SELECT r.id, r.name FROM rooms r WHERE r.kind = 'room' "
     "AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id)"),
    ("every room has an owner among its members",
     "SELECT r.id, r.name FROM rooms r WHERE r.kind = 'room' "
     "AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.role = 'owner')"),
    ("nobody is a member of a room they are banned from",
     "SELECT b.room_id, b.user_id FROM room_bans b JOIN room_members m USING (room_id, user_id)"),
    ("a direct conversation has exactly its two parties, both plain members",
     "SELECT r.id, count(m.user_id) FROM rooms r LEFT JOIN room_members m ON m.room_id = r.id "
     "WHERE r.kind = 'direct' GROUP BY r.id "
     "HAVING count(m.user_id) <> 2 OR bool_or(m.role IS DISTINCT FROM 'member')"),
    ("nobody is banned from, or invited to, a direct conversation",
     "SELECT r.id FROM rooms r WHERE r.kind = 'direct' AND (EXISTS (SELECT 1 FROM room_bans b "
     "WHERE b.room_id = r.id) OR EXISTS (SELECT 1 FROM invitations i WHERE i.room_id = r.id))"),
    ("at most one pending invitation per room and recipient",
     "SELECT room_id, recipient_id FROM invitations WHERE status = 'pending' "
     "GROUP BY room_id, recipient_id HAVING count(*) > 1"),
    ("a banned user holds no pending invitation to the room",
     "SELECT i.id FROM invitations i JOIN room_bans b ON b.room_id = i.room_id "
     "AND b.user_id = i.recipient_id WHERE i.status = 'pending'"),
    ("nobody invites themself, nor as owner",
     "SELECT id FROM invitations WHERE sender_id = recipient_id OR role = 'owner'"),
    ("an invitation has an answer time exactly when it is no longer pending",
     "SELECT id, status FROM invitations WHERE (status = 'pending') <> (responded_at IS NULL)"),
    ("every invitation's trail starts with 'pending' by its sender, note 'sent'",
     "SELECT i.id FROM invitations i WHERE NOT EXISTS (SELECT 1 FROM invitation_events e "
     "WHERE e.invitation_id = i.id AND e.status = 'pending' AND e.actor_id = i.sender_id "
     "AND e.note = 'sent' AND e.id = (SELECT min(id) FROM invitation_events f WHERE f.invitation_id = i.id))"),
    ("every status change has exactly one trail entry: 'pending' then the status it has now",
     "SELECT i.id, i.status, array_agg(e.status ORDER BY e.id) FROM invitations i "
     "JOIN invitation_events e ON e.invitation_id = i.id GROUP BY i.id, i.status "
     "HAVING array_agg(e.status ORDER BY e.id) <> CASE WHEN i.status = 'pending' THEN ARRAY['pending'] "
     "ELSE ARRAY['pending', i.status] END"),
    ("a reply is in its parent's room, and threads are one level deep",
     "SELECT c.id FROM messages c JOIN messages p ON p.id = c.parent_id "
     "WHERE p.room_id <> c.room_id OR p.parent_id IS NOT NULL"),
    ("a message is 1-4000 characters and not blank",
     "SELECT id FROM messages WHERE length(body) NOT BETWEEN 1 AND 4000 OR btrim(body) = ''"),
    ("a read marker never points past the newest message",
     "SELECT room_id, user_id FROM room_members WHERE last_read_id > (SELECT coalesce(max(id), 0) FROM messages)"),
    ("a suspended user has no live session",
     "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id "
     "WHERE u.suspended AND s.revoked_at IS NULL AND s.expires_at > now()"),
    ("names follow the rules",
     "SELECT 'user', username FROM users WHERE username !~ '^[A-Za-z][A-Za-z0-9_]{2,19}$' UNION ALL "
     "SELECT 'room', name FROM rooms WHERE kind = 'room' AND (name !~ '^[A-Za-z][A-Za-z0-9_-]{2,49}$' "
     "OR lower(name) IN ('lobby', 'latest'))"),
    ("reactions are 1-32 characters without spaces or colons",
     "SELECT message_id, emoji FROM reactions WHERE length(emoji) NOT BETWEEN 1 AND 32 "
     "OR emoji ~ '[[:space:]:]'"),
    ("topics, templates and invitation messages hold at most 500 characters",
     "SELECT 'room', id FROM rooms WHERE length(topic) > 500 OR length(invite_template) > 500 "
     "UNION ALL SELECT 'invitation', id FROM invitations WHERE length(message) > 500"),
]
"""What the stored state must show after any sequence of requests: each
query finds the rows that break the rule (none, when it holds)."""

SNAPSHOT = """
SELECT
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM
    (SELECT id, username, password_hash, server_role, suspended, suspend_reason FROM users) t),
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM (SELECT id, user_id, revoked_at FROM sessions) t),
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM
    (SELECT id, name, kind, privacy, topic, owner_id, invite_template, direct_key FROM rooms) t),
 (SELECT coalesce(json_agg(t ORDER BY t.room_id, t.user_id), '[]') FROM
    (SELECT room_id, user_id, role, last_read_id FROM room_members) t),
 (SELECT coalesce(json_agg(t ORDER BY t.room_id, t.user_id), '[]') FROM
    (SELECT room_id, user_id, banned_by, reason FROM room_bans) t),
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM
    (SELECT id, room_id, sender_id, body, parent_id, edited_at, deleted_at FROM messages) t),
 (SELECT coalesce(json_agg(t ORDER BY t.message_id, t.emoji, t.user_id), '[]') FROM
    (SELECT message_id, emoji, user_id FROM reactions) t),
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM
    (SELECT id, sender_id, recipient_id, room_id, status, role, message, expires_at, responded_at,
            metadata FROM invitations) t),
 (SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM
    (SELECT id, invitation_id, status, actor_id, note FROM invitation_events) t)
"""
"""Everything a request can change, but the audit log, failed-login counts,
last-seen times, delivery marks and reminder marks (which a refused login
or an idle connection may legitimately touch)."""


SNAPSHOT_PARTS = ("users", "sessions", "rooms", "room_members", "room_bans", "messages", "reactions",
                  "invitations", "invitation_events")
"""The tables of L{SNAPSHOT}, in order."""


def difference(before: tuple, after: tuple) -> str:
    """What changed between two snapshots, table by table."""
    changes = []
    for table, old, new in zip(SNAPSHOT_PARTS, before, after):
        if old != new:
            gone = [row for row in old if row not in new]
            added = [row for row in new if row not in old]
            changes.append(f"{table}: removed {gone[:3]}, added {added[:3]}")
    return "; ".join(changes)


DEFAULT_SEED = 20261121
"""The seed of an ordinary run, so that the suite is repeatable."""


def seed_for_run() -> int:
    """
    The seed: C{LAIRCHAT_FUZZ_SEED} as a number, a fresh one for
    C{LAIRCHAT_FUZZ_SEED=random}, else L{DEFAULT_SEED}.
    """
    given = os.environ.get("LAIRCHAT_FUZZ_SEED", "")
    if given == "random":
        return random.SystemRandom().randrange(2**32)
    return int(given) if given else DEFAULT_SEED


class FuzzEndToEndTests(TestCase):
    """Generated hostile lines against the real server."""

    timeout = 240

    async def world(self) -> World:
        """A running server with the world built; the seed is printed."""
        seed = seed_for_run()
        print(f"fuzz seed {seed} (LAIRCHAT_FUZZ_SEED={seed} replays it)")
        running = await start_server(self, admins=("alice",))
        world = World(self, running, seed)
        for value in world.pool:
            for leak in LEAKS:
                self.assertNotIn(leak, value, "the value pool must not hold what only a leak would")
        await world.build()
        return world

    async def test_concurrent_lines(self):
        """
        Two connections of each of the four users send generated lines at
        once, in pipelined batches: every line gets its one
        final line, never 1301, never an internal detail; afterwards a fresh
        connection is served and the stored state holds the invariants.
        """
        world = await self.world()
        streams = [*USERS, *(f"{name}#2" for name in USERS)]
        for stream in streams[len(USERS):]:
            await world.log_in(stream)
        per_stream = CONCURRENT_LINES // len(streams)
        runs = [
            Deferred.fromCoroutine(world.fuzz(stream, random.Random(f"{world.seed}:{stream}"), per_stream))
            for stream in streams
        ]
        await gatherResults(runs, consumeErrors=True).addErrback(lambda f: f.value.subFailure)
        self.assertEqual(world.requests, per_stream * len(streams))
        await world.still_serving()
        await world.check_invariants()
        print("outcomes:", sorted(world.outcomes.items(), key=lambda kv: -kv[1]))

    async def test_refusals_change_nothing(self):
        """
        Generated lines sent one at a time by a random user of the four:
        every line refused with an C{ERROR} left every stored row as it was
        and sent no event to anyone.
        """
        world = await self.world()
        db = world.running.server.store.db
        hub = world.running.server.hub
        rng = random.Random(f"{world.seed}:sequential")
        refused = 0
        before = await db.fetchone(SNAPSHOT)
        for _ in range(SEQUENTIAL_LINES):
            name = rng.choice(USERS)
            data = world.generate(rng)
            delivered = hub.delivered
            received, closed = await world.exchange(name, [data])
            [final] = world.check(name, [data], received, closed)
            world.learn(final)
            after = await db.fetchone(SNAPSHOT)
            if final is not None and final.startswith("ERROR:"):
                refused += 1
                if after != before:
                    world.fail(f"{name}'s {data[:200]!r} was refused ({final}) but changed "
                               f"{difference(before, after)}")
                if hub.delivered != delivered and not closed:
                    world.fail(f"{name}'s {data[:200]!r} was refused ({final}) but sent "
                               f"{hub.delivered - delivered} event(s)")
            await world.recover(name, [final], received, closed)
            await world.settle([final])
            before = await db.fetchone(SNAPSHOT)
        self.assertGreater(refused, SEQUENTIAL_LINES // 3)
        await world.still_serving()
        await world.check_invariants()
        print("outcomes:", sorted(world.outcomes.items(), key=lambda kv: -kv[1]))

