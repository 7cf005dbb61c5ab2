# -*- test-case-name: tests.test_irc_render -*-
"""
The core's typed events as IRC lines, for one viewer with one set of
capabilities: the one place the IRC front end says what an event looks
like.

Rooms are channels (C{#<room>}); a user's nick is their username, and their
mask C{nick!nick@<server name>}.  Messages carry the tags C{msgid} (the
message id) and C{time} when the viewer asked for C{message-tags} and
C{server-time}.  Events IRC has a word for become that word (C{PRIVMSG},
C{JOIN}, C{PART}, C{KICK}, C{TOPIC}, C{MODE} for roles and bans, C{INVITE});
edits, deletions, reactions, invitation answers and server notices become
C{NOTICE}s; the rest (presence, the memory-only events) is not shown.
A message sent as an IRC C{NOTICE} is a message marked C{notice}, shown
as a C{NOTICE} again; a guest whose connection closed is one C{QUIT}
(L{lairchat.events.UserQuit}), not a C{PART} per room.  See
C{docs/irc.md}.

IRC formatting and C{CTCP ACTION} are mapped at the edge too: an action
is stored as text starting with C{/me } (so line-protocol users read
C{/me waves}) and shown to IRC clients as an action again; other
formatting codes are stripped on the way in (L{plain_text}).
"""

import re
import time

from lairchat import events
from lairchat.irc.message import Message, message

ROLE_MODES = (("owner", "q", "~"), ("admin", "a", "&"), ("moderator", "o", "@"), ("member", "v", "+"))
"""Each room role with a prefix: its channel mode letter and its prefix (a guest has neither)."""

MODE_OF = {role: mode for role, mode, _ in ROLE_MODES}
PREFIX_OF = {role: prefix for role, _, prefix in ROLE_MODES}

ISUPPORT_PREFIX = "(" + "".join(m for _, m, _ in ROLE_MODES) + ")" + "".join(p for _, _, p in ROLE_MODES)
"""The C{PREFIX} token of C{005}: C{(qaov)~&@+}."""

ACTION_PREFIX = "/me "
"""How an IRC action (C{CTCP ACTION}) is stored as text."""

TAG_CAPS = frozenset({"message-tags", "server-time"})
"""The capabilities that change how an event is rendered."""

_FORMATTING = re.compile(r"\x03(\d{1,2}(,\d{1,2})?)?|\x04[0-9a-fA-F]{0,6}(,[0-9a-fA-F]{1,6})?|[\x02\x0f\x11\x16\x1d\x1e\x1f]")


def channel(room_name: str) -> str:
    """The channel of a room."""
    return "#" + room_name


def mask(nick: str, server_name: str) -> str:
    """A user's source prefix: C{nick!nick@server}."""
    return f"{nick}!{nick}@{server_name}"


def ban_mask(nick: str) -> str:
    """The mask a ban on an account shows as: C{nick!*@*}."""
    return f"{nick}!*@*"


def time_tag(ms: int) -> str:
    """Epoch milliseconds as the C{time} tag writes them: C{2024-01-31T12:00:00.123Z}."""
    seconds, millis = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{millis:03d}Z"


def plain_text(text: str) -> str | None:
    """
    An IRC message's text as the core stores it: an action as C{/me ...},
    IRC formatting codes stripped.  L{None} for other CTCP requests and
    replies (C{VERSION}, C{PING}...), which are no chat messages.
    """
    if text.startswith("\x01"):
        body = text[1:]
        if body.endswith("\x01"):
            body = body[:-1]
        command, _, rest = body.partition(" ")
        if command.upper() != "ACTION":
            return None
        text = ACTION_PREFIX + rest
    return _FORMATTING.sub("", text)


def irc_text(text: str) -> str:
    """
    Stored text as an IRC message's text: C{/me ...} as an action; a line
    break (which IRC cannot carry) as a space.
    """
    text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    if text.startswith(ACTION_PREFIX):
        return f"\x01ACTION {text[len(ACTION_PREFIX):]}\x01"
    return text


def message_tags(caps: frozenset, message_id: int | None = None, ts: int | None = None) -> dict:
    """The tags a message carries for a viewer with C{caps}."""
    tags = {}
    if "message-tags" in caps and message_id:
        tags["msgid"] = str(message_id)
    if "server-time" in caps and ts:
        tags["time"] = time_tag(ts)
    return tags


def message_command(event: events.Event) -> str:
    """The command a message event is shown with: C{NOTICE} for one sent as a notice, else C{PRIVMSG}."""
    return "NOTICE" if getattr(event, "notice", False) else "PRIVMSG"


def role_mode(room_name: str, nick: str, role: str, by_source: str) -> Message:
    """
    The C{MODE} line of a role change: every role mode taken off, the new
    one (if any) given, so a client's idea of the prefixes ends right
    whatever it was.
    """
    letters = [mode for _, mode, _ in ROLE_MODES]
    new = MODE_OF.get(role)
    removed = [m for m in letters if m != new]
    modes = "-" + "".join(removed) + (("+" + new) if new else "")
    return message("MODE", channel(room_name), modes, *([nick] * (len(removed) + (1 if new else 0))),
                   source=by_source)


def variant(event: events.Event, viewer_id: int, caps: frozenset) -> tuple:
    """
    What an event's lines depend on besides the event: the viewer's
    tag capabilities, and for events addressed to one user or a direct
    conversation, the viewer.  Viewers with the same variant get the same
    lines (rendered once).
    """
    shared = (isinstance(event, events.RoomEvent) and not event.room.is_direct) \
        or isinstance(event, (events.UserQuit, events.UserRenamed))
    return ("irc", caps & TAG_CAPS, None if shared else viewer_id)


def render_event(event: events.Event, viewer_id: int, viewer_nick: str, server_name: str,
                 caps: frozenset) -> list[Message]:
    """
    The lines that show C{event} to the viewer (whose id and nick are
    given) on a connection with C{caps}; empty when IRC shows nothing.
    """
    def src(nick: str) -> str:
        return mask(nick, server_name)

    if isinstance(event, (events.MessageSent, events.ReplySent)):
        tags = message_tags(caps, event.message_id, event.ts)
        if isinstance(event, events.ReplySent) and "message-tags" in caps:
            tags["+draft/reply"] = str(event.parent_id)
        if event.room.is_direct:
            target = event.room.other_party(viewer_id) if event.sender_id == viewer_id else viewer_nick
        else:
            target = channel(event.room.name)
        return [message(message_command(event), target, irc_text(event.text), source=src(event.sender), tags=tags)]
    if isinstance(event, events.DirectMessageSent):
        tags = message_tags(caps, event.message_id, event.ts)
        return [message(message_command(event), event.recipient, irc_text(event.text), source=src(event.sender),
                        tags=tags)]
    if isinstance(event, events.UserJoined):
        return [message("JOIN", channel(event.room.name), source=src(event.user))]
    if isinstance(event, events.UserLeft):
        if event.quitting:
            # the guest's one QUIT (UserQuit) said it
            return []
        return [message("PART", channel(event.room.name), source=src(event.user))]
    if isinstance(event, events.UserQuit):
        return [message("QUIT", event.reason, source=src(event.user))]
    if isinstance(event, events.UserRenamed):
        return [message("NICK", event.user, source=src(event.old))]
    if isinstance(event, events.UserKicked):
        return [message("KICK", channel(event.room.name), event.user, event.reason or event.by, source=src(event.by))]
    if isinstance(event, events.UserBanned):
        reason = f"banned: {event.reason}" if event.reason else "banned"
        return [message("MODE", channel(event.room.name), "+b", ban_mask(event.user), source=src(event.by)),
                message("KICK", channel(event.room.name), event.user, reason, source=src(event.by))]
    if isinstance(event, events.TopicChanged):
        return [message("TOPIC", channel(event.room.name), event.topic, source=src(event.by))]
    if isinstance(event, events.RoleChanged):
        return [role_mode(event.room.name, event.user, event.role, src(event.by))]

    def room_notice(text: str) -> list[Message]:
        room = event.room
        target = (event.room.other_party(viewer_id) if room.is_direct else channel(room.name))
        return [message("NOTICE", target, text, source=server_name)]

    def notice(text: str) -> list[Message]:
        return [message("NOTICE", viewer_nick, text, source=server_name)]

    if isinstance(event, events.MessageEdited):
        return room_notice(f"{event.editor} edited message {event.message_id}: {event.text}")
    if isinstance(event, events.MessageDeleted):
        return room_notice(f"{event.by} deleted message {event.message_id}")
    if isinstance(event, events.ReactionAdded):
        return room_notice(f"{event.user} reacted {event.emoji} to message {event.message_id}")
    if isinstance(event, events.ReactionRemoved):
        return room_notice(f"{event.user} took back {event.emoji} on message {event.message_id}")
    if isinstance(event, events.InvitationReceived):
        text = f"{event.sender} invited you to {channel(event.room)} as {event.role} (invitation {event.invitation_id})"
        if event.message:
            text += f": {event.message}"
        return [message("INVITE", viewer_nick, channel(event.room), source=src(event.sender)), *notice(text)]
    if isinstance(event, events.InvitationAccepted):
        return notice(f"{event.user} accepted your invitation to {channel(event.room)}")
    if isinstance(event, events.InvitationDeclined):
        return notice(f"{event.user} declined your invitation to {channel(event.room)}")
    if isinstance(event, events.InvitationRevoked):
        return notice(f"{event.by} revoked your invitation to {channel(event.room)}")
    if isinstance(event, events.InvitationExpired):
        return notice(f"the invitation {event.invitation_id} to {channel(event.room)} expired")
    if isinstance(event, events.InvitationReminder):
        return notice(f"your invitation {event.invitation_id} to {channel(event.room)} expires soon")
    if isinstance(event, events.Notice):
        return notice(event.text)
    if isinstance(event, events.AccountSuspended):
        return notice(f"this account is suspended: {event.reason}" if event.reason else "this account is suspended")
    if isinstance(event, events.SessionsRevoked):
        return notice("your password was changed elsewhere: this session has ended")
    return []
