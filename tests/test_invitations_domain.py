"""
Tests for L{lairchat.domain.invitations}: the invitation operations called
as an L{Actor}, over the real database, with no wire.  Each change's event
is recorded in the change's own transaction (so it is in the event log
exactly once, with the actor's origin) and delivered once it committed; a
refused operation records nothing.
"""

from attrs import evolve
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from lairchat.context import Config, ServerContext
from lairchat.domain import Actor
from lairchat.domain import invitations as domain
from lairchat.domain.invitations import LATEST, InvitationRef
from lairchat.errors import AccessDenied, Conflict, Gone, InvalidInput, NotFound, PermissionDenied
from lairchat.events import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationReceived,
    InvitationRevoked,
    Origin,
    RoomRef,
    UserJoined,
)
from lairchat.hub import Hub
from tests.invitation_fixtures import DAY_MS, add_member, ban, logged, make_room, make_user, online, role_of, statuses
from tests.support import fresh_store

START = 1_800_000_000.0
"""The fake clock's start, in epoch seconds."""

NODE = "node-a"
"""The node the actors act on."""

INVITATION_KINDS = ("InvitationReceived", "InvitationAccepted", "InvitationDeclined", "InvitationRevoked",
                    "InvitationExpired", "InvitationReminder", "UserJoined")
"""Every kind of event an invitation operation may record."""


class DomainTestCase(TestCase):
    """
    A node over a fresh store: alice owns lair, carol is a member, dave a
    guest, bob is outside; each acts from a connection of their own.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        self.clock = Clock()
        self.clock.advance(START)
        self.server = ServerContext(config=Config(invite_ttl=DAY_MS // 1000), store=self.store, clock=self.clock,
                                    passwords=None, hub=Hub(NODE))
        self.alice = await make_user(self.store, "alice")
        self.bob = await make_user(self.store, "bob")
        self.carol = await make_user(self.store, "carol")
        self.dave = await make_user(self.store, "dave")
        self.room = await make_room(self.store, "lair", self.alice)
        await add_member(self.store, self.room, self.carol, "member")
        await add_member(self.store, self.room, self.dave, "guest")
        self.connections = {}

    def actor(self, user):
        """C{user} acting from a connection of their own on this node."""
        # numbered apart from the recording connections' own ids, so that no
        # recipient is taken for the connection that caused an event
        connection = self.connections.setdefault(user.id, 1_000_000 + len(self.connections))
        return Actor(self.server, user, Origin(NODE, connection))

    def origin(self, user):
        """The origin of C{user}'s events (see L{actor})."""
        return self.actor(user).origin

    def now_ms(self):
        """The fake clock in epoch ms."""
        return int(self.clock.seconds() * 1000)

    async def invite(self, sender=None, username="bob", room="lair", role="member", message="hi"):
        """(alice) invites (bob) to (lair); the invitation."""
        return await domain.invite(self.actor(sender or self.alice), room, username, role, message)

    async def assertNothingRecorded(self):
        """No invitation event is in the event log."""
        self.assertEqual(await logged(self.store, *INVITATION_KINDS), [])


class InviteTests(DomainTestCase):
    """L{domain.invite}, L{domain.invite_many}, templates."""

    async def test_invite(self):
        """The invitation is stored; its event is recorded once, with the sender's origin, and delivered."""
        bob_connection = await online(self.server, self.bob)
        invitation = await self.invite(role="guest")
        expires_ms = self.now_ms() + DAY_MS
        self.assertEqual((invitation.sender, invitation.recipient, invitation.room, invitation.role,
                          invitation.message, invitation.expires_ms),
                         ("alice", "bob", "lair", "guest", "hi", expires_ms))
        self.assertEqual(await logged(self.store, *INVITATION_KINDS), [
            InvitationReceived(invitation.id, self.bob.id, "alice", "lair", "guest", expires_ms, "hi",
                               origin=self.origin(self.alice)),
        ])
        self.assertEqual(bob_connection.events,
                         [f"INVITATION_RECEIVED:{invitation.id}:alice:lair:guest:{expires_ms}:hi"])

    async def test_refused_invitations_record_nothing(self):
        """Every refusal raises its error, stores nothing and records no event."""
        outsider = await make_user(self.store, "erin")
        await ban(self.store, self.room, await make_user(self.store, "mallory"))
        cases = [
            (self.alice, "nobody", "lair", "member", NotFound),
            (self.alice, "carol", "lair", "member", Conflict),
            (self.alice, "alice", "lair", "member", Conflict),
            (self.alice, "mallory", "lair", "member", AccessDenied),
            (self.alice, "bob", "nowhere", "member", NotFound),
            (self.alice, "bob", "lair", "owner", InvalidInput),
            (self.dave, "bob", "lair", "member", PermissionDenied),
            (self.carol, "bob", "lair", "moderator", PermissionDenied),
            (outsider, "bob", "lair", "member", AccessDenied),
        ]
        for sender, username, room, role, error in cases:
            with self.assertRaises(error, msg=(sender.username, username, room, role)):
                await self.invite(sender, username, room, role)
        await self.invite()
        with self.assertRaises(Conflict):
            await self.invite(self.carol)
        received = await logged(self.store, *INVITATION_KINDS)
        self.assertEqual([type(e).__name__ for e in received], ["InvitationReceived"])
        self.assertEqual((await self.store.db.fetchone("SELECT count(*) FROM invitations"))[0], 1)

    async def test_invite_many(self):
        """One outcome per name, in order; an event for each invitation made, and only for those."""
        await make_user(self.store, "erin")
        names = ["bob", "carol", "9xyz", "erin", "bob"]
        outcomes = await domain.invite_many(self.actor(self.alice), "lair", names)
        self.assertEqual([o.name for o in outcomes], names)
        self.assertEqual([type(o.error).__name__ if o.error else o.invitation.recipient for o in outcomes],
                         ["bob", "Conflict", "InvalidInput", "erin", "Conflict"])
        received = await logged(self.store, *INVITATION_KINDS)
        self.assertEqual([(type(e).__name__, e.invitation_id) for e in received],
                         [("InvitationReceived", outcomes[0].invitation.id),
                          ("InvitationReceived", outcomes[3].invitation.id)])
        with self.assertRaises(PermissionDenied):
            await domain.invite_many(self.actor(self.dave), "lair", ["erin"])

    async def test_template(self):
        """An admin's template fills the message of an invitation sent without one; empty clears it."""
        with self.assertRaises(PermissionDenied):
            await domain.set_template(self.actor(self.carol), "lair", "hi")
        room = await domain.set_template(self.actor(self.alice), "LAIR", "{sender} asks {recipient} to {room}")
        self.assertEqual(room.name, "lair")
        invitation = await self.invite(self.carol, message="")
        self.assertEqual(invitation.message, "carol asks bob to lair")
        [event] = await logged(self.store, "InvitationReceived")
        self.assertEqual(event.message, "carol asks bob to lair")
        await domain.set_template(self.actor(self.alice), "lair", "")
        self.assertIsNone((await self.store.rooms.by_id(self.room)).invite_template)


class AnswerTests(DomainTestCase):
    """Accepting, declining, revoking, and what a login is handed."""

    async def test_accept(self):
        """
        The recipient joins with the invited role; the sender's and the
        room's events are recorded once, with the recipient's origin, and
        delivered.
        """
        alice_connection = await online(self.server, self.alice)
        invitation = await self.invite(role="guest")
        accepted = await domain.accept(self.actor(self.bob), LATEST)
        self.assertEqual((accepted.id, accepted.status, accepted.room), (invitation.id, "accepted", "lair"))
        self.assertEqual(await role_of(self.store, self.room, self.bob), "guest")
        origin = self.origin(self.bob)
        self.assertEqual(await logged(self.store, "InvitationAccepted", "UserJoined"), [
            InvitationAccepted(invitation.id, self.alice.id, "bob", "lair", origin=origin),
            UserJoined(RoomRef(self.room, "lair"), self.bob.id, "bob", origin=origin),
        ])
        self.assertEqual(alice_connection.events, [f"INVITATION_ACCEPTED:{invitation.id}:bob:lair",
                                                   "USER_JOINED:lair:bob"])

    async def test_references(self):
        """By id, by room name (any case), LATEST; none to be found is NotFound."""
        den = await make_room(self.store, "den", self.carol)
        first = await self.invite()
        second = await self.invite(self.carol, room="den")
        bob = self.actor(self.bob)
        self.assertEqual((await domain.accept(bob, InvitationRef(room="LAIR"))).id, first.id)
        self.assertEqual((await domain.decline(bob, InvitationRef(id=second.id), "busy")).id, second.id)
        self.assertEqual(await role_of(self.store, den, self.bob), None)
        with self.assertRaises(NotFound) as caught:
            await domain.accept(bob, LATEST)
        self.assertEqual(caught.exception.message, "you have no pending invitations")
        with self.assertRaises(NotFound) as caught:
            await domain.accept(self.actor(self.carol), InvitationRef(room="lair"))
        self.assertEqual(caught.exception.message, "you have no invitation to lair")

    async def test_someone_elses_invitation_records_nothing(self):
        """Accepting or declining another's invitation is NotFound, changes nothing and records nothing."""
        invitation = await self.invite()
        before = await logged(self.store, *INVITATION_KINDS)
        for who in (self.carol, self.alice):
            with self.assertRaises(NotFound) as caught:
                await domain.accept(self.actor(who), InvitationRef(id=invitation.id))
            self.assertEqual(caught.exception.message, f"you have no invitation {invitation.id}")
            with self.assertRaises(NotFound):
                await domain.decline(self.actor(who), InvitationRef(id=invitation.id))
        self.assertEqual(await logged(self.store, *INVITATION_KINDS), before)
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_banned_acceptance_records_nothing(self):
        """A recipient banned since is refused; nothing changes, nothing is recorded."""
        invitation = await self.invite()
        await ban(self.store, self.room, self.bob)
        with self.assertRaises(AccessDenied):
            await domain.accept(self.actor(self.bob), InvitationRef(id=invitation.id))
        self.assertEqual(await logged(self.store, "InvitationAccepted", "UserJoined"), [])
        self.assertEqual(await statuses(self.store, invitation.id), ("pending", ["pending"]))

    async def test_decline(self):
        """The sender's InvitationDeclined is recorded once; a second answer is Gone and records nothing."""
        invitation = await self.invite()
        await domain.decline(self.actor(self.bob), LATEST, "busy")
        expected = [InvitationDeclined(invitation.id, self.alice.id, "bob", "lair", origin=self.origin(self.bob))]
        self.assertEqual(await logged(self.store, "InvitationDeclined"), expected)
        self.assertEqual((await self.store.invitations.events(invitation.id))[-1].note, "busy")
        with self.assertRaises(Gone):
            await domain.decline(self.actor(self.bob), InvitationRef(id=invitation.id))
        self.assertEqual(await logged(self.store, "InvitationDeclined", "InvitationAccepted"), expected)

    async def test_revoke(self):
        """
        Only the sender or an admin+ of the room revokes; the recipient's
        InvitationRevoked is recorded once; a refusal records nothing.
        """
        invitation = await self.invite(self.carol)
        with self.assertRaises(NotFound):
            await domain.revoke(self.actor(self.dave), invitation.id)
        with self.assertRaises(PermissionDenied):
            await domain.revoke(self.actor(self.bob), invitation.id)
        self.assertEqual(await logged(self.store, "InvitationRevoked"), [])
        revoked = await domain.revoke(self.actor(self.alice), invitation.id)
        self.assertEqual(revoked.status, "revoked")
        expected = [InvitationRevoked(invitation.id, self.bob.id, "lair", "alice", origin=self.origin(self.alice))]
        self.assertEqual(await logged(self.store, "InvitationRevoked"), expected)
        with self.assertRaises(Gone):
            await domain.revoke(self.actor(self.carol), invitation.id)
        self.assertEqual(await logged(self.store, "InvitationRevoked"), expected)

    async def test_accept_all(self):
        """One outcome per pending invitation, oldest first; events only for those accepted."""
        den = await make_room(self.store, "den", self.carol)
        await make_room(self.store, "cave", self.carol)
        first = await self.invite()
        second = await self.invite(self.carol, room="den")
        third = await self.invite(self.carol, room="cave")
        await ban(self.store, den, self.bob)
        outcomes = await domain.accept_all(self.actor(self.bob))
        self.assertEqual([(o.invitation.id, type(o.error).__name__ if o.error else None) for o in outcomes],
                         [(first.id, None), (second.id, "AccessDenied"), (third.id, None)])
        accepted = await logged(self.store, "InvitationAccepted")
        self.assertEqual([e.invitation_id for e in accepted], [first.id, third.id])
        still_pending = await self.store.invitations.get(second.id)
        self.assertEqual(await domain.decline_all(self.actor(self.bob)), [domain.AnswerOutcome(still_pending)])
        self.assertEqual([e.invitation_id for e in await logged(self.store, "InvitationDeclined")], [second.id])

    async def test_pending_at_login(self):
        """Each pending invitation, oldest first, as the event its creation recorded (without an origin)."""
        first = await self.invite()
        await make_room(self.store, "den", self.carol)
        to_den = await self.invite(self.carol, room="den")
        await domain.decline(self.actor(self.bob), InvitationRef(id=first.id))
        again = await self.invite()
        pending = await domain.pending_at_login(self.actor(self.bob))
        self.assertEqual([e.invitation_id for e in pending], [to_den.id, again.id])
        recorded = await logged(self.store, "InvitationReceived")
        self.assertEqual(pending, [evolve(e, origin=None) for e in recorded[1:]])
        self.assertEqual(await domain.pending_at_login(self.actor(self.carol)), [])
