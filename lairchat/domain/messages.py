# -*- test-case-name: tests.test_messages -*-
"""
Messages and direct messages: sending (to a room, as a reply, to a user),
editing, deleting, reactions, history, threads, search, read markers,
unread counts, conversations, and what a user is handed at login.

Rooms and direct conversations are one model.  A room is named by its
name; a direct conversation by C{@<the other party>}, so the same
conversation is C{@bob} to alice and C{@alice} to bob.  Every operation
that takes a conversation takes either form (L{resolve}); events name it
by a L{RoomRef}, which each front end shows each viewer as they call it.

A new message is stored and its event recorded by one statement, which
the store shares among the messages sent meanwhile (group commit); the
other changes record their events in their own transaction.
"""

import secrets
from typing import Any

from attrs import frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from lairchat import permissions
from lairchat.domain.access import member_room
from lairchat.errors import AccessDenied, Conflict, InvalidInput, NotFound, PermissionDenied
from lairchat.events import (
    DirectMessageSent,
    Event,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    ReactionAdded,
    ReactionRemoved,
    ReadMarkerMoved,
    ReplySent,
    RoomRef,
    TagsSent,
)
from lairchat.models import (
    Activity, Conversation, Found, HistoryWindow, Message, MessageAccess, Party, ReactionSummary, Room, Unread, User,
)

OFFLINE_MAX = 500
"""The most direct messages handed to a user at one login (the newest)."""


@frozen
class Sent:
    """A message that was stored, and what its conversation is called for its sender."""

    message: Message
    name: str


@frozen
class Page:
    """Messages of one conversation, oldest first, and its name for the viewer."""

    name: str
    messages: tuple


# Names and look-ups


class RoomNames:
    """
    The rooms whose names this node resolved, by lower-cased name (names
    are unique, ids never reused).  A message to a known name goes to the
    store at once, which finds the room by its name as it is then (a stale
    entry is replaced by the room it found); a join to a stale entry finds
    its room gone and looks the name up again.
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
        """Drop a room that refused a message or a join."""
        if self._refs.get(ref.name.lower()) == ref:
            del self._refs[ref.name.lower()]


async def room_ref(actor: Any, room: Room) -> RoomRef:
    """A room as events name it: by name, or a conversation by its two parties."""
    if room.is_direct:
        parties = await actor.store.conversations.parties(room.id)
        return RoomRef(room.id, "", tuple((p.user_id, p.username) for p in parties))
    return RoomRef(room.id, room.name)


def name_for(ref: RoomRef, user_id: int) -> str:
    """What a room (or conversation) is called for one of its members."""
    return "@" + ref.other_party(user_id) if ref.is_direct else ref.name


async def name_for_caller(actor: Any, room: Room) -> str:
    """What a room (or conversation) is called for the actor."""
    if not room.is_direct:
        return room.name
    return name_for(await room_ref(actor, room), actor.user.id)


async def direct_recipient(actor: Any, name: str) -> User:
    """
    The user a direct message goes to.

    @raise NotFound: no such user.
    @raise InvalidInput: it is the actor.
    """
    other = await actor.store.users.by_name(name)
    if other is None:
        raise NotFound(f"no user named {name}")
    if other.id == actor.user.id:
        raise InvalidInput("you cannot have a direct conversation with yourself")
    return other


async def resolve(actor: Any, ref: str, action: str) -> tuple[Room, str]:
    """
    The room or conversation C{ref} names (a room name, or C{@<user>}), for
    a member allowed to do C{action} there, and its name as the actor
    sees it.

    @raise NotFound: no such room, user or conversation.
    @raise InvalidInput: C{@<the actor>}.
    @raise AccessDenied: the actor is not a member of the room.
    """
    if ref.startswith("@"):
        other = await direct_recipient(actor, ref[1:])
        room = await actor.store.conversations.between(actor.user.id, other.id)
        if room is None:
            raise NotFound(f"no conversation with {other.username}")
        return room, f"@{other.username}"
    room, _ = await member_room(actor, ref, action)
    return room, room.name


async def visible_message(actor: Any, message_id: int, action: str = "read") -> MessageAccess:
    """
    A message that the actor, a member of its room allowed to do C{action}
    there, can see.  A deleted message is not found; so is a message of a
    private room or of someone else's conversation, so that ids do not
    reveal them.

    @raise NotFound: no such message, deleted, or not the actor's to see.
    @raise AccessDenied: a message of a public room the actor is not in.
    @raise PermissionDenied: the actor's role forbids C{action}.
    """
    access = await actor.store.messages.locate(message_id, actor.user.id)
    if access is None or access.message.deleted:
        raise NotFound(f"no message {message_id}")
    if access.role is None:
        room = access.room
        if not room.is_direct and room.privacy == "public":
            raise AccessDenied(f"you are not a member of {room.name}")
        raise NotFound(f"no message {message_id}")
    permissions.require(access.role, action)
    return access


# Sending


async def _post(actor: Any, template: Event) -> Any:
    """Store a message with its event (one shared statement); deliver the event."""
    pending = actor.store.messages.post_with_event(template)
    actor.place_taken()
    posted = await pending
    if posted is not None:
        await actor.server.bus.committed([posted.seq], [posted.event])
    return posted


async def send(actor: Any, ref: str, text: str) -> Sent:
    """
    Send a message to a room, or to a user when C{ref} is C{@<user>}.

    @raise NotFound: no such room or user (or a private room the actor is not in).
    @raise AccessDenied: the actor is not a member (or the room went as
        the message was sent).
    @raise PermissionDenied: the actor's role may not send there.
    @raise InvalidInput: a message to oneself.
    """
    if ref.startswith("@"):
        message, other = await send_direct(actor, ref[1:], text)
        return Sent(message, f"@{other.username}")
    return await send_to_room(actor, ref, text)


async def send_to_room(actor: Any, name: str, text: str, client_tags: str = "", notice: bool = False) -> Sent:
    """
    Send a message to a room by name.  A name this node resolved before
    (L{RoomNames}) goes straight to the store; any other is looked up
    first, which also says why a message is refused.  The store puts the
    message in the room that has that name when it is stored (so a room
    deleted and created again under the same name meanwhile gets it, and a
    connection's messages keep their order).  C{client_tags} (IRC's
    C{+tag}s) go with its event to the members, and are not stored.  A
    C{notice} (IRC's C{NOTICE}) is stored and shown as any message, and
    marked so that IRC shows it as one.
    """
    me, names = actor.user, actor.server.room_names
    ref = names.get(name.lower())
    if ref is None:
        room, _ = await resolve(actor, name, "send")
        ref = names.remember(RoomRef(room.id, room.name))
    template = MessageSent(ref, 0, me.id, me.username, 0, text, me.guest, client_tags, notice, origin=actor.origin)
    posted = await _post(actor, template)
    if posted is None:
        names.forget(ref)
        try:
            room, _ = await resolve(actor, name, "send")
        except NotFound:
            # it was there a moment ago: it went as the message was sent
            raise AccessDenied(f"you are not a member of {ref.name}") from None
        raise AccessDenied(f"you are not a member of {room.name}")
    if posted.event.room != ref:
        names.remember(posted.event.room)
    return Sent(posted.message, posted.event.room.name)


async def send_direct(actor: Any, name: str, text: str, client_tags: str = "",
                      notice: bool = False) -> tuple[Message, User]:
    """
    Send a direct message, starting the conversation on first use.  The
    recipient's connections, on any node, get it now (and the first that
    shows it notes it as delivered: L{Receipts}); otherwise it is handed
    to them at their next login (without C{client_tags}, which only go
    with the live event).  A C{notice} is marked as in L{send_to_room}.

    @return: the message and its recipient.
    @raise NotFound: no such user.
    @raise InvalidInput: a message to oneself.
    """
    me = actor.user
    other = await direct_recipient(actor, name)
    room = await _conversation(actor, other)
    template = DirectMessageSent(room.id, 0, me.id, me.username, other.id, other.username, 0, text, me.guest,
                                 client_tags, notice, origin=actor.origin)
    posted = await _post(actor, template)
    if posted is None:
        raise AccessDenied(f"you cannot write to {other.username}")
    return posted.message, other


async def _conversation(actor: Any, other: User) -> Room:
    """The direct conversation of the actor and C{other}, started on first use."""
    me = actor.user
    outbox = actor.outbox()
    room = await actor.store.conversations.open(Party(me.id, me.username), Party(other.id, other.username), outbox)
    await actor.deliver(outbox)
    return room


async def send_tags(actor: Any, ref: str, tags: str) -> TagsSent:
    """
    Send client-only tags without a message (IRC C{TAGMSG}) to a room, or
    to a user when C{ref} is C{@<user>} (starting the conversation on first
    use): relayed to the members who are online, never stored.

    @return: the event sent.
    @raise NotFound: no such room or user (or a private room the actor is not in).
    @raise AccessDenied: the actor is not a member.
    @raise PermissionDenied: the actor's role may not send there.
    @raise InvalidInput: tags to oneself.
    """
    me = actor.user
    if ref.startswith("@"):
        other = await direct_recipient(actor, ref[1:])
        room = await _conversation(actor, other)
        target = RoomRef(room.id, "", ((me.id, me.username), (other.id, other.username)))
    else:
        room, _ = await member_room(actor, ref, "send")
        target = RoomRef(room.id, room.name)
    event = TagsSent(target, f"t{secrets.token_hex(8)}", me.id, me.username, tags, me.guest, origin=actor.origin)
    seqs = await actor.store.events.record([event], actor.origin)
    await actor.server.bus.committed(seqs, [event])
    return event


async def reply(actor: Any, parent_id: int, text: str, client_tags: str = "", notice: bool = False) -> Sent:
    """
    Reply to a message, in its room, in its thread (threads are one level
    deep: a reply to a reply joins the same thread).  C{client_tags} and
    C{notice} as for L{send_to_room}.

    @raise NotFound: no such message (or not the actor's to see, or gone meanwhile).
    """
    access = await visible_message(actor, parent_id, "send")
    root = access.message.parent_id or access.message.id
    ref = await room_ref(actor, access.room)
    me = actor.user
    template = ReplySent(ref, 0, root, me.id, me.username, 0, text, me.guest, client_tags, notice, origin=actor.origin)
    posted = await _post(actor, template)
    if posted is None:
        raise NotFound(f"no message {parent_id}")
    return Sent(posted.message, name_for(ref, me.id))


# Changing messages


async def edit(actor: Any, message_id: int, text: str) -> Message:
    """
    Replace the text of one's own message, as a member.

    @raise PermissionDenied: it is someone else's.
    @raise NotFound: no such message (or gone meanwhile).
    """
    access = await visible_message(actor, message_id, "send")
    if access.message.sender_id != actor.user.id:
        raise PermissionDenied("only the author can edit a message")
    ref = await room_ref(actor, access.room)
    outbox = actor.outbox()

    def announce(edited: Message) -> list[Event]:
        return [MessageEdited(ref, edited.id, actor.user.username, edited.edited_ms, edited.text)]

    edited = await actor.store.messages.edit(message_id, actor.user.id, text, outbox, announce)
    if edited is None:
        raise NotFound(f"no message {message_id}")
    await actor.deliver(outbox)
    return edited


async def delete(actor: Any, message_id: int, reason: str = "") -> None:
    """
    Delete a message: one's own, or any as a member whose role allows
    C{delete_any}; C{reason} goes with its event.

    @raise NotFound: no such message, or already deleted.
    @raise PermissionDenied: someone else's, and the role does not allow it.
    """
    access = await visible_message(actor, message_id)
    if access.message.sender_id != actor.user.id:
        permissions.require(access.role, "delete_any")
    ref = await room_ref(actor, access.room)
    outbox = actor.outbox()
    if not await actor.store.messages.delete(message_id, outbox, [MessageDeleted(ref, message_id, actor.user.username, reason)]):
        raise NotFound(f"no message {message_id}")
    await actor.deliver(outbox)


async def react(actor: Any, message_id: int, emoji: str, add: bool = True) -> None:
    """
    Add a reaction to a message (C{add}), or take one's own back.

    @raise Conflict: already reacted so.
    @raise NotFound: no such message, or no such reaction to take back.
    """
    access = await visible_message(actor, message_id, "react")
    ref = await room_ref(actor, access.room)
    user = actor.user
    outbox = actor.outbox()
    if add:
        event = ReactionAdded(ref, message_id, user.username, emoji, user.guest)
        if not await actor.store.messages.add_reaction(message_id, user.id, emoji, outbox, [event]):
            raise Conflict(f"you already reacted to message {message_id} with {emoji}")
    else:
        event = ReactionRemoved(ref, message_id, user.username, emoji, user.guest)
        if not await actor.store.messages.remove_reaction(message_id, user.id, emoji, outbox, [event]):
            raise NotFound(f"you have not reacted to message {message_id} with {emoji}")
    await actor.deliver(outbox)


# Reading


async def history(actor: Any, ref: str, limit: int, before: int | None,
                  window: HistoryWindow | None = None) -> Page:
    """
    A page of a room's or conversation's history (members only), within
    C{window} when one is given (L{HistoryWindow}).

    @raise NotFound: no such room or conversation.
    @raise AccessDenied: not a member.
    """
    room, name = await resolve(actor, ref, "read")
    return Page(name, tuple(await actor.store.messages.history(room.id, limit, before, window)))


async def direct_history(actor: Any, username: str, limit: int, before: int | None,
                         window: HistoryWindow | None = None) -> tuple[User, tuple]:
    """
    A page of the direct conversation with a user (within C{window} when
    one is given); none yet is an empty page.

    @raise NotFound: no such user.
    @raise InvalidInput: oneself.
    """
    other = await direct_recipient(actor, username)
    room = await actor.store.conversations.between(actor.user.id, other.id)
    messages = () if room is None else tuple(await actor.store.messages.history(room.id, limit, before, window))
    return other, messages


async def activity(actor: Any, after_ms: int, before_ms: int, limit: int) -> list[Activity]:
    """
    The actor's rooms and conversations whose newest message came strictly
    between two times (epoch milliseconds), the least recent first.
    """
    return await actor.store.messages.activity(actor.user.id, after_ms, before_ms, limit)


async def thread(actor: Any, message_id: int) -> tuple[int, Page]:
    """
    A message's thread: the root and its replies, and the root's id.

    @raise NotFound: no such message, or not the actor's to see.
    """
    access = await visible_message(actor, message_id)
    root = access.message.parent_id or access.message.id
    messages = await actor.store.messages.thread(root)
    return root, Page(await name_for_caller(actor, access.room), tuple(messages))


async def reactions(actor: Any, message_id: int) -> list[ReactionSummary]:
    """Who reacted to a message the actor can see, and with what."""
    await visible_message(actor, message_id)
    return await actor.store.messages.reactions(message_id)


async def search(actor: Any, query: str, limit: int) -> list[Found]:
    """Full-text search over the actor's rooms and conversations, best first."""
    return await actor.store.messages.search(actor.user.id, query, limit)


async def mark_read(actor: Any, ref: str, message_id: int) -> str:
    """
    Move the actor's read marker up to a message of the conversation (never back).

    @return: the conversation's name for the actor.
    @raise NotFound: the id is no message of that conversation.
    """
    room, name = await resolve(actor, ref, "mark_read")
    if not await _move_read_marker(actor, room, message_id):
        raise NotFound(f"no message {message_id} in {name}")
    return name


async def mark_read_until(actor: Any, ref: str, ms: int) -> tuple[str, Message | None]:
    """
    Move the actor's read marker (which is a message id) up to the newest
    message of the conversation sent at or before C{ms} (epoch
    milliseconds; never back): a time with no message at or before it
    moves nothing.

    @return: the conversation's name for the actor, and the message the
        marker is at now (L{None}: none).
    @raise NotFound: no such room or conversation.
    @raise AccessDenied: not a member.
    """
    room, name = await resolve(actor, ref, "mark_read")
    found = await actor.store.messages.last_before(room.id, ms)
    if found is not None:
        await _move_read_marker(actor, room, found.id)
    return name, await actor.store.messages.read_marker(room.id, actor.user.id)


async def _move_read_marker(actor: Any, room: Room, message_id: int) -> bool:
    """
    Move the actor's read marker of C{room} up to C{message_id}; when it
    moved, every connection of the actor, on every node, is told
    (L{ReadMarkerMoved}).

    @return: whether C{message_id} is a message of the room and the actor a member.
    """
    ref = await room_ref(actor, room)
    user_id = actor.user.id
    outbox = actor.outbox()

    def announce(ts: int) -> ReadMarkerMoved:
        return ReadMarkerMoved(user_id, ref, message_id, ts)

    moved = await actor.store.messages.mark_read(room.id, user_id, message_id, outbox, announce)
    await actor.deliver(outbox)
    return moved


async def read_marker(actor: Any, ref: str) -> tuple[str, Message | None]:
    """
    The message the actor's read marker of a conversation is at.

    @return: the conversation's name for the actor, and the message (L{None}: none).
    @raise NotFound: no such room or conversation.
    @raise AccessDenied: not a member.
    """
    room, name = await resolve(actor, ref, "read")
    return name, await actor.store.messages.read_marker(room.id, actor.user.id)


async def unread(actor: Any) -> list[Unread]:
    """Every conversation of the actor holding unread messages."""
    return await actor.store.messages.unread(actor.user.id)


async def conversations(actor: Any) -> list[Conversation]:
    """The actor's direct conversations, the most recent first."""
    return await actor.store.conversations.list_for(actor.user.id)


async def offline_deliveries(actor: Any, user: User) -> tuple[int, list[DirectMessageSent]]:
    """
    The direct messages that arrived while the user had no connection
    (the newest L{OFFLINE_MAX}), oldest first, now noted as delivered.

    @return: how many older ones were left out, and the messages as events.
    """
    await actor.server.receipts.settled(user.id)
    messages, left_out = await actor.store.conversations.take_undelivered(user.id, OFFLINE_MAX)
    return left_out, [
        DirectMessageSent(m.room_id, m.id, m.sender_id, m.sender, user.id, user.username, m.created_ms, m.text,
                          notice=m.notice)
        for m in messages
    ]


def direct_message_received(event: Event, user_id: int) -> tuple[int, int] | None:
    """
    The conversation and message of an event that hands C{user_id} a new
    message of a direct conversation from the other party (a direct
    message, or a reply in the conversation), or L{None}.
    """
    if isinstance(event, DirectMessageSent):
        return (event.room_id, event.message_id) if event.recipient_id == user_id else None
    if isinstance(event, ReplySent) and event.room.is_direct and event.sender_id != user_id:
        return event.room.id, event.message_id
    return None


class Receipts:
    """
    Notes, for this node, that direct messages were shown to their
    recipient live, so they are not handed over again at a later login.

    A connection notes a message only once everything before it reached
    it: the login's offline delivery is done (until then it keeps what it
    showed and notes it after).  So moving the conversation's C{delivered}
    mark up to that message never skips one the user has not seen.
    Writes for one user are made one after another; a login's offline
    delivery and a user going offline wait for those under way.
    """

    log = Logger()

    def __init__(self, store: Any) -> None:
        self.store = store
        self._chains: dict[int, Deferred] = {}
        self._waiting: dict[int, int] = {}

    def note(self, room_id: int, user_id: int, message_id: int) -> None:
        """Note that C{user_id} was shown message C{message_id} of the conversation C{room_id}."""

        async def write() -> None:
            try:
                await self.store.conversations.mark_delivered(room_id, user_id, message_id)
            except Exception as error:
                self.log.warn("delivery of message {id} not noted: {error}", id=message_id, error=error)

        chain = self._chains.get(user_id) or succeed(None)
        self._waiting[user_id] = self._waiting.get(user_id, 0) + 1

        def done(_: Any) -> None:
            self._waiting[user_id] -= 1
            if not self._waiting[user_id]:
                del self._waiting[user_id]
                del self._chains[user_id]

        # kept before the callbacks are added: with the database known to be
        # down, write() ends at once and done() runs (and forgets it) right away
        self._chains[user_id] = chain
        chain.addCallback(lambda _: Deferred.fromCoroutine(write()))
        chain.addBoth(done)

    def settled(self, user_id: int) -> Deferred:
        """Fires once the notes for C{user_id} made so far are written."""
        chain = self._chains.get(user_id)
        if chain is None:
            return succeed(None)
        waited: Deferred = Deferred()
        chain.addBoth(lambda result: (waited.callback(None), result)[1])
        return waited
