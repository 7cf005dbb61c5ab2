# -*- test-case-name: tests.test_fuzz_irc -*-
"""
Property tests of L{lairchat.irc.protocol.IRCProtocol}: arbitrary bytes and
structurally plausible IRC lines (random tags, sources, commands of the
command table in any case and unknown ones, parameters of every shape,
over-long lines, invalid UTF-8, NULs, bare CRs, empty lines), delivered in
arbitrary pieces to one connection on a L{StringTransport}, over the
store double of L{tests.test_protocol} (no account logs in: what needs the
database is fuzzed end to end in L{tests.test_fuzz_irc_e2e}).

Whatever arrives: nothing is logged as a failure (no traceback), every line
written is a well-formed IRC line from the server (or its service) with a
numeric, a C{FAIL} or a normal reply, no longer than IRC allows; the
connection still answers a C{PING} afterwards, unless IRC says it closes
(C{QUIT}, a failed C{PASS}), and it is closed only then, after an C{ERROR}.
"""

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from lairchat.irc.commands import CommandTable
from lairchat.irc.message import MAX_BODY, MalformedMessage, parse
from lairchat.irc.service import SERVICE_NICK
from lairchat.plugins import load_commands
from tests.test_irc_protocol import SERVER, IRCConnection

COMMANDS = sorted(name[len("irc_"):] for name in dir(CommandTable) if name.startswith("irc_"))
"""Every IRC command the server answers."""

NORMAL_REPLIES = frozenset({
    "PONG", "CAP", "AUTHENTICATE", "NOTICE", "ERROR", "NICK", "JOIN", "PART", "PRIVMSG", "TOPIC", "KICK",
    "MODE", "INVITE", "BATCH", "ACK", "MARKREAD",
})
"""What a reply may be besides a numeric and C{FAIL}."""

SOURCES = (SERVER, f"{SERVICE_NICK}!{SERVICE_NICK}@{SERVER}")
"""Who the server's lines come from: the server, or its service."""

USER_SOURCE = re.compile(rf"([^!@ ]+)!\1@{re.escape(SERVER)}\Z")
"""The mask of a user (the client itself, after a C{NICK})."""

PARAMS = [
    "", " ", ":", "::", "*", "0", "-1", "+", "-", "#", "##", "#a", "#ab", "#abc", "#lounge", "#LOUNGE", "&x", "+x",
    "#" + "c" * 49, "#" + "c" * 50, "#" + "c" * 51, "#bad name", "#a,#b", "#a,,#b", ",", "#\u00e9t\u00e9", "lounge",
    "alice", "ALICE", "bob", "a", "9lives", "-dash", "[]\\`_^{|}", "n" * 20, "n" * 21, "n" * 30, "n" * 31,
    "x" * 300, SERVICE_NICK, SERVICE_NICK.lower(), "nick!user@host", "*!*@*", "nick!*@*", "LS", "302", "REQ",
    "LIST", "END", "ACK", "NAK", "sasl", "echo-message", "-echo-message", "bogus-cap", "PLAIN", "EXTERNAL",
    "+b", "-b", "b", "+o", "+i", "+bbbb", "o", "=", "AAAA", "AGFsaWNlAHNlY3JldA==", "A" * 400, "A" * 401,
    "HELP", "WHOAMI", "LOGIN:alice:x", "QUIT", "SEARCH_MESSAGES:hi", "@label=x PING:1", "PING:\x07",
    "\x01ACTION waves\x01", "\x01VERSION\x01", "\x02bold\x02", "\x0304red", "\U0001f44d", "\u202e", "%s", "{0}",
    "'; DROP TABLE users;--", "9" * 30, "alice:password", ":alice:correct horse 9",
]
"""Parameter values: channels, nicks, masks, CAP and SASL words, service requests, and odd text."""

TAG_KEYS = ["msgid", "time", "label", "+draft/reply", "+x", "batch", "a/b", "k" * 40, "v.x/+y"]
BAD_TAG_KEYS = ["-", "", "=", "+", "a b", "\u00e9"]
TAG_VALUES = ["", "v", "\\", "\\s\\:\\\\", "\\x", "x" * 100, "\u00e9", "a=b"]

characters = st.sampled_from(list(" :#&,*!@=+-_|[]\\aZ09\u00e9\x01\x02\x07\t")) | st.characters(
    blacklist_categories=("Cs",), blacklist_characters="\r\n\0")
"""Characters of parameters: IRC's own punctuation often, any other now and then."""

text = st.sampled_from(PARAMS) | st.text(alphabet=characters, max_size=12)
"""A parameter's text (which may hold a space: then it can only be a trailing one)."""

trailing = st.lists(text, min_size=2, max_size=3).map(" ".join)
"""A trailing parameter of several words."""

tag_items = st.lists(st.tuples(st.sampled_from(TAG_KEYS), st.sampled_from(TAG_VALUES)), min_size=1, max_size=3)
tags = st.one_of(
    st.just(""), st.just(""),
    tag_items.map(lambda items: "@" + ";".join(f"{k}={v}" if v else k for k, v in items) + " "),
    st.tuples(tag_items, st.sampled_from(BAD_TAG_KEYS)).map(
        lambda pair: "@" + ";".join([f"{k}={v}" for k, v in pair[0]] + [pair[1]]) + " "),
)
"""Mostly no tags; else a tag section, well-formed or with a bad key."""

sources = st.sampled_from(["", "", "", ":alice ", ":x!y@z ", ": ", ":" + "s" * 50 + " ", "::: "])
"""A source prefix (mostly none)."""


def cased(name: str, flips: list[bool]) -> str:
    """A command with some letters lower-cased."""
    return "".join(c.lower() if flip else c for c, flip in zip(name, flips + [False] * len(name)))


known_commands = st.builds(cased, st.sampled_from(COMMANDS), st.lists(st.booleans(), max_size=12))
commands = st.one_of(
    known_commands, known_commands, known_commands,
    st.sampled_from(["FOO", "PRIVMSGX", "001", "9", "CHATHISTORY", "TAGMSG", "KILL", "SQUIT", "STATS"]),
)
"""A command: one of the table's in any case, or one it does not have."""

irc_lines = st.builds(
    lambda tag, source, command, middle, trailing, spaces: (
        tag + source + command
        + "".join(" " * spaces + p for p in middle)
        + ("" if trailing is None else " :" + trailing)
    ).encode("utf-8"),
    tags,
    sources,
    commands,
    st.lists(text.filter(lambda p: p and " " not in p and not p.startswith(":")), max_size=4),
    st.none() | text | trailing,
    st.integers(1, 2),
)
"""Structurally plausible IRC lines."""

special_lines = st.sampled_from([
    b"", b"\r", b"\r\r", b" ", b":", b"@", b"@ PING x", b": PING", b"PING\x00x", b"PRIVMSG #a :\xff\xfe",
    b"\xc3", b"NICK \xc0\xaf", b"PING :a\rb", b"\rPING x", b"PRIVMSG #a :" + b"x" * 600,
    b"@" + b"t" * 5000 + b" PING x", b"@+a=" + b"v" * 4000 + b" PING :t", b"PING " + b"y" * 20000,
    b"JOIN #a,#b,#c,#d,#e,#f,#g,#h,#i,#j,#k", b"PRIVMSG " + SERVICE_NICK.encode() + b" :" + b"HELP",
])
"""Lines no generator of text makes: bad bytes, NULs, bare CRs, lines over every limit."""

streams = st.lists(
    st.one_of(irc_lines, special_lines, st.binary(max_size=60)),
    max_size=10,
).flatmap(lambda lines: st.lists(st.sampled_from([b"\r\n", b"\n"]), min_size=len(lines), max_size=len(lines)).map(
    lambda ends: b"".join(line + end for line, end in zip(lines, ends))))
"""Bytes: IRC lines, odd lines and arbitrary bytes, each ended by CR LF or LF."""


class Failures:
    """Collects the failures logged while it listens."""

    def __init__(self) -> None:
        self.found: list[Any] = []

    def __call__(self, event: dict) -> None:
        """Keep a logged failure."""
        if event.get("log_failure") is not None:
            self.found.append(event["log_failure"])


def connection(register: bool) -> IRCConnection:
    """An IRC connection on the real command plugins, registered (not logged in) or fresh."""
    irc = IRCConnection()
    irc.server.registry.update(load_commands())
    if register:
        irc.send("NICK fuzzer")
        irc.send("USER f 0 * :Fuzzer")
        irc.lines()
    return irc


class HostileInputTests(SynchronousTestCase):
    """Hostile bytes against one IRC connection."""

    def check_output(self, data: bytes, output: bytes) -> list:
        """Every line written is a well-formed IRC line of an allowed kind; the parsed lines."""
        self.assertTrue(output == b"" or output.endswith(b"\r\n"), (data, output[-200:]))
        found = []
        for raw in output.split(b"\r\n")[:-1]:
            line = raw.decode("utf-8")
            try:
                written = parse(line)
            except MalformedMessage as error:
                self.fail(f"{line!r} is no IRC line ({error}); sent {data!r}")
            body = raw.split(b" ", 1)[1] if raw.startswith(b"@") else raw
            self.assertLessEqual(len(body) + 2, MAX_BODY, (line, data))
            command = written.command
            if command not in ("ERROR", "AUTHENTICATE"):  # these two are sent without a source
                self.assertTrue(written.source in SOURCES or USER_SOURCE.match(written.source or ""), (line, data))
            self.assertTrue(command.isdigit() and len(command) == 3 or command == "FAIL" or command in NORMAL_REPLIES,
                            (line, data))
            if command == "FAIL":
                self.assertNotEqual(written.params[1], "INTERNAL_ERROR", (line, data))
            found.append(written)
        return found

    @settings(max_examples=1000)
    @given(streams, st.booleans(), st.data())
    def test_hostile_bytes(self, data, register, draw):
        """
        Delivered in any pieces, no bytes make a traceback or an ill-formed
        line; the connection answers a PING afterwards unless it was told
        to close (QUIT, a failed PASS), and closes only then, after ERROR.
        """
        failures = Failures()
        globalLogPublisher.addObserver(failures)
        try:
            irc = connection(register)
            cuts = sorted(draw.draw(st.lists(st.integers(0, len(data)), max_size=4)))
            for a, b in zip([0, *cuts], [*cuts, len(data)]):
                irc.protocol.dataReceived(data[a:b])
            irc.protocol.dataReceived(b"\r\nPING :sentinel\r\n")
        finally:
            globalLogPublisher.removeObserver(failures)
        self.assertEqual(failures.found, [], data)
        written = self.check_output(data, irc.transport.value())
        closing = [m for m in written if m.command == "ERROR"]
        if irc.transport.disconnecting:
            self.assertTrue(closing, data)
            self.assertIs(written[-1], closing[-1], data)
            told = any(m.command == "464" for m in written) or "Quit" in closing[-1].params[0]
            self.assertTrue(told, (data, closing))
        else:
            self.assertEqual(closing, [], data)
            self.assertEqual((written[-1].command, written[-1].params[-1]), ("PONG", "sentinel"), data)

    def test_echoed_words(self):
        """
        A word a reply repeats that cannot be a middle parameter is C{*}, and
        a long one is cut; the connection goes on (these once stalled it).
        """
        irc = connection(register=True)
        irc.send("NICK :a b")
        irc.send("CAP :")
        irc.send("NICK " + "x" * 400)
        irc.send("PING :after")
        replies = [parse(line) for line in irc.lines()]
        self.assertEqual([(m.command, m.params[1]) for m in replies[:2]], [("432", "*"), ("410", "*")])
        self.assertEqual((replies[2].command, replies[2].params[1]), ("432", "x" * 64))
        self.assertEqual((replies[3].command, replies[3].params[-1]), ("PONG", "after"))
