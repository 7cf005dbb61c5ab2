"""
Tests for L{lairchat.wire}: parsing client lines and rendering server lines.

Properties are checked with hypothesis (synchronously: there is no I/O in
the module under test); the label edge cases of PROTOCOL.md section 2 are
spelled out as examples.
"""

import sys
import unicodedata

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat.errors import (
    ChatError,
    InvalidCharacters,
    InvalidEncoding,
    InvalidFormat,
    LineTooLong,
)
from lairchat.wire import (
    Request,
    has_control_characters,
    parse_line,
    parse_text,
    render,
    render_error,
    render_ok,
    split_arguments,
    with_label,
)

LABELS = st.from_regex(r"[A-Za-z0-9._-]{1,32}", fullmatch=True)
"""Every well-formed label."""

NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,30}", fullmatch=True)
"""Command names as clients spell them (in any case)."""

_PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t")
"""Every character a field may hold: anything but controls (TAB allowed)."""

FIELDS = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t",
                                        exclude_characters=":"))
"""A field that is not last: no colon."""

LAST_FIELDS = st.text(alphabet=_PRINTABLE)
"""The last field of a line: colons allowed."""

CONTROLS = st.characters(categories=("Cc",), exclude_characters="\t")
"""The characters every field refuses."""

ALL_CONTROLS = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cc"]
"""Every character of Unicode category Cc, TAB included."""


class RoundTripTests(SynchronousTestCase):
    """
    What L{render} and L{with_label} write, L{parse_line} and
    L{split_arguments} read back unchanged.
    """

    @given(label=st.none() | LABELS, name=NAMES, fields=st.lists(FIELDS, max_size=5), last=st.none() | LAST_FIELDS)
    def test_render_then_parse(self, label, name, fields, last):
        """
        A rendered line parses to its label, its command name, and its
        arguments, where only the last argument holds colons.
        """
        arguments = fields + ([] if last is None else [last])
        line = with_label(label, render(name, *arguments))
        request = parse_line(line.encode("utf-8"))
        self.assertEqual(
            request,
            Request(label, name, ":".join(arguments) if arguments else None, render(name, *arguments)),
        )
        self.assertEqual(request.command, name.upper())
        count = len(arguments)
        self.assertEqual(split_arguments(request.rest, count, count, "SYNTAX"), arguments)

    @given(label=st.none() | LABELS, name=NAMES, fields=st.lists(FIELDS, max_size=5), last=st.none() | LAST_FIELDS)
    def test_crlf_is_the_same_line(self, label, name, fields, last):
        """
        A line ending in one CR (telnet's CRLF, framed on LF) parses as the
        same line without it.
        """
        arguments = fields + ([] if last is None else [last])
        data = with_label(label, render(name, *arguments)).encode("utf-8")
        self.assertEqual(parse_line(data + b"\r"), parse_line(data))

    @given(code_class=st.sampled_from(ChatError.__subclasses__() + [LineTooLong, InvalidEncoding]),
           message=LAST_FIELDS)
    def test_error_line_fields(self, code_class, message):
        """
        An C{ERROR} line splits back into its code, its NAME and its message,
        colons in the message included.
        """
        error = code_class(message)
        request = parse_line(render_error(error).encode("utf-8"))
        self.assertEqual(request.command, "ERROR")
        self.assertEqual(split_arguments(request.rest, 3, 3, "ERROR"), [str(error.code), error.name, message])


class AnyBytesTests(SynchronousTestCase):
    """
    L{parse_line} is total: whatever bytes a client sends, it answers a
    L{Request}, L{None}, or a L{ChatError}, never any other exception.
    """

    @given(st.binary(max_size=400)
           | st.builds(lambda t: t.encode("utf-8"), st.text(max_size=200))
           | st.builds(lambda l, t: b"@label=" + l + t, st.binary(max_size=40), st.binary(max_size=80)))
    def test_total(self, data):
        """
        Any byte string parses or is refused with C{1114}; a parsed request
        keeps the line intact (name, optional rest) and its name holds no
        colon.
        """
        try:
            request = parse_line(data)
        except ChatError as error:
            self.assertIsInstance(error, InvalidCharacters)
            self.assertEqual(error.code, 1114)
            return
        if request is None:
            return
        self.assertIsInstance(request, Request)
        self.assertNotIn(":", request.name)
        self.assertEqual(request.text, request.name if request.rest is None else f"{request.name}:{request.rest}")
        if request.label is None:
            self.assertTrue(data.decode("utf-8").rstrip("\r").endswith(request.text))

    @given(prefix=st.text(max_size=50), bad=st.sampled_from([b"\xff", b"\x80", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82"]),
           suffix=st.text(max_size=50))
    def test_invalid_utf8(self, prefix, bad, suffix):
        """
        Bytes that are not UTF-8 (a stray continuation byte, an overlong
        form, an encoded surrogate, a truncated sequence) anywhere in a line
        are refused with C{1114 INVALID_ENCODING}, before any other check.
        """
        data = prefix.encode("utf-8") + bad + suffix.encode("utf-8")
        error = self.assertRaises(InvalidEncoding, parse_line, data)
        self.assertEqual((error.code, error.name), (1114, "INVALID_ENCODING"))


class ControlCharacterTests(SynchronousTestCase):
    """
    Control characters (Unicode category Cc) other than TAB are refused
    anywhere in a line; TAB and every other character are not.
    """

    @given(prefix=LAST_FIELDS, control=CONTROLS, suffix=LAST_FIELDS.filter(bool), cr=st.booleans())
    def test_refused_anywhere(self, prefix, control, suffix, cr):
        """
        A control character anywhere in a line, label and command included,
        is refused with C{1114 INVALID_CHARACTERS}, with or without a
        trailing CR.
        """
        data = (prefix + control + suffix).encode("utf-8") + (b"\r" if cr else b"")
        error = self.assertRaises(InvalidCharacters, parse_line, data)
        self.assertEqual((error.code, error.name), (1114, "INVALID_CHARACTERS"))

    @given(LAST_FIELDS)
    def test_printable_accepted(self, text):
        """
        A line of anything but control characters (TAB allowed) is never
        refused.
        """
        request = parse_line(text.encode("utf-8"))
        if request is not None:
            self.assertIsInstance(request, Request)

    @given(LAST_FIELDS)
    def test_one_cr_only(self, text):
        """
        Only one trailing CR is stripped: a second one is a control
        character.
        """
        self.assertRaises(InvalidCharacters, parse_line, text.encode("utf-8") + b"\r\r")

    def test_every_control_character(self):
        """
        L{has_control_characters} is true for each of the 65 characters of
        category Cc except TAB, and false for TAB and for line and paragraph
        separators (which are not Cc).
        """
        self.assertEqual(len(ALL_CONTROLS), 65)
        for character in ALL_CONTROLS:
            self.assertEqual(has_control_characters(f"a{character}b"), character != "\t", repr(character))
        for character in ["\u2028", "\u2029", "\u200b", "\ufeff", " "]:
            self.assertFalse(has_control_characters(character), repr(character))

    def test_nul_byte(self):
        """
        A NUL byte is refused.
        """
        self.assertRaises(InvalidCharacters, parse_line, b"PING:a\x00b")

    def test_tab_kept(self):
        """
        A TAB is kept in the argument it is in.
        """
        self.assertEqual(parse_line(b"PING:a\tb"), Request(None, "PING", "a\tb", "PING:a\tb"))


class LabelTests(SynchronousTestCase):
    """
    The C{@label=} tag: 1-32 of C{[A-Za-z0-9._-]} and a space; anything else
    that starts with C{@} is an ordinary line.
    """

    def test_label(self):
        """
        A well-formed tag is taken off the line.
        """
        self.assertEqual(parse_text("@label=a1 PING:x"), Request("a1", "PING", "x", "PING:x"))

    def test_mention_is_ordinary(self):
        """
        C{@bob hi} is an ordinary line (a chat message mentioning bob).
        """
        self.assertEqual(parse_text("@bob hi"), Request(None, "@bob hi", None, "@bob hi"))

    def test_longest_label(self):
        """
        A 32-character label is a label.
        """
        label = "a" * 32
        self.assertEqual(parse_text(f"@label={label} PING"), Request(label, "PING", None, "PING"))

    def test_label_too_long(self):
        """
        C{@label=} with 33 characters is an ordinary line.
        """
        line = "@label=" + "a" * 33 + " PING"
        self.assertEqual(parse_text(line), Request(None, line, None, line))

    def test_empty_label(self):
        """
        C{@label=} with no characters is an ordinary line.
        """
        self.assertEqual(parse_text("@label= PING"), Request(None, "@label= PING", None, "@label= PING"))

    def test_label_bad_character(self):
        """
        A label with a character outside C{[A-Za-z0-9._-]} is no label.
        """
        for line in ["@label=a/b PING", "@label=a:b PING", "@label=é PING", "@label=a\tb PING"]:
            request = parse_text(line)
            self.assertIsNone(request.label, line)
            self.assertEqual(request.text, line)

    def test_label_without_space(self):
        """
        A tag not followed by a space is no tag.
        """
        self.assertEqual(parse_text("@label=a1"), Request(None, "@label=a1", None, "@label=a1"))
        self.assertEqual(parse_text("@label=a1:PING").label, None)

    def test_label_every_allowed_character(self):
        """
        Letters, digits, C{.}, C{_} and C{-} may make up a label.
        """
        self.assertEqual(parse_text("@label=Az09._- PING").label, "Az09._-")

    def test_labelled_empty_line(self):
        """
        A label followed by nothing is an empty line, ignored like one.
        """
        self.assertIsNone(parse_text("@label=a1 "))

    def test_label_then_ordinary_line(self):
        """
        What follows a label is parsed as any line: a command name, or text.
        """
        self.assertEqual(parse_text("@label=x hello there: all"),
                         Request("x", "hello there", " all", "hello there: all"))


class LineTests(SynchronousTestCase):
    """
    Example lines: empty, case, colons.
    """

    def test_empty(self):
        """
        An empty line (or a bare CR) is nothing to answer.
        """
        self.assertIsNone(parse_line(b""))
        self.assertIsNone(parse_line(b"\r"))

    def test_case_insensitive(self):
        """
        The command is the name upper-cased; the name is kept as sent.
        """
        request = parse_line(b"join_room:general")
        self.assertEqual((request.name, request.command, request.rest), ("join_room", "JOIN_ROOM", "general"))

    def test_non_ascii_names_do_not_fold_to_commands(self):
        """
        Only ASCII letters fold to upper case: a word with a dotless i or a
        long s is not the command it upper-cases to in Unicode (it is a
        chat message).
        """
        self.assertNotEqual(parse_line("pıng".encode()).command, "PING")
        self.assertNotEqual(parse_line("ſend_message:x".encode()).command, "SEND_MESSAGE")

    def test_trailing_colon(self):
        """
        C{PING:} has one empty argument; C{PING} has none.
        """
        self.assertEqual(parse_line(b"PING:").rest, "")
        self.assertIsNone(parse_line(b"PING").rest)


class SplitArgumentsTests(SynchronousTestCase):
    """
    L{split_arguments}: on C{:} up to the arity, the last argument takes the
    rest, too few is C{1112}.
    """

    @given(rest=st.none() | LAST_FIELDS, minimum=st.integers(0, 5), extra=st.integers(0, 3))
    def test_arity(self, rest, minimum, extra):
        """
        The arguments are at most C{maximum}, at least C{minimum} or an
        C{InvalidFormat} naming the usage; they join back to the line, and
        only the last one holds colons.
        """
        maximum = minimum + extra
        try:
            arguments = split_arguments(rest, minimum, maximum, "USAGE:<x>")
        except InvalidFormat as error:
            self.assertEqual(error.code, 1112)
            self.assertIn("USAGE:<x>", error.message)
            available = 0 if rest is None else rest.count(":") + 1
            self.assertTrue(available < minimum or (maximum == 0 and rest is not None))
            return
        self.assertTrue(minimum <= len(arguments) <= maximum)
        if rest is None:
            self.assertEqual(arguments, [])
            return
        self.assertEqual(":".join(arguments), rest)
        for argument in arguments[:-1]:
            self.assertNotIn(":", argument)
        self.assertEqual(len(arguments), min(maximum, rest.count(":") + 1))

    def test_last_takes_the_rest(self):
        """
        A password holding colons is one argument.
        """
        self.assertEqual(split_arguments("alice:pass:with:colons", 2, 2, "LOGIN"), ["alice", "pass:with:colons"])

    def test_too_few(self):
        """
        Too few arguments is C{1112} with the usage.
        """
        error = self.assertRaises(InvalidFormat, split_arguments, "alice", 2, 2, "LOGIN:<user>:<password>")
        self.assertEqual(error.message, "too few arguments; usage: LOGIN:<user>:<password>")
        self.assertRaises(InvalidFormat, split_arguments, None, 1, 1, "RESUME:<token>")

    def test_none_allowed(self):
        """
        A command with no arguments refuses any, even an empty one.
        """
        self.assertEqual(split_arguments(None, 0, 0, "WHOAMI"), [])
        error = self.assertRaises(InvalidFormat, split_arguments, "", 0, 0, "WHOAMI")
        self.assertEqual(error.message, "too many arguments; usage: WHOAMI")

    def test_optional(self):
        """
        An optional argument may be absent.
        """
        self.assertEqual(split_arguments(None, 0, 1, "PING[:<token>]"), [])
        self.assertEqual(split_arguments("a:b", 0, 1, "PING[:<token>]"), ["a:b"])


class RenderTests(SynchronousTestCase):
    """
    L{render}, L{render_ok}, L{render_error} and L{with_label}.
    """

    def test_render(self):
        """
        Fields are joined with colons; the last may hold colons.
        """
        self.assertEqual(render("MESSAGE", "general", 12, "alice", 1700, "a: b"),
                         "MESSAGE:general:12:alice:1700:a: b")

    def test_field_values(self):
        """
        Booleans are 0/1, L{None} is empty, line breaks become spaces.
        """
        self.assertEqual(render("X", True, False, None, "a\r\nb"), "X:1:0::a  b")

    def test_ok(self):
        """
        C{OK:<COMMAND>:...}.
        """
        self.assertEqual(render_ok("PING"), "OK:PING")
        self.assertEqual(render_ok("LOGIN", "alice", "t0k"), "OK:LOGIN:alice:t0k")

    def test_error(self):
        """
        C{ERROR:<code>:<NAME>:<message>}, with a specific name when given.
        """
        self.assertEqual(render_error(InvalidFormat("too few")), "ERROR:1112:INVALID_FORMAT:too few")
        self.assertEqual(render_error(LineTooLong("long")), "ERROR:1113:LINE_TOO_LONG:long")
        self.assertEqual(render_error(InvalidFormat("x", name="OTHER")), "ERROR:1112:OTHER:x")

    def test_with_label(self):
        """
        A label prefixes the line with C{@label=<label> }; no label leaves it.
        """
        self.assertEqual(with_label("a1", "OK:PING"), "@label=a1 OK:PING")
        self.assertEqual(with_label(None, "OK:PING"), "OK:PING")
