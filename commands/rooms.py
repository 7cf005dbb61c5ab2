# -*- test-case-name: tests.test_rooms -*-
"""
The line protocol's room commands: CREATE_ROOM, JOIN_ROOM, LEAVE_ROOM,
LIST_ROOMS, ROOM_INFO, ROOM_MEMBERS, SET_TOPIC, SET_ROLE, KICK_USER,
BAN_USER and UNBAN_USER.

Each parses its arguments, calls its operation in L{lairchat.domain.rooms}
(where the behaviour is: look-ups, permission checks, the change and its
events) and renders the answer.  The current room, which plain lines go
to, is this front end's own state: set here on the asking connection, and
forgotten by L{lairchat.protocol.ChatProtocol.receive} when an event takes
its user out of that room.
"""

from lairchat import validation
from lairchat.command import Command, Reply
from lairchat.domain import rooms
from lairchat.errors import InvalidInput
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
        """Create the room; it becomes the current room."""
        name, privacy = parsed
        room = await rooms.create(context.actor, name, privacy)
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
        """Join (or enter) the room; it becomes the current room."""
        room = await rooms.join(context.actor, name)
        context.connection.current_room = room.name
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
        """
        Leave the named room, or the current one.  (The current room is
        forgotten when the departure's event reaches this connection.)
        """
        if name is None:
            name = context.connection.current_room
            if name is None:
                raise InvalidInput("you are in no room: LEAVE_ROOM:<room>", name="NO_CURRENT_ROOM")
        room = await rooms.leave(context.actor, name)
        return Reply.ok(room.name)


class ListRooms(Command):
    """The rooms one can see."""

    name = "LIST_ROOMS"
    syntax = "LIST_ROOMS"
    summary = "List the public rooms and the private rooms you belong to"

    async def run(self, context, parsed):
        """One ROOM line per visible room, by name."""
        summaries = await rooms.visible_rooms(context.actor)
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
        summary = await rooms.info(context.actor, name)
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
        roster = await rooms.members(context.actor, name)
        lines = [
            render("MEMBER", roster.room.name, m.member.username, m.member.role, "online" if m.online else "offline")
            for m in roster.members
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
        """Set the topic."""
        name, topic = parsed
        room = await rooms.set_topic(context.actor, name, topic)
        return Reply.ok(room.name)


class SetRole(Command):
    """Give a member another role (admin and above; never above one's own)."""

    name = "SET_ROLE"
    syntax = "SET_ROLE:<room>:<user>:<role>"
    summary = "Change a member's role (admin+; only for members below you, never above your own role)"
    arity = (3, 3)

    def parse(self, arguments):
        """A room, a user and a role."""
        return validation.room_name(arguments[0]), validation.username(arguments[1]), validation.role(arguments[2])

    async def run(self, context, parsed):
        """Change the role."""
        name, username, role = parsed
        done = await rooms.set_role(context.actor, name, username, role)
        return Reply.ok(done.room.name, done.target.username, role)


def _room_user_reason(arguments: list[str]) -> tuple[str, str, str]:
    """Parse C{<room>:<user>[:<reason>]}."""
    reason = validation.optional_text(arguments[2] if len(arguments) > 2 else None, "reason")
    return validation.room_name(arguments[0]), validation.username(arguments[1]), reason


class KickUser(Command):
    """Put a member out of a room (moderator and above, on lower roles)."""

    name = "KICK_USER"
    syntax = "KICK_USER:<room>:<user>[:<reason>]"
    summary = "Remove a member below your role from a room (moderator+); they may join again"
    arity = (2, 3)

    def parse(self, arguments):
        """A room, a user, an optional reason."""
        return _room_user_reason(arguments)

    async def run(self, context, parsed):
        """Remove the member."""
        name, username, reason = parsed
        done = await rooms.kick(context.actor, name, username, reason)
        return Reply.ok(done.room.name, done.target.username)


class BanUser(Command):
    """Ban a user from a room (admin and above, on lower roles or outsiders)."""

    name = "BAN_USER"
    syntax = "BAN_USER:<room>:<user>[:<reason>]"
    summary = "Ban a user below your role from a room (admin+); they leave it, cannot join, lose pending invitations"
    arity = (2, 3)

    def parse(self, arguments):
        """A room, a user, an optional reason."""
        return _room_user_reason(arguments)

    async def run(self, context, parsed):
        """Ban the user."""
        name, username, reason = parsed
        done = await rooms.ban(context.actor, name, username, reason)
        return Reply.ok(done.room.name, done.target.username)


class UnbanUser(Command):
    """Lift a ban (admin and above)."""

    name = "UNBAN_USER"
    syntax = "UNBAN_USER:<room>:<user>"
    summary = "Lift a user's ban from a room (admin+); they may join or be invited again"
    arity = (2, 2)

    def parse(self, arguments):
        """A room and a user."""
        return validation.room_name(arguments[0]), validation.username(arguments[1])

    async def run(self, context, parsed):
        """Lift the ban."""
        name, username = parsed
        done = await rooms.unban(context.actor, name, username)
        return Reply.ok(done.room.name, done.target.username)


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
