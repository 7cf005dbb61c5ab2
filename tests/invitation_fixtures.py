"""
What the invitation tests share: users, rooms, memberships and presence
made straight in the database (so these tests do not depend on the room
commands), outboxes for store calls, a look at the event log, and a
recording stand-in for a connection.
"""

import itertools
from typing import Any

from lairchat.events import Event, Origin, kind
from lairchat.models import User
from lairchat.store import Store
from lairchat.store.events import Outbox
from lairchat.store.users import USER_COLUMNS, user_from_row
from lairchat.wire import render_event

DAY_MS = 24 * 3600 * 1000

TEST_ORIGIN = Origin("test-node")
"""The origin of the events of changes a test makes straight through the store."""


def new_outbox() -> Outbox:
    """An outbox for one change a test makes straight through the store."""
    return Outbox(TEST_ORIGIN)


async def logged(store: Store, *kinds: str) -> list[Event]:
    """The events of these kinds (class names) in the event log, oldest first."""
    return [entry.event for entry in await store.events.since(0) if kind(entry.event) in kinds]


async def mark_online(store: Store, user: User, node: str = "test-node") -> None:
    """Note C{user} online on C{node} (registered first), straight in the database."""
    await store.events.join(node, 0)
    await store.db.execute(
        "INSERT INTO online (node, user_id) VALUES (%s, %s) ON CONFLICT DO NOTHING", (node, user.id)
    )


async def make_user(store: Store, name: str, server_role: str = "user") -> User:
    """An account (with an unusable password hash: these users never log in)."""
    row = await store.db.fetchone(
        f"INSERT INTO users AS u (username, password_hash, server_role) VALUES (%s, 'x', %s) RETURNING {USER_COLUMNS}",
        (name, server_role),
    )
    return user_from_row(row)


async def make_room(store: Store, name: str, owner: User, privacy: str = "public") -> int:
    """A room owned by C{owner} (a member with the role owner); its id."""
    row = await store.db.fetchone(
        "INSERT INTO rooms (name, privacy, owner_id) VALUES (%s, %s, %s) RETURNING id", (name, privacy, owner.id)
    )
    await add_member(store, row[0], owner, "owner")
    return row[0]


async def add_member(store: Store, room_id: int, user: User, role: str = "member") -> None:
    """Make C{user} a member of the room with C{role}."""
    await store.db.execute(
        "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, %s)", (room_id, user.id, role)
    )


async def ban(store: Store, room_id: int, user: User) -> None:
    """Ban C{user} from the room (the row only: no revocation, no removal)."""
    await store.db.execute("INSERT INTO room_bans (room_id, user_id) VALUES (%s, %s)", (room_id, user.id))


async def role_of(store: Store, room_id: int, user: User) -> str | None:
    """C{user}'s role in the room, or L{None}."""
    row = await store.db.fetchone(
        "SELECT role FROM room_members WHERE room_id = %s AND user_id = %s", (room_id, user.id)
    )
    return row[0] if row else None


async def statuses(store: Store, invitation_id: int) -> tuple[str, list[str]]:
    """An invitation's stored status and the statuses of its trail, oldest first."""
    row = await store.db.fetchone("SELECT status FROM invitations WHERE id = %s", (invitation_id,))
    trail = await store.db.fetchall(
        "SELECT status FROM invitation_events WHERE invitation_id = %s ORDER BY id", (invitation_id,)
    )
    return row[0], [r[0] for r in trail]


class RecordingConnection:
    """A connection that keeps, as lines, the events shown to it."""

    _ids = itertools.count(1)
    PLAIN_KEY = None

    def __init__(self) -> None:
        self.events: list[str] = []
        self.current_room: str | None = None
        self.connection_id = next(self._ids)
        self.user: User | None = None

    def receive(self, event: Any, is_origin: bool, cache: dict) -> bool:
        """Keep the line the event is shown as, unless this connection caused it."""
        if is_origin or self.user is None:
            return False
        line = render_event(event, self.user.id)
        if line is None:
            return False
        self.events.append(line)
        return True

    def __repr__(self) -> str:
        return f"<RecordingConnection {len(self.events)} events>"


async def online(server: Any, user: User) -> RecordingConnection:
    """Put C{user} online on C{server}'s node (registered first) on a new recording connection."""
    await server.store.events.join(server.node, server.bus.last)
    connection = RecordingConnection()
    connection.user = user
    await server.user_online(connection, user)
    return connection
