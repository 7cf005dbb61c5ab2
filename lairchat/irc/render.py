# -*- test-case-name: tests.test_irc_render -*-
"""
The core's typed events as IRC lines, for one viewer with one set of
capabilities: the one place the IRC front end says what an event looks
like.

Rooms are channels (C{#<room>}); a user's nick is their username, and their
mask C{nick!nick@<server name>}.  Messages carry the tags C{msgid} (the
message id) and C{time} when the viewer asked for C{message-tags} and
C{server-time}.  Events IRC has a word for become that word (C{PRIVMSG},
C{JOIN}, C{PART}, C{KICK}, C{TOPIC}, C{MODE} for roles and bans, C{INVITE},
C{TAGMSG}, C{AWAY}, C{ACCOUNT}); the IRCv3 capabilities of the viewer
(L{RENDER_CAPS}) decide the forms (C{account} tags, C{extended-join},
reactions as C{TAGMSG}, deletions as C{REDACT}); edits, the rest of
deletions and reactions, invitation answers and server notices become
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
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from lairchat import events
from lairchat.irc.message import Message, message, parse_tags

ROLE_MODES = (("owner", "o", "@"), ("admin", "o", "@"), ("moderator", "h", "%"))
"""
Each room role shown with a channel mode: its mode letter and prefix.
Owners and admins are channel operators (C{o}, C{@}): they ban and set
roles, as IRC operators do, and a channel's founder is its owner, so RFC
clients and bots see the creator as C{@}.  Moderators kick and set topics,
what halfops (C{h}, C{%}) do where they exist.  Members and guests have no
prefix.  Everything that shows roles on IRC reads this table.
"""

MODE_OF = {role: mode for role, mode, _ in ROLE_MODES}
PREFIX_OF = {role: prefix for role, _, prefix in ROLE_MODES}

CHANNEL_MODES = tuple(dict.fromkeys((mode, prefix) for _, mode, prefix in ROLE_MODES))
"""The role modes and their prefixes, highest first, each once: C{(("o", "@"), ("h", "%"))}."""

ISUPPORT_PREFIX = "(" + "".join(m for m, _ in CHANNEL_MODES) + ")" + "".join(p for _, p in CHANNEL_MODES)
"""The C{PREFIX} token of C{005}: C{(oh)@%}."""


def prefixes(role: str | None) -> str:
    """
    Every prefix a member with C{role} holds, highest first (what
    C{multi-prefix} asks for): a member holds one role, so at most one.
    """
    return PREFIX_OF.get(role, "") if role else ""


ACTION_PREFIX = "/me "
"""How an IRC action (C{CTCP ACTION}) is stored as text."""

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)

TAG_CAPS = frozenset({"message-tags", "server-time"})
"""The capabilities that give a line its C{msgid} and C{time} tags (history lines always carry them)."""

RENDER_CAPS = frozenset({"message-tags", "server-time", "account-tag", "account-notify", "extended-join",
                         "away-notify", "draft/message-redaction", "draft/read-marker"})
"""The capabilities that change how an event is rendered."""

REPLY_TAG = "+draft/reply"
"""The client tag naming the message a message (or a reaction) answers."""

REACT_TAG = "+draft/react"
"""The client tag of a reaction (on a C{TAGMSG})."""

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


def parse_time_tag(text: str) -> int:
    """
    Epoch milliseconds of a time as the C{time} tag writes them (ISO 8601
    in UTC, C{2024-01-31T12:00:00.123Z}; finer fractions are cut to the
    millisecond).

    @raise ValueError: not such a time.
    """
    if not text.endswith("Z"):
        raise ValueError(f"not a UTC time: {text!r}")
    moment = datetime.fromisoformat(text[:-1] + "+00:00")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


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


def account_tag(caps: frozenset, nick: str, guest: bool) -> dict:
    """The C{account} tag of a line from C{nick}, for a viewer with C{account-tag}; a guest has none."""
    return {"account": nick} if "account-tag" in caps and not guest else {}


def client_tags(caps: frozenset, section: str) -> dict:
    """The client-only tags of an event (a tag section), for a viewer with C{message-tags}."""
    return parse_tags(section) if section and "message-tags" in caps else {}


def message_command(event: events.Event) -> str:
    """The command a message event is shown with: C{NOTICE} for one sent as a notice, else C{PRIVMSG}."""
    return "NOTICE" if getattr(event, "notice", False) else "PRIVMSG"


def role_modes(room_name: str, nick: str, role: str, previous: str, by_source: str) -> list[Message]:
    """
    The C{MODE} line of a role change from C{previous} to C{role}: the
    previous role's mode taken off, the new one's given (none when both
    roles show as the same mode).  With C{previous} unknown (empty), every
    other role mode is taken off, so a client's prefixes end right whatever
    they were.
    """
    new = MODE_OF.get(role)
    if previous:
        old = MODE_OF.get(previous)
        removed = [old] if old and old != new else []
        added = [new] if new and new != old else []
    else:
        removed = [m for m, _ in CHANNEL_MODES if m != new]
        added = [new] if new else []
    if not removed and not added:
        return []
    modes = ("-" + "".join(removed) if removed else "") + ("+" + "".join(added) if added else "")
    return [message("MODE", channel(room_name), modes, *([nick] * (len(removed) + len(added))), source=by_source)]


def stored_message_event(stored: Any, room: events.RoomRef) -> events.Event:
    """
    A stored message (L{lairchat.models.Message}) of C{room} as the event
    that showed it when it was sent, so history renders as live messages
    do: a reply as L{events.ReplySent}, the rest as
    L{events.MessageSent}, a notice marked so.  An anonymised sender (a
    guest gone) is C{*}.
    """
    sender = stored.sender or "*"
    if stored.parent_id:
        return events.ReplySent(room, stored.id, stored.parent_id, stored.sender_id, sender, stored.created_ms,
                                stored.text, notice=stored.notice)
    return events.MessageSent(room, stored.id, stored.sender_id, sender, stored.created_ms, stored.text,
                              notice=stored.notice)


def markread_line(target: str, ts: int | None, server_name: str) -> Message:
    """C{MARKREAD <target> timestamp=<ts>}: where a read marker is (C{*} for C{ts} L{None}: nowhere)."""
    return message("MARKREAD", target, f"timestamp={time_tag(ts)}" if ts is not None else "*", source=server_name)


def variant(event: events.Event, viewer_id: int, caps: frozenset) -> tuple:
    """
    What an event's lines depend on besides the event: the viewer's
    tag capabilities, and for events addressed to one user or a direct
    conversation, the viewer.  Viewers with the same variant get the same
    lines (rendered once).
    """
    shared = isinstance(event, events.RoomEvent) and not event.room.is_direct
    shared = shared or isinstance(event, (events.AwayChanged, events.GuestLoggedIn, events.UserQuit,
                                          events.UserRenamed))
    return ("irc", caps & RENDER_CAPS, None if shared else viewer_id)


def render_event(event: events.Event, viewer_id: int, viewer_nick: str, server_name: str,
                 caps: frozenset, realname_of: Callable[[int], str | None] | None = None) -> list[Message]:
    """
    The lines that show C{event} to the viewer (whose id and nick are
    given) on a connection with C{caps}; empty when IRC shows nothing.
    C{realname_of} gives the real name of a user connected to this node
    (for C{extended-join}; the nick stands for it otherwise).
    """
    def src(nick: str) -> str:
        return mask(nick, server_name)

    def conversation_target(room: events.RoomRef, author: str) -> str:
        """Where a line in a room goes: its channel; in a direct conversation, the other party's nick."""
        if not room.is_direct:
            return channel(room.name)
        return room.other_party(viewer_id) if author == viewer_nick else viewer_nick

    if isinstance(event, (events.MessageSent, events.ReplySent)):
        tags = message_tags(caps, event.message_id, event.ts)
        tags.update(client_tags(caps, event.client_tags))
        if isinstance(event, events.ReplySent) and "message-tags" in caps:
            tags.setdefault(REPLY_TAG, str(event.parent_id))
        tags.update(account_tag(caps, event.sender, event.guest))
        if event.room.is_direct:
            target = event.room.other_party(viewer_id) if event.sender_id == viewer_id else viewer_nick
        else:
            target = channel(event.room.name)
        return [message(message_command(event), target, irc_text(event.text), source=src(event.sender), tags=tags)]
    if isinstance(event, events.DirectMessageSent):
        tags = message_tags(caps, event.message_id, event.ts)
        tags.update(client_tags(caps, event.client_tags))
        tags.update(account_tag(caps, event.sender, event.guest))
        return [message(message_command(event), event.recipient, irc_text(event.text), source=src(event.sender),
                        tags=tags)]
    if isinstance(event, events.TagsSent):
        if "message-tags" not in caps:
            return []
        tags = {**parse_tags(event.tags), "msgid": event.msgid, **account_tag(caps, event.sender, event.guest)}
        return [message("TAGMSG", conversation_target(event.room, event.sender), source=src(event.sender),
                        tags=tags)]
    if isinstance(event, events.UserJoined):
        if "extended-join" in caps:
            account = "*" if event.guest else event.user
            realname = (realname_of(event.user_id) if realname_of else None) or event.user
            lines = [message("JOIN", channel(event.room.name), account, realname, source=src(event.user))]
        else:
            lines = [message("JOIN", channel(event.room.name), source=src(event.user))]
        if event.away and "away-notify" in caps:
            lines.append(message("AWAY", event.away, source=src(event.user)))
        return lines
    if isinstance(event, events.UserLeft):
        if event.quitting:
            # the guest's one QUIT (UserQuit) said it
            return []
        reason = (event.reason,) if event.reason else ()
        return [message("PART", channel(event.room.name), *reason, source=src(event.user))]
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
        name = channel(event.room.name)
        text = f"{event.by} made {event.user} {event.role} of {name}"
        return [*role_modes(event.room.name, event.user, event.role, event.previous, src(event.by)),
                message("NOTICE", name, text, source=server_name)]
    if isinstance(event, events.AwayChanged):
        if "away-notify" not in caps:
            return []
        return [message("AWAY", *([event.text] if event.text else []), source=src(event.user))]
    if isinstance(event, events.ReadMarkerMoved):
        if "draft/read-marker" not in caps:
            return []
        target = event.room.other_party(viewer_id) if event.room.is_direct else channel(event.room.name)
        return [markread_line(target, event.ts, server_name)]
    if isinstance(event, events.GuestLoggedIn):
        if "account-notify" not in caps:
            return []
        return [message("ACCOUNT", event.account, source=src(event.user))]

    def room_notice(text: str) -> list[Message]:
        room = event.room
        target = (event.room.other_party(viewer_id) if room.is_direct else channel(room.name))
        return [message("NOTICE", target, text, source=server_name)]

    def notice(text: str) -> list[Message]:
        return [message("NOTICE", viewer_nick, text, source=server_name)]

    if isinstance(event, events.MessageEdited):
        return room_notice(f"{event.editor} edited message {event.message_id}: {event.text}")
    if isinstance(event, events.MessageDeleted):
        if "draft/message-redaction" in caps:
            reason = [event.reason] if event.reason else []
            return [message("REDACT", conversation_target(event.room, event.by), str(event.message_id), *reason,
                            source=src(event.by))]
        return room_notice(f"{event.by} deleted message {event.message_id}")
    if isinstance(event, events.ReactionAdded):
        if "message-tags" in caps:
            tags = {REACT_TAG: event.emoji, REPLY_TAG: str(event.message_id),
                    **account_tag(caps, event.user, event.guest)}
            return [message("TAGMSG", conversation_target(event.room, event.user), source=src(event.user),
                            tags=tags)]
        return room_notice(f"{event.user} reacted {event.emoji} to message {event.message_id}")
    if isinstance(event, events.ReactionRemoved):
        return room_notice(f"{event.user} took back {event.emoji} on message {event.message_id}")
    if isinstance(event, events.InvitationReceived):
        text = f"{event.sender} invited you to {channel(event.room)} as {event.role} (invitation {event.invitation_id})"
        if event.message:
            text += f": {event.message}"
        return [message("INVITE", viewer_nick, channel(event.room), source=src(event.sender),
                        tags=account_tag(caps, event.sender, event.guest)), *notice(text)]
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
