"""
Tests for the event log (L{lairchat.store.events}), the bus that reads it
(L{lairchat.bus}), the message statement that writes to it
(L{lairchat.store.messages.MessageStore.post_with_event}) and group commit
(L{lairchat.store.batch}), against a real Postgres: the ordering they
promise is the database's, so it is never mocked.
"""

import time
from collections.abc import Callable

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import FailTest, SynchronousTestCase, TestCase

from lairchat.bus import FETCH_LIMIT, GAP_WAIT, YIELD_AFTER, Bus
from lairchat.events import MemberAdded, MemberRemoved, MessageSent, Notice, Origin, PresenceChanged, RoomRef
from lairchat.models import to_ms
from lairchat.store import Store
from lairchat.store.batch import GroupCommit
from lairchat.store.events import EVENTS_LOCK_KEY, EventListener, Outbox, inline_events, record_in
from tests.support import fresh_database, fresh_store, held_open, test_dsn, until_waiting_for_a_lock

ORIGIN = Origin("node-a", 7)
"""Where the events these tests record come from."""

WAIT = 10.0
"""The longest a test waits for something to arrive (a hang is a failure)."""


def notice(user_id: int, text: str) -> Notice:
    """An event to record: a notice, from L{ORIGIN}."""
    return Notice(user_id, text, origin=ORIGIN)


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """
    Poll C{condition} until it holds.

    @raise FailTest: it did not hold within C{timeout} seconds.
    """
    for _ in range(int(timeout / 0.02)):
        if condition():
            return
        await deferLater(reactor, 0.02, lambda: None)
    if not condition():
        raise FailTest(f"timed out waiting for {what}")


async def make_room(store: Store, name: str, *members: object) -> int:
    """A room named C{name} with C{members} (accounts), made directly; its id."""
    rows = await store.db.fetchall("INSERT INTO rooms (name) VALUES (%s) RETURNING id", (name,))
    room_id = rows[0][0]
    for member in members:
        await store.db.execute("INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)", (room_id, member.id))
    return room_id


class FakeHub:
    """
    A hub that remembers what the bus handed it.

    @ivar events: every event dispatched, in order.
    """

    node = "n"

    def __init__(self) -> None:
        self.events: list = []

    def dispatch(self, event: object) -> None:
        """Remember one event."""
        self.events.append(event)

    def hold(self) -> None:
        """Output is held (nothing to hold here)."""

    def release(self) -> None:
        """Output is released."""


class RecordTests(TestCase):
    """
    L{lairchat.store.events.EventLog.record}, C{since} and C{latest}.
    """

    async def test_record_and_since(self):
        """
        Recorded events get increasing sequence numbers in the order given,
        and L{since} reads them back in that order, decoded, with their
        origins (an event recorded with no origin comes from node C{""},
        connection 0).
        """
        store = await fresh_store(self)
        self.assertEqual(await store.events.latest(), 0)
        first = [notice(1, "one"), notice(2, "two"), notice(3, "three")]
        seqs = await store.events.record(first, ORIGIN)
        self.assertEqual(len(seqs), 3)
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(len(set(seqs)), 3)
        anonymous = Notice(4, "four")
        (fourth,) = await store.events.record([anonymous], None)
        self.assertGreater(fourth, seqs[-1])
        self.assertEqual(await store.events.record([], ORIGIN), [])

        logged = await store.events.since(0)
        self.assertEqual([entry.seq for entry in logged], seqs + [fourth])
        self.assertEqual([entry.event for entry in logged], first + [evolve(anonymous, origin=Origin("", 0))])
        self.assertEqual(await store.events.latest(), fourth)

    async def test_since_bounds(self):
        """
        L{since} returns only what is after C{after}, at most C{upto}, and
        at most C{limit} events, the oldest first.
        """
        store = await fresh_store(self)
        sent = [notice(1, f"event {n}") for n in range(5)]
        seqs = await store.events.record(sent, ORIGIN)

        after_two = await store.events.since(seqs[1])
        self.assertEqual([e.seq for e in after_two], seqs[2:])
        self.assertEqual([e.event for e in after_two], sent[2:])
        bounded = await store.events.since(seqs[0], upto=seqs[3])
        self.assertEqual([e.seq for e in bounded], seqs[1:4])
        limited = await store.events.since(0, limit=2)
        self.assertEqual([e.seq for e in limited], seqs[:2])
        self.assertEqual(await store.events.since(seqs[-1]), [])
        self.assertEqual(await store.events.since(seqs[2], upto=seqs[2]), [])

    async def test_unknown_kind_skipped(self):
        """
        An event this node cannot read (a kind from a newer node, or a
        payload missing a field) is skipped; the events around it are read,
        and an unknown kind does not count towards the limit of a read.
        """
        store = await fresh_store(self)
        (before,) = await store.events.record([notice(1, "before")], ORIGIN)
        await store.db.execute("INSERT INTO events (kind, payload) VALUES ('FromTheFuture', '{\"x\": 1}')")
        (after,) = await store.events.record([notice(1, "after")], ORIGIN)
        await store.db.execute("INSERT INTO events (kind, payload) VALUES ('Notice', '{\"user_id\": 1}')")
        (last,) = await store.events.record([notice(1, "last")], ORIGIN)

        logged = await store.events.since(0)
        self.assertEqual([e.seq for e in logged], [before, after, last])
        self.assertEqual([e.event.text for e in logged], ["before", "after", "last"])
        self.assertEqual([e.seq for e in await store.events.since(before, limit=1)], [after])
        self.assertEqual(await store.events.latest(), last)

    async def test_sequence_order_is_commit_order(self):
        """
        A transaction that took its sequence numbers and has not committed
        makes every later writer wait: the later writer cannot commit a
        higher number first, so a reader never sees a number without those
        below it, and sequence order is commit order.
        """
        store = Store(await fresh_database(self, size=4))
        hold: Deferred = Deferred()
        first_recorded: Deferred = Deferred()
        seqs: dict[str, list[int]] = {}
        committed: list[str] = []

        async def first(tx):
            """Record, then stay open until told."""
            seqs["first"] = await record_in(tx, [notice(1, "first")], ORIGIN)
            first_recorded.callback(None)
            await hold

        async def second(tx):
            """Record and commit."""
            seqs["second"] = await record_in(tx, [notice(2, "second")], ORIGIN)

        def done(result, name):
            """Note a commit."""
            committed.append(name)
            return result

        first_done = Deferred.fromCoroutine(store.db.transaction(first)).addCallback(done, "first")
        try:
            await first_recorded
            second_done = Deferred.fromCoroutine(store.db.transaction(second)).addCallback(done, "second")
            waiting = False
            for _ in range(int(WAIT / 0.02)):
                if second_done.called:
                    break
                rows = await store.db.fetchall(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                )
                if rows[0][0]:
                    waiting = True
                    break
                await deferLater(reactor, 0.02, lambda: None)
            self.assertFalse(second_done.called, "the second writer committed before the first")
            self.assertTrue(waiting, "the second writer never waited for the first")
            self.assertNotIn("second", seqs)
            self.assertEqual(await store.events.since(0), [])
        finally:
            if not hold.called:
                hold.callback(None)
        await gatherResults([first_done, second_done])

        self.assertEqual(committed, ["first", "second"])
        self.assertLess(seqs["first"][0], seqs["second"][0])
        logged = await store.events.since(0)
        self.assertEqual([e.seq for e in logged], seqs["first"] + seqs["second"])
        self.assertEqual([e.event.text for e in logged], ["first", "second"])


class BusTests(TestCase):
    """
    L{lairchat.bus.Bus} over the real event log.
    """

    async def test_catch_up(self):
        """
        Events recorded while the bus was not told (a lost notification)
        are delivered, once each and in order, when it is woken with no
        sequence number; waking it again delivers nothing twice.
        """
        store = await fresh_store(self)
        await store.events.record([notice(9, "history")], ORIGIN)
        hub = FakeHub()
        bus = Bus(hub, store.events)
        await bus.start()
        sent = [notice(1, "a"), notice(2, "b"), notice(3, "c")]
        seqs = await store.events.record(sent[:2], ORIGIN) + await store.events.record(sent[2:], ORIGIN)
        self.assertEqual(hub.events, [])

        bus.wake(None)
        await wait_until(lambda: bus.last >= seqs[-1], "the bus to catch up")
        self.assertEqual(hub.events, sent)
        self.assertEqual(bus.last, seqs[-1])

        bus.wake(None)
        bus.wake(None)
        bus.wake(seqs[-1])
        later = notice(4, "d")
        (later_seq,) = await store.events.record([later], ORIGIN)
        bus.wake(later_seq)
        await wait_until(lambda: bus.last >= later_seq, "the bus to read the later event")
        self.assertEqual(hub.events, sent + [later])

    async def test_own_notifications_are_not_read_for(self):
        """
        A notification of this node's own commit does not make the bus read
        the log (the commit hands its events on itself); a poll does.
        """
        store = await fresh_store(self)
        hub = FakeHub()
        bus = Bus(hub, store.events)
        await bus.start()
        (seq,) = await store.events.record([notice(1, "mine")], Origin(hub.node, 3))
        bus.wake(seq, hub.node)
        self.assertEqual((bus.reads, hub.events), (0, []))
        bus.wake()
        await wait_until(lambda: bus.last >= seq, "the poll to read it")
        self.assertEqual(hub.events, [evolve(notice(1, "mine"), origin=Origin(hub.node, 3))])

    async def test_long_handing_on_yields(self):
        """
        Handing on that takes longer than the bus's time slice lets the
        reactor run before the next event: a call scheduled meanwhile runs
        between them, not after all of them.
        """
        store = await fresh_store(self)
        order: list = []

        class SlowHub(FakeHub):
            """A hub whose first event takes longer than a time slice to show."""

            def dispatch(self, event: object) -> None:
                """Remember the event; work past the slice on the first."""
                order.append(event.text)
                if len(order) == 1:
                    reactor.callLater(0, order.append, "reactor")
                    end = time.monotonic() + YIELD_AFTER + 0.05
                    while time.monotonic() < end:
                        pass

        bus = Bus(SlowHub(), store.events, reactor)
        await bus.start()
        seqs = await store.events.record([notice(1, "first"), notice(1, "second")], ORIGIN)
        bus.wake()
        await wait_until(lambda: bus.last >= seqs[-1], "the bus to hand both on")
        self.assertEqual(order, ["first", "reactor", "second"])

    async def test_unreadable_stretch(self):
        """
        More events of a kind this node cannot read than one read of the
        log takes (a newer node's) do not stop the bus: the events after
        them are delivered.
        """
        store = await fresh_store(self)
        hub = FakeHub()
        bus = Bus(hub, store.events)
        await bus.start()
        await store.db.execute(
            "INSERT INTO events (kind, payload) SELECT 'FromTheFuture', '{}' FROM generate_series(1, %s)",
            (FETCH_LIMIT + 1,),
        )
        readable = notice(1, "readable")
        (seq,) = await store.events.record([readable], ORIGIN)
        bus.wake(seq)
        await wait_until(lambda: bus.last >= seq, "the bus to get past the unreadable events")
        self.assertEqual(hub.events, [readable])

    async def test_committed_after_gap(self):
        """
        Events this node committed right after an event it was not told of
        (another node's) are delivered after that event; events that follow
        on directly are handed on at once, with no read.
        """
        store = await fresh_store(self)
        hub = FakeHub()
        bus = Bus(hub, store.events)
        await bus.start()
        elsewhere, here, next_here = notice(1, "elsewhere"), notice(2, "here"), notice(3, "next")
        await store.events.record([elsewhere], ORIGIN)
        (here_seq,) = await store.events.record([here], ORIGIN)

        await bus.committed([here_seq], [here])
        self.assertEqual(hub.events, [elsewhere, here])
        self.assertEqual(bus.last, here_seq)

        (next_seq,) = await store.events.record([next_here], ORIGIN)
        delivered = Deferred.fromCoroutine(bus.committed([next_seq], [next_here]))
        self.assertTrue(delivered.called)
        self.assertEqual(hub.events, [elsewhere, here, next_here])
        self.assertEqual(bus.last, next_seq)

    async def test_committed_already_delivered(self):
        """
        Events the bus already read from the log (a notification was
        quicker than the committing operation) are not handed on again.
        """
        store = await fresh_store(self)
        hub = FakeHub()
        bus = Bus(hub, store.events)
        await bus.start()
        event = notice(1, "once")
        seqs = await store.events.record([event], ORIGIN)
        bus.wake(seqs[-1])
        await wait_until(lambda: bus.last >= seqs[-1], "the bus to read the event")
        await bus.committed(seqs, [event])
        self.assertEqual(hub.events, [event])


class EventListenerTests(TestCase):
    """
    L{lairchat.store.events.EventListener}.
    """

    async def test_wake_and_reconnect(self):
        """
        The listener is woken with the sequence number and node of each commit; when
        its connection is killed it reconnects, wakes with L{None} (it may
        have missed some), and is woken by later commits again.
        """
        store = await fresh_store(self)
        woken: list = []
        nodes: list = []

        def wake(seq, node, inline):
            woken.append(seq)
            nodes.append(node)

        listener = EventListener(test_dsn(), wake, reactor)
        await listener.start()
        self.addCleanup(listener.stop)

        (seq,) = await store.events.record([notice(1, "wake up")], ORIGIN)
        await wait_until(lambda: seq in woken, "the notification")

        killed = await store.db.fetchall(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() AND datname = current_database()"
        )
        self.assertEqual(killed, [(True,)])
        await wait_until(lambda: None in woken, "the listener to reconnect", timeout=15.0)

        (later,) = await store.events.record([notice(1, "again")], ORIGIN)
        await wait_until(lambda: later in woken, "a notification after reconnecting")
        self.assertEqual([w for w in woken if w is not None], [seq, later])
        self.assertEqual([n for w, n in zip(woken, nodes) if w is not None], [ORIGIN.node, ORIGIN.node])


class HeldReads:
    """
    An event log whose reads are held: each read reads at once, then waits
    for the test to fire its gate (in L{gates}) before it returns.
    """

    def __init__(self, log: object) -> None:
        self.log = log
        self.gates: list[Deferred] = []

    async def since(self, after: int, limit: int) -> list:
        """What the log holds after C{after}, once the test lets the read end."""
        found = await self.log.since(after, limit)
        gate: Deferred = Deferred()
        self.gates.append(gate)
        await gate
        return found

    def __getattr__(self, name: str) -> object:
        """Everything else, as the log does it."""
        return getattr(self.log, name)


class InlineEventsTests(TestCase):
    """
    A message batch's notification carries its events (when they fit in
    one), and a node that was not told of them hands them on without
    reading the log, unless they do not directly follow what it handed on.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await self.store.users.create("alice", "x")
        self.room = RoomRef(await make_room(self.store, "general", self.alice), "general")
        self.notified: list = []
        listener = EventListener(test_dsn(), lambda *notification: self.notified.append(notification), reactor)
        await listener.start()
        self.addCleanup(listener.stop)
        self.hub = FakeHub()
        self.bus = Bus(self.hub, self.store.events)
        await self.bus.start()
        # the posting node and another one, which reads its events
        for node in (ORIGIN.node, self.hub.node):
            await self.store.events.join(node, 0)

    async def post(self, text):
        """A message from alice, as another node's connection posts it; its L{Posted}, once notified."""
        posted = await self.store.messages.post_with_event(
            MessageSent(self.room, 0, self.alice.id, "alice", 0, text, origin=ORIGIN))
        await wait_until(lambda: any(n[0] == posted.seq for n in self.notified), "the notification")
        return posted

    async def test_handed_on_without_a_read(self):
        """The events of a notification that follows on are handed on as they came: no read."""
        first, second = await self.post("one"), await self.post("two")
        for notification in self.notified:
            self.bus.wake(*notification)
        self.assertEqual(self.bus.reads, 0)
        self.assertEqual(self.bus.inline, 2)
        self.assertEqual(self.hub.events, [first.event, second.event])
        self.assertEqual(self.bus.last, second.seq)
        self.assertEqual([n[1] for n in self.notified], [ORIGIN.node, ORIGIN.node])

    async def test_gap_is_read(self):
        """
        A notification whose events do not follow on (a commit this node
        was not told of came first) makes the bus read the log at once:
        every event arrives once, in order.
        """
        self.bus.clock = Clock()
        (missed,) = await self.store.events.record([notice(1, "missed")], ORIGIN)
        posted = await self.post("after the gap")
        self.bus.wake(*self.notified[-1])
        await wait_until(lambda: self.bus.last >= posted.seq, "the bus to read the log")
        self.assertEqual((self.bus.reads, self.bus.inline), (1, 0))
        self.assertEqual(self.hub.events, [notice(1, "missed"), posted.event])
        self.bus.wake(*self.notified[-1])
        self.assertEqual(self.hub.events, [notice(1, "missed"), posted.event])

    async def test_too_large_for_a_notification(self):
        """Events that do not fit in a notification (its payload is under 8000 bytes) are read from the log."""
        posted = await self.post("x" * 8000)
        (notification,) = self.notified
        self.assertEqual(notification, (posted.seq, ORIGIN.node, None))
        self.bus.wake(*notification)
        await wait_until(lambda: self.bus.last >= posted.seq, "the bus to read the log")
        self.assertEqual((self.bus.reads, self.bus.inline, self.hub.events), (1, 0, [posted.event]))

    async def test_size_counted_in_bytes(self):
        """
        A notification holds less than 8000 bytes, not characters: 2,000
        three-byte characters fit, 2,700 do not (and the batch is stored).
        """
        fits = await self.post("€" * 2000)
        too_large = await self.post("€" * 2700)
        self.assertIsNotNone(self.notified[0][2])
        self.assertEqual(self.notified[1], (too_large.seq, ORIGIN.node, None))
        for notification in self.notified:
            self.bus.wake(*notification)
        await wait_until(lambda: self.bus.last >= too_large.seq, "the bus to read the log")
        self.assertEqual((self.bus.inline, self.bus.reads), (1, 1))
        self.assertEqual(self.hub.events, [fits.event, too_large.event])

    async def test_kept_while_reading(self):
        """
        The events of a notification that comes while the bus reads the
        log are kept, and handed on in their turn when the read ends,
        without reading again; a notification whose events the bus already
        handed on is ignored.
        """
        held = HeldReads(self.store.events)
        self.bus.event_log = held
        first = await self.post("one")
        self.bus.wake()
        await wait_until(lambda: held.gates, "a read")
        second = await self.post("two")
        for notification in self.notified:
            self.bus.wake(*notification)
        self.assertEqual(self.hub.events, [])
        held.gates[0].callback(None)
        await wait_until(lambda: self.bus.last >= second.seq, "the read to end")
        self.assertEqual((self.hub.events, self.bus.reads), ([first.event, second.event], 1))
        for notification in self.notified:
            self.bus.wake(*notification)
        self.assertEqual((self.hub.events, self.bus.reads), ([first.event, second.event], 1))

    async def test_own_commit_kept_while_reading(self):
        """
        This node's own commit that comes while the bus reads the log (and
        that the read does not find) is handed on after what the read
        found, without reading again; the commit's caller waits until then.
        """
        held = HeldReads(self.store.events)
        self.bus.event_log = held
        theirs = await self.post("theirs")
        self.bus.wake()
        await wait_until(lambda: held.gates, "a read")
        mine = evolve(notice(1, "mine"), origin=Origin(self.hub.node))
        (own,) = await self.store.events.record([mine], mine.origin)
        handed = Deferred.fromCoroutine(self.bus.committed([own], [mine]))
        self.assertFalse(handed.called)
        held.gates[0].callback(None)
        await handed
        self.assertEqual((self.hub.events, self.bus.reads), ([theirs.event, mine], 1))

    async def test_stop_reads_a_gap_at_once(self):
        """A node that stops does not wait for a gap to fill: the log is read at once."""
        clock = self.bus.clock = Clock()
        mine, own, theirs = await self.own_commit_then_theirs()
        self.bus.stop()
        await wait_until(lambda: self.bus.last >= theirs.seq, "the bus to read the log")
        self.assertEqual((self.hub.events, self.bus.reads), ([mine, theirs.event], 1))
        self.assertEqual(clock.getDelayedCalls(), [])

    async def own_commit_then_theirs(self):
        """
        This node commits an event, and another node posts a message after
        it; the bus is told of both notifications, in commit order, before
        this node's own commit result (which L{Bus.committed} would hand on).
        Return this node's event, its sequence number and the other's L{Posted}.
        """
        mine = evolve(notice(1, "mine"), origin=Origin(self.hub.node))
        (own,) = await self.store.events.record([mine], mine.origin)
        theirs = await self.post("theirs")
        for notification in self.notified:
            self.bus.wake(*notification)
        return mine, own, theirs

    async def test_gap_of_own_commit_waits_for_it(self):
        """
        Events that follow this node's own commit, whose result has not
        come yet, wait for it (its notification came before them): they
        are handed on after it, with no read.
        """
        clock = self.bus.clock = Clock()
        mine, own, theirs = await self.own_commit_then_theirs()
        self.assertEqual((self.hub.events, self.bus.reads), ([], 0))
        await self.bus.committed([own], [mine])
        self.assertEqual((self.hub.events, self.bus.reads), ([mine, theirs.event], 0))
        self.assertEqual(clock.getDelayedCalls(), [])

    async def test_gap_not_filled_is_read(self):
        """
        Events that wait for this node's own commit to come are read for
        after L{GAP_WAIT}, should it not come by then; its result, when it
        comes, is not handed on twice.
        """
        clock = self.bus.clock = Clock()
        mine, own, theirs = await self.own_commit_then_theirs()
        clock.advance(GAP_WAIT - 0.001)
        self.assertEqual((self.hub.events, self.bus.reads), ([], 0))
        clock.advance(0.001)
        await wait_until(lambda: self.bus.last >= theirs.seq, "the bus to read the log")
        self.assertEqual((self.hub.events, self.bus.reads), ([mine, theirs.event], 1))
        await self.bus.committed([own], [mine])
        self.assertEqual(self.hub.events, [mine, theirs.event])

    async def test_not_for_a_node_alone(self):
        """
        A node with no other node registered is not notified of its message
        batches (it hands its own commits on; no other node would read
        them); once another is registered, it is, with the events.
        """
        await self.store.db.execute("DELETE FROM nodes WHERE id <> %s", (ORIGIN.node,))
        alone = await self.store.messages.post_with_event(
            MessageSent(self.room, 0, self.alice.id, "alice", 0, "nobody else", origin=ORIGIN))
        self.assertIsNotNone(alone)
        await self.store.events.join(self.hub.node, 0)
        shared = await self.post("somebody else")
        # notifications arrive in commit order: one of the first batch would have come first
        self.assertEqual([n[:2] for n in self.notified], [(shared.seq, ORIGIN.node)])
        carried = inline_events(self.notified[0][2])
        self.assertEqual([(logged.seq, logged.event) for logged in carried], [(shared.seq, shared.event)])

    async def test_own_events_are_not_handed_on_again(self):
        """A node's own batch (handed on by the commit) is not handed on again from its notification."""
        self.hub.node = ORIGIN.node
        await self.post("mine")
        self.bus.wake(*self.notified[-1])
        self.assertEqual((self.bus.reads, self.bus.inline, self.hub.events), (0, 0, []))


class NodeTests(TestCase):
    """
    The nodes and presence of L{lairchat.store.events.EventLog}: C{join},
    C{heartbeat}, C{trim}, C{dead_nodes}, C{remove_node}, C{came_online},
    C{went_offline}.
    """

    async def setUp(self):
        self.store = await fresh_store(self)

    @staticmethod
    def online(user_id, username, room_ids):
        """The event of a user coming online."""
        return PresenceChanged(user_id, username, True, tuple(room_ids))

    @staticmethod
    def offline(user_id, username, room_ids):
        """The event of a user going offline."""
        return PresenceChanged(user_id, username, False, tuple(room_ids))

    async def test_join_at_end(self):
        """
        A starting node registers at the end of the log under the ordering
        lock: it waits for a commit under way, whose events then come
        before that end (a later commit finds the node registered).
        """
        commit, committed = await held_open(
            self, "INSERT INTO events (kind, payload) SELECT 'Notice', '{}'::jsonb FROM pg_advisory_xact_lock(%s)",
            (EVENTS_LOCK_KEY,))
        joined = Deferred.fromCoroutine(self.store.events.join_at_end("n1"))
        await until_waiting_for_a_lock(self.store.db, joined)
        self.assertFalse(joined.called, "it did not wait for the commit under way")
        commit.callback(None)
        await committed
        end = await joined
        self.assertEqual(end, await self.store.events.latest())
        self.assertGreater(end, 0)
        self.assertEqual(await self.store.db.fetchall("SELECT id, acked_seq FROM nodes"), [("n1", end)])

    async def test_trim(self):
        """
        L{trim} deletes the events every registered node has read (below
        the lowest acknowledged sequence number) once they are older than
        C{keep_seconds}, and keeps the others.
        """
        events = self.store.events
        seqs = await events.record([notice(1, f"event {n}") for n in range(4)], ORIGIN)
        self.assertEqual(await events.trim(keep_seconds=0), 0)
        await events.join("n1", seqs[2])
        await events.join("n2", seqs[1])
        self.assertEqual(await events.trim(keep_seconds=3600), 0)
        self.assertEqual([e.seq for e in await events.since(0)], seqs)

        self.assertEqual(await events.trim(keep_seconds=0), 1)
        self.assertEqual([e.seq for e in await events.since(0)], seqs[1:])

        self.assertTrue(await events.heartbeat("n2", seqs[3]))
        self.assertEqual(await events.trim(keep_seconds=0), 1)
        self.assertEqual([e.seq for e in await events.since(0)], seqs[2:])

    async def test_heartbeat_and_dead_nodes(self):
        """
        A node not seen for longer than the timeout is listed as dead; a
        heartbeat brings it back and never lowers its acknowledged number;
        a heartbeat of a node that is not registered says so.
        """
        events = self.store.events
        await events.join("n1", 5)
        await events.join("n2", 5)
        self.assertEqual(await events.dead_nodes(60), [])
        await self.store.db.execute("UPDATE nodes SET seen_at = now() - interval '1 hour' WHERE id = 'n2'")
        self.assertEqual(await events.dead_nodes(60), ["n2"])
        self.assertTrue(await events.heartbeat("n2", 3))
        self.assertEqual(await events.dead_nodes(60), [])
        rows = await self.store.db.fetchall("SELECT acked_seq FROM nodes WHERE id = 'n2'")
        self.assertEqual(rows, [(5,)])
        self.assertFalse(await events.heartbeat("gone", 3))

    async def test_presence_first_and_last_node(self):
        """
        A user coming online on a first node is announced (to the users who
        share a room with them), on a second node is not; going offline on
        one of two nodes is not announced, on the last one is.
        """
        events = self.store.events
        alice = await self.store.users.create("alice", "x")
        bob = await self.store.users.create("bob", "x")
        carol = await self.store.users.create("carol", "x")
        general = await make_room(self.store, "general", alice, bob)
        quiet = await make_room(self.store, "quiet", carol)
        await events.join("n1", 0)
        await events.join("n2", 0)
        before = await events.latest()

        first = Outbox(Origin("n1", 1))
        await events.came_online("n1", alice.id, "alice", first, self.online)
        announced = PresenceChanged(alice.id, "alice", True, (general,), origin=Origin("n1", 1))
        self.assertEqual(first.events, [announced])
        second = Outbox(Origin("n2", 1))
        await events.came_online("n2", alice.id, "alice", second, self.online)
        self.assertEqual((second.events, second.seqs), ([], []))
        self.assertEqual(await events.online_user_ids(), {alice.id})

        lonely = Outbox(Origin("n1", 2))
        await events.came_online("n1", carol.id, "carol", lonely, self.online)
        self.assertEqual(lonely.events, [PresenceChanged(carol.id, "carol", True, (quiet,), origin=Origin("n1", 2))])
        self.assertEqual(await events.online_user_ids([alice.id, bob.id]), {alice.id})

        one_left = Outbox(Origin("n1", 1))
        await events.went_offline("n1", alice.id, "alice", one_left, self.offline)
        self.assertEqual(one_left.events, [])
        last = Outbox(Origin("n2", 1))
        await events.went_offline("n2", alice.id, "alice", last, self.offline)
        gone = PresenceChanged(alice.id, "alice", False, (general,), origin=Origin("n2", 1))
        self.assertEqual(last.events, [gone])
        self.assertEqual(await events.online_user_ids(), {carol.id})

        again = Outbox(Origin("n2", 1))
        await events.went_offline("n2", alice.id, "alice", again, self.offline)
        self.assertEqual(again.events, [])

        logged = await events.since(before)
        self.assertEqual([e.seq for e in logged], first.seqs + lonely.seqs + last.seqs)
        self.assertEqual([e.event for e in logged], first.events + lonely.events + last.events)

    async def test_unregistered_node(self):
        """
        A connection on a node that is not registered (taken for dead) is
        not recorded as online, and not announced.
        """
        alice = await self.store.users.create("alice", "x")
        outbox = Outbox(Origin("ghost", 1))
        await self.store.events.came_online("ghost", alice.id, "alice", outbox, self.online)
        self.assertEqual(outbox.events, [])
        self.assertEqual(await self.store.events.online_user_ids(), set())

    async def test_remove_node(self):
        """
        Removing a node takes its users offline, announcing only those
        online on no other node, and deletes the node and its rows of
        C{online}.
        """
        events = self.store.events
        alice = await self.store.users.create("alice", "x")
        bob = await self.store.users.create("bob", "x")
        carol = await self.store.users.create("carol", "x")
        general = await make_room(self.store, "general", alice, bob)
        await events.join("n1", 0)
        await events.join("n2", 0)
        for node, user in [("n1", alice), ("n2", alice), ("n1", bob), ("n1", carol)]:
            await events.came_online(node, user.id, user.username, Outbox(Origin(node)), self.online)
        before = await events.latest()

        outbox = Outbox(Origin("n2"))
        await events.remove_node("n1", outbox, self.offline)
        self.assertEqual(outbox.events, [
            PresenceChanged(bob.id, "bob", False, (general,), origin=Origin("n2")),
            PresenceChanged(carol.id, "carol", False, (), origin=Origin("n2")),
        ])
        self.assertEqual([e.event for e in await events.since(before)], outbox.events)
        self.assertEqual(await self.store.db.fetchall("SELECT id FROM nodes"), [("n2",)])
        self.assertEqual(await self.store.db.fetchall("SELECT node, user_id FROM online"), [("n2", alice.id)])
        self.assertEqual(await events.online_user_ids(), {alice.id})
        self.assertFalse(await events.heartbeat("n1", 0))


class MembershipTriggerTests(TestCase):
    """
    The C{room_members} trigger of C{schema.sql}: every change of
    membership is recorded as an event when it commits.
    """

    async def test_added_and_removed(self):
        """
        Inserting a row of C{room_members} records L{MemberAdded} at commit
        (not before: an open transaction's change is not in the log, even
        for itself); deleting it records L{MemberRemoved}; deleting a room
        records one L{MemberRemoved} per member.
        """
        store = await fresh_store(self)
        alice = await store.users.create("alice", "x")
        bob = await store.users.create("bob", "x")
        room_id = await make_room(store, "general")
        before = await store.events.latest()
        seen_inside = {}

        async def join(tx):
            """Add alice, and look at the log before committing."""
            await tx.execute("INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)", (room_id, alice.id))
            seen_inside["others"] = await store.events.since(before)
            seen_inside["own"] = await tx.fetchone("SELECT count(*) FROM events WHERE seq > %s", (before,))

        await store.db.transaction(join)
        self.assertEqual(seen_inside, {"others": [], "own": (0,)})
        room = RoomRef(room_id, "", ())
        nowhere = Origin("", 0)
        logged = await store.events.since(before)
        self.assertEqual([e.event for e in logged], [MemberAdded(room, alice.id, origin=nowhere)])

        await store.db.execute("DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (room_id, alice.id))
        logged = await store.events.since(logged[-1].seq)
        self.assertEqual([e.event for e in logged], [MemberRemoved(room, alice.id, origin=nowhere)])

        await store.db.execute(
            "INSERT INTO room_members (room_id, user_id) VALUES (%s, %s), (%s, %s)",
            (room_id, alice.id, room_id, bob.id),
        )
        after_adding = await store.events.latest()
        await store.db.execute("DELETE FROM rooms WHERE id = %s", (room_id,))
        removed = await store.events.since(after_adding)
        self.assertEqual(
            sorted((type(e.event), e.event.room, e.event.user_id) for e in removed),
            [(MemberRemoved, room, alice.id), (MemberRemoved, room, bob.id)],
        )


class SendToRoomTests(TestCase):
    """
    L{lairchat.store.messages.MessageStore.post_with_event} with room
    messages: stored with their events, many in one statement.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await self.store.users.create("alice", "x")
        self.bob = await self.store.users.create("bob", "x")
        self.carol = await self.store.users.create("carol", "x")
        self.room_id = await make_room(self.store, "general", self.alice, self.bob)
        self.room = RoomRef(self.room_id, "general")

    def template(self, sender, text):
        """What a command hands to L{post_with_event}: a message with no id or time yet."""
        return MessageSent(self.room, 0, sender.id, sender.username, 0, text, origin=Origin("n1", sender.id))

    async def stored(self):
        """Every stored message: C{{id: (sender_id, body, epoch ms)}}."""
        rows = await self.store.db.fetchall("SELECT id, sender_id, body, created_at FROM messages")
        return {r[0]: (r[1], r[2], to_ms(r[3])) for r in rows}

    async def test_member(self):
        """
        A member's message is stored, and its event, with the message's id
        and its stored time filled in, is in the log under the sequence
        number returned.
        """
        before = await self.store.events.latest()
        template = self.template(self.alice, "hello: world")
        posted = await self.store.messages.post_with_event(template)

        stored = await self.stored()
        self.assertEqual(list(stored), [posted.message.id])
        sender_id, body, created_ms = stored[posted.message.id]
        self.assertEqual((sender_id, body), (self.alice.id, "hello: world"))
        self.assertEqual(posted.event, evolve(template, message_id=posted.message.id, ts=created_ms))
        self.assertEqual(posted.message.created_ms, created_ms)
        logged = await self.store.events.since(before)
        self.assertEqual([(e.seq, e.event) for e in logged], [(posted.seq, posted.event)])

    async def test_non_member(self):
        """
        A non-member's message gives L{None}: nothing is stored and nothing
        recorded.
        """
        before = await self.store.events.latest()
        self.assertIsNone(await self.store.messages.post_with_event(self.template(self.carol, "let me in")))
        self.assertEqual(await self.stored(), {})
        self.assertEqual(await self.store.events.since(before), [])

    async def test_concurrent(self):
        """
        Twenty messages sent at once are all stored, each with its event
        in the log, in fewer statements than messages; a non-member's among
        them is refused alone.
        """
        before = await self.store.events.latest()
        batches = self.store.messages.group_commit.batches
        senders = [self.alice, self.bob] * 10
        templates = [self.template(sender, f"message {n}") for n, sender in enumerate(senders)]
        intruder = self.template(self.carol, "me too")
        results = await gatherResults(
            [self.store.messages.post_with_event(t) for t in templates[:10]]
            + [self.store.messages.post_with_event(intruder)]
            + [self.store.messages.post_with_event(t) for t in templates[10:]]
        )
        self.assertIsNone(results[10])
        posted = results[:10] + results[11:]
        self.assertLess(self.store.messages.group_commit.batches - batches, 20)

        stored = await self.stored()
        self.assertEqual(sorted(stored), sorted(p.message.id for p in posted))
        for template, result in zip(templates, posted):
            self.assertEqual(stored[result.message.id], (template.sender_id, template.text, result.event.ts))
            self.assertEqual(result.event, evolve(template, message_id=result.message.id, ts=result.event.ts))
        logged = await self.store.events.since(before)
        self.assertEqual(sorted((e.seq, e.event) for e in logged), sorted((p.seq, p.event) for p in posted))

    async def test_sender_deleted_as_a_batch_is_written(self):
        """
        A sender whose account is being deleted when the batch's statement
        starts (a guest whose connection closed): the statement waits for
        the deletion, then refuses that message, no longer a member's, and
        stores the other, in that one statement.  It locks the senders (as
        the foreign key would) before the ordering lock, which the deletion
        takes as it commits: the other way round, the two deadlock, and one
        of them is run again after a second.
        """
        await self.store.db.execute("INSERT INTO room_members (room_id, user_id) VALUES (%s, %s)",
                                    (self.room_id, self.carol.id))
        commit, deleted = await held_open(self, "DELETE FROM users WHERE id = %s", (self.carol.id,))
        statements = []
        write_once = self.store.db.write_once

        def counted(*args, **kwargs):
            statements.append(args[0])
            return write_once(*args, **kwargs)

        self.patch(self.store.db, "write_once", counted)
        post = self.store.messages.post_with_event
        leader = post(self.template(self.bob, "first"))
        batch = gatherResults([post(self.template(self.carol, "going")), post(self.template(self.alice, "staying"))])
        await leader
        await until_waiting_for_a_lock(self.store.db, batch)
        self.assertFalse(batch.called, "the batch did not wait for the deletion")
        commit.callback(None)
        await deleted
        gone, stayed = await batch
        self.assertIsNone(gone)
        self.assertEqual(stayed.message.text, "staying")
        self.assertEqual(len(statements), 2)
        self.assertEqual(dict(self.store.db.retries), {})
        self.assertEqual(sorted(body for _, body, _ in (await self.stored()).values()), ["first", "staying"])


class Writer:
    """
    A write function for L{GroupCommit} that the test finishes by hand.

    @ivar calls: C{(items, Deferred)} for each batch written, in order.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list, Deferred]] = []

    async def write(self, items: list) -> list:
        """Note a batch; wait for the test to give its results."""
        d: Deferred = Deferred()
        self.calls.append((list(items), d))
        return await d

    def batches(self) -> list[list]:
        """The items of every batch written so far."""
        return [items for items, _ in self.calls]


class GroupCommitTests(SynchronousTestCase):
    """
    L{lairchat.store.batch.GroupCommit}.
    """

    def test_first_alone_then_together(self):
        """
        The first item is written at once, alone; items submitted while it
        is written go together in the next batch, once it is done.
        """
        writer = Writer()
        group = GroupCommit(writer.write)
        first = group.submit("a")
        self.assertEqual(writer.batches(), [["a"]])
        second, third = group.submit("b"), group.submit("c")
        self.assertEqual(writer.batches(), [["a"]])
        self.assertNoResult(second)

        writer.calls[0][1].callback(["A"])
        self.assertEqual(self.successResultOf(first), "A")
        self.assertEqual(writer.batches(), [["a"], ["b", "c"]])
        self.assertNoResult(second)
        writer.calls[1][1].callback(["B", "C"])
        self.assertEqual((self.successResultOf(second), self.successResultOf(third)), ("B", "C"))
        self.assertEqual((group.batches, group.items), (2, 3))

    def test_results_map_to_items(self):
        """
        Each item's Deferred fires with the result in its place.
        """
        writer = Writer()
        group = GroupCommit(writer.write)
        group.submit(0)
        waiting = [group.submit(n) for n in range(1, 6)]
        writer.calls[0][1].callback([0])
        items, d = writer.calls[1]
        d.callback([f"result of {n}" for n in items])
        self.assertEqual([self.successResultOf(w) for w in waiting], [f"result of {n}" for n in range(1, 6)])

    def test_failing_batch(self):
        """
        A batch that fails fails every one of its items, and only those:
        the next batch is written as usual.
        """
        writer = Writer()
        group = GroupCommit(writer.write)
        first = group.submit("a")
        second, third = group.submit("b"), group.submit("c")
        writer.calls[0][1].callback(["A"])
        writer.calls[1][1].errback(ValueError("the statement failed"))
        self.assertEqual(self.successResultOf(first), "A")
        for failed in (second, third):
            self.failureResultOf(failed, ValueError)

        fourth = group.submit("d")
        self.assertEqual(writer.batches(), [["a"], ["b", "c"], ["d"]])
        writer.calls[2][1].callback(["D"])
        self.assertEqual(self.successResultOf(fourth), "D")

    def test_max_batch(self):
        """
        A batch holds at most C{max_batch} items; the rest wait for the
        next.
        """
        writer = Writer()
        group = GroupCommit(writer.write, max_batch=2)
        group.submit(1)
        rest = [group.submit(n) for n in range(2, 6)]
        writer.calls[0][1].callback([1])
        writer.calls[1][1].callback([2, 3])
        writer.calls[2][1].callback([4, 5])
        self.assertEqual(writer.batches(), [[1], [2, 3], [4, 5]])
        self.assertEqual([self.successResultOf(d) for d in rest], [2, 3, 4, 5])

    def test_observed(self):
        """
        Each batch is observed once written, before its results are handed
        out: its size, how long its oldest item waited behind the batch
        before it, and how long its write took, on the given clock; a
        failed batch too.
        """
        clock = Clock()
        writer = Writer()
        group = GroupCommit(writer.write, clock=clock)
        seen = []
        group.observe = lambda *batch: seen.append((batch, [d.called for d in waiting]))
        waiting = [group.submit("a")]
        clock.advance(3)
        waiting += [group.submit("b")]
        clock.advance(1)
        waiting += [group.submit("c")]
        clock.advance(2)
        writer.calls[0][1].callback(["A"])
        self.assertEqual(seen, [((1, 0, 6), [False, False, False])])
        clock.advance(5)
        writer.calls[1][1].errback(ValueError("the statement failed"))
        self.assertEqual(seen[1], ((2, 3, 5), [True, False, False]))
        self.failureResultOf(waiting[1], ValueError)
        self.failureResultOf(waiting[2], ValueError)

    def test_round_trip_is_the_batch_own(self):
        """
        The next batch starts once one is written, and what its start does
        at once (building its statement, sending it) is not counted in the
        written batch's round trip.
        """
        clock = Clock()
        writer = Writer()

        async def preparing(items: list) -> list:
            clock.advance(1)  # the synchronous part of starting a write
            return await writer.write(items)

        group = GroupCommit(preparing, clock=clock)
        seen = []
        group.observe = lambda *batch: seen.append(batch)
        group.submit("a")
        group.submit("b")
        clock.advance(2)
        writer.calls[0][1].callback(["A"])
        self.assertEqual(len(writer.calls), 2)
        self.assertEqual(seen, [(1, 0, 3)])

    def test_failing_observer(self):
        """An observer that fails is logged; the batch's results are handed out all the same."""
        writer = Writer()
        group = GroupCommit(writer.write)

        def observe(*batch):
            raise RuntimeError("a broken metric")

        group.observe = observe
        first = group.submit("a")
        writer.calls[0][1].callback(["A"])
        self.assertEqual(self.successResultOf(first), "A")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_in_flight(self):
        """
        With C{in_flight} of two, a second batch is written while the first
        is, and the next waits for one of them to finish.
        """
        writer = Writer()
        group = GroupCommit(writer.write, in_flight=2)
        group.submit(1)
        group.submit(2)
        group.submit(3)
        group.submit(4)
        self.assertEqual(writer.batches(), [[1], [2]])
        writer.calls[1][1].callback([2])
        self.assertEqual(writer.batches(), [[1], [2], [3, 4]])
