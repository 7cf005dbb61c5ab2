# -*- test-case-name: tests.test_messages -*-
"""
What the message and direct-message commands share.

Rooms and direct conversations are one model, but they are named
differently: a room by its name, a direct conversation as C{@<the other
party>}, so the same conversation is C{@bob} to alice and C{@alice} to
bob.  Events name a room by L{RoomRef} (L{room_ref}), which each front end
renders for each viewer, and every argument naming a conversation may be
either form (L{resolve}).
"""

from typing import Any

from attrs import evolve

from lairchat import permissions, validation
from lairchat.access import member_room
from lairchat.errors import AccessDenied, InvalidInput, NotFound
from lairchat.events import DirectMessageSent, MessageSent, RoomRef
from lairchat.models import Message, MessageAccess, Party, Room, User

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


async def room_ref(context: Any, room: Room) -> RoomRef:
    """A room as events name it: by name, or a conversation by its two parties."""
    if room.is_direct:
        parties = await context.store.conversations.parties(room.id)
        return RoomRef(room.id, "", tuple((p.user_id, p.username) for p in parties))
    return RoomRef(room.id, room.name)


async def name_for_caller(context: Any, room: Room) -> str:
    """What a room (or conversation) is called for the caller."""
    if not room.is_direct:
        return room.name
    return "@" + (await room_ref(context, room)).other_party(context.user.id)


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


async def delivered_live(context: Any, room: RoomRef, message: Message) -> None:
    """
    Note a new message of a direct conversation as delivered to the other
    party when they are online on any node (they just got it as an event),
    so that it is not delivered again at their next login.
    """
    for party_id, _ in room.parties:
        if party_id != message.sender_id:
            await context.store.conversations.mark_delivered_if_online(room.id, party_id, message.id)


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
    outbox = context.outbox()
    room = await context.store.conversations.open(Party(me.id, me.username), Party(other.id, other.username), outbox)
    await context.deliver(outbox)
    message = await context.store.messages.post(room.id, me.id, text)
    if message is None:
        raise AccessDenied(f"you cannot write to {other.username}")
    await context.publish(DirectMessageSent(room.id, message.id, me.id, me.username, other.id, other.username,
                                            message.created_ms, message.text))
    await context.store.conversations.mark_delivered_if_online(room.id, other.id, message.id)
    return message, other


async def send_to_room(context: Any, name: str, text: str) -> tuple[Message, str]:
    """
    Send a message to a room by name: one statement (shared with the
    messages sent meanwhile) stores it and records its event when the
    caller may send there.  The room's id comes from the node's memory of
    names it resolved before, or from a look-up, which also says why a
    message is refused.

    @return: the message and the room's name.
    @raise NotFound: no such room (or a private one the caller is not in).
    @raise AccessDenied: the caller is not a member (or the room went as
        the message was sent).
    @raise lairchat.errors.PermissionDenied: the caller's role may not send.
    """
    me, names = context.user, context.server.room_names
    ref = names.get(name.lower())
    if ref is None:
        room, _ = await resolve(context, name, "send")
        ref = names.remember(RoomRef(room.id, room.name))
    template = MessageSent(ref, 0, me.id, me.username, 0, text, origin=context.origin)
    posted = await context.store.messages.send_to_room(template)
    if posted is None:
        names.forget(ref)
        try:
            room, _ = await resolve(context, name, "send")
        except NotFound:
            # it was there a moment ago: it went as the message was sent
            raise AccessDenied(f"you are not a member of {ref.name}") from None
        if room.id == ref.id:
            raise AccessDenied(f"you are not a member of {room.name}")
        ref = names.remember(RoomRef(room.id, room.name))
        posted = await context.store.messages.send_to_room(evolve(template, room=ref))
        if posted is None:
            raise AccessDenied(f"you are not a member of {room.name}")
    await context.server.bus.committed([posted.seq], [posted.event])
    return posted.message, ref.name


class RoomNames:
    """
    The ids of the room names this node resolved (room names are unique,
    ids are never reused): a stale entry only costs a look-up, since a
    message to it is refused and the name resolved again.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._refs: dict[str, RoomRef] = {}

    def get(self, lowered: str) -> RoomRef | None:
        """The room last resolved for a lower-cased name."""
        return self._refs.get(lowered)

    def remember(self, ref: RoomRef) -> RoomRef:
        """Keep a resolved room (the oldest goes when full)."""
        if len(self._refs) >= self._size:
            self._refs.pop(next(iter(self._refs)))
        self._refs[ref.name.lower()] = ref
        return ref

    def forget(self, ref: RoomRef) -> None:
        """Drop a room that refused a message."""
        if self._refs.get(ref.name.lower()) == ref:
            del self._refs[ref.name.lower()]
