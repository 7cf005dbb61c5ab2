# -*- test-case-name: tests.test_rooms -*-
"""
Rooms, membership, roles and moderation: create, join, leave, list, info,
members, set_topic, set_role, kick, ban and unban.

Who may do what is decided by L{lairchat.permissions}; room and user
look-ups go through L{lairchat.domain.access}, so the refusals read the
same everywhere.  Each change records its events in its own transaction
(the store is handed the operation's outbox) and delivers them once it
committed; a join is one statement shared with the joins asked for
meanwhile (the store's group commit), which records its event.  Which
room a connection is "in" is its front end's business: nothing here
knows of it.
"""

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from attrs import frozen

from lairchat import permissions
from lairchat.domain.access import known_user, member_room, visible_room
from lairchat.errors import AccessDenied, NotFound, PermissionDenied
from lairchat.events import RoomRef
from lairchat.models import BanEntry, Member, Room, RoomSummary, User
from lairchat.store.rooms import ACCOUNT_GONE, BANNED, GONE, JOINED, PRIVATE


@frozen
class MemberStatus:
    """
    A member of a room, whether they are online (on any node), and their
    away text (empty when not away, or offline).
    """

    member: Member
    online: bool
    away: str = ""


@frozen
class Roster:
    """A room and its members, highest role first, then by name."""

    room: Room
    members: tuple[MemberStatus, ...]


@frozen
class Moderated:
    """The room and the user a moderation acted on."""

    room: Room
    target: User


# Creating, joining, leaving


async def create(actor: Any, name: str, privacy: str) -> Room:
    """
    Create a room (C{privacy}: C{public} or C{private}) with the actor as
    its owner and only member.

    @raise lairchat.errors.Conflict: a room of that name exists.
    """
    outbox = actor.outbox()
    room = await actor.store.rooms.create(name, privacy, actor.user, outbox)
    await actor.deliver(outbox)
    return room


async def join(actor: Any, name: str) -> Room:
    """
    Join a public room, or enter one the actor already belongs to (which
    changes nothing).  The room's id comes from the node's memory of names
    it resolved before (L{lairchat.domain.messages.RoomNames}), or from a
    look-up; then the join is one statement, which checks, changes,
    records the event and reads the room (shared with the joins asked for
    meanwhile).

    @raise NotFound: no such room (or it went meanwhile).
    @raise AccessDenied: the room is private and the actor no member, or
        the actor is banned from it.
    """
    names = actor.server.room_names
    ref = names.get(name.lower())
    remembered = ref is not None
    if ref is None:
        ref = await _resolved(actor, name)
    joining = await actor.store.rooms.join_with_event(ref, actor.user, actor.origin)
    if joining.status == GONE and remembered:
        # the room this node knew by that name went: is there one now?
        names.forget(ref)
        ref = await _resolved(actor, name)
        joining = await actor.store.rooms.join_with_event(ref, actor.user, actor.origin)
    if joining.status == GONE:
        raise NotFound("that room no longer exists")
    if joining.status == ACCOUNT_GONE:
        raise NotFound("your account no longer exists")
    if joining.status == PRIVATE:
        raise AccessDenied(f"{joining.room.name} is private: you need an invitation to join")
    if joining.status == BANNED:
        raise AccessDenied("you are banned from this room")
    if joining.status == JOINED:
        await actor.server.bus.committed([joining.seq], [joining.event])
    return joining.room


async def _resolved(actor: Any, name: str) -> RoomRef:
    """
    The room (of kind C{room}) named C{name}, looked up and remembered.

    @raise NotFound: there is none.
    """
    room = await actor.store.rooms.by_name(name)
    if room is None:
        raise NotFound(f"no room named {name}")
    return actor.server.room_names.remember(RoomRef(room.id, room.name))


async def leave(actor: Any, name: str, reason: str = "") -> Room:
    """
    Leave a room (saying C{reason}, which IRC shows).  The last owner's successor is chosen by role, then
    seniority (see L{lairchat.store.rooms.RoomStore.leave}); the room goes
    with its last member.

    @raise NotFound: no such room (or a private one the actor is not in).
    @raise AccessDenied: the actor is not a member.
    """
    user = actor.user
    room, member = await visible_room(actor, name)
    outbox = actor.outbox()
    departure = await actor.store.rooms.leave(room, user, outbox, reason=reason) if member is not None else None
    if departure is None:
        raise AccessDenied(f"you are not a member of {room.name}")
    await actor.deliver(outbox)
    return room


# Reading


async def visible_rooms(actor: Any) -> list[RoomSummary]:
    """
    The rooms the actor can see, by name: the public ones and the private
    ones they belong to (every room, for a server admin).
    """
    user = actor.user
    return await actor.store.rooms.summaries(user.id, everything=user.is_admin)


async def info(actor: Any, name: str) -> RoomSummary:
    """
    One room's details, if the actor can see it.

    @raise NotFound: no such room, or one the actor may not see.
    """
    room, _ = await visible_room(actor, name)
    summary = await actor.store.rooms.summary(room.id)
    if summary is None:
        raise NotFound(f"no room named {name}")
    return summary


async def members(actor: Any, name: str) -> Roster:
    """
    Who is in a room the actor can see, with their roles, whether they
    are online and their away texts.

    @raise NotFound: no such room, or one the actor may not see.
    """
    room, _ = await visible_room(actor, name)
    found = await actor.store.rooms.members(room.id)
    online = await actor.store.events.online_with_away([m.user_id for m in found])
    return Roster(room, tuple(MemberStatus(m, m.user_id in online, online.get(m.user_id, "")) for m in found))


async def bans(actor: Any, name: str) -> tuple[Room, list[BanEntry]]:
    """
    The bans on a room the actor can see, oldest first.

    @raise NotFound: no such room, or one the actor may not see.
    """
    room, _ = await visible_room(actor, name)
    return room, await actor.store.rooms.bans(room.id)


async def memberships(actor: Any, username: str) -> tuple[User, list[tuple[Room, str]]]:
    """
    A user and the rooms they are a member of that the actor can see (the
    public ones, those the actor shares, every one for a server admin),
    each with the user's role there, by name.

    @raise NotFound: no such user.
    """
    target = await known_user(actor, username)
    theirs = await actor.store.rooms.memberships_of(target.id)
    if actor.user.is_admin or actor.user.id == target.id:
        return target, theirs
    mine = {room.id for room, _ in await actor.store.rooms.memberships_of(actor.user.id)}
    return target, [(room, role) for room, role in theirs if room.privacy == "public" or room.id in mine]


# Moderation


async def set_topic(actor: Any, name: str, topic: str) -> Room:
    """
    Change a room's topic (moderator and above); an empty topic clears it.

    @raise NotFound: no such room (or it went meanwhile).
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the actor's role does not allow it.
    """
    room, _ = await member_room(actor, name, "set_topic")
    outbox = actor.outbox()
    await actor.store.rooms.set_topic(room, actor.user, topic, outbox)
    await actor.deliver(outbox)
    return room


@asynccontextmanager
async def _refusals_audited(actor: Any, action: str, name: str, username: str) -> AsyncIterator[None]:
    """
    Record a moderation refused for want of rank in the audit log (target
    C{<room>/<user>} as asked), then let the refusal go on.
    """
    try:
        yield
    except PermissionDenied as refusal:
        await actor.store.audit.record(actor.user.username, action, f"{name}/{username}", "refused", refusal.message)
        raise


def _over(action: str) -> Any:
    """The check run under the room's lock: the action, on a lower role."""

    def authorize(actor_role: str, target_role: str | None) -> None:
        permissions.require_over(actor_role, target_role, action)

    return authorize


async def set_role(actor: Any, name: str, username: str, role: str) -> Moderated:
    """
    Give a member another role (admin and above; only to members below the
    actor, never above the actor's own role).  Giving the role they have
    changes nothing.

    @raise NotFound: no such room or user, or the user is no member.
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the roles do not allow it (audited).
    """
    async with _refusals_audited(actor, "set_role", name, username):
        user = actor.user
        room, member = await member_room(actor, name, "set_role")
        permissions.require_grant(member.role, role)
        target = await known_user(actor, username)

        def authorize(actor_role: str, target_role: str | None) -> None:
            permissions.require_over(actor_role, target_role, "set_role")
            permissions.require_grant(actor_role, role)

        outbox = actor.outbox()
        await actor.store.rooms.set_role(room, user, target, role, authorize, outbox)
        await actor.deliver(outbox)
        return Moderated(room, target)


async def kick(actor: Any, name: str, username: str, reason: str) -> Moderated:
    """
    Put a member out of a room (moderator and above, on lower roles); they
    may join again.

    @raise NotFound: no such room or user, or the user is no member.
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the roles do not allow it (audited).
    """
    async with _refusals_audited(actor, "kick", name, username):
        room, _ = await member_room(actor, name, "kick")
        target = await known_user(actor, username)
        outbox = actor.outbox()
        await actor.store.rooms.kick(room, actor.user, target, reason, _over("kick"), outbox)
        await actor.deliver(outbox)
        return Moderated(room, target)


async def ban(actor: Any, name: str, username: str, reason: str) -> Moderated:
    """
    Ban a user (a member below the actor, or an outsider) from a room
    (admin and above): they leave it, cannot join, and lose their pending
    invitations to it.

    @raise NotFound: no such room or user.
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the roles do not allow it (audited).
    @raise lairchat.errors.Conflict: the user is banned already.
    """
    async with _refusals_audited(actor, "ban", name, username):
        room, _ = await member_room(actor, name, "ban")
        target = await known_user(actor, username)
        outbox = actor.outbox()
        await actor.store.rooms.ban(room, actor.user, target, reason, _over("ban"), outbox)
        await actor.deliver(outbox)
        return Moderated(room, target)


async def unban(actor: Any, name: str, username: str) -> Moderated:
    """
    Lift a user's ban from a room (admin and above); they may join or be
    invited again.

    @raise NotFound: no such room or user, or the user is not banned.
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the actor's role does not allow it (audited).
    """
    async with _refusals_audited(actor, "unban", name, username):
        room, _ = await member_room(actor, name, "unban")
        target = await known_user(actor, username)
        await actor.store.rooms.unban(room, actor.user, target, _over("unban"))
        return Moderated(room, target)
