# -*- test-case-name: tests.test_messages -*-
"""
Messages, reactions, read markers and search, for rooms and direct
conversations alike (a direct conversation is a room of kind C{direct}).

A deleted message stays in the table with C{deleted_at} set: it leaves
history, threads and search, and can no longer be edited, replied to or
reacted to.  Every statement that writes on behalf of a user checks, in
the statement itself, that the user is a member of the room, so a
membership that ends between a command's check and its write cannot slip
through.
"""

from collections.abc import Callable
from typing import Any

import psycopg2
from attrs import evolve, frozen
from twisted.internet.defer import Deferred

from lairchat import permissions
from lairchat.errors import NotFound
from lairchat.events import DirectMessageSent, MessageSent, ReplySent, RoomRef
from lairchat.models import Activity, Found, HistoryWindow, Message, MessageAccess, ReactionSummary, Unread, to_ms
from lairchat.store.batch import GroupCommit
from lairchat.store.database import Database, Transaction
from lairchat.store.events import Outbox, batch_event_params
from lairchat.store.rooms import ROOM_COLUMNS, room_from_row

MESSAGE_COLUMNS = (
    "m.id, m.room_id, m.sender_id, coalesce(s.username, ''), m.body, coalesce(m.parent_id, 0), "
    "m.created_at, m.edited_at, m.deleted_at IS NOT NULL, m.notice"
)
"""
The columns L{message_from_row} reads, for C{messages m} left-joined to
C{users s} on the sender.
"""

MESSAGE_WIDTH = 10
"""How many columns L{MESSAGE_COLUMNS} is: the columns a query selects after them start there."""

SENDER_JOIN = "LEFT JOIN users s ON s.id = m.sender_id"
"""The join that L{MESSAGE_COLUMNS} needs."""

THREAD_MAX = 1000
"""The most replies L{MessageStore.thread} returns (the newest ones)."""

SEARCH_MAX = 20
"""The most results a search returns."""

_NEWEST = 2**63 - 1
"""An id above every message id: "before the end"."""

_AT_MS = "(timestamptz 'epoch' + %({})s * interval '1 millisecond')"
"""The SQL of a moment given in epoch milliseconds (a named parameter), exact to the millisecond."""


def message_from_row(row: tuple) -> Message:
    """Build a L{Message} from the first L{MESSAGE_WIDTH} columns of C{row} (L{MESSAGE_COLUMNS})."""
    return Message(
        id=row[0],
        room_id=row[1],
        sender_id=row[2],
        sender=row[3],
        text=row[4],
        parent_id=row[5],
        created_ms=to_ms(row[6]),
        edited_ms=to_ms(row[7]),
        deleted=row[8],
        notice=row[9],
    )


_POST_SQL = (
    "SELECT n, id, created_at, seq, room_id, room_name FROM lairchat_post_messages("
    "  %(room_ids)s::bigint[], %(rooms)s::bigint[], %(names)s::text[], %(senders)s::bigint[], %(bodies)s::text[],"
    "  %(parents)s::bigint[], %(notices)s::boolean[], %(kinds)s::text[], %(payloads)s::text[], %(nodes)s::text[],"
    "  %(connections)s::bigint[], %(roles)s::text[], %(batch)s, %(lock)s, %(channel)s, %(node)s)"
)
"""
New messages, many at once, in one statement and one commit: the
function C{lairchat_post_messages} of C{schema.sql} (what it checks,
stores and records is said there), which plans its statements once per
connection; each recorded event carries the batch's token and the item's
place in it (C{batch}, C{n}: what L{_SETTLE_SQL} finds them by should the
connection be lost).  A room message whose room is gone goes to the room
of its name as it is when stored; each row says which room that was.
"""

_SETTLE_SQL = (
    "SELECT (e.payload->>'n')::bigint, m.id, m.created_at, e.seq, m.room_id, e.payload->'room'->>1 FROM events e"
    " JOIN messages m ON m.id = (e.payload->>'message_id')::bigint"
    " WHERE e.seq > %(after)s AND e.payload->>'batch' = %(batch)s ORDER BY e.seq"
)
"""
What a batch of L{_POST_SQL} stored, in the rows it would have returned:
found by its token among the events (kept at least a minute, so they are
still there when this is asked, seconds later).
"""


SEARCH_INDEX_LOCK_KEY = 0x1A125EA7
"""The advisory lock held by the node that moves the search index's pending entries (L{index_pending})."""

_INDEX_PENDING_SQL = (
    "SET LOCAL lock_timeout = '100ms'; "
    "SELECT CASE WHEN pg_try_advisory_xact_lock(%s) THEN gin_clean_pending_list('messages_search'::regclass) END"
)


async def index_pending(db: Database) -> int | None:
    """
    Move the search index's pending entries into the index proper, unless
    another node is doing it.

    New and edited messages enter the full-text index (GIN, with fast
    update) through a pending list, which is cheap to append to; the
    write that finds that list past C{gin_pending_list_limit} (4 MB, some
    20,000 messages) moves it into the index first and takes about 0.1 s
    longer, and every message batched with it, or queued behind it, waits
    that long.  Moved a little at a time by every node that posts
    messages (L{lairchat.node.NodeService}), on a connection that serves
    no request, the list never gets that long.

    It waits at most 0.1 s for the list (an autovacuum may be moving it;
    the caller's connection also says that its node is alive).

    @return: how many pages of pending entries were moved; L{None} when
        another node, or an autovacuum, was moving them.
    @raise psycopg2.errors.InsufficientPrivilege: the database role does
        not own the index.
    """
    try:
        row = await db.fetchone(_INDEX_PENDING_SQL, (SEARCH_INDEX_LOCK_KEY,))
    except psycopg2.errors.LockNotAvailable:
        return None
    return row[0]


def _room_id(template: Any) -> int:
    """The room of a message event."""
    return template.room_id if isinstance(template, DirectMessageSent) else template.room.id


def _room_name(template: Any) -> str | None:
    """
    The lower-cased name a room message is sent to (the statement finds
    the room by it should the room of its id be gone); L{None} for a reply
    or a direct message, which go to their room only.
    """
    return template.room.name.lower() if type(template) is MessageSent else None


@frozen
class Posted:
    """A message that was stored, and its event with its sequence number."""

    message: Message
    event: Any
    seq: int


class MessageStore:
    """
    The C{messages} and C{reactions} tables, and the read markers of C{room_members}.

    @ivar group_commit: the group commit that writes new messages
        (L{post_with_event}): what the server hands their results out
        under (its C{output}) and measures (its C{observe}).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.group_commit = GroupCommit(self._post_batch)
        self._seen_seq = 0

    @property
    def posted(self) -> int:
        """How many messages this store has written with L{post_with_event} (or tried to)."""
        return self.group_commit.items

    def post_with_event(self, template: MessageSent | ReplySent | DirectMessageSent) -> Deferred:
        """
        Store a new message (a reply when C{template} is a L{ReplySent})
        from C{template.sender_id}, if a member allowed to send, and record
        its event (C{template} with its id and time filled in), in one
        statement shared with the messages posted meanwhile.

        @return: a Deferred firing with a L{Posted}, or L{None} when nothing
            was stored (no such room, not a member, not allowed, the thread's
            root gone).
        """
        return self.group_commit.submit(template)

    async def _post_batch(self, items: list) -> list[Posted | None]:
        """Write a batch of L{post_with_event} items; a failing statement fails them all."""
        params = batch_event_params(items)
        params.update({
            "roles": list(permissions.roles_allowed("send")),
            "room_ids": sorted({_room_id(t) for t in items}),
            "rooms": [_room_id(t) for t in items],
            "names": [_room_name(t) for t in items],
            "senders": [t.sender_id for t in items],
            "bodies": [t.text for t in items],
            "parents": [t.parent_id if isinstance(t, ReplySent) else None for t in items],
            "notices": [getattr(t, "notice", False) for t in items],
        })
        batch = params["batch"]
        after = self._seen_seq

        async def settle() -> list[tuple] | None:
            rows = await self._db.fetchall(_SETTLE_SQL, {"after": after, "batch": batch})
            return rows or None

        try:
            # one autocommitted statement; should its connection be lost, the
            # store learns whether the messages were stored (and answers them
            # OK if so) by the batch's token
            rows = await self._db.write_once(_POST_SQL, params, settle)
        except psycopg2.errors.ForeignKeyViolation:
            # the statement locks the rooms and senders first, so only a row
            # deleted some other way (an operator's DELETE of a message that
            # is replied to) gets here: nothing of the batch was written;
            # each is tried on its own
            if len(items) == 1:
                return [None]
            results = []
            for item in items:
                results.extend(await self._post_batch([item]))
            return results
        results: list[Posted | None] = [None] * len(items)
        if rows:
            self._seen_seq = max(self._seen_seq, max(row[3] for row in rows))
        for n, message_id, created_at, seq, room_id, room_name in rows:
            template = items[n - 1]
            ts = to_ms(created_at)
            if room_id != _room_id(template):
                # the room went; the message went to the room of its name now
                template = evolve(template, room=RoomRef(room_id, room_name))
            event = evolve(template, message_id=message_id, ts=ts)
            parent = template.parent_id if isinstance(template, ReplySent) else 0
            message = Message(message_id, room_id, template.sender_id, template.sender, template.text,
                              parent, ts, notice=getattr(template, "notice", False))
            results[n - 1] = Posted(message, event, seq)
        return results

    async def post(self, room_id: int, sender_id: int, text: str, parent_id: int | None = None) -> Message | None:
        """
        Store a message (a reply when C{parent_id} is given) from a member,
        with no event: for fixtures and imports (the server posts with
        L{post_with_event}).

        @return: the message, or L{None} when the sender is not a member of
            the room (nothing is stored).
        """
        try:
            rows = await self._db.fetchall(
                "WITH m AS ("
                "  INSERT INTO messages (room_id, sender_id, body, parent_id)"
                "  SELECT %(room)s, %(sender)s, %(text)s, %(parent)s"
                "  WHERE EXISTS (SELECT 1 FROM room_members WHERE room_id = %(room)s AND user_id = %(sender)s)"
                "  RETURNING *"
                f") SELECT {MESSAGE_COLUMNS} FROM m {SENDER_JOIN}",
                {"room": room_id, "sender": sender_id, "text": text, "parent": parent_id},
                retry=False,
            )
        except psycopg2.errors.ForeignKeyViolation:
            # the room was deleted (its last member left) as this was stored
            return None
        return message_from_row(rows[0]) if rows else None

    async def locate(self, message_id: int, viewer_id: int) -> MessageAccess | None:
        """
        A message (deleted or not), its room, and the viewer's role there.

        @return: L{None} when there is no such message.
        """
        row = await self._db.fetchone(
            f"SELECT {MESSAGE_COLUMNS}, {ROOM_COLUMNS}, me.role FROM messages m {SENDER_JOIN} "
            "JOIN rooms r ON r.id = m.room_id "
            "LEFT JOIN room_members me ON me.room_id = m.room_id AND me.user_id = %s "
            "WHERE m.id = %s",
            (viewer_id, message_id),
        )
        if row is None:
            return None
        rest = row[MESSAGE_WIDTH:]
        return MessageAccess(message_from_row(row), room_from_row(rest[:-1]), rest[-1])

    async def edit(self, message_id: int, editor_id: int, text: str, outbox: Outbox | None = None,
                   announce: Callable[[Message], list] | None = None) -> Message | None:
        """
        Replace the text of a message, by its author while a member, and
        record C{announce(edited)} in C{outbox} in the same transaction.

        @return: the edited message, or L{None} when it is not the editor's,
            is deleted, or the editor is no longer a member.
        """

        async def work(tx: Transaction) -> Message | None:
            rows = await tx.fetchall(
                "WITH m AS ("
                "  UPDATE messages SET body = %(text)s, edited_at = clock_timestamp()"
                "  WHERE id = %(id)s AND sender_id = %(editor)s AND deleted_at IS NULL"
                "  AND EXISTS (SELECT 1 FROM room_members me"
                "              WHERE me.room_id = messages.room_id AND me.user_id = %(editor)s)"
                "  RETURNING *"
                f") SELECT {MESSAGE_COLUMNS} FROM m {SENDER_JOIN}",
                {"id": message_id, "editor": editor_id, "text": text},
            )
            if not rows:
                return None
            edited = message_from_row(rows[0])
            if outbox is not None and announce is not None:
                await outbox.add_in(tx, announce(edited))
            return edited

        return await self._db.transaction(work)

    async def delete(self, message_id: int, outbox: Outbox | None = None, events: list = ()) -> bool:
        """
        Delete a message (it leaves history, threads and search), recording
        C{events} in C{outbox} in the same transaction.

        @return: whether it was deleted now (false: already deleted, or none).
        """

        async def work(tx: Transaction) -> bool:
            rows = await tx.fetchall(
                "UPDATE messages SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL RETURNING id",
                (message_id,),
            )
            if rows and outbox is not None:
                await outbox.add_in(tx, list(events))
            return bool(rows)

        return await self._db.transaction(work)

    async def add_reaction(self, message_id: int, user_id: int, emoji: str, outbox: Outbox | None = None,
                           events: list = ()) -> bool:
        """
        React to an undeleted message, as a member of its room, recording
        C{events} in C{outbox} in the same transaction.

        @return: whether the reaction was added (false: the user already
            reacted with this emoji, or the message is gone, or they are not
            a member).
        """

        async def work(tx: Transaction) -> bool:
            rows = await tx.fetchall(
                "INSERT INTO reactions (message_id, user_id, emoji) "
                "SELECT m.id, %(user)s, %(emoji)s FROM messages m "
                "JOIN room_members me ON me.room_id = m.room_id AND me.user_id = %(user)s "
                "WHERE m.id = %(id)s AND m.deleted_at IS NULL "
                "ON CONFLICT DO NOTHING RETURNING 1",
                {"id": message_id, "user": user_id, "emoji": emoji},
            )
            if rows and outbox is not None:
                await outbox.add_in(tx, list(events))
            return bool(rows)

        try:
            return await self._db.transaction(work)
        except psycopg2.errors.ForeignKeyViolation:
            # the message went with its room (the last member left) meanwhile
            raise NotFound(f"no message {message_id}") from None

    async def remove_reaction(self, message_id: int, user_id: int, emoji: str, outbox: Outbox | None = None,
                              events: list = ()) -> bool:
        """
        Take back a reaction, recording C{events} in C{outbox} in the same
        transaction.

        @return: whether there was one to take back.
        """

        async def work(tx: Transaction) -> bool:
            rows = await tx.fetchall(
                "DELETE FROM reactions WHERE message_id = %s AND user_id = %s AND emoji = %s RETURNING 1",
                (message_id, user_id, emoji),
            )
            if rows and outbox is not None:
                await outbox.add_in(tx, list(events))
            return bool(rows)

        return await self._db.transaction(work)

    async def reactions(self, message_id: int) -> list[ReactionSummary]:
        """Every emoji a message got, with who reacted; the first used first."""
        rows = await self._db.fetchall(
            "SELECT x.emoji, array_agg(u.username ORDER BY x.created_at, u.username) "
            "FROM reactions x JOIN users u ON u.id = x.user_id "
            "WHERE x.message_id = %s GROUP BY x.emoji ORDER BY min(x.created_at), x.emoji",
            (message_id,),
        )
        return [ReactionSummary(message_id, r[0], tuple(r[1])) for r in rows]

    async def history(self, room_id: int, limit: int, before_id: int | None = None,
                      window: HistoryWindow | None = None) -> list[Message]:
        """
        The newest C{limit} undeleted messages of a room with an id below
        C{before_id} (all of them when L{None}) and within C{window}
        (L{HistoryWindow}: the oldest C{limit} there when it says so),
        oldest first.  Times compare at the millisecond, as messages show
        them.
        """
        window = window or HistoryWindow()
        before = min(before_id if before_id is not None else _NEWEST,
                     window.before_id if window.before_id is not None else _NEWEST)
        conditions = ["m.room_id = %(room)s", "m.deleted_at IS NULL", "m.id < %(before)s"]
        if window.after_id is not None:
            conditions.append("m.id > %(after)s")
        if window.after_ms is not None:
            conditions.append(f"m.created_at >= {_AT_MS.format('after_ms')} + interval '1 millisecond'")
        if window.before_ms is not None:
            conditions.append(f"m.created_at < {_AT_MS.format('before_ms')}")
        rows = await self._db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m {SENDER_JOIN} WHERE {' AND '.join(conditions)} "
            f"ORDER BY m.id {'ASC' if window.oldest else 'DESC'} LIMIT %(limit)s",
            {"room": room_id, "before": before, "after": window.after_id, "after_ms": window.after_ms,
             "before_ms": window.before_ms, "limit": limit},
        )
        return [message_from_row(r) for r in (rows if window.oldest else reversed(rows))]

    async def last_before(self, room_id: int, ms: int) -> Message | None:
        """The newest undeleted message of a room whose time (to the millisecond) is at or before C{ms}."""
        rows = await self._db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages m {SENDER_JOIN} "
            f"WHERE m.room_id = %(room)s AND m.deleted_at IS NULL "
            f"AND m.created_at < {_AT_MS.format('ms')} + interval '1 millisecond' ORDER BY m.id DESC LIMIT 1",
            {"room": room_id, "ms": ms},
        )
        return message_from_row(rows[0]) if rows else None

    async def activity(self, user_id: int, after_ms: int, before_ms: int, limit: int) -> list[Activity]:
        """
        The rooms and conversations of the user whose newest undeleted
        message is strictly between two times (epoch milliseconds, compared
        at the millisecond), the least recent first, at most C{limit}.
        """
        rows = await self._db.fetchall(
            "SELECT r.id, r.kind, coalesce(r.name, ou.username), last.created_at "
            "FROM room_members me JOIN rooms r ON r.id = me.room_id "
            "LEFT JOIN room_members o ON r.kind = 'direct' AND o.room_id = r.id AND o.user_id <> me.user_id "
            "LEFT JOIN users ou ON ou.id = o.user_id "
            "JOIN LATERAL (SELECT m.created_at FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NULL"
            "              ORDER BY m.id DESC LIMIT 1) last ON true "
            "WHERE me.user_id = %(user)s AND (r.kind = 'room' OR ou.username IS NOT NULL) "
            f"AND last.created_at >= {_AT_MS.format('after_ms')} + interval '1 millisecond' "
            f"AND last.created_at < {_AT_MS.format('before_ms')} "
            "ORDER BY last.created_at, r.id LIMIT %(limit)s",
            {"user": user_id, "after_ms": after_ms, "before_ms": before_ms, "limit": limit},
        )
        return [Activity(r[0], r[1], r[2], to_ms(r[3])) for r in rows]

    async def read_marker(self, room_id: int, user_id: int) -> Message | None:
        """The message a member's read marker of a room is at (L{None}: none, or not a member)."""
        rows = await self._db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM room_members me JOIN messages m ON m.id = me.last_read_id {SENDER_JOIN} "
            "WHERE me.room_id = %s AND me.user_id = %s",
            (room_id, user_id),
        )
        return message_from_row(rows[0]) if rows else None

    async def thread(self, root_id: int) -> list[Message]:
        """
        The root of a thread and its replies (the newest L{THREAD_MAX}),
        undeleted ones only, oldest first.
        """
        rows = await self._db.fetchall(
            f"(SELECT {MESSAGE_COLUMNS} FROM messages m {SENDER_JOIN} "
            " WHERE m.id = %(root)s AND m.deleted_at IS NULL) "
            "UNION ALL "
            f"(SELECT {MESSAGE_COLUMNS} FROM messages m {SENDER_JOIN} "
            " WHERE m.parent_id = %(root)s AND m.deleted_at IS NULL ORDER BY m.id DESC LIMIT %(max)s) "
            "ORDER BY 1",
            {"root": root_id, "max": THREAD_MAX},
        )
        return [message_from_row(r) for r in rows]

    async def search(self, user_id: int, query: str, limit: int = SEARCH_MAX) -> list[Found]:
        """
        Full-text search over the undeleted messages of every room and
        conversation the user is a member of (the scope is part of the
        query), best match first.
        """
        rows = await self._db.fetchall(
            "WITH q AS (SELECT websearch_to_tsquery('simple', %(q)s) AS q), "
            "hits AS ("
            "  SELECT m.id, ts_rank(m.search, q.q) AS rank FROM messages m, q"
            "  WHERE m.search @@ q.q AND m.deleted_at IS NULL"
            "  AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = %(user)s)"
            "  ORDER BY rank DESC, m.id DESC LIMIT %(limit)s"
            ") "
            f"SELECT {MESSAGE_COLUMNS}, r.kind, coalesce(r.name, other.username) "
            f"FROM hits h JOIN messages m ON m.id = h.id {SENDER_JOIN} "
            "JOIN rooms r ON r.id = m.room_id "
            "LEFT JOIN LATERAL ("
            "  SELECT u.username FROM room_members o JOIN users u ON u.id = o.user_id"
            "  WHERE r.kind = 'direct' AND o.room_id = r.id AND o.user_id <> %(user)s LIMIT 1"
            ") other ON true "
            "ORDER BY h.rank DESC, h.id DESC",
            {"q": query, "user": user_id, "limit": limit},
        )
        return [Found(message_from_row(r), r[MESSAGE_WIDTH], r[MESSAGE_WIDTH + 1] or "") for r in rows]

    async def mark_read(self, room_id: int, user_id: int, message_id: int, outbox: Outbox | None = None,
                        announce: Callable[[int], Any] | None = None) -> bool:
        """
        Move a member's read marker of a room up to C{message_id} (never
        back); a read message also counts as delivered.  When the marker
        moved, record C{announce(<the message's time, epoch ms>)} in
        C{outbox}, in the same transaction.

        @return: whether C{message_id} is a message of that room and the user
            a member of it.
        """

        async def work(tx: Transaction) -> bool:
            row = await tx.fetchone(
                "SELECT me.last_read_id, m.created_at FROM room_members me "
                "JOIN messages m ON m.id = %(id)s AND m.room_id = me.room_id "
                "WHERE me.room_id = %(room)s AND me.user_id = %(user)s FOR UPDATE OF me",
                {"room": room_id, "user": user_id, "id": message_id},
            )
            if row is None:
                return False
            await tx.execute(
                "UPDATE room_members SET last_read_id = GREATEST(last_read_id, %(id)s), "
                "delivered_id = GREATEST(delivered_id, %(id)s) WHERE room_id = %(room)s AND user_id = %(user)s",
                {"room": room_id, "user": user_id, "id": message_id},
            )
            if message_id > (row[0] or 0) and outbox is not None and announce is not None:
                await outbox.add_in(tx, [announce(to_ms(row[1]))])
            return True

        return await self._db.transaction(work)

    async def unread(self, user_id: int) -> list[Unread]:
        """
        Every room and conversation of the user holding unread messages:
        undeleted messages from others after the user's read marker, sent
        since they joined.  The most recently active first.
        """
        rows = await self._db.fetchall(
            "SELECT r.id, r.kind, coalesce(r.name, ou.username), count(m.id) "
            "FROM room_members me JOIN rooms r ON r.id = me.room_id "
            "LEFT JOIN room_members o ON r.kind = 'direct' AND o.room_id = r.id AND o.user_id <> me.user_id "
            "LEFT JOIN users ou ON ou.id = o.user_id "
            "JOIN messages m ON m.room_id = me.room_id AND m.id > me.last_read_id AND m.deleted_at IS NULL "
            "  AND m.sender_id IS DISTINCT FROM me.user_id AND m.created_at >= me.joined_at "
            "WHERE me.user_id = %s AND (r.kind = 'room' OR ou.username IS NOT NULL) "
            "GROUP BY r.id, r.kind, r.name, ou.username ORDER BY max(m.id) DESC",
            (user_id,),
        )
        return [Unread(r[0], r[1], r[2], r[3]) for r in rows]
