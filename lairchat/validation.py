# -*- test-case-name: tests.test_validation -*-
"""
The field rules of PROTOCOL.md, in one place, with no I/O.

Each validator takes the raw argument text and returns the value the
command uses, or raises the L{ChatError} the client should read.  Every
command validates through these functions, so one rule serves every caller.
"""

import re

from lairchat.errors import InvalidCharacters, InvalidFormat, InvalidInput, InvalidLength

USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{2,19}\Z")
ANY_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,49}\Z")
"""The looser account names an operator may create (IRC nicks such as C{bar-1a2b})."""
GUEST_NICK = re.compile(r"[A-Za-z\[\]\\`_^{|}][A-Za-z0-9\[\]\\`_^{|}-]{0,29}\Z")
"""An IRC guest's nick: IRC's rule (RFC 2812, C{-} included), up to 30 characters."""
ROOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{2,49}\Z")
RESERVED_ROOM_NAMES = frozenset({"lobby", "latest"})
ROLES = ("owner", "admin", "moderator", "member", "guest")
"""Room roles, highest first."""
SERVER_ROLES = ("admin", "user")
INVITATION_STATUSES = ("pending", "accepted", "declined", "expired", "revoked")

PASSWORD_MIN = 8
PASSWORD_MAX = 128
ANY_PASSWORD_MAX = 1024
"""The longest password an operator may set outside the policy (in characters)."""
MESSAGE_MAX = 4000
TOPIC_MAX = 500
REASON_MAX = 500
EMOJI_MAX = 32
MAX_ID = 2**63 - 1


_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
"""Every control character (Unicode category Cc) except TAB."""


def has_control_characters(text: str) -> bool:
    """
    Whether C{text} holds a control character other than TAB.
    """
    return _CONTROL.search(text) is not None


def _no_controls(value: str, what: str) -> None:
    """Refuse control characters in any field."""
    if has_control_characters(value):
        raise InvalidCharacters(f"{what} contains control characters")


def username(value: str) -> str:
    """
    A username: 3-20 characters, a letter then letters, digits or C{_}.
    """
    _no_controls(value, "username")
    if not 3 <= len(value) <= 20:
        raise InvalidLength("a username has 3 to 20 characters")
    if not USERNAME.match(value):
        raise InvalidInput("a username starts with a letter and holds only letters, digits and _")
    return value


def guest_nick(value: str) -> str:
    """
    An IRC guest's nick (C{--irc-guests}): IRC's rule, 1-30 characters, a
    letter or one of C{[]\\`_^{|}} first, then those, digits or C{-}.
    Only IRC guests are named so; line-protocol accounts keep L{username}.
    """
    if not GUEST_NICK.match(value):
        raise InvalidInput("a nick has 1 to 30 letters, digits or []\\`_^{|}-, and starts with no digit or -")
    return value


def any_username(value: str) -> str:
    """
    An account name an operator may create outside the protocol's rule
    (C{lairchat-admin set-password --any-name}): 1-50 characters, a letter
    then letters, digits, C{_} or C{-}.  Never a colon, a space or a
    control character, which would break the line protocol or IRC.
    """
    _no_controls(value, "username")
    if not 1 <= len(value) <= 50:
        raise InvalidLength("a username has 1 to 50 characters")
    if not ANY_USERNAME.match(value):
        raise InvalidInput("a username starts with a letter and holds only letters, digits, _ and -")
    return value


def room_name(value: str) -> str:
    """
    A room name: 3-50 characters, a letter then letters, digits, C{_} or
    C{-}; never C{lobby} or C{latest}.
    """
    _no_controls(value, "room name")
    if not 3 <= len(value) <= 50:
        raise InvalidLength("a room name has 3 to 50 characters")
    if not ROOM_NAME.match(value):
        raise InvalidInput("a room name starts with a letter and holds only letters, digits, _ and -")
    if value.lower() in RESERVED_ROOM_NAMES:
        raise InvalidInput(f"{value!r} is reserved and cannot name a room")
    return value


def password(value: str) -> str:
    """
    A password: 8-128 characters with at least one letter and one digit.
    """
    _no_controls(value, "password")
    if not PASSWORD_MIN <= len(value) <= PASSWORD_MAX:
        raise InvalidLength(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if not any(c.isalpha() for c in value) or not any(c.isdigit() for c in value):
        raise InvalidInput("a password holds at least one letter and one digit")
    return value


def any_password(value: str) -> str:
    """
    A password an operator sets outside the policy (C{lairchat-admin
    set-password --any-password}, for test suites whose passwords follow
    no rule): 1-L{ANY_PASSWORD_MAX} characters, no control characters;
    anything else goes (short, letters only, non-ASCII).
    """
    _no_controls(value, "password")
    if not 1 <= len(value) <= ANY_PASSWORD_MAX:
        raise InvalidLength(f"a password has 1 to {ANY_PASSWORD_MAX} characters")
    return value


def text(value: str, what: str = "message", maximum: int = MESSAGE_MAX, minimum: int = 1) -> str:
    """
    Free text (a message, a topic, a reason): C{minimum}-C{maximum}
    characters, no control characters.  Messages must not be blank.
    """
    _no_controls(value, what)
    if len(value) > maximum or len(value) < minimum:
        raise InvalidLength(f"a {what} has {minimum} to {maximum} characters")
    if minimum > 0 and not value.strip():
        raise InvalidInput(f"a {what} cannot be blank")
    return value


def optional_text(value: str | None, what: str, maximum: int = REASON_MAX) -> str:
    """
    Optional free text (a reason, an invitation message): absent means empty.
    """
    if value is None:
        return ""
    return text(value, what, maximum, minimum=0)


def _to_int(digits: str) -> int:
    """
    The value of a string of ASCII digits; anything over L{MAX_ID} reads as
    C{MAX_ID + 1} (Python refuses to convert more than 4300 digits).
    """
    if len(digits.lstrip("0")) > len(str(MAX_ID)):
        return MAX_ID + 1
    return int(digits)


def identifier(value: str, what: str = "id") -> int:
    """
    A decimal id: 1 to 2**63-1.
    """
    _no_controls(value, what)
    if not value.isascii() or not value.isdigit():
        raise InvalidFormat(f"{what} must be a decimal number")
    number = _to_int(value)
    if not 1 <= number <= MAX_ID:
        raise InvalidInput(f"{what} is out of range")
    return number


def count(value: str, what: str = "limit", minimum: int = 1, maximum: int = 500) -> int:
    """
    A small positive count (a history limit, an audit-log limit).
    """
    _no_controls(value, what)
    if not value.isascii() or not value.isdigit():
        raise InvalidFormat(f"{what} must be a decimal number")
    number = _to_int(value)
    if not minimum <= number <= maximum:
        raise InvalidInput(f"{what} must be between {minimum} and {maximum}")
    return number


def ip_address(value: str) -> str:
    """
    An IPv4 or IPv6 address, in its canonical text form (an IPv4-mapped
    IPv6 address as its IPv4 address).
    """
    import ipaddress

    _no_controls(value, "address")
    try:
        ip = ipaddress.ip_address(value.strip())
    except ValueError:
        raise InvalidFormat("address must be an IPv4 or IPv6 address") from None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)


def choice(value: str, options: tuple[str, ...], what: str) -> str:
    """
    One of a fixed set of lower-case words (a role, a status, a privacy).
    """
    _no_controls(value, what)
    lowered = value.lower()
    if lowered not in options:
        raise InvalidInput(f"{what} must be one of: {', '.join(options)}")
    return lowered


def role(value: str) -> str:
    """A room role: owner, admin, moderator, member or guest."""
    return choice(value, ROLES, "role")


def role_rank(name: str) -> int:
    """
    The rank of a room role: higher is more powerful (owner 4 ... guest 0).
    """
    return len(ROLES) - 1 - ROLES.index(name)


def emoji(value: str) -> str:
    """
    A reaction: 1-32 characters, no spaces, colons or control characters.
    """
    _no_controls(value, "emoji")
    if not 1 <= len(value) <= EMOJI_MAX:
        raise InvalidLength(f"a reaction has 1 to {EMOJI_MAX} characters")
    if any(c.isspace() or c == ":" for c in value):
        raise InvalidInput("a reaction holds no spaces or colons")
    return value
