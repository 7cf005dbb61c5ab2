"""
Tests for L{lairchat.irc.message}: parsing and serializing IRC lines with
IRCv3 message tags.  Round trips are checked with hypothesis; the cases of
the specifications are spelled out as examples.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat.irc.channels import nick_of_mask
from lairchat.irc.message import (
    MAX_BODY,
    MAX_CLIENT_TAGS,
    InputTooLong,
    MalformedMessage,
    Message,
    check_length,
    escape_tag_value,
    parse,
    serialize,
    unescape_tag_value,
)
from lairchat.irc.replies import Numeric

_TEXT = st.characters(exclude_characters="\r\n\0", exclude_categories=("Cs",))
"""Any character a line may hold."""

TAG_KEYS = st.from_regex(r"\+?([a-z0-9.-]{1,10}/)?[A-Za-z0-9-]{1,12}", fullmatch=True)
TAG_VALUES = st.text(alphabet=st.characters(exclude_characters="\0", exclude_categories=("Cs",)), max_size=20)
SOURCES = st.from_regex(r"[A-Za-z0-9_\[\]{}|^`.-]{1,12}(![A-Za-z0-9_~-]{1,10}@[A-Za-z0-9.:-]{1,20})?", fullmatch=True)
COMMANDS = st.one_of(st.from_regex(r"[A-Za-z]{1,12}", fullmatch=True), st.from_regex(r"[0-9]{3}", fullmatch=True))
MIDDLES = st.text(alphabet=st.characters(exclude_characters=" \r\n\0", exclude_categories=("Cs",)), min_size=1,
                  max_size=15).filter(lambda p: not p.startswith(":"))
TRAILINGS = st.text(alphabet=_TEXT, max_size=40)


@st.composite
def messages(draw):
    """Any message that can be written as a line."""
    params = draw(st.lists(MIDDLES, max_size=5))
    if draw(st.booleans()):
        params.append(draw(TRAILINGS))
    tags = draw(st.dictionaries(TAG_KEYS, TAG_VALUES, max_size=4))
    source = draw(st.one_of(st.none(), SOURCES))
    return Message(draw(COMMANDS), tuple(params), source, tags)


class RoundTripTests(SynchronousTestCase):
    """What L{serialize} writes, L{parse} reads back unchanged, and the other way round."""

    @given(messages())
    def test_parse_serialized(self, message):
        """parse(serialize(m)) == m."""
        self.assertEqual(parse(serialize(message)), message)

    @given(messages())
    def test_serialize_parsed(self, message):
        """serialize(parse(x)) == x for every line L{serialize} writes."""
        line = serialize(message)
        self.assertEqual(serialize(parse(line)), line)

    @given(TAG_VALUES)
    def test_tag_escaping(self, value):
        """A tag value survives escaping, and its escaped form holds no space, ';', CR, LF."""
        escaped = escape_tag_value(value)
        self.assertEqual(unescape_tag_value(escaped), value)
        for c in " ;\r\n":
            self.assertNotIn(c, escaped)


class ParseTests(SynchronousTestCase):
    """Lines as the specifications spell them."""

    def test_plain(self):
        """A command and its parameters."""
        self.assertEqual(parse("NICK alice"), Message("NICK", ("alice",)))

    def test_trailing(self):
        """The last parameter after a colon holds spaces and colons."""
        self.assertEqual(parse("PRIVMSG #room :hi there :)"), Message("PRIVMSG", ("#room", "hi there :)")))

    def test_empty_trailing(self):
        """An empty last parameter."""
        self.assertEqual(parse("PRIVMSG #room :"), Message("PRIVMSG", ("#room", "")))

    def test_source_and_tags(self):
        """Tags, then the source."""
        self.assertEqual(
            parse("@msgid=63;time=2023-01-01T00:00:00.000Z :a!b@c PRIVMSG #r :x"),
            Message("PRIVMSG", ("#r", "x"), "a!b@c", {"msgid": "63", "time": "2023-01-01T00:00:00.000Z"}),
        )

    def test_escaped_tags(self):
        """The escapes of the message-tags specification (its examples)."""
        message = parse(r"@a=\:\s\\\r\n;b;c=;+example.com/d=x\y\ :s CMD")
        self.assertEqual(message.tags, {"a": "; \\\r\n", "b": "", "c": "", "+example.com/d": "xy"})

    def test_duplicate_tag(self):
        """A key given twice keeps its last value."""
        self.assertEqual(parse("@a=1;a=2 CMD").tags, {"a": "2"})

    def test_underscore_command(self):
        """A command word may hold underscores (an unknown one is then answered 421, not dropped)."""
        self.assertEqual(parse("NO_SUCH_COMMAND x").command, "NO_SUCH_COMMAND")

    def test_extra_spaces(self):
        """Runs of spaces count as one."""
        self.assertEqual(parse("  USER  a  0 *  :Real Name"), Message("USER", ("a", "0", "*", "Real Name")))

    def test_malformed(self):
        """No command, an empty source or tag section, a bad key, a control: refused."""
        for line in ["", "   ", ":src", ":src ", "@a=1", "@ CMD", ": CMD", ":x :y", "@=1 CMD", "@a b=1 CMD",
                     "CMD\0", "C*D x", "@a;b@c=1 CMD"]:
            with self.assertRaises(MalformedMessage, msg=repr(line)):
                parse(line)

    def test_serialize_refuses(self):
        """A middle parameter that cannot be written is refused."""
        for params in [("a b", "c"), ("", "c"), (":a", "c"), ("a\r\n",)]:
            with self.assertRaises(ValueError, msg=repr(params)):
                serialize(Message("CMD", params))


class LengthTests(SynchronousTestCase):
    """The limits of RFC 1459 and IRCv3 message-tags."""

    def test_body_limit(self):
        """510 bytes (512 with CR LF) are allowed; one more is not."""
        check_length(b"PRIVMSG #r :" + b"x" * (MAX_BODY - 2 - 12))
        with self.assertRaises(InputTooLong):
            check_length(b"PRIVMSG #r :" + b"x" * (MAX_BODY - 1 - 12))

    def test_tags_do_not_count(self):
        """Tags have their own limit: 4094 bytes of tag data."""
        tags = b"@a=" + b"v" * (MAX_CLIENT_TAGS - 2)
        check_length(tags + b" PRIVMSG #r :" + b"x" * 400)
        with self.assertRaises(InputTooLong):
            check_length(tags + b"v PRIVMSG #r :x")


class BanMaskTests(SynchronousTestCase):
    """L{lairchat.irc.channels.nick_of_mask}: a ban mask names one account."""

    def test_masks(self):
        """A bare nick and C{nick!*@*} name the account; wildcards and hosts are refused."""
        self.assertEqual(nick_of_mask("carol"), "carol")
        self.assertEqual(nick_of_mask("carol!*@*"), "carol")
        for mask in ("*!*@*", "carol!carol@host", "car*", "x", "*!*@10.0.0.1"):
            with self.assertRaises(Numeric, msg=mask):
                nick_of_mask(mask)
