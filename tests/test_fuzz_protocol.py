# -*- test-case-name: tests.test_fuzz_protocol -*-
"""
Property tests of L{lairchat.protocol.ChatProtocol}: arbitrary bytes, cut
into lines by LF and delivered in arbitrary pieces, to one connection on a
L{StringTransport} over a store double whose results have already fired.

Whatever arrives: no exception escapes the protocol, every line that is not
empty gets exactly one final C{OK}/C{ERROR} line, in order, carrying its
label when it had a well-formed one, never C{1301}; and the transport is
closed only after an over-long line or C{QUIT}.
"""

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from lairchat.context import Config, ServerContext
from lairchat.events import SessionsRevoked
from lairchat.protocol import ChatFactory
from tests.test_protocol import BASE_COMMANDS, FakePasswords, FakeSessions, FakeStore, FakeUsers, SendMessage

MAX_LINE = 64
"""A small line limit, so that generated lines often go over it."""

LABEL = re.compile(rb"@label=([A-Za-z0-9._-]{1,32}) ")
"""A well-formed label tag at the start of a line."""

FINAL = re.compile(r"(?:@label=([A-Za-z0-9._-]{1,32}) )?((?:OK|ERROR):.*)\Z", re.DOTALL)
"""A final line, with its label if it has one."""

ERROR_LINE = re.compile(r"ERROR:(\d{4}):([A-Z_]+):(.+)\Z", re.DOTALL)
"""The shape of every error line."""


class Users(FakeUsers):
    """The account double, with what RESUME and CHANGE_PASSWORD need too."""

    def touch(self, user_id: int) -> Deferred:
        """Nothing to note."""
        return succeed(None)

    def change_password(self, user: Any, password_hash: str, keep_session: Any, outbox: Any) -> Deferred:
        """Keep the new hash; the other sessions' end is an event, as the real store records it."""
        for key, (known, _) in list(self.users.items()):
            if known.id == user.id:
                self.users[key] = (known, password_hash)
        outbox.events.append(SessionsRevoked(user.id, keep_session))
        return succeed(None)


class Sessions(FakeSessions):
    """The session double, where no token resumes."""

    def resume(self, token: str) -> Deferred:
        """No live session has this token."""
        return succeed(None)

    def revoke_all(self, user_id: int, keep: Any = None) -> Deferred:
        """Nothing else to revoke."""
        return succeed(None)


class Store(FakeStore):
    """The store double of the session and account commands."""

    def __init__(self) -> None:
        super().__init__()
        self.users = Users()
        self.sessions = Sessions()


def registry() -> dict:
    """The session and account commands, and a stand-in for plain lines."""
    names: dict = {}
    for command in [*BASE_COMMANDS, SendMessage()]:
        for name in (command.name, *command.aliases):
            names[name] = command
    return names


COMMAND_NAMES = sorted(registry())

FIELDS = [
    b"", b":", b"::", b"alice", b"ALICE", b"bob", b"correct horse 9", b"password1", b"ab" * 32, b"0" * 64,
    b"x" * 70, b"\xff", b"\xc3", b"\x00", b"\r", b"\t", b" ", b"\x7f", b"\xc2\x85", b"\xe2\x80\xae",
    b"\xf0\x9f\x91\x8d", b"%s", b"{sender}", b"'; DROP TABLE users;--", b"@bob", b"@label=x ", b"9" * 30,
]
"""Argument values: names, passwords, tokens, and bytes no field may hold."""


def cased(name: str, flips: list[bool]) -> bytes:
    """A command name with some letters lower-cased."""
    return "".join(c.lower() if flip else c for c, flip in zip(name, flips + [False] * len(name))).encode()


labels = st.one_of(
    st.just(b""),
    st.from_regex(rb"\A@label=[A-Za-z0-9._-]{1,32} \Z"),
    st.sampled_from([b"@label= ", b"@label=" + b"L" * 33 + b" ", b"@label=a!b ", b"@label=abc", b"@LABEL=a "]),
)
"""No label, a well-formed one, or one that is not (and so is text)."""

command_lines = st.builds(
    lambda label, name, flips, arguments: label + b":".join([cased(name, flips), *arguments]),
    labels,
    st.sampled_from(COMMAND_NAMES),
    st.lists(st.booleans(), max_size=20),
    st.lists(st.one_of(st.sampled_from(FIELDS), st.binary(max_size=12).filter(lambda b: b"\n" not in b)),
             max_size=4),
)
"""Lines naming a command, in any case, with any arguments."""

streams = st.lists(
    st.one_of(command_lines, st.binary(max_size=90), st.sampled_from([b"", b"\r", b"QUIT", b"quit:bye"])),
    max_size=12,
).map(lambda lines: b"\n".join(lines))
"""Bytes: command lines and arbitrary bytes, joined by LF (arbitrary bytes
hold LFs of their own, and the last line may have none)."""


def expected(data: bytes) -> tuple[list[tuple[str | None, str]], bool]:
    """
    What the contract owes a stream of bytes: for each line that gets a
    final line, its label and what it must be (C{"too long"}, C{"any"}); and
    whether the transport ends closed (after an over-long line, or C{QUIT},
    which the test finds in the answer itself).
    """
    *lines, partial = data.split(b"\n")
    owed: list[tuple[str | None, str]] = []
    for line in lines:
        label = LABEL.match(line)
        name = label.group(1).decode() if label else None
        if len(line) > MAX_LINE:
            return owed + [(name, "too long")], True
        bare = line[:-1] if line.endswith(b"\r") else line
        if bare == b"" or (label is not None and bare[label.end():] == b""):
            continue
        owed.append((name, "any"))
    if len(partial) > MAX_LINE:
        label = LABEL.match(partial)
        return owed + [(label.group(1).decode() if label else None, "too long")], True
    return owed, False


NO_BACKLOG_BOUND = 1e9
"""
A flood backlog no generated stream reaches: lines over their budget are
delayed (the test runs the clock on), never cut off.
"""


def connection() -> tuple[Any, StringTransport]:
    """A protocol past its greeting, on a L{StringTransport}."""
    server = ServerContext(
        config=Config(max_line=MAX_LINE, flood_backlog=NO_BACKLOG_BOUND),
        store=Store(),
        clock=Clock(),
        passwords=FakePasswords(),
        registry=registry(),
    )
    protocol = ChatFactory(server).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    transport.clear()
    return protocol, transport


class ArbitraryBytesTests(SynchronousTestCase):
    """Arbitrary bytes against one connection."""

    @settings(max_examples=1000)
    @given(streams, st.data())
    def test_one_final_line_per_line(self, data, draw):
        """
        Delivered in any pieces, every line that is not empty gets exactly
        one well-formed final line, in order, with its label (once the
        clock has run on for the lines over their rate budget); nothing is
        1301; the transport closes only after an over-long line or QUIT.
        """
        protocol, transport = connection()
        cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=4)))
        pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
        for piece in pieces:
            protocol.dataReceived(piece)
        # lines over their rate budget are answered later, not refused
        clock = protocol.server.clock
        def delays():
            return [call for call in clock.getDelayedCalls() if call is not protocol._login_timer]

        while delays():
            clock.advance(max(call.getTime() for call in delays()) - clock.seconds())
        output = transport.value()
        self.assertTrue(output == b"" or output.endswith(b"\r\n"), output)
        lines = output.decode("utf-8").split("\r\n")[:-1]
        finals = [FINAL.match(line) for line in lines]
        finals = [match for match in finals if match is not None]
        owed, closes = expected(data)
        quit_at = next((i for i, m in enumerate(finals) if m.group(2) == "OK:QUIT"), None)
        if quit_at is not None and quit_at < len(owed):
            # QUIT ends the connection: nothing after it is answered
            owed, closes = owed[: quit_at + 1], True
        self.assertEqual(len(finals), len(owed), (data, lines))
        for (label, kind), final in zip(owed, finals):
            self.assertEqual(final.group(1), label, (data, lines))
            text = final.group(2)
            if kind == "too long":
                self.assertTrue(text.startswith("ERROR:1113:LINE_TOO_LONG:"), (data, lines))
            if text.startswith("ERROR:"):
                error = ERROR_LINE.match(text)
                self.assertIsNotNone(error, (data, lines))
                self.assertNotEqual(error.group(1), "1301", (data, lines))
        self.assertEqual(bool(transport.disconnecting), closes, (data, lines))

