# -*- test-case-name: tests.test_wire -*-
"""
The lairchat wire format, with no I/O: parse a client line into a
L{Request}, split its arguments, and render replies and events into lines.

A line is framed as bytes first (by the protocol), then decoded here.  The
grammar is PROTOCOL.md sections 1-3:

    [@label=<label> ]<COMMAND>[:<arg>]...

Rendering never escapes: every field a client can send has already been
refused if it holds a control character, and the last field of a line may
hold colons.
"""

import re
import string

from attrs import frozen

from lairchat import events
from lairchat.errors import ChatError, InvalidCharacters, InvalidEncoding, InvalidFormat
from lairchat.models import Message
from lairchat.validation import has_control_characters

LABEL_PATTERN = re.compile(r"@label=([A-Za-z0-9._-]{1,32}) (.*)\Z", re.DOTALL)
"""A well-formed label tag and the rest of the line."""

_RAW_LABEL = re.compile(rb"@label=([A-Za-z0-9._-]{1,32}) ")
"""A well-formed label tag at the start of a line's bytes."""

_ASCII_UPPER = str.maketrans(string.ascii_lowercase, string.ascii_uppercase)
"""Upper-cases ASCII letters only (Unicode would fold C{pıng} to C{PING})."""


@frozen
class Request:
    """
    One client line, parsed.

    @ivar label: the C{@label=} tag's value, or L{None}.
    @ivar name: the text before the first C{:} (or the whole line), as sent.
    @ivar rest: the text after the first C{:}, or L{None} when there is none.
    @ivar text: the whole line after the label, as sent (a chat message when
        C{name} is not a command).
    """

    label: str | None
    name: str
    rest: str | None
    text: str

    @property
    def command(self) -> str:
        """
        The command name with its ASCII letters upper-cased (commands are
        case-insensitive, and ASCII: no other letter folds into one).
        """
        return self.name.translate(_ASCII_UPPER)


def decode_line(data: bytes) -> str:
    """
    Decode one framed line: strip one trailing CR, decode UTF-8, refuse
    control characters.

    @raise InvalidEncoding: the bytes are not UTF-8.
    @raise InvalidCharacters: the line holds a control character.
    """
    if data.endswith(b"\r"):
        data = data[:-1]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidEncoding("the line is not valid UTF-8") from None
    if has_control_characters(text):
        raise InvalidCharacters("control characters are not allowed")
    return text


def raw_label(data: bytes) -> str | None:
    """
    The label of a line refused before it could be parsed (not UTF-8,
    holding control characters, or too long), read from its bytes: the
    well-formed tag at its start, or L{None}.  The refusal is then answered
    under it, like every reply to a labelled request.
    """
    match = _RAW_LABEL.match(data)
    return match.group(1).decode("ascii") if match else None


def parse_text(text: str) -> Request | None:
    """
    Parse one decoded line into a L{Request}; L{None} for an empty line.
    """
    label = None
    match = LABEL_PATTERN.match(text)
    if match is not None:
        label, text = match.group(1), match.group(2)
    if text == "":
        return None
    name, colon, rest = text.partition(":")
    return Request(label, name, rest if colon else None, text)


def parse_line(data: bytes) -> Request | None:
    """
    Parse one framed line of bytes: L{decode_line} then L{parse_text}.

    @raise ChatError: the line is not valid UTF-8 or holds control characters.
    """
    return parse_text(decode_line(data))


def split_arguments(rest: str | None, minimum: int, maximum: int, syntax: str) -> list[str]:
    """
    Split a request's arguments on C{:} up to C{maximum} of them; the last
    takes the rest of the line verbatim.

    @param rest: L{Request.rest}.
    @param minimum: the fewest arguments the command takes.
    @param maximum: the most arguments the command takes.
    @param syntax: the command's syntax, quoted in the error message.
    @raise InvalidFormat: too few or too many arguments.
    """
    if rest is None:
        arguments: list[str] = []
    elif maximum == 0:
        raise InvalidFormat(f"too many arguments; usage: {syntax}")
    else:
        arguments = rest.split(":", maximum - 1)
    if len(arguments) < minimum:
        raise InvalidFormat(f"too few arguments; usage: {syntax}")
    return arguments


def _field(value: object) -> str:
    """
    Render one field: booleans as 0/1, None as the empty string, and line
    breaks (which no validated field holds) as spaces.
    """
    if value is None:
        return ""
    if value is True:
        return "1"
    if value is False:
        return "0"
    text = str(value)
    if "\r" in text or "\n" in text:
        text = text.replace("\r", " ").replace("\n", " ")
    return text


def render(kind: str, *fields: object) -> str:
    """
    Render a data line, an event or an OK line: C{KIND:f1:f2...}, with no
    line terminator.
    """
    return ":".join([kind, *(_field(f) for f in fields)])


def render_ok(command: str, *fields: object) -> str:
    """
    Render the final line of a successful request: C{OK:<COMMAND>:...}.
    """
    return render("OK", command, *fields)


def render_error(error: ChatError) -> str:
    """
    Render the final line of a refused request: C{ERROR:<code>:<NAME>:<msg>}.
    """
    return render("ERROR", error.code, error.name, error.message)


def with_label(label: str | None, line: str) -> str:
    """
    Prefix a reply line with the request's label tag, if it had one.
    """
    if label is None:
        return line
    return f"@label={label} {line}"



def _room_name(room: events.RoomRef, viewer_id: int) -> str:
    """A room as the viewer calls it: its name, or C{@<the other party>}."""
    if room.is_direct:
        return "@" + room.other_party(viewer_id)
    return room.name


def _event_fields(event: events.Event, viewer_id: int) -> tuple | None:
    """The kind and fields of an event's line (PROTOCOL.md section 4), or L{None}."""
    e = event
    if isinstance(e, events.MessageSent):
        return "MESSAGE", _room_name(e.room, viewer_id), e.message_id, e.sender, e.ts, e.text
    if isinstance(e, events.ReplySent):
        return "REPLY", _room_name(e.room, viewer_id), e.message_id, e.parent_id, e.sender, e.ts, e.text
    if isinstance(e, events.DirectMessageSent):
        return "PRIVATE_MESSAGE", e.sender, e.recipient, e.message_id, e.ts, e.text
    if isinstance(e, events.MessageEdited):
        return "MESSAGE_EDITED", _room_name(e.room, viewer_id), e.message_id, e.editor, e.ts, e.text
    if isinstance(e, events.MessageDeleted):
        return "MESSAGE_DELETED", _room_name(e.room, viewer_id), e.message_id, e.by
    if isinstance(e, events.ReactionAdded):
        return "REACTION_ADDED", _room_name(e.room, viewer_id), e.message_id, e.user, e.emoji
    if isinstance(e, events.ReactionRemoved):
        return "REACTION_REMOVED", _room_name(e.room, viewer_id), e.message_id, e.user, e.emoji
    if isinstance(e, events.UserJoined):
        return "USER_JOINED", e.room.name, e.user
    if isinstance(e, events.UserLeft):
        return "USER_LEFT", e.room.name, e.user
    if isinstance(e, events.UserKicked):
        return "USER_KICKED", e.room.name, e.user, e.by, e.reason
    if isinstance(e, events.UserBanned):
        return "USER_BANNED", e.room.name, e.user, e.by, e.reason
    if isinstance(e, events.RoleChanged):
        return "ROLE_CHANGED", e.room.name, e.user, e.role, e.by
    if isinstance(e, events.TopicChanged):
        return "TOPIC_CHANGED", e.room.name, e.by, e.topic
    if isinstance(e, events.InvitationReceived):
        return "INVITATION_RECEIVED", e.invitation_id, e.sender, e.room, e.role, e.expires_ms, e.message
    if isinstance(e, events.InvitationAccepted):
        return "INVITATION_ACCEPTED", e.invitation_id, e.user, e.room
    if isinstance(e, events.InvitationDeclined):
        return "INVITATION_DECLINED", e.invitation_id, e.user, e.room
    if isinstance(e, events.InvitationRevoked):
        return "INVITATION_REVOKED", e.invitation_id, e.room, e.by
    if isinstance(e, events.InvitationExpired):
        return "INVITATION_EXPIRED", e.invitation_id, e.room
    if isinstance(e, events.InvitationReminder):
        return "INVITATION_REMINDER", e.invitation_id, e.room, e.expires_ms
    if isinstance(e, events.PresenceChanged):
        return "PRESENCE", e.user, "online" if e.online else "offline"
    if isinstance(e, events.AccountSuspended):
        return "SYSTEM_MESSAGE", f"your account was suspended{': ' + e.reason if e.reason else ''}"
    if isinstance(e, events.Notice):
        return "SYSTEM_MESSAGE", e.text
    if isinstance(e, events.SessionsRevoked):
        return "SYSTEM_MESSAGE", "your password was changed; log in again"
    return None


def render_event(event: events.Event, viewer_id: int) -> str | None:
    """
    The line an event is shown as to the user C{viewer_id}, or L{None} for
    an event that is never shown (it only keeps the server's memory current).
    """
    parts = _event_fields(event, viewer_id)
    return None if parts is None else render(*parts)


def event_variant(event: events.Event, viewer_id: int) -> str:
    """
    What the line of an event depends on besides the event: the name of a
    direct conversation, which each party sees differently.  Two viewers
    with the same variant get the same line, so it is rendered once.
    """
    room = getattr(event, "room", None)
    if isinstance(room, events.RoomRef) and room.is_direct:
        return room.other_party(viewer_id)
    return ""


def help_line(command: object) -> str:
    """One C{HELP} line: C{HELP:<name>:<syntax>:<summary>} of an L{lairchat.interfaces.ICommand}."""
    return render("HELP", command.name, command.syntax, command.summary)


def history_line(name: str, message: Message) -> str:
    """
    One C{HISTORY} line:
    C{HISTORY:<room>:<id>:<sender>:<ts>:<parent_id or 0>:<edited 0|1>:<text>}.
    """
    return render(
        "HISTORY", name, message.id, message.sender, message.created_ms, message.parent_id, message.edited,
        message.text,
    )
