# -*- test-case-name: tests.test_irc_message -*-
"""
IRC lines as values: parsing and serializing, with IRCv3 message tags.

A line is C{[@tags ][:source ]COMMAND[ params...][ :trailing]} (RFC 1459,
RFC 2812 and the modern IRC client protocol); tags are
C{key[=value]} pairs separated by C{;}, their values escaped as the IRCv3
message-tags specification says (C{\\:} for C{;}, C{\\s} for a space,
C{\\\\}, C{\\r}, C{\\n}).

Nothing here does I/O.  The limits are the specifications': the part after
the tags holds at most 512 bytes with its CR LF (L{MAX_BODY}); a client's
tags at most 4094 bytes (L{MAX_CLIENT_TAGS}); the tags a server sends at
most 8191 bytes with their C{@} and space (L{MAX_TAGS}).
"""

from typing import Any

from attrs import field, frozen

MAX_BODY = 512
"""Bytes of a line without its tags, CR LF included (RFC 1459 2.3)."""

MAX_CLIENT_TAGS = 4094
"""Bytes of tag data a client may send, without the C{@} and the space (IRCv3 message-tags)."""

MAX_TAGS = 8191
"""Bytes of the tag section a server may send, the C{@} and the space included (IRCv3 message-tags)."""

MAX_LINE = MAX_TAGS + MAX_BODY
"""The longest line read from a client before it is refused unparsed."""

_ESCAPES = {";": "\\:", " ": "\\s", "\\": "\\\\", "\r": "\\r", "\n": "\\n"}
_UNESCAPES = {":": ";", "s": " ", "\\": "\\", "r": "\r", "n": "\n"}


class MalformedMessage(ValueError):
    """A line that is no IRC message (no command, a bad tag key...)."""


class InputTooLong(MalformedMessage):
    """A line over the limits of L{MAX_BODY} or L{MAX_CLIENT_TAGS} (C{417 ERR_INPUTTOOLONG})."""


@frozen
class Message:
    """
    One IRC message.

    @ivar command: the command or three-digit numeric, as written.
    @ivar params: the parameters; only the last may be empty, hold a
        space or start with a colon.
    @ivar source: the prefix without its colon (C{nick!user@host} or a
        server name), or L{None}.
    @ivar tags: tag keys to their unescaped values (C{""} for a tag
        without a value).
    """

    command: str
    params: tuple = field(default=(), converter=tuple)
    source: str | None = None
    tags: dict = field(factory=dict, hash=False)


def escape_tag_value(value: str) -> str:
    """A tag value as written on the wire."""
    return "".join(_ESCAPES.get(c, c) for c in value)


def unescape_tag_value(raw: str) -> str:
    """
    A tag value as read from the wire.  A backslash before any other
    character stands for that character; a lone backslash at the end is
    dropped (IRCv3 message-tags).
    """
    if "\\" not in raw:
        return raw
    out = []
    chars = iter(raw)
    for c in chars:
        if c != "\\":
            out.append(c)
            continue
        following = next(chars, None)
        if following is not None:
            out.append(_UNESCAPES.get(following, following))
    return "".join(out)


def valid_tag_key(key: str) -> bool:
    """
    Whether C{key} is a tag key: an optional C{+} (client-only tag), an
    optional vendor (a host name) and C{/}, then letters, digits and
    hyphens.
    """
    name = key[1:] if key.startswith("+") else key
    vendor, _, name = name.rpartition("/")
    if not name or not all(c.isascii() and (c.isalnum() or c == "-") for c in name):
        return False
    return all(c.isascii() and (c.isalnum() or c in "-.") for c in vendor)


def parse_tags(raw: str) -> dict:
    """
    The tags of a tag section (without its C{@}).  A key given twice keeps
    its last value; empty items are skipped.

    @raise MalformedMessage: a key that is no tag key.
    """
    tags = {}
    for item in raw.split(";"):
        if not item:
            continue
        key, _, value = item.partition("=")
        if not valid_tag_key(key):
            raise MalformedMessage(f"invalid tag key {key!r}")
        tags[key] = unescape_tag_value(value)
    return tags


def serialize_tags(tags: dict) -> str:
    """A tag section without its C{@}: C{key} for an empty value, else C{key=escaped}."""
    return ";".join(key if not value else f"{key}={escape_tag_value(value)}" for key, value in tags.items())


def parse(line: str) -> Message:
    """
    The message of one line (without its CR LF).  Runs of spaces between
    the parts count as one.

    @raise MalformedMessage: no command, an empty source or tag section,
        a bad tag key, or a CR, LF or NUL in the line.
    """
    if any(c in line for c in "\r\n\0"):
        raise MalformedMessage("a line may not hold CR, LF or NUL")
    rest = line
    tags: dict = {}
    if rest.startswith("@"):
        section, _, rest = rest[1:].partition(" ")
        if not section:
            raise MalformedMessage("empty tag section")
        tags = parse_tags(section)
        rest = rest.lstrip(" ")
    source = None
    if rest.startswith(":"):
        source, _, rest = rest[1:].partition(" ")
        if not source:
            raise MalformedMessage("empty source")
        rest = rest.lstrip(" ")
    trailing = None
    if " :" in rest:
        rest, _, trailing = rest.partition(" :")
    elif rest.startswith(":"):
        raise MalformedMessage("no command")
    words = [word for word in rest.split(" ") if word]
    if not words:
        raise MalformedMessage("no command")
    command, params = words[0], words[1:]
    if not (command.isascii() and command.replace("_", "").isalnum()):
        raise MalformedMessage(f"invalid command {command!r}")
    if trailing is not None:
        params.append(trailing)
    return Message(command, tuple(params), source, tags)


def check_length(line: bytes) -> None:
    """
    Refuse a client's line (bytes, without CR LF) over the limits: tag data
    over L{MAX_CLIENT_TAGS} bytes, or the rest over L{MAX_BODY} with its
    CR LF.

    @raise InputTooLong: it is over.
    """
    body = line
    if line.startswith(b"@"):
        section, _, body = line[1:].partition(b" ")
        if len(section) > MAX_CLIENT_TAGS:
            raise InputTooLong(f"tag data over {MAX_CLIENT_TAGS} bytes")
        body = body.lstrip(b" ")
    if len(body) + 2 > MAX_BODY:
        raise InputTooLong(f"line over {MAX_BODY} bytes")


TEXT_PARAMS = {"PRIVMSG": 1, "NOTICE": 1, "TOPIC": 1, "KICK": 2}
"""
Commands whose parameter at this index is free text: written after a
colon even when it need not be, as IRC servers do (some clients count on it).
"""


def serialize(message: Message) -> str:
    """
    The line of a message, without CR LF.  The last parameter is written
    after a colon when it must be (empty, holding a space, or starting
    with a colon), or when it is the text of a command of L{TEXT_PARAMS}.

    @raise ValueError: a parameter that cannot be written (a space or a
        leading colon in one that is not last, an empty one that is not
        last), or a CR, LF or NUL anywhere.
    """
    parts = []
    if message.tags:
        parts.append("@" + serialize_tags(message.tags))
    if message.source is not None:
        parts.append(":" + message.source)
    parts.append(message.command)
    params = list(message.params)
    text_index = TEXT_PARAMS.get(message.command.upper())
    for index, param in enumerate(params):
        if any(c in param for c in "\r\n\0"):
            raise ValueError(f"a parameter may not hold CR, LF or NUL: {param!r}")
        if index == len(params) - 1:
            if not param or " " in param or param.startswith(":") or index == text_index:
                param = ":" + param
        elif not param or " " in param or param.startswith(":"):
            raise ValueError(f"only the last parameter may be empty, hold a space or start with a colon: {param!r}")
        parts.append(param)
    line = " ".join(parts)
    if any(c in line for c in "\r\n\0"):
        raise ValueError("a line may not hold CR, LF or NUL")
    return line


ECHO_MAX = 64
"""Characters of a client's word a reply repeats in a middle parameter (a nick is 30, a channel 52)."""


def echoed(word: str) -> str:
    """
    A word of a client's message as a reply repeats it in a middle
    parameter: C{*} for one that cannot be a middle parameter (empty,
    holding a space, starting with a colon: the client sent it as a
    trailing one), cut to L{ECHO_MAX} characters, so that no reply goes
    over IRC's line length for an over-long word.
    """
    if not word or " " in word or word.startswith(":"):
        return "*"
    return word[:ECHO_MAX]


def message(command: str, *params: Any, source: str | None = None, tags: dict | None = None) -> Message:
    """A L{Message}, its parameters made text (C{message("001", nick, "Welcome")})."""
    return Message(command, tuple(str(p) for p in params), source, dict(tags or {}))
