# -*- test-case-name: tests.test_rooms -*-
"""
The look-ups every operation on a room shares: find a room by name for
the actor and check their membership, and find a user by name, with the
same refusals everywhere.

Each takes whatever has a C{store} and a C{user}: an
L{lairchat.domain.Actor}.
"""

from typing import Any

from lairchat import permissions
from lairchat.errors import AccessDenied, NotFound
from lairchat.models import Member, Room, User


async def visible_room(actor: Any, name: str) -> tuple[Room, Member | None]:
    """
    The named room and the actor's membership of it (L{None} when not a
    member).  A private room is invisible to non-members, but for server
    admins.

    @raise NotFound: no such room, or a private one the actor may not see.
    """
    rooms = actor.store.rooms
    room = await rooms.by_name(name)
    if room is None:
        raise NotFound(f"no room named {name}")
    member = await rooms.membership(room.id, actor.user.id)
    if member is None and room.privacy == "private" and not actor.user.is_admin:
        raise NotFound(f"no room named {name}")
    return room, member


async def member_room(actor: Any, name: str, action: str = "read") -> tuple[Room, Member]:
    """
    The named room, for a member whose role allows C{action}.

    @raise NotFound: no such room (or a private one the actor is not in).
    @raise AccessDenied: the actor is not a member.
    @raise lairchat.errors.PermissionDenied: the actor's role does not allow it.
    """
    room, member = await visible_room(actor, name)
    if member is None:
        raise AccessDenied(f"you are not a member of {room.name}")
    permissions.require(member.role, action)
    return room, member


async def known_user(actor: Any, name: str) -> User:
    """
    The account with this name (case-insensitively).

    @raise NotFound: there is none.
    """
    user = await actor.store.users.by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


__all__ = ["known_user", "member_room", "visible_room"]
