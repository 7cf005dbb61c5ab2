"""
The values the store hands upward: immutable attrs classes, never raw rows.

Timestamps are Unix epoch milliseconds (the wire's unit), converted once in
L{to_ms}.  Each domain appends its models here.
"""

from datetime import datetime

from attrs import frozen


def to_ms(moment: datetime | None) -> int:
    """
    Convert a timezone-aware datetime to Unix epoch milliseconds (0 for
    L{None}).
    """
    if moment is None:
        return 0
    return int(moment.timestamp() * 1000)


@frozen
class User:
    """
    An account.

    @ivar server_role: C{user} or C{admin}.
    @ivar locked_until_ms: when a brute-force lock ends (0 when not locked).
    """

    id: int
    username: str
    server_role: str
    suspended: bool
    created_ms: int
    locked_until_ms: int = 0

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
