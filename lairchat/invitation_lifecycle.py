# -*- test-case-name: tests.test_invitations_lifecycle -*-
"""
The lifecycle of an invitation, with no I/O: which status changes exist,
who may make each, and what a refusal says.  The store's conditional
C{UPDATE}s and the commands both take their rules from here, so the rule
lives in one place.

An invitation is born C{pending}.  From there exactly one action moves it,
once, to a final status:

    pending --accept--> accepted   (the recipient, before it expires)
    pending --decline-> declined   (the recipient, before it expires)
    pending --revoke--> revoked    (the sender, an admin+ of the room, a ban)
    pending --expire--> expired    (the sweeper, once it is due)

Nothing leaves a final status.
"""

from attrs import frozen

from lairchat import permissions
from lairchat.errors import Gone, NotFound, PermissionDenied
from lairchat.validation import INVITATION_STATUSES

PENDING = "pending"
"""The status every invitation starts in, and the only one that can change."""

FINAL = frozenset(INVITATION_STATUSES) - {PENDING}
"""The statuses nothing leaves."""

OUTCOMES: dict[str, str] = {
    "accept": "accepted",
    "decline": "declined",
    "revoke": "revoked",
    "expire": "expired",
}
"""Each action and the status it leads to."""

TRANSITIONS: frozenset[tuple[str, str]] = frozenset((PENDING, status) for status in OUTCOMES.values())
"""Every (old status, new status) pair that may ever be stored."""

_GONE = {
    "accepted": "this invitation was already accepted",
    "declined": "this invitation was already declined",
    "revoked": "this invitation was revoked",
    "expired": "this invitation has expired",
}


def is_allowed(old: str, new: str) -> bool:
    """Whether a stored status may change from C{old} to C{new}."""
    return (old, new) in TRANSITIONS


def outcome(action: str) -> str:
    """
    The status an action leads to.

    @raise KeyError: not an action (a typo is a bug).
    """
    return OUTCOMES[action]


def effective_status(status: str, expires_ms: int, now_ms: int) -> str:
    """
    The status an invitation really has at C{now_ms}: a pending one past its
    expiry is expired even before the sweep has stored it so.
    """
    if status == PENDING and expires_ms <= now_ms:
        return "expired"
    return status


def gone_message(status: str) -> str:
    """What a client reads when it acts on an invitation in a final status."""
    return _GONE[status]


def advance(status: str, action: str, expires_ms: int, now_ms: int) -> str:
    """
    The new status after C{action} on an invitation in C{status}.

    Only C{expire} applies to a due invitation, and only to a due one; every
    other action applies to a pending invitation that is not yet due.

    @raise Gone: the invitation is no longer pending (or is due, for an
        answer or a revocation).
    @raise ValueError: C{expire} on one that is not due yet.
    """
    new = outcome(action)
    current = effective_status(status, expires_ms, now_ms)
    if action == "expire":
        if status != PENDING:
            raise Gone(gone_message(status))
        if current == PENDING:
            raise ValueError("an invitation expires only once it is due")
        return new
    if current != PENDING:
        raise Gone(gone_message(current))
    return new


@frozen
class Actor:
    """
    Who acts on an invitation, as far as the rules care.

    @ivar is_recipient: they are the one invited.
    @ivar is_sender: they sent it.
    @ivar room_role: their role in the invitation's room (L{None}: not a member).
    @ivar is_system: the server itself (the sweeper, a ban).
    """

    is_recipient: bool = False
    is_sender: bool = False
    room_role: str | None = None
    is_system: bool = False

    @property
    def can_see(self) -> bool:
        """Whether the invitation is visible to them at all."""
        return (
            self.is_system
            or self.is_recipient
            or self.is_sender
            or permissions.can(self.room_role, "view_room_invitations")
        )


def authorize(action: str, actor: Actor) -> None:
    """
    Refuse an actor who may not take C{action}.

    Someone who cannot see the invitation is told it does not exist (1501),
    so invitations meant for others are never revealed; someone who can see
    it but may not act gets 1002.

    @raise NotFound: the actor may not even see the invitation.
    @raise PermissionDenied: they see it but may not do this.
    """
    outcome(action)
    if action in ("accept", "decline"):
        if not actor.is_recipient:
            raise NotFound("you have no such invitation")
        return
    if not actor.can_see:
        raise NotFound("no such invitation")
    if action == "revoke":
        if actor.is_system or actor.is_sender:
            return
        permissions.require(actor.room_role, "revoke_any_invitation")
        return
    if not actor.is_system:
        raise PermissionDenied("only the server expires invitations")
