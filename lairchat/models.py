"""
The values the store hands upward: immutable attrs classes, never raw rows.

Timestamps are Unix epoch milliseconds (the wire's unit), converted once in
L{to_ms}.  Each domain appends its models here.
"""

from datetime import datetime, timedelta, timezone

from attrs import frozen


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MILLISECOND = timedelta(milliseconds=1)


def to_ms(moment: datetime | None) -> int:
    """
    Convert a timezone-aware datetime to Unix epoch milliseconds, rounded
    down exactly as the database rounds them (0 for L{None}).
    """
    if moment is None:
        return 0
    return (moment - _EPOCH) // _MILLISECOND


def iso_moment(ms: int) -> str:
    """An epoch-ms instant as an ISO 8601 UTC time, for people to read."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@frozen
class User:
    """
    An account.

    @ivar server_role: C{user} or C{admin}.
    @ivar locked_until_ms: when a brute-force lock ends (0 when not locked).
    @ivar guest: whether this is an ephemeral IRC guest, with no account.
    """

    id: int
    username: str
    server_role: str
    suspended: bool
    created_ms: int
    locked_until_ms: int = 0
    guest: bool = False

    @property
    def is_admin(self) -> bool:
        """Whether the account holds the server role admin."""
        return self.server_role == "admin"


@frozen
class Credentials:
    """An account with its password hash, for login only."""

    user: User
    password_hash: str
    failed_logins: int


@frozen
class Session:
    """A live session: whose it is and when it expires."""

    id: int
    user: User
    expires_ms: int


@frozen
class AuditEntry:
    """One line of the audit log."""

    ts_ms: int
    actor: str
    action: str
    target: str
    outcome: str
    detail: str


@frozen
class Room:
    """
    A room, or (kind C{direct}) the two-member conversation behind direct
    messages, which has no name.
    """

    id: int
    name: str | None
    kind: str
    privacy: str
    topic: str
    owner_id: int | None
    created_ms: int
    invite_template: str | None = None

    @property
    def is_direct(self) -> bool:
        """Whether this is a direct-message conversation."""
        return self.kind == "direct"


@frozen
class Member:
    """A user's membership of a room, with their role there."""

    room_id: int
    user_id: int
    username: str
    role: str
    joined_ms: int
    last_read_id: int = 0


@frozen
class RoomSummary:
    """
    A room as C{LIST_ROOMS} and C{ROOM_INFO} show it.

    @ivar members: how many members it has.
    @ivar owner: the owner's username (empty when the account is gone).
    """

    room: Room
    members: int
    owner: str


@frozen
class Departure:
    """
    What leaving a room changed.

    @ivar role: the role the leaver had.
    @ivar successor: the member who became owner because the last owner
        left, or L{None}.
    @ivar deleted: whether the room was deleted because nobody was left.
    """

    role: str
    successor: Member | None = None
    deleted: bool = False


@frozen
class Ban:
    """
    What banning someone from a room changed.

    @ivar was_member: whether they were a member (and no longer are).
    @ivar revoked: the ids of their pending invitations to the room that
        the ban revoked.
    """

    was_member: bool
    revoked: tuple[int, ...] = ()


@frozen
class BanEntry:
    """
    One ban on a room, as a ban list shows it.

    @ivar username: who is banned.
    @ivar by: who banned them (empty when that account is gone).
    @ivar created_ms: when, in epoch milliseconds.
    """

    username: str
    by: str
    created_ms: int


@frozen
class Message:
    """
    A message of a room or of a direct conversation.

    @ivar sender: the sender's username (empty when the account is gone).
    @ivar parent_id: the root of the thread it replies to, or 0.
    @ivar edited_ms: when it was last edited (0: never).
    @ivar deleted: whether it was deleted (it then leaves history and search).
    @ivar notice: whether it was sent as a notice (IRC's C{NOTICE}).
    """

    id: int
    room_id: int
    sender_id: int | None
    sender: str
    text: str
    parent_id: int
    created_ms: int
    edited_ms: int = 0
    deleted: bool = False
    notice: bool = False

    @property
    def edited(self) -> bool:
        """Whether the message was edited."""
        return self.edited_ms != 0


@frozen
class MessageAccess:
    """
    A message, its room, and what the viewer is there.

    @ivar role: the viewer's role in the message's room, L{None} when they
        are not a member.
    """

    message: Message
    room: Room
    role: str | None


@frozen
class ReactionSummary:
    """
    One emoji's reactions to a message.

    @ivar users: who reacted with it, first reaction first.
    """

    message_id: int
    emoji: str
    users: tuple[str, ...]

    @property
    def count(self) -> int:
        """How many users reacted with this emoji."""
        return len(self.users)


@frozen
class Party:
    """A member of a conversation, by id and name."""

    user_id: int
    username: str


@frozen
class Conversation:
    """
    A direct conversation as one of its two parties sees it.

    @ivar other: the other party.
    @ivar last_ms: when its newest (undeleted) message was sent, 0 if none.
    @ivar unread: messages from the other party after the viewer's read marker.
    """

    room_id: int
    other: Party
    last_ms: int
    unread: int


@frozen
class Unread:
    """
    How many unread messages a room or conversation holds for a member.

    @ivar name: the room's name, or the other party's username for a direct
        conversation.
    """

    room_id: int
    kind: str
    name: str
    count: int

    @property
    def label(self) -> str:
        """The name on the wire: the room's name, or C{@<user>}."""
        return f"@{self.name}" if self.kind == "direct" else self.name


@frozen
class Activity:
    """
    When a room or conversation of a member last had a message.

    @ivar name: the room's name, or the other party's username for a direct
        conversation.
    @ivar last_ms: the time of its newest undeleted message.
    """

    room_id: int
    kind: str
    name: str
    last_ms: int


@frozen
class HistoryWindow:
    """
    Which messages of a conversation a history read takes: those strictly
    between its bounds, by id and by time (epoch milliseconds, as the
    C{time} a message shows), the newest of them or (C{oldest}) the
    oldest.  L{None} is no bound.
    """

    after_id: int | None = None
    before_id: int | None = None
    after_ms: int | None = None
    before_ms: int | None = None
    oldest: bool = False


@frozen
class Found:
    """
    A search result: the message and where it is, as the searcher names it
    (a room name, or the other party's username for a direct conversation).
    """

    message: Message
    kind: str
    name: str

    @property
    def label(self) -> str:
        """The name on the wire: the room's name, or C{@<user>}."""
        return f"@{self.name}" if self.kind == "direct" else self.name


@frozen
class Invitation:
    """
    An invitation to a room, with the names of its parties and room.

    @ivar role: the room role granted on acceptance.
    @ivar responded_ms: when it left C{pending} (0 while pending).
    """

    id: int
    sender_id: int
    sender: str
    recipient_id: int
    recipient: str
    room_id: int
    room: str
    kind: str
    status: str
    role: str
    message: str
    created_ms: int
    expires_ms: int
    responded_ms: int = 0


@frozen
class InvitationEvent:
    """One status change of an invitation (its trail); C{actor} is '' for the server."""

    invitation_id: int
    ts_ms: int
    status: str
    actor: str
    note: str


@frozen
class InvitationStats:
    """
    Counts over a set of invitations (see docs/protocol.md, Invitations).

    @ivar acceptance_rate: accepted / (accepted + declined + expired), 0 when
        none of those.
    @ivar median_response_ms: the median time from sending to an answer by
        the recipient (accepted or declined), 0 when none.
    """

    sent: int
    received: int
    pending: int
    accepted: int
    declined: int
    expired: int
    revoked: int
    acceptance_rate: float
    median_response_ms: int


@frozen
class AddressBlock:
    """
    An address refused until a moment.

    @ivar address: the IP address, as text.
    @ivar reason: why (what intrusion detection saw, or an admin's word).
    @ivar blocked_by: C{server} for intrusion detection, else the admin.
    @ivar until_ms: when the block ends, in epoch ms.
    @ivar strikes: the blocks of the same address in the day before this one.
    """

    address: str
    reason: str
    blocked_by: str
    until_ms: int
    strikes: int = 0
