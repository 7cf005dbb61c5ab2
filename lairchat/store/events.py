# -*- test-case-name: tests.test_event_log -*-
"""
The event log: every event, written by the transaction that made its
change, read by every node in sequence order; the nodes that read it, and
who is online on which node.

Ordering.  A C{bigserial} is taken before its transaction commits, so two
transactions could commit in the other order of their sequence numbers,
and a reader that saw the later number first would skip the earlier event
for good.  Here that cannot happen: every writer takes one transaction
advisory lock (L{EVENTS_LOCK_KEY}) before it takes its sequence numbers,
and holds it until it has committed.  So numbers are handed out in commit
order, and a reader that sees event M sees every committed event below M:
it simply reads C{seq > last} and moves C{last} to the highest it got.
The lock is taken by the statement that records the events, which is the
last of its transaction, so it is held only from that statement to the
commit; the C{NOTIFY} of the same commit already serialises notifying
commits on a lock of Postgres's own.

Wake-ups.  The same statement sends one C{NOTIFY} per transaction on
L{CHANNEL} whose payload is the highest sequence number it wrote and the
node that wrote it; the events themselves (a message may be 16 KB) are
read from the table.  A message batch's notification also carries its
events when they fit in one (L{inline_events}): a node that has every
event before them hands them on without a read (L{lairchat.bus}).  A
message batch of a node alone (no other node registered) sends none:
only the node itself would read it, and it hands its own commits on.  A
starting node registers at the end of the log under the ordering lock
(L{EventLog.join_at_end}), so every batch after that end notifies it; a
node taken for dead while it still runs reads such batches with its poll
until it registers again.
"""

import json
import secrets
from typing import Any, Callable

from attrs import evolve
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lairchat.events import EVENT_TYPES, Event, Origin, decode, encode, kind
from lairchat.store.database import Database, Reconnector, Transaction, _WatchedConnection

CHANNEL = "lairchat_events"
"""The NOTIFY channel every node listens on."""

EVENTS_LOCK_KEY = 0x1A12EE01
"""The advisory lock that makes sequence order commit order."""

def _insert_sql() -> str:
    """The statement that records events given as parallel arrays."""
    return (
        "SELECT pg_advisory_xact_lock(%(lock)s); "
        "WITH ins AS ("
        "  INSERT INTO events (node, connection, kind, payload)"
        "  SELECT %(node)s, %(connection)s, k, p::jsonb"
        "  FROM unnest(%(kinds)s::text[], %(payloads)s::text[]) WITH ORDINALITY AS t(k, p, n)"
        "  ORDER BY n RETURNING seq"
        ") SELECT seq, pg_notify(%(channel)s, (max(seq) OVER ())::text || ' ' || %(node)s) FROM ins ORDER BY seq"
    )


def event_params(events: list[Event], origin: Origin | None) -> dict:
    """The parameters of L{_insert_sql} for C{events}."""
    return {
        "lock": EVENTS_LOCK_KEY,
        "node": origin.node if origin else "",
        "connection": origin.connection if origin else 0,
        "kinds": [kind(e) for e in events],
        "payloads": [encode(e) for e in events],
        "channel": CHANNEL,
    }


def batch_event_params(events: list[Event]) -> dict:
    """
    The parameters with which a group-committed statement records its
    items' events (each with its own origin): those of L{event_params}
    (the first item's origin as C{node}, for the notification), parallel
    arrays C{nodes} and C{connections}, and a new token for the batch
    (C{batch}: what finds its events should the connection be lost before
    the answer).
    """
    origins = [e.origin for e in events]
    params = event_params(events, origins[0])
    params.update({
        "nodes": [o.node if o else "" for o in origins],
        "connections": [o.connection if o else 0 for o in origins],
        "batch": secrets.token_hex(8),
    })
    return params


async def record_in(tx: Transaction, events: list[Event], origin: Origin | None) -> list[int]:
    """
    Record C{events} inside the transaction that made their change; it
    must be the transaction's last statement (it takes the ordering lock).

    @return: their sequence numbers, in order.
    """
    if not events:
        return []
    rows = await tx.fetchall(_insert_sql(), event_params(events, origin))
    return [r[0] for r in rows]


def logged_from_row(row: Any) -> "Logged | None":
    """
    The event of a row of the log (C{seq, node, connection, kind,
    payload}); L{None} when it cannot be read (a kind this node does not
    know: a newer node's).
    """
    seq, node, connection, kind_name, data = row
    try:
        return Logged(seq, decode(kind_name, data, Origin(node, connection)))
    except (KeyError, TypeError, IndexError):
        return None


def inline_events(inline: str) -> "list[Logged] | None":
    """
    The events a notification carried (a JSON array of rows of the log,
    see L{EventListener}); L{None} when any of them cannot be read (the
    log is read instead, which skips what it cannot read).
    """
    try:
        rows = json.loads(inline)
        found = [logged_from_row(row) for row in rows]
    except (ValueError, TypeError):
        return None
    return None if None in found else found


class Logged:
    """One event read back from the log, with its sequence number."""

    __slots__ = ("seq", "event")

    def __init__(self, seq: int, event: Event) -> None:
        self.seq = seq
        self.event = event


_REGISTER_SQL = (
    "INSERT INTO nodes (id, acked_seq) {acked} "
    "ON CONFLICT (id) DO UPDATE SET seen_at = now(), acked_seq = excluded.acked_seq"
)
"""
Register a node, or register it again, with the row that C{{acked}}
gives: its id and the sequence number it has read up to.
"""


class EventLog:
    """The C{events}, C{nodes} and C{online} tables."""

    log = Logger()

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(self, events: list[Event], origin: Origin | None) -> list[int]:
        """
        Record events that go with no change of their own (presence), in a
        statement of their own.

        @return: their sequence numbers.
        """
        if not events:
            return []
        rows = await self._db.fetchall(_insert_sql(), event_params(events, origin), retry=False)
        return [r[0] for r in rows]

    async def since(self, after: int, limit: int = 1000, upto: int | None = None) -> list[Logged]:
        """
        The events after sequence number C{after} (and at most C{upto}),
        oldest first, at most C{limit}.  An event of an unknown kind (a
        newer node's) is skipped, and not counted in C{limit}: however many
        there are in a row, they never make a reader that got fewer than
        C{limit} stop short of the events after them.
        """
        rows = await self._db.fetchall(
            "SELECT seq, node, connection, kind, payload FROM events WHERE seq > %s AND seq <= %s "
            "AND kind = ANY(%s) ORDER BY seq LIMIT %s",
            (after, upto if upto is not None else 2**63 - 1, list(EVENT_TYPES), limit),
        )
        found = []
        for row in rows:
            logged = logged_from_row(row)
            if logged is None:
                self.log.warn("skipping event {seq} of unknown kind {kind}", seq=row[0], kind=row[3])
                continue
            found.append(logged)
        return found

    async def latest(self) -> int:
        """The highest sequence number written so far (0 for none)."""
        row = await self._db.fetchone("SELECT coalesce(max(seq), 0) FROM events")
        return row[0]

    # Nodes

    async def join(self, node: str, acked: int) -> None:
        """Register a node that has read everything up to C{acked}."""
        await self._db.execute(_REGISTER_SQL.format(acked="VALUES (%(node)s, %(acked)s)"),
                               {"node": node, "acked": acked})

    async def join_at_end(self, node: str) -> int:
        """
        Register a starting node at the end of the log, in one step under
        the ordering lock (L{EVENTS_LOCK_KEY}): a commit under way comes
        before that end, and every later one finds the node registered, so
        that a message batch notifies it (a node alone is not notified).

        @return: the highest sequence number written so far (0 for none):
            where the node starts reading.
        """
        row = await self._db.fetchone(
            "SELECT pg_advisory_xact_lock(%(lock)s); "
            + _REGISTER_SQL.format(acked="SELECT %(node)s, coalesce(max(seq), 0) FROM events")
            + " RETURNING acked_seq",
            {"lock": EVENTS_LOCK_KEY, "node": node},
        )
        return row[0]

    async def heartbeat(self, node: str, acked: int) -> bool:
        """
        Say a node is alive and has read up to C{acked}.

        @return: whether the node is still registered (false: the others
            took it for dead).
        """
        rows = await self._db.fetchall(
            "UPDATE nodes SET seen_at = now(), acked_seq = greatest(acked_seq, %s) WHERE id = %s RETURNING 1",
            (acked, node),
            retry=False,
        )
        return bool(rows)

    async def trim(self, keep_seconds: float = 60.0) -> int:
        """
        Delete the events every live node has read, but keep the last
        C{keep_seconds} (a node catching up after a short outage reads them).

        @return: how many went.
        """
        rows = await self._db.fetchall(
            "WITH gone AS (DELETE FROM events WHERE seq < (SELECT coalesce(min(acked_seq), 0) FROM nodes) "
            "AND created_at < now() - make_interval(secs => %s) RETURNING 1) SELECT count(*) FROM gone",
            (keep_seconds,),
            retry=False,
        )
        return rows[0][0]

    async def dead_nodes(self, timeout_seconds: float) -> list[str]:
        """The nodes not heard from for C{timeout_seconds}."""
        rows = await self._db.fetchall(
            "SELECT id FROM nodes WHERE seen_at < now() - make_interval(secs => %s) ORDER BY id",
            (timeout_seconds,),
        )
        return [r[0] for r in rows]

    async def remove_node(self, node: str, outbox: "Outbox", offline: Callable) -> None:
        """
        Forget a node (it stopped or died) and who was online on it, and
        record C{offline(user_id, username, room_ids)} events in
        C{outbox} for each of its users who is now online nowhere, in one
        transaction.
        """

        async def work(tx: Transaction) -> list[int]:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (PRESENCE_LOCK_KEY,))
            rows = await tx.fetchall(
                "WITH gone AS (DELETE FROM online WHERE node = %s RETURNING user_id) "
                "SELECT u.id, u.username, "
                "  coalesce((SELECT array_agg(m.room_id ORDER BY m.room_id) FROM room_members m"
                "            WHERE m.user_id = u.id), '{}') "
                "FROM gone JOIN users u ON u.id = gone.user_id "
                "WHERE NOT EXISTS (SELECT 1 FROM online o WHERE o.user_id = gone.user_id AND o.node <> %s) "
                "ORDER BY u.id",
                (node, node),
            )
            await tx.execute("DELETE FROM away WHERE user_id = ANY(%s)", ([r[0] for r in rows],))
            await tx.execute("DELETE FROM nodes WHERE id = %s", (node,))
            await outbox.add_in(tx, [offline(r[0], r[1], r[2]) for r in rows])

        await self._db.transaction(work)

    # Presence

    async def came_online(self, node: str, user_id: int, username: str, outbox: "Outbox",
                          announce: Callable) -> None:
        """
        Note that the user has a connection on C{node}; when they were
        online nowhere before, record C{announce(user_id, username,
        room_ids)} in C{outbox}, in the same transaction.
        """
        await self.came_online_all(node, [user_id], outbox, announce)

    async def came_online_all(self, node: str, user_ids: list[int], outbox: "Outbox", announce: Callable) -> None:
        """
        L{came_online} for many users at once, in one transaction (a node
        that registers again notes all its users so).  Nothing is noted for
        a node that is not registered.
        """

        async def work(tx: Transaction) -> None:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (PRESENCE_LOCK_KEY,))
            rows = await tx.fetchall(
                "WITH registered AS (SELECT 1 FROM nodes WHERE id = %(node)s), "
                "fresh AS ("
                "  INSERT INTO online (node, user_id)"
                "  SELECT %(node)s, u FROM unnest(%(users)s::bigint[]) AS u, registered"
                "  ON CONFLICT DO NOTHING RETURNING user_id"
                ") "
                "SELECT u.id, u.username, "
                "  coalesce((SELECT array_agg(m.room_id ORDER BY m.room_id) FROM room_members m"
                "            WHERE m.user_id = u.id), '{}') "
                "FROM fresh JOIN users u ON u.id = fresh.user_id "
                "WHERE NOT EXISTS (SELECT 1 FROM online o WHERE o.user_id = u.id AND o.node <> %(node)s) "
                "ORDER BY u.id",
                {"node": node, "users": list(user_ids)},
            )
            await outbox.add_in(tx, [announce(r[0], r[1], r[2]) for r in rows])

        await self._db.transaction(work)

    async def went_offline(self, node: str, user_id: int, username: str, outbox: "Outbox",
                           announce: Callable) -> None:
        """
        Note that the user has no connection left on C{node}; when they are
        now online nowhere, record C{announce(...)} in C{outbox}, in the
        same transaction.
        """

        async def work(tx: Transaction) -> None:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (PRESENCE_LOCK_KEY,))
            removed = await tx.execute("DELETE FROM online WHERE node = %s AND user_id = %s", (node, user_id))
            if not removed:
                return
            row = await tx.fetchone("SELECT EXISTS (SELECT 1 FROM online WHERE user_id = %s)", (user_id,))
            if not row[0]:
                await tx.execute("DELETE FROM away WHERE user_id = %s", (user_id,))
                await outbox.add_in(tx, [announce(user_id, username, await _room_ids(tx, user_id))])

        await self._db.transaction(work)

    async def set_away(self, user_id: int, text: str, outbox: "Outbox", announce: Callable) -> bool:
        """
        Give a user who is online on some node an away text (C{text}), or
        take it off (C{text} empty); when that changed it, record
        C{announce(room_ids)} in C{outbox}, in the same transaction.  A
        user online nowhere (their last connection just went) gets none.

        @return: whether it changed.
        """

        async def work(tx: Transaction) -> bool:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (PRESENCE_LOCK_KEY,))
            if text:
                changed = await tx.fetchone(
                    "INSERT INTO away (user_id, text) SELECT %(user)s, %(text)s "
                    "WHERE EXISTS (SELECT 1 FROM online WHERE user_id = %(user)s) "
                    "ON CONFLICT (user_id) DO UPDATE SET text = excluded.text, set_at = now() "
                    "WHERE away.text <> excluded.text RETURNING 1",
                    {"user": user_id, "text": text},
                )
            else:
                changed = await tx.fetchone("DELETE FROM away WHERE user_id = %s RETURNING 1", (user_id,))
            if changed is None:
                return False
            await outbox.add_in(tx, [announce(await _room_ids(tx, user_id))])
            return True

        return await self._db.transaction(work)

    async def online_with_away(self, user_ids: list[int]) -> dict[int, str]:
        """Which of C{user_ids} are online on any node, each with their away text (empty: not away)."""
        rows = await self._db.fetchall(
            "SELECT o.user_id, coalesce(a.text, '') FROM (SELECT DISTINCT user_id FROM online "
            "WHERE user_id = ANY(%s)) o LEFT JOIN away a ON a.user_id = o.user_id",
            (list(user_ids),),
        )
        return {r[0]: r[1] for r in rows}

    async def online_user_ids(self, user_ids: list[int] | None = None) -> set[int]:
        """Who is online on any node (of C{user_ids}, when given)."""
        if user_ids is None:
            rows = await self._db.fetchall("SELECT DISTINCT user_id FROM online")
        else:
            rows = await self._db.fetchall(
                "SELECT DISTINCT user_id FROM online WHERE user_id = ANY(%s)", (list(user_ids),)
            )
        return {r[0] for r in rows}

    async def room_ids_of(self, user_id: int) -> list[int]:
        """Every room and conversation the user is a member of."""
        rows = await self._db.fetchall("SELECT room_id FROM room_members WHERE user_id = %s", (user_id,))
        return [r[0] for r in rows]


PRESENCE_LOCK_KEY = 0x1A12EE02
"""Serialises presence changes, so two nodes never both announce the same user."""


async def _room_ids(tx: Transaction, user_id: int) -> list[int]:
    """The rooms and conversations C{user_id} is a member of."""
    rows = await tx.fetchall("SELECT room_id FROM room_members WHERE user_id = %s ORDER BY room_id", (user_id,))
    return [r[0] for r in rows]


class EventListener:
    """
    A connection of its own that C{LISTEN}s on L{CHANNEL} and calls
    C{wake(seq, node, inline)} for every notification, and C{wake(None,
    None, None)} after it reconnected (when notifications may have been
    missed).
    """

    log = Logger()

    def __init__(self, dsn: str, wake: Callable[[int | None, str | None, str | None], Any], reactor: Any) -> None:
        self._dsn = dsn
        self._wake = wake
        self._reactor = reactor
        self._detector = Reconnector(reactor)
        self._connection = _WatchedConnection(reactor, None, detector=self._detector)
        self._detector.addRecoveryHandler(self._recovered)
        self._connection.addNotifyObserver(self._notified)
        self._stopped = False

    async def start(self) -> None:
        """Connect and listen."""
        await self._connection.connect(self._dsn, connect_timeout=10)
        await self._connection.runOperation(f"LISTEN {CHANNEL}")

    def _notified(self, notify: Any) -> None:
        """
        A wake-up: its payload is the highest sequence number committed and
        the node that committed it (nothing, for changes the database
        itself recorded); then, after a line break, perhaps the events
        themselves (a JSON array of C{[seq, node, connection, kind,
        payload]}: a message batch's, when they fit), handed on as they
        are (undecoded: only a node that was not told of them reads them).
        """
        seq, _, rest = notify.payload.partition(" ")
        node, _, inline = rest.partition("\n")
        try:
            number = int(seq)
        except ValueError:
            self._wake(None, None, None)
            return
        self._wake(number, node, inline or None)

    def _recovered(self) -> Deferred:
        """The connection came back: listen again, then catch up."""
        if self._stopped:
            return None

        async def again() -> None:
            try:
                await self._connection.runOperation(f"LISTEN {CHANNEL}")
            except Exception as error:
                # lost again: the detector reconnects and calls this again
                self.log.warn("event listener could not listen again: {error}", error=error)
                return
            self.log.info("event listener reconnected")
            self._wake(None, None, None)

        return Deferred.fromCoroutine(again())

    def stop(self) -> None:
        """Close the connection for good."""
        self._stopped = True
        self._detector.stop()
        try:
            self._connection.close()
        except Exception:
            pass




class Outbox:
    """
    The events of one operation: the store records them in the
    operation's transaction (L{add_in}); once it committed, the bus
    delivers them (L{lairchat.context.ServerContext.deliver}).  If the
    transaction fails, the caller never delivers them.
    """

    def __init__(self, origin: Origin | None) -> None:
        self.origin = origin
        self.events: list[Event] = []
        self.seqs: list[int] = []

    async def add_in(self, tx: Transaction, events: list[Event]) -> None:
        """Record C{events} as the last statement of C{tx}."""
        stamped = [evolve(e, origin=self.origin) for e in events]
        seqs = await record_in(tx, stamped, self.origin)
        kept = len(self.events)
        self.events.extend(stamped)
        self.seqs.extend(seqs)

        def take_back() -> None:
            # the transaction did not commit (it may run again after a conflict)
            del self.events[kept:]
            del self.seqs[kept:]

        if hasattr(tx, "on_rollback"):
            tx.on_rollback(take_back)


__all__ = ["CHANNEL", "EventListener", "EventLog", "Logged", "Outbox", "record_in"]
