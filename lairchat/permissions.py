# -*- test-case-name: tests.test_permissions -*-
"""
Who may do what in a room: one table of room role to allowed actions, and
the two rules about roles acting on roles.  Every command consults this
module; no command decides a permission on its own.
"""

from lairchat.errors import PermissionDenied
from lairchat.validation import ROLES, role_rank

_GUEST = frozenset({"read", "send", "react", "mark_read"})
_MEMBER = _GUEST | {"invite"}
_MODERATOR = _MEMBER | {"set_topic", "kick", "delete_any"}
_ADMIN = _MODERATOR | {
    "ban",
    "unban",
    "set_role",
    "invite_privileged",
    "revoke_any_invitation",
    "view_room_invitations",
    "room_invitation_stats",
    "set_invite_template",
}
_OWNER = _ADMIN | {"transfer_ownership"}

PERMISSIONS: dict[str, frozenset[str]] = {
    "owner": _OWNER,
    "admin": _ADMIN,
    "moderator": _MODERATOR,
    "member": _MEMBER,
    "guest": _GUEST,
}
"""Room role to the actions it allows.  A higher role allows all a lower one does."""

ACTIONS: frozenset[str] = _OWNER
"""Every action a room role can be allowed."""

SUCCESSION: tuple[str, ...] = ("admin", "moderator", "member", "guest")
"""
Who becomes owner when the last owner leaves a room: the longest-standing
member of the first of these roles that anyone holds.  A room whose last
member leaves is deleted.
"""

_REFUSALS = {
    "read": "only members can read this room",
    "send": "only members can send to this room",
    "react": "only members can react in this room",
    "mark_read": "only members can mark this room read",
    "invite": "guests cannot invite",
    "set_topic": "only moderators and above can set the topic",
    "kick": "only moderators and above can kick",
    "delete_any": "only the author or a moderator can delete this message",
    "ban": "only admins and owners can ban",
    "unban": "only admins and owners can unban",
    "set_role": "only admins and owners can set roles",
    "invite_privileged": "only admins and owners can invite as moderator or admin",
    "revoke_any_invitation": "only the sender or an admin of the room can revoke this invitation",
    "view_room_invitations": "only admins and owners can list this room's invitations",
    "room_invitation_stats": "only admins and owners can see this room's invitation statistics",
    "set_invite_template": "only admins and owners can set the invitation template",
    "transfer_ownership": "only an owner can do that",
}


def roles_allowed(action: str) -> tuple[str, ...]:
    """Every room role that allows C{action}, highest first."""
    return tuple(role for role in ROLES if action in PERMISSIONS[role])


def can(role: str | None, action: str) -> bool:
    """
    Whether a room role (L{None}: not a member) allows an action.

    @raise KeyError: C{action} is not an action of L{ACTIONS} (a typo is a bug).
    """
    if action not in ACTIONS:
        raise KeyError(action)
    return role is not None and action in PERMISSIONS[role]


def require(role: str | None, action: str) -> None:
    """
    Refuse unless the role allows the action.

    @raise PermissionDenied: it does not.
    """
    if not can(role, action):
        raise PermissionDenied(_REFUSALS[action])


def outranks(actor_role: str, target_role: str) -> bool:
    """
    Whether someone with C{actor_role} may act on (kick, ban, change the role
    of) someone with C{target_role}: only on strictly lower roles.
    """
    return role_rank(actor_role) > role_rank(target_role)


def can_grant(actor_role: str, role: str) -> bool:
    """
    Whether someone with C{actor_role} may give C{role} to another (by
    SET_ROLE or by an invitation): never above their own role.
    """
    return role_rank(role) <= role_rank(actor_role)


def require_over(actor_role: str | None, target_role: str | None, action: str) -> None:
    """
    Refuse unless the actor's role allows the action and outranks the
    target's (L{None} for a target who is not a member, whom any role that
    allows the action may act on, as a ban of an outsider).

    @raise PermissionDenied: it does not.
    """
    require(actor_role, action)
    if target_role is not None and not outranks(actor_role, target_role):
        raise PermissionDenied(f"you can only act on members below your role ({actor_role})")


def require_grant(actor_role: str | None, role: str) -> None:
    """
    Refuse unless the actor may give C{role} to someone (see L{can_grant}).

    @raise PermissionDenied: it is above the actor's own role.
    """
    if actor_role is None or not can_grant(actor_role, role):
        raise PermissionDenied(f"you cannot grant a role above your own ({actor_role})")


__all__ = [
    "ACTIONS",
    "PERMISSIONS",
    "ROLES",
    "SUCCESSION",
    "can",
    "can_grant",
    "outranks",
    "require",
    "require_grant",
    "require_over",
]
