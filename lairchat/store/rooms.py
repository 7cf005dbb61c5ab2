# -*- test-case-name: tests.test_rooms -*-
"""
Rooms, membership and bans.  Direct-message conversations are rooms of kind
C{direct} with two members, so every message operation serves both.
"""

from lairchat.models import Member, Room, to_ms
from lairchat.store.database import Database, Transaction

ROOM_COLUMNS = "r.id, r.name, r.kind, r.privacy, r.topic, r.owner_id, r.created_at, r.invite_template"
"""The columns L{room_from_row} reads, for a C{rooms} table aliased C{r}."""

MEMBER_COLUMNS = "m.room_id, m.user_id, u.username, m.role, m.joined_at, m.last_read_id"
"""The columns L{member_from_row} reads: C{room_members m} joined to C{users u}."""


def room_from_row(row: tuple) -> Room:
    """Build a L{Room} from the first eight columns of C{row} (L{ROOM_COLUMNS})."""
    return Room(
        id=row[0],
        name=row[1],
        kind=row[2],
        privacy=row[3],
        topic=row[4],
        owner_id=row[5],
        created_ms=to_ms(row[6]),
        invite_template=row[7],
    )


def member_from_row(row: tuple) -> Member:
    """Build a L{Member} from the first six columns of C{row} (L{MEMBER_COLUMNS})."""
    return Member(
        room_id=row[0],
        user_id=row[1],
        username=row[2],
        role=row[3],
        joined_ms=to_ms(row[4]),
        last_read_id=row[5],
    )


class RoomStore:
    """The C{rooms}, C{room_members} and C{room_bans} tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def by_name(self, name: str) -> Room | None:
        """The room (kind C{room}) with this name, case-insensitively, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.kind = 'room' AND lower(r.name) = lower(%s)", (name,)
        )
        return room_from_row(row) if row else None

    async def by_id(self, room_id: int) -> Room | None:
        """The room or conversation with this id, or L{None}."""
        row = await self._db.fetchone(f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = %s", (room_id,))
        return room_from_row(row) if row else None

    async def membership(self, room_id: int, user_id: int) -> Member | None:
        """The user's membership of the room, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {MEMBER_COLUMNS} FROM room_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.room_id = %s AND m.user_id = %s",
            (room_id, user_id),
        )
        return member_from_row(row) if row else None

    async def member_ids(self, room_id: int) -> list[int]:
        """The ids of every member of the room (the audience of its events)."""
        rows = await self._db.fetchall("SELECT user_id FROM room_members WHERE room_id = %s", (room_id,))
        return [r[0] for r in rows]

    async def is_banned(self, room_id: int, user_id: int) -> bool:
        """Whether the user is banned from the room."""
        row = await self._db.fetchone(
            "SELECT 1 FROM room_bans WHERE room_id = %s AND user_id = %s", (room_id, user_id)
        )
        return row is not None

    @staticmethod
    async def add_member_in(tx: Transaction, room_id: int, user_id: int, role: str) -> bool:
        """
        Make the user a member with C{role}, inside a transaction that changes
        something else too (an invitation's acceptance).

        @return: whether they became a member (false: they already were).
        """
        touched = await tx.execute(
            "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, %s) "
            "ON CONFLICT (room_id, user_id) DO NOTHING",
            (room_id, user_id, role),
        )
        return touched == 1
