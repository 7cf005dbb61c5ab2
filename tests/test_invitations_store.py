"""
Tests for L{lairchat.store.invitations} against the real database: every
status change and its trail, the one-pending rule under concurrency,
acceptance racing revocation, the ban's revocation, and stored transitions
checked against the lifecycle rules over every short sequence of actions.
"""

import itertools

from twisted.internet.defer import DeferredList
from twisted.trial.unittest import TestCase

from lairchat import invitation_lifecycle as lifecycle
from lairchat.errors import AccessDenied, ChatError, Conflict, Gone, NotFound
from tests.invitation_fixtures import DAY_MS, add_member, ban, make_room, make_user, role_of, statuses
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
            self.alice, recipient or self.bob, self.room, role, message, now, now + ttl
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
            await self.store.invitations.create(carol, self.bob, self.room, "member", "", NOW, NOW + DAY_MS)
        count = await self.store.db.fetchone("SELECT count(*) FROM invitations")
        self.assertEqual(count[0], 1)

    async def test_after_an_answer_a_new_one_may_be_sent(self):
        """Only pending invitations count for the one-pending rule."""
        first = await self.invite()
        await self.store.invitations.decline(first.id, self.bob, "", NOW + 1)
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
                                                             NOW, NOW + DAY_MS)),
                self._deferred(self.store.invitations.create(carol, self.bob, self.room, "member", "",
                                                             NOW, NOW + DAY_MS)),
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
        accepted, joined = await self.store.invitations.accept(invitation.id, self.bob, NOW + 5)
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
                await self.store.invitations.accept(invitation.id, who, NOW + 1)
            with self.assertRaises(NotFound):
                await self.store.invitations.decline(invitation.id, who, "", NOW + 1)
        with self.assertRaises(NotFound):
            await self.store.invitations.accept(invitation.id + 100, self.bob, NOW + 1)
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_accept_when_banned_changes_nothing(self):
        """A ban found at acceptance refuses it and leaves everything as it was."""
        invitation = await self.invite()
        await ban(self.store, self.room, self.bob)
        with self.assertRaises(AccessDenied):
            await self.store.invitations.accept(invitation.id, self.bob, NOW + 1)
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))
        self.assertIsNone(await role_of(self.store, self.room, self.bob))

    async def test_accept_when_already_a_member(self):
        """Someone who joined meanwhile may accept; their role is kept."""
        invitation = await self.invite(role="moderator")
        await add_member(self.store, self.room, self.bob, "guest")
        accepted, joined = await self.store.invitations.accept(invitation.id, self.bob, NOW + 1)
        self.assertFalse(joined)
        self.assertEqual(accepted.status, "accepted")
        self.assertEqual(await role_of(self.store, self.room, self.bob), "guest")

    async def test_expired_but_not_swept_is_gone(self):
        """Past its expiry, an invitation cannot be answered or revoked, sweep or not."""
        invitation = await self.invite(ttl=1000)
        for attempt in (
            self.store.invitations.accept(invitation.id, self.bob, NOW + 1000),
            self.store.invitations.decline(invitation.id, self.bob, "", NOW + 2000),
            self.store.invitations.revoke(invitation.id, self.alice, NOW + 1000),
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
        await self.store.invitations.decline(invitation.id, self.bob, "busy", NOW + 1)
        with self.assertRaises(Gone) as caught:
            await self.store.invitations.accept(invitation.id, self.bob, NOW + 2)
        self.assertEqual(caught.exception.message, "this invitation was already declined")
        with self.assertRaises(Gone):
            await self.store.invitations.revoke(invitation.id, self.alice, NOW + 2)
        events = await self.store.invitations.events(invitation.id)
        self.assertEqual([(e.status, e.actor, e.note) for e in events],
                         [("pending", "alice", "sent"), ("declined", "bob", "busy")])

    async def test_accept_racing_revoke_has_one_winner(self):
        """Acceptance and revocation at once on separate connections: exactly one wins."""
        for attempt in range(10):
            invitation = await self.invite()
            results = await DeferredList(
                [
                    self._deferred(self.store.invitations.accept(invitation.id, self.bob, NOW + 1)),
                    self._deferred(self.store.invitations.revoke(invitation.id, self.alice, NOW + 1)),
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
                                                        NOW, NOW + DAY_MS)

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
        await self.store.invitations.decline(first.id, self.bob, "", NOW + 1)
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
        second = await self.store.invitations.create(self.alice, self.bob, den, "member", "", NOW, NOW + DAY_MS)
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
        await self.store.invitations.accept(to_bob.id, self.bob, NOW + 1000)
        await self.store.invitations.decline(to_carol.id, carol, "", NOW + 3000)
        await self.store.invitations.revoke(to_erin.id, self.alice, NOW + 10)
        await self.store.invitations.expire_due(NOW + 1000)
        den = await make_room(self.store, "den", self.bob)
        await self.store.invitations.create(self.bob, self.alice, den, "member", "", NOW, NOW + DAY_MS)
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

    async def test_expire_due(self):
        """Exactly the due pending invitations expire, each with its event."""
        create = self.store.invitations.create
        due = await create(self.alice, self.bob, self.rooms[0], "member", "", NOW, NOW + 1000)
        later = await create(self.alice, self.bob, self.rooms[1], "member", "", NOW, NOW + 5000)
        answered = await create(self.alice, self.bob, self.rooms[2], "member", "", NOW, NOW + 1000)
        await self.store.invitations.decline(answered.id, self.bob, "", NOW + 1)
        expired = await self.store.invitations.expire_due(NOW + 1000)
        self.assertEqual([(i.id, i.status, i.room) for i in expired], [(due.id, "expired", "room0")])
        self.assertEqual(await statuses(self.store, due.id), ("expired", ["pending", "expired"]))
        self.assertEqual((await statuses(self.store, later.id))[0], "pending")
        self.assertEqual(await statuses(self.store, answered.id), ("declined", ["pending", "declined"]))
        self.assertEqual(await self.store.invitations.expire_due(NOW + 1000), [])

    async def test_expire_due_in_batches(self):
        """With a limit, the invitations due first expire first; the rest wait for the next statement."""
        create = self.store.invitations.create
        late = await create(self.alice, self.bob, self.rooms[0], "member", "", NOW, NOW + 3000)
        early = await create(self.alice, self.bob, self.rooms[1], "member", "", NOW, NOW + 1000)
        middle = await create(self.alice, self.bob, self.rooms[2], "member", "", NOW, NOW + 2000)
        expire = self.store.invitations.expire_due
        self.assertEqual([i.id for i in await expire(NOW + 5000, 2)], sorted([early.id, middle.id]))
        self.assertEqual([i.id for i in await expire(NOW + 5000, 2)], [late.id])
        self.assertEqual(await expire(NOW + 5000, 2), [])

    async def test_remind_once(self):
        """A reminder is due within the window, for the listed recipients, once."""
        create = self.store.invitations.create
        soon = await create(self.alice, self.bob, self.rooms[0], "member", "", NOW, NOW + DAY_MS)
        await create(self.alice, self.bob, self.rooms[1], "member", "", NOW, NOW + 3 * DAY_MS)
        remind = self.store.invitations.remind
        self.assertEqual(await remind([self.alice.id], NOW, DAY_MS), [])
        self.assertEqual(await remind([], NOW, DAY_MS), [])
        self.assertEqual([i.id for i in await remind([self.bob.id], NOW, DAY_MS)], [soon.id])
        self.assertEqual(await remind([self.bob.id], NOW, DAY_MS), [])

    async def test_purge_answered(self):
        """Answered invitations older than the cut-off go, with their trails; pending ones stay."""
        create = self.store.invitations.create
        old = await create(self.alice, self.bob, self.rooms[0], "member", "", NOW, NOW + DAY_MS)
        await self.store.invitations.decline(old.id, self.bob, "", NOW + 10)
        recent = await create(self.alice, self.bob, self.rooms[1], "member", "", NOW, NOW + DAY_MS)
        await self.store.invitations.decline(recent.id, self.bob, "", NOW + 1000)
        pending = await create(self.alice, self.bob, self.rooms[2], "member", "", NOW - DAY_MS, NOW + DAY_MS)
        self.assertEqual(await self.store.invitations.purge_answered(NOW + 500), 1)
        self.assertIsNone(await self.store.invitations.get(old.id))
        self.assertEqual(await self.store.invitations.events(old.id), [])
        self.assertIsNotNone(await self.store.invitations.get(recent.id))
        self.assertIsNotNone(await self.store.invitations.get(pending.id))


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
            await invitations.accept(invitation_id, self.bob, now_ms)
        elif action == "decline":
            await invitations.decline(invitation_id, self.bob, "", now_ms)
        elif action == "revoke":
            await invitations.revoke(invitation_id, self.alice, now_ms)
        else:
            expired = await invitations.expire_due(now_ms)
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
                                                             NOW, NOW + ttl)
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
                await self.store.invitations.revoke(invitation.id, self.alice, NOW)
