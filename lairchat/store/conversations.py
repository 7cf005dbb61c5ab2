# -*- test-case-name: tests.test_dms -*-
"""
Direct conversations: the two-member rooms of kind C{direct} behind direct
messages, named by their C{direct_key} (C{"<lower user id>:<higher user
id>"}), and the offline delivery of what arrived while a party was away
(C{room_members.delivered_id}).

Their messages are ordinary messages (L{lairchat.store.messages}), so every
message operation serves them too.
"""

import psycopg2.errors

from lairchat.errors import NotFound
from lairchat.events import ConversationOpened, RoomRef
from lairchat.models import Conversation, Message, Party, Room, to_ms
from lairchat.store.database import Database, Transaction
from lairchat.store.events import Outbox
from lairchat.store.messages import MESSAGE_COLUMNS, MESSAGE_WIDTH, SENDER_JOIN, message_from_row
from lairchat.store.rooms import ROOM_COLUMNS, room_from_row


def direct_key(one: int, other: int) -> str:
    """The key of the conversation between two users, whichever way round."""
    low, high = sorted((one, other))
    return f"{low}:{high}"


class ConversationStore:
    """The direct rooms among C{rooms} and their two C{room_members}."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self, one: "Party", other: "Party", outbox: Outbox | None = None) -> Room:
        """
        The conversation between two users, created with both as members on
        first use (recording L{ConversationOpened} in C{outbox} then).  Safe
        when both start it at once: the key is unique, and the loser of the
        race finds the winner's room.

        @raise NotFound: a party's account is gone (a guest deleted as its
            connection closed, after the caller looked it up); nothing was
            created.
        """
        key = direct_key(one.user_id, other.user_id)

        async def create(tx: Transaction) -> tuple:
            row = await tx.fetchone(
                "INSERT INTO rooms AS r (kind, privacy, direct_key) VALUES ('direct', 'private', %s) "
                f"ON CONFLICT (direct_key) DO NOTHING RETURNING {ROOM_COLUMNS}",
                (key,),
            )
            if row is None:
                return await tx.fetchone(f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.direct_key = %s", (key,))
            await tx.execute(
                "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, 'member'), (%s, %s, 'member') "
                "ON CONFLICT DO NOTHING",
                (row[0], one.user_id, row[0], other.user_id),
            )
            if outbox is not None:
                parties = tuple(sorted(((one.user_id, one.username), (other.user_id, other.username))))
                await outbox.add_in(tx, [ConversationOpened(RoomRef(row[0], "", parties))])
            return row

        existing = await self.between(one.user_id, other.user_id)
        if existing is not None:
            return existing
        try:
            return room_from_row(await self._db.transaction(create))
        except psycopg2.errors.ForeignKeyViolation:
            raise NotFound("no such user: they left") from None

    async def between(self, one: int, other: int) -> Room | None:
        """The conversation between two users, or L{None} if they never wrote."""
        row = await self._db.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.direct_key = %s", (direct_key(one, other),)
        )
        return room_from_row(row) if row else None

    async def parties(self, room_id: int) -> list[Party]:
        """The members of a conversation (or any room), by id and name."""
        rows = await self._db.fetchall(
            "SELECT m.user_id, u.username FROM room_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.room_id = %s ORDER BY m.user_id",
            (room_id,),
        )
        return [Party(r[0], r[1]) for r in rows]

    async def list_for(self, user_id: int) -> list[Conversation]:
        """
        Every conversation of the user, with its newest message's time and
        how many messages from the other party are unread; the most recent
        first.
        """
        rows = await self._db.fetchall(
            "SELECT r.id, o.user_id, u.username,"
            "  (SELECT m.created_at FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NULL"
            "   ORDER BY m.id DESC LIMIT 1) AS last,"
            "  (SELECT count(*) FROM messages m WHERE m.room_id = r.id AND m.deleted_at IS NULL"
            "   AND m.id > me.last_read_id AND m.sender_id IS DISTINCT FROM me.user_id) "
            "FROM room_members me JOIN rooms r ON r.id = me.room_id AND r.kind = 'direct' "
            "JOIN room_members o ON o.room_id = r.id AND o.user_id <> me.user_id "
            "JOIN users u ON u.id = o.user_id "
            "WHERE me.user_id = %s ORDER BY last DESC NULLS LAST, r.id DESC",
            (user_id,),
        )
        return [Conversation(r[0], Party(r[1], r[2]), to_ms(r[3]), r[4]) for r in rows]

    async def mark_delivered(self, room_id: int, user_id: int, message_id: int) -> None:
        """Note that a member was handed the conversation's messages up to C{message_id}."""
        await self._db.execute(
            "UPDATE room_members SET delivered_id = GREATEST(delivered_id, %s) WHERE room_id = %s AND user_id = %s",
            (message_id, room_id, user_id),
        )

    async def take_undelivered(self, user_id: int, limit: int) -> tuple[list[Message], int]:
        """
        The messages the other parties sent the user that were never handed
        to them (the newest C{limit}, oldest first), all now noted as
        delivered.

        @return: the messages, and how many older ones were left out.
        """

        async def take(tx: Transaction) -> tuple[list[Message], int]:
            await tx.execute(
                "SELECT 1 FROM room_members me JOIN rooms r ON r.id = me.room_id AND r.kind = 'direct' "
                "WHERE me.user_id = %s FOR UPDATE OF me",
                (user_id,),
            )
            rows = await tx.fetchall(
                f"SELECT {MESSAGE_COLUMNS}, count(*) OVER () FROM messages m {SENDER_JOIN} "
                "JOIN room_members me ON me.room_id = m.room_id AND me.user_id = %(user)s "
                "JOIN rooms r ON r.id = m.room_id AND r.kind = 'direct' "
                "WHERE m.id > me.delivered_id AND m.deleted_at IS NULL "
                "AND m.sender_id IS DISTINCT FROM me.user_id "
                "ORDER BY m.id DESC LIMIT %(limit)s",
                {"user": user_id, "limit": limit},
            )
            if not rows:
                return [], 0
            newest = rows[0][0]
            await tx.execute(
                "UPDATE room_members me SET delivered_id = GREATEST(me.delivered_id,"
                "  coalesce((SELECT max(m.id) FROM messages m WHERE m.room_id = me.room_id AND m.deleted_at IS NULL AND m.id <= %(newest)s), 0)) "
                "FROM rooms r WHERE r.id = me.room_id AND r.kind = 'direct' AND me.user_id = %(user)s",
                {"user": user_id, "newest": newest},
            )
            return [message_from_row(r) for r in reversed(rows)], rows[0][MESSAGE_WIDTH] - len(rows)

        return await self._db.transaction(take)
