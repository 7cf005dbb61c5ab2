"""
Tests for L{lairchat.validation}: the field rules of PROTOCOL.md, each
invalid value refused with the code a client should read.
"""

import string

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat import validation
from lairchat.errors import ChatError, InvalidCharacters, InvalidFormat, InvalidInput, InvalidLength
from lairchat.wire import has_control_characters

ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60)
"""Any text at all, control characters included."""

PRINTABLE = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t")
"""Every character a field may hold."""

USERNAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{2,19}", fullmatch=True)
ROOM_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{2,49}", fullmatch=True).filter(
    lambda name: name.lower() not in ("lobby", "latest")
)

ALLOWED_CODES = {1111, 1112, 1113, 1114}
"""The codes a validator may refuse with."""

VALIDATORS = [
    validation.username,
    validation.room_name,
    validation.password,
    validation.text,
    validation.identifier,
    validation.count,
    validation.role,
    validation.emoji,
    lambda value: validation.optional_text(value, "reason"),
]


def _is_username(value: str) -> bool:
    """The username rule, written out a second way."""
    head, tail = string.ascii_letters, string.ascii_letters + string.digits + "_"
    return 3 <= len(value) <= 20 and value[0] in head and all(c in tail for c in value[1:])


def _is_room_name(value: str) -> bool:
    """The room-name rule, written out a second way."""
    head, tail = string.ascii_letters, string.ascii_letters + string.digits + "_-"
    return (3 <= len(value) <= 50 and value[0] in head and all(c in tail for c in value[1:])
            and value.lower() not in ("lobby", "latest"))


class TotalityTests(SynchronousTestCase):
    """
    Every validator answers a value or a L{ChatError} with a 111x code,
    whatever the text: never another exception (which a client would read
    as C{1301 INTERNAL_ERROR}).
    """

    @given(value=ANY_TEXT | st.integers(4000, 6000).map(lambda n: "7" * n),
           validator=st.sampled_from(VALIDATORS))
    def test_total(self, value, validator):
        """
        A validator returns or raises a L{ChatError} among C{1111}-C{1114};
        a value with a control character is always C{1114}.
        """
        try:
            validator(value)
        except ChatError as error:
            self.assertIn(error.code, ALLOWED_CODES)
            if has_control_characters(value):
                self.assertIsInstance(error, InvalidCharacters)
        else:
            self.assertFalse(has_control_characters(value))

    def test_huge_numbers(self):
        """
        Thousands of digits are out of range (C{1111}), not an internal
        error from Python's limit on integer conversion.
        """
        for validator in (validation.identifier, validation.count):
            error = self.assertRaises(InvalidInput, validator, "9" * 5000)
            self.assertEqual(error.code, 1111)


class UsernameTests(SynchronousTestCase):
    """
    Usernames: 3-20 characters, a letter then letters, digits or C{_}.
    """

    @given(USERNAMES)
    def test_valid(self, name):
        """
        Every name of the form is accepted as it is.
        """
        self.assertEqual(validation.username(name), name)

    @given(ANY_TEXT)
    def test_exactly_the_rule(self, value):
        """
        A value is accepted exactly when it follows the rule.
        """
        try:
            validation.username(value)
        except ChatError:
            self.assertFalse(_is_username(value))
        else:
            self.assertTrue(_is_username(value))

    def test_length(self):
        """
        Too short or too long is C{1113 INVALID_LENGTH}.
        """
        for value in ["", "ab", "a" * 21]:
            error = self.assertRaises(InvalidLength, validation.username, value)
            self.assertEqual((error.code, error.name), (1113, "INVALID_LENGTH"))
        self.assertEqual(validation.username("abc"), "abc")
        self.assertEqual(validation.username("a" * 20), "a" * 20)

    def test_shape(self):
        """
        A leading digit or underscore, a dash, a space or a non-ASCII letter
        is C{1111 INVALID_INPUT}.
        """
        for value in ["1abc", "_abc", "ab-c", "ab c", "abé", "ab.c", "ab:c"]:
            error = self.assertRaises(InvalidInput, validation.username, value)
            self.assertEqual((error.code, error.name), (1111, "INVALID_INPUT"), value)

    def test_control(self):
        """
        A control character is C{1114 INVALID_CHARACTERS}.
        """
        error = self.assertRaises(InvalidCharacters, validation.username, "ab\x00c")
        self.assertEqual((error.code, error.name), (1114, "INVALID_CHARACTERS"))


class RoomNameTests(SynchronousTestCase):
    """
    Room names: 3-50 characters, a letter then letters, digits, C{_} or
    C{-}; C{lobby} and C{latest} are reserved.
    """

    @given(ROOM_NAMES)
    def test_valid(self, name):
        """
        Every name of the form is accepted as it is.
        """
        self.assertEqual(validation.room_name(name), name)

    @given(ANY_TEXT)
    def test_exactly_the_rule(self, value):
        """
        A value is accepted exactly when it follows the rule.
        """
        try:
            validation.room_name(value)
        except ChatError:
            self.assertFalse(_is_room_name(value))
        else:
            self.assertTrue(_is_room_name(value))

    def test_reserved(self):
        """
        C{lobby} and C{latest}, in any case, are C{1111}; names that merely
        contain them are fine.
        """
        for value in ["lobby", "LOBBY", "Latest", "latest"]:
            error = self.assertRaises(InvalidInput, validation.room_name, value)
            self.assertIn("reserved", error.message)
        for value in ["lobby2", "latest-news", "the_lobby"]:
            self.assertEqual(validation.room_name(value), value)

    def test_length(self):
        """
        Too short or too long is C{1113}.
        """
        for value in ["", "ab", "a" * 51]:
            self.assertRaises(InvalidLength, validation.room_name, value)
        self.assertEqual(validation.room_name("a" * 50), "a" * 50)

    def test_shape(self):
        """
        A leading digit or dash, a space, a colon is C{1111}.
        """
        for value in ["1room", "-room", "my room", "ro:om", "röom"]:
            self.assertRaises(InvalidInput, validation.room_name, value)

    def test_control(self):
        """
        A control character is C{1114}.
        """
        self.assertRaises(InvalidCharacters, validation.room_name, "room\x7f")


class PasswordTests(SynchronousTestCase):
    """
    Passwords: 8-128 characters, at least one letter and one digit.
    """

    @given(st.text(alphabet=PRINTABLE, min_size=6, max_size=126), st.sampled_from("aZé"), st.sampled_from("09"))
    def test_valid(self, body, letter, digit):
        """
        Any printable text of the right length with a letter and a digit is
        accepted, colons and spaces included.
        """
        value = letter + body + digit
        self.assertEqual(validation.password(value), value)

    def test_examples(self):
        """
        The README's password is fine; so is one with colons.
        """
        self.assertEqual(validation.password("correct horse 9"), "correct horse 9")
        self.assertEqual(validation.password("a:b:c:d:1"), "a:b:c:d:1")

    def test_length(self):
        """
        Under 8 or over 128 characters is C{1113}.
        """
        self.assertRaises(InvalidLength, validation.password, "abc1234")
        self.assertRaises(InvalidLength, validation.password, "a1" * 64 + "x")
        self.assertEqual(validation.password("abcd1234"), "abcd1234")
        self.assertEqual(validation.password("a1" * 64), "a1" * 64)

    def test_letter_and_digit(self):
        """
        No letter or no digit is C{1111}.
        """
        self.assertRaises(InvalidInput, validation.password, "12345678")
        self.assertRaises(InvalidInput, validation.password, "abcdefgh")
        self.assertRaises(InvalidInput, validation.password, "!!!!----")

    def test_control(self):
        """
        A control character is C{1114}; a TAB is not one.
        """
        self.assertRaises(InvalidCharacters, validation.password, "abcd\n1234")
        self.assertEqual(validation.password("abcd\t1234"), "abcd\t1234")


class TextTests(SynchronousTestCase):
    """
    Free text: 1-4000 characters (by default), not blank, no controls.
    """

    @given(st.text(alphabet=PRINTABLE, min_size=1, max_size=4000).filter(lambda t: t.strip()))
    def test_valid(self, value):
        """
        Any non-blank printable text up to 4000 characters is accepted.
        """
        self.assertEqual(validation.text(value), value)

    def test_bounds(self):
        """
        4000 characters (even 4-byte ones) are fine; 4001 or none are C{1113}.
        """
        self.assertEqual(validation.text("\U0001f600" * 4000), "\U0001f600" * 4000)
        self.assertRaises(InvalidLength, validation.text, "x" * 4001)
        self.assertRaises(InvalidLength, validation.text, "")

    def test_blank(self):
        """
        Only spaces or TABs is C{1111}.
        """
        for value in [" ", "\t", "   \t "]:
            self.assertRaises(InvalidInput, validation.text, value)

    def test_control(self):
        """
        A control character is C{1114}.
        """
        self.assertRaises(InvalidCharacters, validation.text, "hello\x1bworld")

    def test_custom_bounds(self):
        """
        A topic-sized limit applies when given.
        """
        self.assertRaises(InvalidLength, validation.text, "x" * 501, "topic", 500)

    def test_optional(self):
        """
        Optional text: absent or empty is C{""}; too long is C{1113}.
        """
        self.assertEqual(validation.optional_text(None, "reason"), "")
        self.assertEqual(validation.optional_text("", "reason"), "")
        self.assertEqual(validation.optional_text(" ", "reason"), " ")
        self.assertRaises(InvalidLength, validation.optional_text, "x" * 501, "reason")
        self.assertRaises(InvalidCharacters, validation.optional_text, "\x00", "reason")


class NumberTests(SynchronousTestCase):
    """
    Ids (1 to 2**63-1) and counts (1-500 by default): ASCII digits only.
    """

    @given(st.integers(1, validation.MAX_ID))
    def test_identifier_range(self, number):
        """
        Every id in range is accepted, as an int.
        """
        self.assertEqual(validation.identifier(str(number)), number)

    def test_identifier_out_of_range(self):
        """
        0 and 2**63 are C{1111}.
        """
        self.assertRaises(InvalidInput, validation.identifier, "0")
        self.assertRaises(InvalidInput, validation.identifier, str(2**63))
        self.assertEqual(validation.identifier("007"), 7)

    def test_identifier_not_a_number(self):
        """
        Signs, spaces, non-ASCII digits, letters and the empty string are
        C{1112 INVALID_FORMAT}.
        """
        for value in ["", "abc", "-1", "+1", " 1", "1 ", "1.0", "\u0663", "\uff11", "1e3", "0x10"]:
            error = self.assertRaises(InvalidFormat, validation.identifier, value)
            self.assertEqual(error.code, 1112, value)

    @given(st.integers(1, 500))
    def test_count_range(self, number):
        """
        Every count from 1 to 500 is accepted.
        """
        self.assertEqual(validation.count(str(number)), number)

    def test_count_out_of_range(self):
        """
        0 and 501 are C{1111}; other bounds apply when given.
        """
        self.assertRaises(InvalidInput, validation.count, "0")
        self.assertRaises(InvalidInput, validation.count, "501")
        self.assertRaises(InvalidInput, validation.count, "11", "limit", 1, 10)
        self.assertRaises(InvalidFormat, validation.count, "ten")


class ChoiceTests(SynchronousTestCase):
    """
    Roles and other fixed words: case-insensitive, answered in lower case.
    """

    def test_roles(self):
        """
        Each role in any case is accepted, lower-cased.
        """
        for role in validation.ROLES:
            self.assertEqual(validation.role(role.upper()), role)
            self.assertEqual(validation.role(role), role)

    def test_not_a_role(self):
        """
        Anything else is C{1111}, and the message lists the roles.
        """
        for value in ["superuser", "", "owner ", "own"]:
            error = self.assertRaises(InvalidInput, validation.role, value)
            self.assertIn("owner, admin, moderator, member, guest", error.message)

    def test_rank(self):
        """
        Ranks go down from owner to guest.
        """
        ranks = [validation.role_rank(role) for role in validation.ROLES]
        self.assertEqual(ranks, [4, 3, 2, 1, 0])

    def test_choice(self):
        """
        A status is one of the fixed statuses.
        """
        self.assertEqual(validation.choice("Pending", validation.INVITATION_STATUSES, "status"), "pending")
        self.assertRaises(InvalidInput, validation.choice, "open", validation.INVITATION_STATUSES, "status")


class EmojiTests(SynchronousTestCase):
    """
    Reactions: 1-32 characters, no whitespace, colons or controls.
    """

    @given(st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zs", "Zl", "Zp"),
                                          exclude_characters=":\x1c\x1d\x1e\x1f\x85"),
                   min_size=1, max_size=32).filter(lambda t: not any(c.isspace() for c in t)))
    def test_valid(self, value):
        """
        Any such text is accepted as it is.
        """
        self.assertEqual(validation.emoji(value), value)

    def test_examples(self):
        """
        Emoji and shortcodes without colons are fine.
        """
        for value in ["\U0001f44d", "+1", "thumbs_up", "\U0001f468\u200d\U0001f469\u200d\U0001f467"]:
            self.assertEqual(validation.emoji(value), value)

    def test_refused(self):
        """
        Empty or over 32 characters is C{1113}; a space or a colon is
        C{1111}; a control character is C{1114}.
        """
        self.assertRaises(InvalidLength, validation.emoji, "")
        self.assertRaises(InvalidLength, validation.emoji, "x" * 33)
        self.assertRaises(InvalidInput, validation.emoji, "a b")
        self.assertRaises(InvalidInput, validation.emoji, ":+1:")
        self.assertRaises(InvalidInput, validation.emoji, "a\u3000b")
        self.assertRaises(InvalidCharacters, validation.emoji, "a\x00")
