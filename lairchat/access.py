# -*- test-case-name: tests.test_rooms -*-
"""
The room look-ups every command shares: find a room by name for the caller
and check their membership, with the same errors everywhere.
"""

from typing import Any

from lairchat import permissions
from lairchat.errors import AccessDenied, NotFound
from lairchat.models import Member, Room, User


async def visible_room(context: Any, name: str) -> tuple[Room, Member | None]:
    """
    The named room and the caller's membership of it (L{None} when not a
    member).  A private room is invisible to non-members.

    @raise NotFound: no such room, or a private one the caller is not in.
    """
    rooms = context.store.rooms
    room = await rooms.by_name(name)
    if room is None:
        raise NotFound(f"no room named {name}")
    member = await rooms.membership(room.id, context.user.id)
    if member is None and room.privacy == "private" and not context.user.is_admin:
        raise NotFound(f"no room named {name}")
    return room, member


async def member_room(context: Any, name: str, action: str = "read") -> tuple[Room, Member]:
    """
    The named room, for a member whose role allows C{action}.

    @raise NotFound: no such room (or a private one the caller is not in).
    @raise AccessDenied: the caller is not a member.
    @raise lairchat.errors.PermissionDenied: the caller's role does not allow it.
    """
    room, member = await visible_room(context, name)
    if member is None:
        raise AccessDenied(f"you are not a member of {room.name}")
    permissions.require(member.role, action)
    return room, member


async def known_user(context: Any, name: str) -> User:
    """
    The account with this name (case-insensitively).

    @raise NotFound: there is none.
    """
    user = await context.store.users.by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user
