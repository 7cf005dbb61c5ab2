"""
Tests for L{lairchat.sweeper}: the invitation sweep on a fake clock over
the real database: expiry with its events to both parties, reminders once,
retention, and a schedule that survives failing runs.
"""

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from lairchat.context import Config, ServerContext
from lairchat.errors import DatabaseUnavailable
from lairchat.events import InvitationExpired, InvitationReminder, Origin
from lairchat.hub import Hub
from lairchat.sweeper import InvitationSweeper, sweep
from tests.invitation_fixtures import logged, make_room, make_user, new_outbox, online, statuses
from tests.support import fresh_store

START = 1_800_000_000.0
"""The fake clock's start, in epoch seconds."""


class FlakyInvitations:
    """The real invitation store, except that C{expire_due} raises the queued errors first."""

    def __init__(self, real, errors):
        self._real = real
        self.errors = list(errors)

    def __getattr__(self, name):
        return getattr(self._real, name)

    async def expire_due(self, now_ms, outbox, limit=None):
        """Fail while errors are queued."""
        if self.errors:
            raise self.errors.pop(0)
        return await self._real.expire_due(now_ms, outbox, limit)


class FlakyStore:
    """A store whose invitations are a L{FlakyInvitations}."""

    def __init__(self, real, errors):
        self._real = real
        self.invitations = FlakyInvitations(real.invitations, errors)

    def __getattr__(self, name):
        return getattr(self._real, name)


class SweeperTests(TestCase):
    """The service on a L{Clock}."""

    async def setUp(self):
        self.store = await fresh_store(self)
        self.clock = Clock()
        self.clock.advance(START)
        self.config = Config(sweep_interval=10, invite_ttl=100, reminder_window=50, invite_retention=1000)
        self.server = ServerContext(config=self.config, store=self.store, clock=self.clock, passwords=None,
                                    hub=Hub())
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.room = await make_room(self.store, "lair", self.alice)

    def now_ms(self):
        """The fake clock in epoch ms."""
        return int(self.clock.seconds() * 1000)

    async def invite(self, ttl_s=100, room=None):
        """
        alice invites bob to lair now, for C{ttl_s} seconds; bob is told
        (where online) as the invitation commands tell him.
        """
        outbox = new_outbox()
        invitation = await self.store.invitations.create(
            self.alice, self.bob, room or self.room, "member", "", self.now_ms(), self.now_ms() + ttl_s * 1000, outbox
        )
        await self.server.deliver(outbox)
        return invitation

    async def start(self):
        """Start a sweeper (it runs at once) and wait for that first run."""
        sweeper = InvitationSweeper(self.server)
        sweeper.startService()
        self.addCleanup(sweeper.stopService)
        await sweeper.idle()
        return sweeper

    async def tick(self, sweeper, seconds):
        """Advance the clock and wait for any run it started."""
        self.clock.advance(seconds)
        await sweeper.idle()

    async def test_expires_on_schedule_and_tells_both_parties(self):
        """A due invitation expires at the first run after its expiry; both parties online hear of it."""
        alice_connection = await online(self.server, self.alice)
        bob_connection = await online(self.server, self.bob)
        invitation = await self.invite(ttl_s=25)
        sweeper = await self.start()
        await self.tick(sweeper, 10)
        await self.tick(sweeper, 10)
        self.assertEqual((await statuses(self.store, invitation.id))[0], "pending")
        self.assertEqual(alice_connection.events, [])
        await self.tick(sweeper, 10)
        self.assertEqual(await statuses(self.store, invitation.id), ("expired", ["pending", "expired"]))
        self.assertEqual(alice_connection.events, [f"INVITATION_EXPIRED:{invitation.id}:lair"])
        self.assertIn(f"INVITATION_EXPIRED:{invitation.id}:lair", bob_connection.events)
        self.assertEqual(sweeper.runs, 4)

    async def test_offline_parties_are_not_told(self):
        """Expiry happens whether or not anyone is online; only online connections get the event."""
        bob_connection = await online(self.server, self.bob)
        invitation = await self.invite(ttl_s=5)
        sweeper = await self.start()
        self.assertEqual(bob_connection.events, [
            f"INVITATION_RECEIVED:{invitation.id}:alice:lair:member:{invitation.expires_ms}:",
            f"INVITATION_REMINDER:{invitation.id}:lair:{invitation.expires_ms}",
        ])
        await self.tick(sweeper, 10)
        self.assertEqual(bob_connection.events[2:], [f"INVITATION_EXPIRED:{invitation.id}:lair"])
        self.assertEqual((await statuses(self.store, invitation.id))[0], "expired")

    async def test_reminder_once_to_online_recipients(self):
        """Under the reminder window, an online recipient is reminded once; an offline one when they come online."""
        den = await make_room(self.store, "den", self.alice)
        soon = await self.invite(ttl_s=40)
        later = await self.invite(ttl_s=200, room=den)
        sweeper = await self.start()
        bob_connection = await online(self.server, self.bob)
        await self.tick(sweeper, 10)
        self.assertEqual(bob_connection.events, [f"INVITATION_REMINDER:{soon.id}:lair:{soon.expires_ms}"])
        await self.tick(sweeper, 10)
        self.assertEqual(len(bob_connection.events), 1)
        self.server.user_offline(bob_connection, self.bob)
        await self.server.presence.settled()
        await self.tick(sweeper, 150)
        again = await online(self.server, self.bob)
        await self.tick(sweeper, 10)
        self.assertEqual(again.events, [f"INVITATION_REMINDER:{later.id}:den:{later.expires_ms}"])

    async def test_retention(self):
        """Answered invitations older than the retention period are deleted; recent ones stay."""
        invitation = await self.invite()
        await self.store.invitations.decline(invitation.id, self.bob, "", self.now_ms(), new_outbox())
        sweeper = await self.start()
        await self.tick(sweeper, 990)
        self.assertIsNotNone(await self.store.invitations.get(invitation.id))
        await self.tick(sweeper, 20)
        self.assertIsNone(await self.store.invitations.get(invitation.id))

    async def test_failed_runs_are_logged_and_the_schedule_goes_on(self):
        """A database failure and a bug each fail one run; the next run works."""
        self.server.store = FlakyStore(self.store, [DatabaseUnavailable(), RuntimeError("bug")])
        invitation = await self.invite(ttl_s=5)
        sweeper = await self.start()
        self.assertEqual(sweeper.failures, 1)
        await self.tick(sweeper, 10)
        self.assertEqual(sweeper.failures, 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((await statuses(self.store, invitation.id))[0], "pending")
        await self.tick(sweeper, 10)
        self.assertEqual((sweeper.runs, sweeper.failures), (3, 2))
        self.assertEqual((await statuses(self.store, invitation.id))[0], "expired")

    async def test_stop_ends_the_schedule(self):
        """After stopping, time passes and nothing runs."""
        sweeper = await self.start()
        await sweeper.stopService()
        self.clock.advance(100)
        self.assertEqual(sweeper.runs, 1)

    async def test_stop_waits_for_a_run_in_progress(self):
        """Stopping during a run fires only once that run has finished."""
        invitation = await self.invite(ttl_s=5)
        sweeper = InvitationSweeper(self.server)
        self.clock.advance(10)
        sweeper.startService()
        stopped = sweeper.stopService()
        self.assertFalse(stopped.called)
        await stopped
        self.assertEqual((await statuses(self.store, invitation.id))[0], "expired")

    async def test_backlog_in_batches(self):
        """A backlog larger than a batch is expired in the same run, every party told."""
        bob_connection = await online(self.server, self.bob)
        rooms = [self.room] + [await make_room(self.store, f"room{n}", self.alice) for n in range(4)]
        invitations = [await self.invite(ttl_s=5, room=room) for room in rooms]
        report = await sweep(self.server, self.now_ms() + 5000, batch_size=2)
        self.assertEqual(report.expired, 5)
        expired = sorted(line for line in bob_connection.events if line.startswith("INVITATION_EXPIRED:"))
        self.assertEqual(expired, sorted(f"INVITATION_EXPIRED:{i.id}:{i.room}" for i in invitations))

    async def test_sweep_function(self):
        """One run reports what it did."""
        await self.invite(ttl_s=5)
        report = await sweep(self.server, self.now_ms() + 5000)
        self.assertEqual((report.expired, report.reminded, report.purged), (1, 0, 0))

    async def test_events_recorded_with_their_changes(self):
        """Each expiry and each reminder is in the event log once, from this node and no connection."""
        await online(self.server, self.bob)
        reminded = await self.invite(ttl_s=5)
        await sweep(self.server, self.now_ms())
        await sweep(self.server, self.now_ms() + 1000)
        await sweep(self.server, self.now_ms() + 5000)
        await sweep(self.server, self.now_ms() + 6000)
        origin = Origin(self.server.node)
        self.assertEqual(await logged(self.store, "InvitationReminder", "InvitationExpired"), [
            InvitationReminder(reminded.id, self.bob.id, "lair", reminded.expires_ms, origin=origin),
            InvitationExpired(reminded.id, self.alice.id, self.bob.id, "lair", origin=origin),
        ])

    async def test_nodes_sweeping_at_once(self):
        """Two nodes sweep at once: every due invitation expires once, and its event is recorded once."""
        rooms = [self.room] + [await make_room(self.store, f"room{n}", self.alice) for n in range(5)]
        due = sorted([(await self.invite(ttl_s=5, room=room)).id for room in rooms])
        nodes = [ServerContext(config=self.config, store=self.store, clock=self.clock, passwords=None, hub=Hub(name))
                 for name in ("node-a", "node-b")]
        reports = await DeferredList(
            [Deferred.fromCoroutine(sweep(node, self.now_ms() + 5000, batch_size=2)) for node in nodes],
            fireOnOneErrback=True, consumeErrors=True,
        )
        self.assertEqual(sum(report.expired for _, report in reports), len(due))
        expired = await logged(self.store, "InvitationExpired")
        self.assertEqual(sorted(e.invitation_id for e in expired), due)
        self.assertTrue({e.origin.node for e in expired} <= {"node-a", "node-b"})
        for invitation_id in due:
            self.assertEqual(await statuses(self.store, invitation_id), ("expired", ["pending", "expired"]))
