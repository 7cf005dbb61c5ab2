# -*- test-case-name: tests.test_rooms -*-
"""
Rooms, membership, roles and moderation: CREATE_ROOM, JOIN_ROOM,
LEAVE_ROOM, LIST_ROOMS, ROOM_INFO, ROOM_MEMBERS, SET_TOPIC, SET_ROLE,
KICK_USER, BAN_USER and UNBAN_USER.

Who may do what is decided by L{lairchat.permissions}; room look-ups go
through L{lairchat.access}, so the refusals read the same everywhere.
Events are typed values (L{lairchat.events}) published once their change
committed.
"""

from lairchat import access, events, permissions, validation
from lairchat.command import Command, Reply
from lairchat.errors import AccessDenied, InvalidInput, NotFound, PermissionDenied
from lairchat.wire import render

PRIVACIES = ("public", "private")


class CreateRoom(Command):
    """Create a room; the creator is its owner."""

    name = "CREATE_ROOM"
    syntax = "CREATE_ROOM:<room>[:public|private]"
    summary = "Create a room (public by default); you become its owner and it becomes your current room"
    arity = (1, 2)

    def parse(self, arguments):
        """A valid room name and an optional privacy."""
        privacy = validation.choice(arguments[1], PRIVACIES, "privacy") if len(arguments) > 1 else "public"
        return validation.room_name(arguments[0]), privacy

    async def run(self, context, parsed):
        """Create the room and its owner's membership in one transaction."""
        name, privacy = parsed
        room = await context.store.rooms.create(name, privacy, context.user)
        await context.publish(events.RoomCreated(events.RoomRef(room.id, room.name), context.user.id))
        context.connection.current_room = room.name
        return Reply.ok(room.name)


class JoinRoom(Command):
    """Join a public room, or enter one you already belong to."""

    name = "JOIN_ROOM"
    syntax = "JOIN_ROOM:<room>"
    summary = "Join a public room (private rooms need an accepted invitation); it becomes your current room"
    arity = (1, 1)

    def parse(self, arguments):
        """A valid room name."""
        return validation.room_name(arguments[0])

    async def run(self, context, name):
        """
        Become a member (unless already one), make the room current, and
        tell the room.
        """
        user, rooms = context.user, context.store.rooms
        room = await rooms.by_name(name)
        if room is None:
            raise NotFound(f"no room named {name}")
        joined = False
        if await rooms.membership(room.id, user.id) is None:
            if room.privacy == "private":
                raise AccessDenied(f"{room.name} is private: you need an invitation to join")
            joined = await rooms.join(room.id, user.id)
        context.connection.current_room = room.name
        if joined:
            await context.publish(events.UserJoined(events.RoomRef(room.id, room.name), user.id, user.username))
        return Reply.ok(room.name)


class LeaveRoom(Command):
    """Leave a room (by default the current one)."""

    name = "LEAVE_ROOM"
    syntax = "LEAVE_ROOM[:<room>]"
    summary = "Leave a room (by default your current room); the last owner's successor is chosen by role, then seniority"
    arity = (0, 1)

    def parse(self, arguments):
        """An optional valid room name."""
        return validation.room_name(arguments[0]) if arguments else None

    async def run(self, context, name):
        """Leave; tell the room, and who became owner if anyone did."""
        user, rooms = context.user, context.store.rooms
        if name is None:
            name = context.connection.current_room
            if name is None:
                raise InvalidInput("you are in no room: LEAVE_ROOM:<room>", name="NO_CURRENT_ROOM")
        room, member = await access.visible_room(context, name)
        departure = await rooms.leave(room.id, user.id) if member is not None else None
        if departure is None:
            raise AccessDenied(f"you are not a member of {room.name}")
        ref = events.RoomRef(room.id, room.name)
        changes = [events.UserLeft(ref, user.id, user.username)]
        if departure.successor is not None:
            successor = departure.successor
            changes.append(events.RoleChanged(ref, successor.user_id, successor.username, "owner", user.username))
        await context.publish(*changes)
        return Reply.ok(room.name)


class ListRooms(Command):
    """The rooms one can see."""

    name = "LIST_ROOMS"
    syntax = "LIST_ROOMS"
    summary = "List the public rooms and the private rooms you belong to"

    async def run(self, context, parsed):
        """One ROOM line per visible room, by name."""
        user = context.user
        summaries = await context.store.rooms.summaries(user.id, everything=user.is_admin)
        lines = [render("ROOM", s.room.name, s.room.privacy, s.members, s.room.topic) for s in summaries]
        return Reply.ok(len(lines), lines=lines)


class RoomInfo(Command):
    """One room's details."""

    name = "ROOM_INFO"
    syntax = "ROOM_INFO:<room>"
    summary = "Show a room's privacy, owner, member count, creation time and topic"
    arity = (1, 1)

    def parse(self, arguments):
        """A valid room name."""
        return validation.room_name(arguments[0])

    async def run(self, context, name):
        """The room's summary, if the caller can see it."""
        room, _ = await access.visible_room(context, name)
        summary = await context.store.rooms.summary(room.id)
        if summary is None:
            raise NotFound(f"no room named {name}")
        room = summary.room
        return Reply.ok(room.name, room.privacy, summary.owner, summary.members, room.created_ms, room.topic)


class RoomMembers(Command):
    """Who is in a room, with their roles and whether they are online."""

    name = "ROOM_MEMBERS"
    syntax = "ROOM_MEMBERS:<room>"
    summary = "List a room's members with their roles, highest first, and whether they are online"
    arity = (1, 1)

    def parse(self, arguments):
        """A valid room name."""
        return validation.room_name(arguments[0])

    async def run(self, context, name):
        """One MEMBER line per member."""
        room, _ = await access.visible_room(context, name)
        members = await context.store.rooms.members(room.id)
        online = await context.store.events.online_user_ids([m.user_id for m in members])
        lines = [
            render("MEMBER", room.name, m.username, m.role, "online" if m.user_id in online else "offline")
            for m in members
        ]
        return Reply.ok(len(lines), lines=lines)


class SetTopic(Command):
    """Change a room's topic (moderator and above)."""

    name = "SET_TOPIC"
    syntax = "SET_TOPIC:<room>:<topic>"
    summary = "Set a room's topic (moderator+); an empty topic clears it"
    arity = (2, 2)

    def parse(self, arguments):
        """A valid room name and a topic of up to 500 characters."""
        topic = validation.text(arguments[1], "topic", validation.TOPIC_MAX, minimum=0)
        return validation.room_name(arguments[0]), topic

    async def run(self, context, parsed):
        """Store the topic and tell the room."""
        name, topic = parsed
        user = context.user
        room, _ = await access.member_room(context, name, "set_topic")
        await context.store.rooms.set_topic(room.id, topic)
        await context.publish(events.TopicChanged(events.RoomRef(room.id, room.name), user.username, topic))
        return Reply.ok(room.name)


class Moderation(Command):
    """
    A command that acts on another user of a room.  A refusal for want of
    rank is recorded in the audit log before it is returned.

    @cvar action: the action of the permission table it needs.
    """

    action = ""

    async def run(self, context, parsed):
        """L{moderate}, auditing a permission refusal."""
        try:
            return await self.moderate(context, parsed)
        except PermissionDenied as refusal:
            await context.store.audit.record(
                context.user.username, self.action, f"{parsed[0]}/{parsed[1]}", "refused", refusal.message
            )
            raise

    async def moderate(self, context, parsed):
        """Subclasses do their work here."""
        raise NotImplementedError(self.name)


class SetRole(Moderation):
    """Give a member another role (admin and above; never above one's own)."""

    name = "SET_ROLE"
    syntax = "SET_ROLE:<room>:<user>:<role>"
    summary = "Change a member's role (admin+; only for members below you, never above your own role)"
    arity = (3, 3)
    action = "set_role"

    def parse(self, arguments):
        """A room, a user and a role."""
        return validation.room_name(arguments[0]), validation.username(arguments[1]), validation.role(arguments[2])

    async def moderate(self, context, parsed):
        """Check, change, tell the room."""
        name, username, role = parsed
        user = context.user
        room, member = await access.member_room(context, name, "set_role")
        permissions.require_grant(member.role, role)
        target = await access.known_user(context, username)

        def authorize(actor_role, target_role):
            permissions.require_over(actor_role, target_role, "set_role")
            permissions.require_grant(actor_role, role)

        if await context.store.rooms.set_role(room, user, target, role, authorize):
            ref = events.RoomRef(room.id, room.name)
            await context.publish(events.RoleChanged(ref, target.id, target.username, role, user.username))
        return Reply.ok(room.name, target.username, role)


def _room_user_reason(arguments: list[str]) -> tuple[str, str, str]:
    """Parse C{<room>:<user>[:<reason>]}."""
    reason = validation.optional_text(arguments[2] if len(arguments) > 2 else None, "reason")
    return validation.room_name(arguments[0]), validation.username(arguments[1]), reason


def _over(action: str):
    """The check run under the room's lock: the action, on a lower role."""

    def authorize(actor_role, target_role):
        permissions.require_over(actor_role, target_role, action)

    return authorize


class KickUser(Moderation):
    """Put a member out of a room (moderator and above, on lower roles)."""

    name = "KICK_USER"
    syntax = "KICK_USER:<room>:<user>[:<reason>]"
    summary = "Remove a member below your role from a room (moderator+); they may join again"
    arity = (2, 3)
    action = "kick"

    def parse(self, arguments):
        """A room, a user, an optional reason."""
        return _room_user_reason(arguments)

    async def moderate(self, context, parsed):
        """Remove the member; tell the room and them."""
        name, username, reason = parsed
        user, rooms = context.user, context.store.rooms
        room, _ = await access.member_room(context, name, "kick")
        target = await access.known_user(context, username)
        await rooms.kick(room, user, target, reason, _over("kick"))
        ref = events.RoomRef(room.id, room.name)
        await context.publish(events.UserKicked(ref, target.id, target.username, user.username, reason))
        return Reply.ok(room.name, target.username)


class BanUser(Moderation):
    """Ban a user from a room (admin and above, on lower roles or outsiders)."""

    name = "BAN_USER"
    syntax = "BAN_USER:<room>:<user>[:<reason>]"
    summary = "Ban a user below your role from a room (admin+); they leave it, cannot join, lose pending invitations"
    arity = (2, 3)
    action = "ban"

    def parse(self, arguments):
        """A room, a user, an optional reason."""
        return _room_user_reason(arguments)

    async def moderate(self, context, parsed):
        """Ban, remove, revoke; tell the room and them."""
        name, username, reason = parsed
        user, rooms = context.user, context.store.rooms
        room, _ = await access.member_room(context, name, "ban")
        target = await access.known_user(context, username)
        ban = await rooms.ban(room, user, target, reason, _over("ban"))
        ref = events.RoomRef(room.id, room.name)
        await context.publish(
            events.UserBanned(ref, target.id, target.username, user.username, reason),
            *(events.InvitationRevoked(i, target.id, room.name, user.username) for i in ban.revoked),
        )
        return Reply.ok(room.name, target.username)


class UnbanUser(Moderation):
    """Lift a ban (admin and above)."""

    name = "UNBAN_USER"
    syntax = "UNBAN_USER:<room>:<user>"
    summary = "Lift a user's ban from a room (admin+); they may join or be invited again"
    arity = (2, 2)
    action = "unban"

    def parse(self, arguments):
        """A room and a user."""
        return validation.room_name(arguments[0]), validation.username(arguments[1])

    async def moderate(self, context, parsed):
        """Remove the ban."""
        name, username = parsed
        room, _ = await access.member_room(context, name, "unban")
        target = await access.known_user(context, username)
        await context.store.rooms.unban(room, context.user, target, _over("unban"))
        return Reply.ok(room.name, target.username)


create_room = CreateRoom()
join_room = JoinRoom()
leave_room = LeaveRoom()
list_rooms = ListRooms()
room_info = RoomInfo()
room_members = RoomMembers()
set_topic = SetTopic()
set_role = SetRole()
kick_user = KickUser()
ban_user = BanUser()
unban_user = UnbanUser()
