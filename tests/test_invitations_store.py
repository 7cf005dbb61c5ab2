"""
Tests for L{lairchat.store.invitations} against the real database: every
status change and its trail, the one-pending rule under concurrency,
acceptance racing revocation, the ban's revocation, and stored transitions
checked against the lifecycle rules over every short sequence of actions.
"""

import itertools

from twisted.internet.defer import Deferred, DeferredList
from twisted.trial.unittest import TestCase

from lairchat import invitation_lifecycle as lifecycle
from lairchat.errors import AccessDenied, ChatError, Conflict, Gone, NotFound
from lairchat.events import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    InvitationReceived,
    InvitationReminder,
    InvitationRevoked,
    Origin,
    RoomRef,
    UserJoined,
)
from lairchat.store.events import Outbox
from tests.invitation_fixtures import (
    DAY_MS,
    TEST_ORIGIN,
    add_member,
    ban,
    logged,
    make_room,
    make_user,
    mark_online,
    new_outbox,
    role_of,
    statuses,
)
from tests.support import fresh_store

NOW = 1_800_000_000_000
"""A fixed 'now' (epoch ms) for the store calls."""


class InvitationStoreTests(TestCase):
    """Creating, answering, revoking, reading."""

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.room = await make_room(self.store, "lair", self.alice)

    async def invite(self, recipient=None, role="member", message="hi", now=NOW, ttl=DAY_MS):
        """alice invites (bob) to lair."""
        return await self.store.invitations.create(
            self.alice, recipient or self.bob, self.room, role, message, now, now + ttl, new_outbox()
        )

    async def test_create(self):
        """An invitation is stored pending, with names, times and its first event."""
        invitation = await self.invite(role="moderator", message="come: now")
        self.assertEqual(
            (invitation.sender, invitation.recipient, invitation.room, invitation.status, invitation.role,
             invitation.message, invitation.created_ms, invitation.expires_ms, invitation.responded_ms),
            ("alice", "bob", "lair", "pending", "moderator", "come: now", NOW, NOW + DAY_MS, 0),
        )
        events = await self.store.invitations.events(invitation.id)
        self.assertEqual([(e.status, e.actor, e.note, e.ts_ms) for e in events], [("pending", "alice", "sent", NOW)])
        audit = await self.store.audit.latest(1)
        self.assertEqual((audit[0].actor, audit[0].action, audit[0].target), ("alice", "invite", "bob"))

    async def test_second_pending_conflicts(self):
        """A second pending invitation for the same room and recipient is a conflict."""
        await self.invite()
        with self.assertRaises(Conflict):
            await self.invite()
        carol = await make_user(self.store, "carol")
        await add_member(self.store, self.room, carol)
        with self.assertRaises(Conflict):
            await self.store.invitations.create(carol, self.bob, self.room, "member", "", NOW, NOW + DAY_MS,
                                                new_outbox())
        count = await self.store.db.fetchone("SELECT count(*) FROM invitations")
        self.assertEqual(count[0], 1)

    async def test_after_an_answer_a_new_one_may_be_sent(self):
        """Only pending invitations count for the one-pending rule."""
        first = await self.invite()
        await self.store.invitations.decline(first.id, self.bob, "", NOW + 1, new_outbox())
        second = await self.invite()
        self.assertNotEqual(first.id, second.id)

    async def test_member_and_banned_refused(self):
        """A member cannot be invited (1211), nor a banned user (1404); nothing is stored."""
        with self.assertRaises(Conflict):
            await self.invite(recipient=self.alice)
        await ban(self.store, self.room, self.bob)
        with self.assertRaises(AccessDenied):
            await self.invite()
        count = await self.store.db.fetchone("SELECT count(*) FROM invitations")
        self.assertEqual(count[0], 0)

    async def test_concurrent_invitations_leave_one_pending(self):
        """Two invitations for the same pair at once: exactly one is stored, the other is a conflict."""
        carol = await make_user(self.store, "carol")
        await add_member(self.store, self.room, carol)
        results = await DeferredList(
            [
                self._deferred(self.store.invitations.create(self.alice, self.bob, self.room, "member", "",
                                                             NOW, NOW + DAY_MS, new_outbox())),
                self._deferred(self.store.invitations.create(carol, self.bob, self.room, "member", "",
                                                             NOW, NOW + DAY_MS, new_outbox())),
            ],
            consumeErrors=True,
        )
        outcomes = sorted("ok" if ok else type(value.value).__name__ for ok, value in results)
        self.assertEqual(outcomes, ["Conflict", "ok"])
        count = await self.store.db.fetchone(
            "SELECT count(*) FROM invitations WHERE status = 'pending' AND recipient_id = %s", (self.bob.id,)
        )
        self.assertEqual(count[0], 1)

    def _deferred(self, coroutine):
        """A coroutine as a Deferred, started now."""
        from twisted.internet.defer import Deferred

        return Deferred.fromCoroutine(coroutine)

    async def test_accept(self):
        """Acceptance: status, event, membership with the invited role, audit."""
        invitation = await self.invite(role="moderator")
        accepted, joined = await self.store.invitations.accept(invitation.id, self.bob, NOW + 5, new_outbox())
        self.assertTrue(joined)
        self.assertEqual((accepted.status, accepted.responded_ms), ("accepted", NOW + 5))
        self.assertEqual(await role_of(self.store, self.room, self.bob), "moderator")
        self.assertEqual(await statuses(self.store, invitation.id), ("accepted", ["pending", "accepted"]))
        audit = await self.store.audit.latest(1)
        self.assertEqual((audit[0].actor, audit[0].action), ("bob", "accept"))

    async def test_accept_by_someone_else_is_not_found(self):
        """Only the recipient accepts; anyone else reads 'not found'."""
        invitation = await self.invite()
        carol = await make_user(self.store, "carol")
        for who in (carol, self.alice):
            with self.assertRaises(NotFound):
                await self.store.invitations.accept(invitation.id, who, NOW + 1, new_outbox())
            with self.assertRaises(NotFound):
                await self.store.invitations.decline(invitation.id, who, "", NOW + 1, new_outbox())
        with self.assertRaises(NotFound):
            await self.store.invitations.accept(invitation.id + 100, self.bob, NOW + 1, new_outbox())
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_accept_when_banned_changes_nothing(self):
        """A ban found at acceptance refuses it and leaves everything as it was."""
        invitation = await self.invite()
        await ban(self.store, self.room, self.bob)
        with self.assertRaises(AccessDenied):
            await self.store.invitations.accept(invitation.id, self.bob, NOW + 1, new_outbox())
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))
        self.assertIsNone(await role_of(self.store, self.room, self.bob))

    async def test_accept_when_already_a_member(self):
        """Someone who joined meanwhile may accept; their role is kept."""
        invitation = await self.invite(role="moderator")
        await add_member(self.store, self.room, self.bob, "guest")
        accepted, joined = await self.store.invitations.accept(invitation.id, self.bob, NOW + 1, new_outbox())
        self.assertFalse(joined)
        self.assertEqual(accepted.status, "accepted")
        self.assertEqual(await role_of(self.store, self.room, self.bob), "guest")

    async def test_expired_but_not_swept_is_gone(self):
        """Past its expiry, an invitation cannot be answered or revoked, sweep or not."""
        invitation = await self.invite(ttl=1000)
        for attempt in (
            self.store.invitations.accept(invitation.id, self.bob, NOW + 1000, new_outbox()),
            self.store.invitations.decline(invitation.id, self.bob, "", NOW + 2000, new_outbox()),
            self.store.invitations.revoke(invitation.id, self.alice, NOW + 1000, new_outbox()),
        ):
            error = None
            try:
                await attempt
            except Gone as e:
                error = e
            self.assertEqual(error.message, "this invitation has expired")
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_answered_is_gone(self):
        """Once answered, every further change is 1502 GONE saying why."""
        invitation = await self.invite()
        await self.store.invitations.decline(invitation.id, self.bob, "busy", NOW + 1, new_outbox())
        with self.assertRaises(Gone) as caught:
            await self.store.invitations.accept(invitation.id, self.bob, NOW + 2, new_outbox())
        self.assertEqual(caught.exception.message, "this invitation was already declined")
        with self.assertRaises(Gone):
            await self.store.invitations.revoke(invitation.id, self.alice, NOW + 2, new_outbox())
        events = await self.store.invitations.events(invitation.id)
        self.assertEqual([(e.status, e.actor, e.note) for e in events],
                         [("pending", "alice", "sent"), ("declined", "bob", "busy")])

    async def test_accept_racing_revoke_has_one_winner(self):
        """Acceptance and revocation at once on separate connections: exactly one wins."""
        for attempt in range(10):
            invitation = await self.invite()
            results = await DeferredList(
                [
                    self._deferred(self.store.invitations.accept(invitation.id, self.bob, NOW + 1, new_outbox())),
                    self._deferred(self.store.invitations.revoke(invitation.id, self.alice, NOW + 1, new_outbox())),
                ],
                consumeErrors=True,
            )
            winners = [ok for ok, _ in results if ok]
            self.assertEqual(len(winners), 1, results)
            for ok, value in results:
                if not ok:
                    self.assertIsInstance(value.value, Gone)
            status, trail = await statuses(self.store, invitation.id)
            self.assertEqual(len(trail), 2)
            self.assertEqual(trail[1], status)
            member = await role_of(self.store, self.room, self.bob)
            self.assertEqual(member is not None, status == "accepted")
            if member is not None:
                await self.store.db.execute(
                    "DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (self.room, self.bob.id)
                )

    async def test_revoke_pending_in(self):
        """Inside a caller's transaction, a ban revokes the user's pending invitations to that room only."""
        invitation = await self.invite()
        other_room = await make_room(self.store, "den", self.alice)
        elsewhere = await self.store.invitations.create(self.alice, self.bob, other_room, "member", "",
                                                        NOW, NOW + DAY_MS, new_outbox())

        async def ban_work(tx):
            return await self.store.invitations.revoke_pending_in(tx, self.room, self.bob.id, self.alice.id, "banned")

        self.assertEqual(await self.store.db.transaction(ban_work), [invitation.id])
        events = await self.store.invitations.events(invitation.id)
        self.assertEqual([(e.status, e.actor, e.note) for e in events][-1], ("revoked", "alice", "banned"))
        self.assertEqual((await self.store.invitations.get(invitation.id)).status, "revoked")
        self.assertNotEqual((await self.store.invitations.get(invitation.id)).responded_ms, 0)
        self.assertEqual((await self.store.invitations.get(elsewhere.id)).status, "pending")
        self.assertEqual(await self.store.db.transaction(ban_work), [])

    async def test_revoke_pending_in_rolls_back_with_its_caller(self):
        """When the caller's transaction fails, the revocation is undone too."""
        invitation = await self.invite()

        async def failing(tx):
            await self.store.invitations.revoke_pending_in(tx, self.room, self.bob.id, self.alice.id, "")
            raise Conflict("the rest of the ban failed")

        with self.assertRaises(Conflict):
            await self.store.db.transaction(failing)
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_lists(self):
        """Received, sent and room lists: newest first, filtered by status."""
        carol = await make_user(self.store, "carol")
        first = await self.invite()
        second = await self.invite(recipient=carol)
        await self.store.invitations.decline(first.id, self.bob, "", NOW + 1, new_outbox())
        invitations = self.store.invitations
        self.assertEqual([i.id for i in await invitations.sent(self.alice.id, None)], [second.id, first.id])
        self.assertEqual([i.id for i in await invitations.sent(self.alice.id, "pending")], [second.id])
        self.assertEqual([i.id for i in await invitations.received(self.bob.id, "declined")], [first.id])
        self.assertEqual([i.id for i in await invitations.received(self.bob.id, "pending")], [])
        self.assertEqual([i.id for i in await invitations.for_room(self.room, None, limit=1)], [second.id])
        self.assertEqual((await invitations.latest_to_room(self.bob.id, "LAIR")).id, first.id)
        self.assertIsNone(await invitations.latest_to_room(self.bob.id, "den"))
        self.assertEqual((await invitations.latest_pending(carol.id)).id, second.id)
        self.assertIsNone(await invitations.latest_pending(self.bob.id))

    async def test_pending_received_leaves_out_due_ones(self):
        """What a login delivers: pending and not yet due, oldest first."""
        den = await make_room(self.store, "den", self.alice)
        first = await self.invite(ttl=1000)
        second = await self.store.invitations.create(self.alice, self.bob, den, "member", "", NOW, NOW + DAY_MS,
                                                     new_outbox())
        pending = self.store.invitations.pending_received
        self.assertEqual([i.id for i in await pending(self.bob.id, NOW)], [first.id, second.id])
        self.assertEqual([i.id for i in await pending(self.bob.id, NOW + 1000)], [second.id])

    async def test_stats(self):
        """The counts, the acceptance rate and the median response time, per scope."""
        carol = await make_user(self.store, "carol")
        dave = await make_user(self.store, "dave")
        erin = await make_user(self.store, "erin")
        to_bob = await self.invite()
        to_carol = await self.invite(recipient=carol)
        to_dave = await self.invite(recipient=dave, ttl=1000)
        to_erin = await self.invite(recipient=erin)
        await self.store.invitations.accept(to_bob.id, self.bob, NOW + 1000, new_outbox())
        await self.store.invitations.decline(to_carol.id, carol, "", NOW + 3000, new_outbox())
        await self.store.invitations.revoke(to_erin.id, self.alice, NOW + 10, new_outbox())
        await self.store.invitations.expire_due(NOW + 1000, new_outbox())
        den = await make_room(self.store, "den", self.bob)
        await self.store.invitations.create(self.bob, self.alice, den, "member", "", NOW, NOW + DAY_MS, new_outbox())
        self.assertEqual(to_dave.status, "pending")

        mine = await self.store.invitations.stats(user_id=self.alice.id)
        self.assertEqual(
            (mine.sent, mine.received, mine.pending, mine.accepted, mine.declined, mine.expired, mine.revoked),
            (4, 1, 1, 1, 1, 1, 1),
        )
        self.assertAlmostEqual(mine.acceptance_rate, 1 / 3)
        self.assertEqual(mine.median_response_ms, 2000)
        room = await self.store.invitations.stats(room_id=self.room)
        self.assertEqual((room.sent, room.received, room.pending), (4, 4, 0))
        everything = await self.store.invitations.stats()
        self.assertEqual((everything.sent, everything.pending), (5, 1))
        nothing = await self.store.invitations.stats(user_id=dave.id + 100)
        self.assertEqual((nothing.sent, nothing.acceptance_rate, nothing.median_response_ms), (0, 0.0, 0))

    async def test_template(self):
        """The room's template is stored and cleared."""
        await self.store.invitations.set_template(self.room, "hi {recipient}", "alice", "lair")
        self.assertEqual((await self.store.rooms.by_id(self.room)).invite_template, "hi {recipient}")
        await self.store.invitations.set_template(self.room, None, "alice", "lair")
        self.assertIsNone((await self.store.rooms.by_id(self.room)).invite_template)


class SweepStatementTests(TestCase):
    """The set-based statements the sweeper runs."""

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.rooms = [await make_room(self.store, f"room{n}", self.alice) for n in range(3)]

    async def invite(self, room, created_ms, expires_ms):
        """alice invites bob to C{room} at C{created_ms}, until C{expires_ms}."""
        return await self.store.invitations.create(self.alice, self.bob, room, "member", "", created_ms, expires_ms,
                                                   new_outbox())

    async def test_expire_due(self):
        """Exactly the due pending invitations expire, each with its event."""
        due = await self.invite(self.rooms[0], NOW, NOW + 1000)
        later = await self.invite(self.rooms[1], NOW, NOW + 5000)
        answered = await self.invite(self.rooms[2], NOW, NOW + 1000)
        await self.store.invitations.decline(answered.id, self.bob, "", NOW + 1, new_outbox())
        expired = await self.store.invitations.expire_due(NOW + 1000, new_outbox())
        self.assertEqual([(i.id, i.status, i.room) for i in expired], [(due.id, "expired", "room0")])
        self.assertEqual(await statuses(self.store, due.id), ("expired", ["pending", "expired"]))
        self.assertEqual((await statuses(self.store, later.id))[0], "pending")
        self.assertEqual(await statuses(self.store, answered.id), ("declined", ["pending", "declined"]))
        self.assertEqual(await self.store.invitations.expire_due(NOW + 1000, new_outbox()), [])

    async def test_expire_due_in_batches(self):
        """With a limit, the invitations due first expire first; the rest wait for the next statement."""
        late = await self.invite(self.rooms[0], NOW, NOW + 3000)
        early = await self.invite(self.rooms[1], NOW, NOW + 1000)
        middle = await self.invite(self.rooms[2], NOW, NOW + 2000)
        expire = self.store.invitations.expire_due
        self.assertEqual([i.id for i in await expire(NOW + 5000, new_outbox(), 2)], sorted([early.id, middle.id]))
        self.assertEqual([i.id for i in await expire(NOW + 5000, new_outbox(), 2)], [late.id])
        self.assertEqual(await expire(NOW + 5000, new_outbox(), 2), [])

    async def test_remind_once(self):
        """A reminder is due within the window, for recipients online on any node, once."""
        soon = await self.invite(self.rooms[0], NOW, NOW + DAY_MS)
        await self.invite(self.rooms[1], NOW, NOW + 3 * DAY_MS)
        remind = self.store.invitations.remind
        self.assertEqual(await remind(NOW, DAY_MS, new_outbox()), [])
        await mark_online(self.store, self.alice, "node-a")
        self.assertEqual(await remind(NOW, DAY_MS, new_outbox()), [])
        await mark_online(self.store, self.bob, "node-a")
        await mark_online(self.store, self.bob, "node-b")
        self.assertEqual([i.id for i in await remind(NOW, DAY_MS, new_outbox())], [soon.id])
        self.assertEqual(await remind(NOW, DAY_MS, new_outbox()), [])

    async def test_purge_answered(self):
        """Answered invitations older than the cut-off go, with their trails; pending ones stay."""
        old = await self.invite(self.rooms[0], NOW, NOW + DAY_MS)
        await self.store.invitations.decline(old.id, self.bob, "", NOW + 10, new_outbox())
        recent = await self.invite(self.rooms[1], NOW, NOW + DAY_MS)
        await self.store.invitations.decline(recent.id, self.bob, "", NOW + 1000, new_outbox())
        pending = await self.invite(self.rooms[2], NOW - DAY_MS, NOW + DAY_MS)
        self.assertEqual(await self.store.invitations.purge_answered(NOW + 500), 1)
        self.assertIsNone(await self.store.invitations.get(old.id))
        self.assertEqual(await self.store.invitations.events(old.id), [])
        self.assertIsNotNone(await self.store.invitations.get(recent.id))
        self.assertIsNotNone(await self.store.invitations.get(pending.id))


class EventRecordingTests(TestCase):
    """
    Every change records its event in its own transaction: after it
    committed, the event is in the event log once, with the outbox's
    origin, and the outbox holds it with its sequence number; a refused
    change records nothing.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.room = await make_room(self.store, "lair", self.alice)

    async def invite(self, recipient=None, room=None, ttl=DAY_MS):
        """alice invites (bob) to (lair); the invitation and its outbox."""
        outbox = new_outbox()
        invitation = await self.store.invitations.create(
            self.alice, recipient or self.bob, room or self.room, "moderator", "hi", NOW, NOW + ttl, outbox
        )
        return invitation, outbox

    async def assertLoggedOnce(self, outbox, expected):
        """C{expected} are in the log once each, as in C{outbox}, with their sequence numbers."""
        kinds = {type(e).__name__ for e in expected}
        self.assertEqual(await logged(self.store, *kinds), expected)
        self.assertEqual(outbox.events, expected)
        entries = [e for e in await self.store.events.since(0) if type(e.event).__name__ in kinds]
        self.assertEqual([e.seq for e in entries], outbox.seqs)

    async def assertNothingLogged(self, outbox, *kinds):
        """No event of C{kinds} was logged, and C{outbox} is empty."""
        self.assertEqual(await logged(self.store, *kinds), [])
        self.assertEqual((outbox.events, outbox.seqs), ([], []))

    async def test_create(self):
        """Creating records the recipient's InvitationReceived."""
        invitation, outbox = await self.invite()
        await self.assertLoggedOnce(outbox, [
            InvitationReceived(invitation.id, self.bob.id, "alice", "lair", "moderator", NOW + DAY_MS, "hi",
                               origin=TEST_ORIGIN),
        ])

    async def test_refused_create_records_nothing(self):
        """A member, a banned user, a second pending invitation: refused, and nothing is recorded."""
        carol = await make_user(self.store, "carol")
        await add_member(self.store, self.room, carol)
        dave = await make_user(self.store, "dave")
        await ban(self.store, self.room, dave)
        await self.invite()
        before = await logged(self.store, "InvitationReceived")
        for recipient, error in ((carol, Conflict), (dave, AccessDenied), (self.bob, Conflict)):
            outbox = new_outbox()
            with self.assertRaises(error):
                await self.store.invitations.create(self.alice, recipient, self.room, "member", "", NOW,
                                                    NOW + DAY_MS, outbox)
            self.assertEqual((outbox.events, outbox.seqs), ([], []))
        self.assertEqual(await logged(self.store, "InvitationReceived"), before)

    async def test_accept(self):
        """Accepting records the sender's InvitationAccepted and the room's UserJoined."""
        invitation, _ = await self.invite()
        outbox = new_outbox()
        await self.store.invitations.accept(invitation.id, self.bob, NOW + 1, outbox)
        await self.assertLoggedOnce(outbox, [
            InvitationAccepted(invitation.id, self.alice.id, "bob", "lair", origin=TEST_ORIGIN),
            UserJoined(RoomRef(self.room, "lair"), self.bob.id, "bob", origin=TEST_ORIGIN),
        ])

    async def test_accept_by_a_member_joins_nobody(self):
        """Someone who is a member already accepts: InvitationAccepted, but no UserJoined."""
        invitation, _ = await self.invite()
        await add_member(self.store, self.room, self.bob, "guest")
        outbox = new_outbox()
        await self.store.invitations.accept(invitation.id, self.bob, NOW + 1, outbox)
        await self.assertLoggedOnce(outbox, [
            InvitationAccepted(invitation.id, self.alice.id, "bob", "lair", origin=TEST_ORIGIN),
        ])
        self.assertEqual(await logged(self.store, "UserJoined"), [])

    async def test_refused_answers_record_nothing(self):
        """Someone else's invitation, a banned recipient, a due invitation: refused, nothing recorded."""
        invitation, _ = await self.invite()
        carol = await make_user(self.store, "carol")
        attempts = [
            (NotFound, lambda outbox: self.store.invitations.accept(invitation.id, carol, NOW + 1, outbox)),
            (NotFound, lambda outbox: self.store.invitations.accept(invitation.id, self.alice, NOW + 1, outbox)),
            (NotFound, lambda outbox: self.store.invitations.decline(invitation.id, carol, "", NOW + 1, outbox)),
            (Gone, lambda outbox: self.store.invitations.accept(invitation.id, self.bob, NOW + DAY_MS, outbox)),
            (Gone, lambda outbox: self.store.invitations.revoke(invitation.id, self.alice, NOW + DAY_MS, outbox)),
        ]
        for error, attempt in attempts:
            outbox = new_outbox()
            with self.assertRaises(error):
                await attempt(outbox)
            await self.assertNothingLogged(outbox, "InvitationAccepted", "InvitationDeclined", "InvitationRevoked",
                                           "UserJoined")
        await ban(self.store, self.room, self.bob)
        outbox = new_outbox()
        with self.assertRaises(AccessDenied):
            await self.store.invitations.accept(invitation.id, self.bob, NOW + 1, outbox)
        await self.assertNothingLogged(outbox, "InvitationAccepted", "UserJoined")

    async def test_decline(self):
        """Declining records the sender's InvitationDeclined; a second answer records nothing."""
        invitation, _ = await self.invite()
        outbox = new_outbox()
        await self.store.invitations.decline(invitation.id, self.bob, "busy", NOW + 1, outbox)
        expected = [InvitationDeclined(invitation.id, self.alice.id, "bob", "lair", origin=TEST_ORIGIN)]
        await self.assertLoggedOnce(outbox, expected)
        with self.assertRaises(Gone):
            await self.store.invitations.decline(invitation.id, self.bob, "", NOW + 2, new_outbox())
        self.assertEqual(await logged(self.store, "InvitationDeclined"), expected)

    async def test_revoke(self):
        """Revoking records the recipient's InvitationRevoked, naming who revoked it."""
        invitation, _ = await self.invite()
        outbox = new_outbox()
        await self.store.invitations.revoke(invitation.id, self.alice, NOW + 1, outbox)
        await self.assertLoggedOnce(outbox, [
            InvitationRevoked(invitation.id, self.bob.id, "lair", "alice", origin=TEST_ORIGIN),
        ])

    async def test_expire_due(self):
        """Expiring records each invitation's InvitationExpired; a second run records nothing."""
        invitation, _ = await self.invite(ttl=1000)
        outbox = new_outbox()
        await self.store.invitations.expire_due(NOW + 1000, outbox)
        expected = [InvitationExpired(invitation.id, self.alice.id, self.bob.id, "lair", origin=TEST_ORIGIN)]
        await self.assertLoggedOnce(outbox, expected)
        again = new_outbox()
        self.assertEqual(await self.store.invitations.expire_due(NOW + 2000, again), [])
        self.assertEqual((again.events, await logged(self.store, "InvitationExpired")), ([], expected))

    async def test_remind(self):
        """Reminding records the recipient's InvitationReminder, once."""
        invitation, _ = await self.invite(ttl=1000)
        await mark_online(self.store, self.bob)
        outbox = new_outbox()
        await self.store.invitations.remind(NOW, 1000, outbox)
        expected = [InvitationReminder(invitation.id, self.bob.id, "lair", NOW + 1000, origin=TEST_ORIGIN)]
        await self.assertLoggedOnce(outbox, expected)
        await self.store.invitations.remind(NOW + 1, 1000, new_outbox())
        self.assertEqual(await logged(self.store, "InvitationReminder"), expected)

    async def test_concurrent_sweeps_record_each_event_once(self):
        """
        Two sweeps (two nodes) expiring and reminding at once: each
        invitation expires, or is reminded of, once, and its event is
        recorded once, by the sweep that changed it.
        """
        users = [await make_user(self.store, f"user{n}") for n in range(6)]
        rooms = [self.room] + [await make_room(self.store, f"room{n}", self.alice) for n in range(3)]
        due = sorted([(await self.invite(user, room, ttl=1000))[0].id for user in users for room in rooms])
        later = []
        for user in users:
            await mark_online(self.store, user)
            room = await make_room(self.store, f"late_{user.username}", self.alice)
            later.append((await self.invite(user, room))[0].id)

        async def at_once(statement):
            """Run C{statement(outbox)} on two nodes at once: the ids changed, and those recorded."""
            outboxes = [Outbox(Origin("node-a")), Outbox(Origin("node-b"))]
            results = await DeferredList([self._deferred(statement(outbox)) for outbox in outboxes],
                                         fireOnOneErrback=True, consumeErrors=True)
            changed = [i.id for _, found in results for i in found]
            return changed, [e.invitation_id for outbox in outboxes for e in outbox.events]

        expired, recorded = [], []
        while True:
            changed, told = await at_once(lambda outbox: self.store.invitations.expire_due(NOW + 1000, outbox, 5))
            if not changed:
                break
            expired += changed
            recorded += told
        self.assertEqual((sorted(expired), sorted(recorded)), (due, due))
        self.assertEqual(sorted(e.invitation_id for e in await logged(self.store, "InvitationExpired")), due)

        reminded, recorded = await at_once(lambda outbox: self.store.invitations.remind(NOW + 1000, DAY_MS, outbox))
        self.assertEqual((sorted(reminded), sorted(recorded)), (later, later))
        self.assertEqual(sorted(e.invitation_id for e in await logged(self.store, "InvitationReminder")), later)

    def _deferred(self, coroutine):
        """A coroutine as a Deferred, started now."""
        return Deferred.fromCoroutine(coroutine)


ACTIONS = ("accept", "decline", "revoke", "expire")
"""The actions of the lifecycle, as the store performs them."""


class StoredTransitionTests(TestCase):
    """
    The stored side of the lifecycle: every sequence of up to three actions
    is run through the store, and what is stored must be what the pure rules
    of L{lairchat.invitation_lifecycle} say, with only allowed transitions
    in every trail.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.room = await make_room(self.store, "lair", self.alice)

    async def perform(self, action, invitation_id, now_ms):
        """Run one action through the store."""
        invitations = self.store.invitations
        if action == "accept":
            await invitations.accept(invitation_id, self.bob, now_ms, new_outbox())
        elif action == "decline":
            await invitations.decline(invitation_id, self.bob, "", now_ms, new_outbox())
        elif action == "revoke":
            await invitations.revoke(invitation_id, self.alice, now_ms, new_outbox())
        else:
            expired = await invitations.expire_due(now_ms, new_outbox())
            if invitation_id not in [i.id for i in expired]:
                raise Gone("nothing expired")

    async def test_every_short_sequence(self):
        """Each sequence of actions (at times before or after expiry) ends as the rules predict."""
        ttl = 1000
        steps = [(action, late) for action in ACTIONS for late in (False, True)]
        sequences = [s for n in (1, 2, 3) for s in itertools.product(steps, repeat=n)]
        for sequence in sequences:
            await self.store.db.execute("DELETE FROM room_members WHERE user_id = %s", (self.bob.id,))
            invitation = await self.store.invitations.create(self.alice, self.bob, self.room, "member", "",
                                                             NOW, NOW + ttl, new_outbox())
            expected, expected_trail = lifecycle.PENDING, [lifecycle.PENDING]
            for action, late in sequence:
                now_ms = NOW + (ttl if late else ttl // 2)
                try:
                    predicted = lifecycle.advance(expected, action, NOW + ttl, now_ms)
                except (Gone, ValueError):
                    predicted = None
                try:
                    await self.perform(action, invitation.id, now_ms)
                except ChatError:
                    self.assertIsNone(predicted, (sequence, action))
                else:
                    self.assertIsNotNone(predicted, (sequence, action))
                    expected = predicted
                    expected_trail.append(predicted)
            status, trail = await statuses(self.store, invitation.id)
            self.assertEqual((status, trail), (expected, expected_trail), sequence)
            for old, new in zip(trail, trail[1:]):
                self.assertTrue(lifecycle.is_allowed(old, new), (sequence, trail))
            if status == lifecycle.PENDING:
                await self.store.invitations.revoke(invitation.id, self.alice, NOW, new_outbox())
