# -*- test-case-name: tests.test_events -*-
"""
What happened, as values: one attrs class per kind of event.

An event carries its fields as Python values (ids, names, epoch
milliseconds), says who it is for (L{Audience}: the members of a room, a
set of users, or both) and where it came from (L{Origin}: the node and the
connection whose request caused it, which gets its C{OK} instead).  No
event is ever text: each front end renders it for each of its
connections.  Events cross nodes through the events table as JSON
(L{encode} and L{decode}).

Some events change what a node keeps in memory (who is a member of which
room: L{MEMBERSHIP}); some act on the connections of one user (a
suspension closes them, a password change logs out other sessions).  A
few are never shown to a client at all (L{RoomCreated},
L{ConversationOpened}); they exist to keep every node's memory current.
"""

import json
from typing import Any

from attrs import NOTHING, field, fields, frozen


@frozen
class Origin:
    """
    Where an event was caused: a node, and a connection on it (0 for no
    connection, e.g. the invitation sweep).
    """

    node: str
    connection: int = 0


@frozen
class Audience:
    """
    Who an event is for: every member of C{room_id} (when set) and of each
    room of C{more_rooms}, and every user in C{user_ids}, but never the
    user C{but}.
    """

    room_id: int | None = None
    user_ids: frozenset = frozenset()
    more_rooms: frozenset = frozenset()
    but: int | None = None

    def rooms(self) -> frozenset:
        """Every room whose members the event is for."""
        if self.room_id is None:
            return self.more_rooms
        return self.more_rooms | {self.room_id}


@frozen
class RoomRef:
    """
    The room an event is about, as every front end needs to name it: a
    room by its name; a direct conversation (no name) by its two parties,
    each of whom calls it after the other.

    @ivar parties: for a direct conversation, C{((user_id, username), ...)}.
    """

    id: int
    name: str = ""
    parties: tuple = ()

    @property
    def is_direct(self) -> bool:
        """Whether this is a direct conversation."""
        return bool(self.parties)

    def other_party(self, user_id: int) -> str:
        """In a direct conversation, the username of the party who is not C{user_id}."""
        for party_id, username in self.parties:
            if party_id != user_id:
                return username
        return ""


class Event:
    """
    What every event class shares: L{audience} and an C{origin} field
    (keyword-only, last).  Each subclass is a frozen attrs class.
    """

    origin: Origin | None

    def audience(self) -> Audience:
        """Who the event is for."""
        raise NotImplementedError(type(self).__name__)


def _origin() -> Any:
    """The C{origin} field every event ends with."""
    return field(default=None, kw_only=True)


class UserEvent(Event):
    """An event for one user, its C{user_id}."""

    user_id: int

    def audience(self) -> Audience:
        """The user."""
        return Audience(None, frozenset({self.user_id}))


class RecipientEvent(Event):
    """An event for the recipient of an invitation, its C{recipient_id}."""

    recipient_id: int

    def audience(self) -> Audience:
        """The recipient."""
        return Audience(None, frozenset({self.recipient_id}))


class RoomEvent(Event):
    """An event for every member of its C{room} (and, for some, one more user)."""

    room: RoomRef

    def audience(self) -> Audience:
        """The room's members."""
        return Audience(self.room.id)


class MembershipEvent(RoomEvent):
    """
    An event that changes who is a member of C{room}: C{user_id} joins
    (L{joins} true) or leaves.  The user hears of it too, member or not.
    """

    user_id: int
    joins = True

    def audience(self) -> Audience:
        """The room's members and the user."""
        return Audience(self.room.id, frozenset({self.user_id}))


# Messages ------------------------------------------------------------------


@frozen
class MessageSent(RoomEvent):
    """
    A new message in a room or direct conversation.

    @ivar guest: whether the sender is an IRC guest (no account).
    @ivar client_tags: the client-only tags the sender attached (IRC
        C{+tag}s, as a tag section without its C{@}); relayed, never stored.
    @ivar notice: it was sent as an IRC C{NOTICE}: stored and shown as a
        message, and shown to IRC clients as a C{NOTICE} again.
    """

    room: RoomRef
    message_id: int
    sender_id: int
    sender: str
    ts: int
    text: str
    guest: bool = False
    client_tags: str = ""
    notice: bool = False
    origin: Origin | None = _origin()


@frozen
class ReplySent(RoomEvent):
    """
    A reply in a thread (C{parent_id} is the thread's root); C{guest},
    C{client_tags} and C{notice} as for L{MessageSent}.
    """

    room: RoomRef
    message_id: int
    parent_id: int
    sender_id: int
    sender: str
    ts: int
    text: str
    guest: bool = False
    client_tags: str = ""
    notice: bool = False
    origin: Origin | None = _origin()


@frozen
class DirectMessageSent(Event):
    """
    A direct message (C{DM}, or C{SEND_MESSAGE} to C{@user}): for the
    recipient and the sender's other connections.  C{guest},
    C{client_tags} and C{notice} as for L{MessageSent}.
    """

    room_id: int
    message_id: int
    sender_id: int
    sender: str
    recipient_id: int
    recipient: str
    ts: int
    text: str
    guest: bool = False
    client_tags: str = ""
    notice: bool = False
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """Both parties."""
        return Audience(None, frozenset({self.sender_id, self.recipient_id}))


@frozen
class MessageEdited(RoomEvent):
    """A message's new text."""

    room: RoomRef
    message_id: int
    editor: str
    ts: int
    text: str
    origin: Origin | None = _origin()


@frozen
class MessageDeleted(RoomEvent):
    """A message left history (C{reason}: why, as its deleter said; may be empty)."""

    room: RoomRef
    message_id: int
    by: str
    reason: str = ""
    origin: Origin | None = _origin()


@frozen
class _Reaction(RoomEvent):
    """What both reaction events hold (C{guest}: whether the user is an IRC guest, with no account)."""

    room: RoomRef
    message_id: int
    user: str
    emoji: str
    guest: bool = False
    origin: Origin | None = _origin()


@frozen
class ReactionAdded(_Reaction):
    """A user reacted to a message."""


@frozen
class ReactionRemoved(_Reaction):
    """A user took back a reaction."""


# Rooms ---------------------------------------------------------------------


@frozen
class RoomCreated(MembershipEvent):
    """A room was created with its owner as its one member (not shown)."""

    room: RoomRef
    user_id: int
    origin: Origin | None = _origin()


@frozen
class ConversationOpened(RoomEvent):
    """
    A direct conversation was started: both parties are its members (not
    shown).
    """

    room: RoomRef
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """Both parties."""
        return Audience(self.room.id, frozenset(p[0] for p in self.room.parties))


@frozen
class _MembershipRow(MembershipEvent):
    """A change of a C{room_members} row, recorded by the database itself when it commits (not shown)."""

    room: RoomRef
    user_id: int
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """Nobody needs to see it; it only updates memory."""
        return Audience(None, frozenset())


@frozen
class MemberAdded(_MembershipRow):
    """A row of C{room_members} was added, however."""


@frozen
class MemberRemoved(_MembershipRow):
    """
    A row of C{room_members} went: the user left, was removed, or the room
    or the account was deleted.
    """

    joins = False


@frozen
class UserJoined(MembershipEvent):
    """
    A user became a member (joined, or accepted an invitation).

    @ivar guest: whether the user is an IRC guest (no account).
    @ivar away: the user's away text when they joined (empty: not away).
    """

    room: RoomRef
    user_id: int
    user: str
    guest: bool = False
    away: str = ""
    origin: Origin | None = _origin()


@frozen
class UserLeft(MembershipEvent):
    """
    A member left (the room goes when its last member leaves).

    @ivar quitting: the member is a guest whose connection closed: it
        leaves every room, and L{UserQuit} says so once (IRC shows that
        instead of a C{PART} per room).
    @ivar reason: why, as the member said (IRC's C{PART} message; may be
        empty).
    """

    room: RoomRef
    user_id: int
    user: str
    quitting: bool = False
    reason: str = ""
    origin: Origin | None = _origin()
    joins = False


@frozen
class _Removal(MembershipEvent):
    """What a kick and a ban hold: who was put out, by whom, why."""

    room: RoomRef
    user_id: int
    user: str
    by: str
    reason: str
    origin: Origin | None = _origin()
    joins = False


@frozen
class UserKicked(_Removal):
    """A member was removed by a moderator."""


@frozen
class UserBanned(_Removal):
    """A user (member or not) was banned; a member is removed."""


@frozen
class RoleChanged(RoomEvent):
    """A member's role in a room changed, from C{previous} (empty when not known) to C{role}."""

    room: RoomRef
    user_id: int
    user: str
    role: str
    by: str
    previous: str = ""
    origin: Origin | None = _origin()


@frozen
class TopicChanged(RoomEvent):
    """A room's topic changed."""

    room: RoomRef
    by: str
    topic: str
    origin: Origin | None = _origin()


@frozen
class TagsSent(RoomEvent):
    """
    Client-only tags sent without a message (IRC C{TAGMSG}) to a room or a
    direct conversation: relayed to its members, never stored.

    @ivar msgid: an id of its own (no message row has it).
    @ivar tags: the client-only tags, as a tag section without its C{@}.
    @ivar guest: whether the sender is an IRC guest (no account).
    """

    room: RoomRef
    msgid: str
    sender_id: int
    sender: str
    tags: str
    guest: bool = False
    origin: Origin | None = _origin()


# Invitations ---------------------------------------------------------------


@frozen
class InvitationReceived(RecipientEvent):
    """
    A user was invited (also sent to them at login for each pending one).

    @ivar guest: whether the sender is an IRC guest (no account).
    """

    invitation_id: int
    recipient_id: int
    sender: str
    room: str
    role: str
    expires_ms: int
    message: str
    guest: bool = False
    origin: Origin | None = _origin()



@frozen
class _Answer(Event):
    """What the recipient's answer to an invitation holds; for the sender."""

    invitation_id: int
    sender_id: int
    user: str
    room: str
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The sender."""
        return Audience(None, frozenset({self.sender_id}))


@frozen
class InvitationAccepted(_Answer):
    """The recipient accepted."""


@frozen
class InvitationDeclined(_Answer):
    """The recipient declined."""


@frozen
class InvitationRevoked(RecipientEvent):
    """A pending invitation was withdrawn (or its recipient banned); for the recipient."""

    invitation_id: int
    recipient_id: int
    room: str
    by: str
    origin: Origin | None = _origin()



@frozen
class InvitationExpired(Event):
    """A pending invitation ran out; for both parties."""

    invitation_id: int
    sender_id: int
    recipient_id: int
    room: str
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """Sender and recipient."""
        return Audience(None, frozenset({self.sender_id, self.recipient_id}))


@frozen
class InvitationReminder(RecipientEvent):
    """A pending invitation has under a day left; for the recipient, once."""

    invitation_id: int
    recipient_id: int
    room: str
    expires_ms: int
    origin: Origin | None = _origin()



# Users and sessions --------------------------------------------------------


@frozen
class PresenceChanged(Event):
    """
    A user came online (their first connection on any node) or went
    offline (their last); for everyone who shares a room or a
    conversation with them (C{room_ids}: theirs, however large the rooms
    are, the event stays small).
    """

    user_id: int
    user: str
    online: bool
    room_ids: tuple = ()
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The members of the user's rooms and conversations, but not the user."""
        return Audience(more_rooms=frozenset(self.room_ids), but=self.user_id)


@frozen
class AwayChanged(Event):
    """
    A user set an away text (C{text}) or came back (C{text} empty); for
    everyone who shares a room or a conversation with them, as
    L{PresenceChanged}.  The away text lasts until they come back or are
    online nowhere.
    """

    user_id: int
    user: str
    text: str
    room_ids: tuple = ()
    guest: bool = False
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The members of the user's rooms and conversations, but not the user."""
        return Audience(more_rooms=frozenset(self.room_ids), but=self.user_id)


@frozen
class ReadMarkerMoved(UserEvent):
    """
    A user's read marker of a room or conversation (C{room}) moved up to a
    message (C{message_id}, sent at C{ts}); for that user's connections on
    every node.  The line protocol shows nothing of it.
    """

    user_id: int
    room: RoomRef
    message_id: int
    ts: int
    origin: Origin | None = _origin()


@frozen
class GuestLoggedIn(Event):
    """
    An IRC guest logged in to an account (C{account}) and stops being a
    guest; for the members of its rooms (C{room_ids}), before it leaves them.
    """

    user_id: int
    user: str
    account: str
    room_ids: tuple = ()
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The members of the guest's rooms, but not the guest."""
        return Audience(more_rooms=frozenset(self.room_ids), but=self.user_id)


@frozen
class AccountSuspended(UserEvent):
    """An account was suspended: its connections are told and closed."""

    user_id: int
    reason: str
    origin: Origin | None = _origin()



@frozen
class SessionsRevoked(UserEvent):
    """
    A user's sessions but C{kept_session} were revoked (a password
    change): the connections logged in with them are logged out.
    """

    user_id: int
    kept_session: int
    origin: Origin | None = _origin()



@frozen
class ServerRoleChanged(UserEvent):
    """A user's server role changed: their connections see it at once (not shown)."""

    user_id: int
    role: str
    origin: Origin | None = _origin()



@frozen
class UserQuit(Event):
    """
    A guest's connection closed, with C{reason}: it is about to leave
    every room (C{room_ids}), each with a L{UserLeft}.  For the members of
    those rooms but the guest, once each; IRC shows it as one C{QUIT}.
    """

    user_id: int
    user: str
    reason: str
    room_ids: tuple = ()
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The members of the guest's rooms, but not the guest."""
        return Audience(more_rooms=frozenset(self.room_ids), but=self.user_id)


@frozen
class UserRenamed(Event):
    """
    A guest took another nick (C{old} is now C{user}); for the members of
    its rooms (C{room_ids}) but itself, which its own reply told.
    """

    user_id: int
    old: str
    user: str
    room_ids: tuple = ()
    origin: Origin | None = _origin()

    def audience(self) -> Audience:
        """The members of the guest's rooms, but not the guest."""
        return Audience(more_rooms=frozenset(self.room_ids), but=self.user_id)


@frozen
class Notice(UserEvent):
    """A notice from the server to a user (C{SYSTEM_MESSAGE})."""

    user_id: int
    text: str
    origin: Origin | None = _origin()



# Encoding ------------------------------------------------------------------

EVENT_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        MessageSent, ReplySent, DirectMessageSent, MessageEdited, MessageDeleted, ReactionAdded,
        ReactionRemoved, RoomCreated, ConversationOpened, MemberAdded, MemberRemoved, UserJoined, UserLeft, UserKicked, UserBanned,
        RoleChanged, TopicChanged, TagsSent, InvitationReceived, InvitationAccepted, InvitationDeclined,
        InvitationRevoked, InvitationExpired, InvitationReminder, PresenceChanged, AwayChanged, GuestLoggedIn,
        ReadMarkerMoved,
        AccountSuspended, SessionsRevoked, ServerRoleChanged, Notice, UserQuit, UserRenamed,
    )
}
"""Every event class by its kind (its class name)."""


def kind(event: Event) -> str:
    """The kind of an event, as stored: its class name."""
    return type(event).__name__


def _plain(value: Any) -> Any:
    """A JSON-ready form of a field value."""
    if isinstance(value, RoomRef):
        return [value.id, value.name, [list(p) for p in value.parties]]
    if isinstance(value, (tuple, frozenset)):
        return list(value)
    return value


def payload(event: Event) -> dict:
    """An event's fields as a JSON-ready dict (its origin excluded)."""
    return {a.name: _plain(getattr(event, a.name)) for a in fields(type(event)) if a.name != "origin"}


def encode(event: Event) -> str:
    """An event's fields as JSON (its origin and kind are stored beside it)."""
    return json.dumps(payload(event), ensure_ascii=False, separators=(",", ":"))


def decode(kind_name: str, data: dict, origin: Origin | None = None) -> Event:
    """
    The event of C{kind_name} from the fields L{payload} gave.  A field
    with a default that C{data} lacks (an event recorded before the field
    existed) takes its default.

    @raise KeyError: an unknown kind, or a field without a default missing.
    """
    cls = EVENT_TYPES[kind_name]
    values = {}
    for attribute in fields(cls):
        if attribute.name == "origin":
            continue
        if attribute.name not in data and attribute.default is not NOTHING:
            continue
        value = data[attribute.name]
        if attribute.name == "room" and isinstance(value, list):
            value = RoomRef(value[0], value[1], tuple((p[0], p[1]) for p in value[2]))
        elif isinstance(value, list):
            value = tuple(value)
        values[attribute.name] = value
    return cls(**values, origin=origin)

