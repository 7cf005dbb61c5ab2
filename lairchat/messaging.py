# -*- test-case-name: tests.test_messages -*-
"""
What the message and direct-message commands share.

Rooms and direct conversations are one model, but they are named
differently on the wire: a room by its name, a direct conversation as
C{@<the other party>}, so the same conversation is C{@bob} to alice and
C{@alice} to bob.  Every event about a message is therefore rendered per
recipient (L{broadcast}), and every argument naming a conversation may be
either form (L{resolve}).
"""

from typing import Any

from attrs import frozen

from lairchat import permissions, validation
from lairchat.access import member_room
from lairchat.errors import AccessDenied, InvalidInput, NotFound
from lairchat.models import Message, MessageAccess, Room, User
from lairchat.wire import render

HISTORY_DEFAULT = 50
"""Messages in a history page when no limit is given."""

HISTORY_MAX = 200
"""The largest history page."""


def conversation_ref(value: str) -> str:
    """
    An argument naming a conversation: a room name, or C{@<user>} for a
    direct conversation.
    """
    if value.startswith("@"):
        return "@" + validation.username(value[1:])
    return validation.room_name(value)


def history_limit(value: str | None) -> int:
    """A history page size: 1 to L{HISTORY_MAX}; absent or empty means L{HISTORY_DEFAULT}."""
    if value is None or value == "":
        return HISTORY_DEFAULT
    return validation.count(value, "limit", 1, HISTORY_MAX)


def before_id(value: str | None) -> int | None:
    """An optional message id that a history page ends before."""
    if value is None or value == "":
        return None
    return validation.identifier(value, "before_id")


@frozen
class Audience:
    """
    Who hears about a room's messages, and what the room is called for
    each of them.

    @ivar names: pairs of (the room's name on the wire, the ids of the
        users who see it so).
    """

    room: Room
    names: tuple[tuple[str, tuple[int, ...]], ...]

    def name_for(self, user_id: int) -> str:
        """What the room is called for one of its members."""
        for name, user_ids in self.names:
            if user_id in user_ids:
                return name
        return self.room.name or ""

    def user_ids(self) -> list[int]:
        """Every member."""
        return [u for _, user_ids in self.names for u in user_ids]


async def audience(context: Any, room: Room) -> Audience:
    """The members of a room (or conversation) and its name for each."""
    if room.is_direct:
        parties = await context.store.conversations.parties(room.id)
        names = tuple(
            (f"@{p.username}", tuple(q.user_id for q in parties if q.user_id != p.user_id)) for p in parties
        )
        return Audience(room, names)
    return Audience(room, ((room.name, tuple(await context.store.rooms.member_ids(room.id))),))


async def name_for_caller(context: Any, room: Room) -> str:
    """What a room (or conversation) is called for the caller."""
    if not room.is_direct:
        return room.name
    return (await audience(context, room)).name_for(context.user.id)


async def broadcast(context: Any, room: Room, kind: str, *fields: Any) -> Audience:
    """
    Send an event about a room to every online connection of every member
    but the caller's own connection, C{<KIND>:<room>:<fields>} with the
    room named as each recipient calls it.  Call it only after the change
    was committed.
    """
    members = await audience(context, room)
    for name, user_ids in members.names:
        context.hub.deliver(user_ids, render(kind, name, *fields), exclude=context.connection)
    return members


async def resolve(context: Any, ref: str, action: str) -> tuple[Room, str]:
    """
    The room or conversation an argument names, for a member allowed to do
    C{action} there, and its name as the caller sees it.

    @param ref: a value of L{conversation_ref}.
    @raise NotFound: no such room, user or conversation.
    @raise InvalidInput: C{@<the caller>}.
    @raise AccessDenied: the caller is not a member of the room.
    """
    if ref.startswith("@"):
        other = await direct_recipient(context, ref[1:])
        room = await context.store.conversations.between(context.user.id, other.id)
        if room is None:
            raise NotFound(f"no conversation with {other.username}")
        return room, f"@{other.username}"
    room, _ = await member_room(context, ref, action)
    return room, room.name


async def visible_message(context: Any, message_id: int, action: str = "read") -> MessageAccess:
    """
    A message that the caller, a member of its room allowed to do
    C{action} there, can see.  A deleted message is not found; so is a
    message of a private room or of someone else's conversation, so that
    ids do not reveal them.

    @raise NotFound: no such message, deleted, or not the caller's to see.
    @raise AccessDenied: a message of a public room the caller is not in.
    @raise lairchat.errors.PermissionDenied: the caller's role forbids C{action}.
    """
    access = await context.store.messages.locate(message_id, context.user.id)
    if access is None or access.message.deleted:
        raise NotFound(f"no message {message_id}")
    if access.role is None:
        room = access.room
        if not room.is_direct and room.privacy == "public":
            raise AccessDenied(f"you are not a member of {room.name}")
        raise NotFound(f"no message {message_id}")
    permissions.require(access.role, action)
    return access


def history_line(name: str, message: Message) -> str:
    """
    One C{HISTORY} line:
    C{HISTORY:<room>:<id>:<sender>:<ts>:<parent_id or 0>:<edited 0|1>:<text>}.
    """
    return render(
        "HISTORY", name, message.id, message.sender, message.created_ms, message.parent_id, message.edited,
        message.text,
    )


async def delivered_live(context: Any, room: Room, message: Message) -> None:
    """
    Note a new message of a direct conversation as delivered to the other
    party when they are online (they just got it as an event), so that it
    is not delivered again at their next login.
    """
    if not room.is_direct:
        return
    for party in await context.store.conversations.parties(room.id):
        if party.user_id != message.sender_id and context.hub.is_online(party.user_id):
            await context.store.conversations.mark_delivered(room.id, party.user_id, message.id)


async def direct_recipient(context: Any, name: str) -> User:
    """
    The user a direct message goes to.

    @raise NotFound: no such user.
    @raise InvalidInput: it is the caller.
    """
    other = await context.store.users.by_name(name)
    if other is None:
        raise NotFound(f"no user named {name}")
    if other.id == context.user.id:
        raise InvalidInput("you cannot have a direct conversation with yourself")
    return other


async def send_direct(context: Any, name: str, text: str) -> tuple[Message, User]:
    """
    Send a direct message, starting the conversation on first use: stored,
    then C{PRIVATE_MESSAGE:<from>:<to>:<id>:<ts>:<text>} to the recipient's
    connections and the sender's other connections.

    @return: the message and its recipient.
    @raise NotFound: no such user.
    @raise InvalidInput: a message to oneself.
    """
    me = context.user
    other = await direct_recipient(context, name)
    room = await context.store.conversations.open(me.id, other.id)
    message = await context.store.messages.post(room.id, me.id, text)
    if message is None:
        raise AccessDenied(f"you cannot write to {other.username}")
    line = render("PRIVATE_MESSAGE", me.username, other.username, message.id, message.created_ms, message.text)
    context.hub.deliver([other.id, me.id], line, exclude=context.connection)
    if context.hub.is_online(other.id):
        await context.store.conversations.mark_delivered(room.id, other.id, message.id)
    return message, other
