"""
End-to-end tests of the invitation commands: the real service on a TCP
port, clients over sockets, the real database.  Rooms and memberships are
made straight in the database (L{tests.invitation_fixtures}).
"""

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from lairchat.plugins import load_commands, load_extensions
from tests.invitation_fixtures import add_member, ban, logged, make_room, role_of, statuses
from tests.support import RunningServer, start_server

INVITATION_COMMANDS = (
    "INVITE_USER", "INVITE_AS", "INVITE_MULTIPLE", "ACCEPT_INVITATION", "DECLINE_INVITATION",
    "ACCEPT_ALL_INVITATIONS", "ACCEPT_ALL", "DECLINE_ALL_INVITATIONS", "LIST_INVITATIONS",
    "LIST_SENT_INVITATIONS", "LIST_ROOM_INVITATIONS", "VIEW_INVITATION", "REVOKE_INVITATION",
    "INVITATION_STATS", "SET_INVITE_TEMPLATE",
)


def both(*coroutines):
    """Run coroutines at once; a Deferred of their results in order."""
    return gatherResults([Deferred.fromCoroutine(c) for c in coroutines])


def invitation_id(reply):
    """The id in C{OK:INVITE_USER:<id>:...}."""
    return int(reply[-1].split(":")[2])


class RegistryTests(TestCase):
    """The plugins are found."""

    def test_commands_registered(self):
        """Every invitation command (and alias) is registered; the creating ones are rate-limited as invites."""
        registry = load_commands()
        for name in INVITATION_COMMANDS:
            self.assertIn(name, registry)
        self.assertIs(registry["ACCEPT_ALL"], registry["ACCEPT_ALL_INVITATIONS"])
        for name in ("INVITE_USER", "INVITE_AS", "INVITE_MULTIPLE"):
            self.assertEqual(registry[name].rate_class, "invite")
        self.assertIn("InvitationExtension", [type(e).__name__ for e in load_extensions()])


class InvitationTestCase(TestCase):
    """A server with alice owning room lair, carol a member, dave a guest, bob outside."""

    settings: dict = {}

    async def setUp(self):
        self.server = await start_server(self, **self.settings)
        self.store = self.server.server.store
        self.alice = await self.server.user("alice")
        self.bob = await self.server.user("bob")
        self.carol = await self.server.user("carol")
        self.dave = await self.server.user("dave")
        self.users = {name: await self.store.users.by_name(name) for name in ("alice", "bob", "carol", "dave")}
        self.room = await make_room(self.store, "lair", self.users["alice"])
        await add_member(self.store, self.room, self.users["carol"], "member")
        await add_member(self.store, self.room, self.users["dave"], "guest")

    async def count(self):
        """How many invitations are stored."""
        return (await self.store.db.fetchone("SELECT count(*) FROM invitations"))[0]


class InviteTests(InvitationTestCase):
    """INVITE_USER, INVITE_AS, INVITE_MULTIPLE."""

    async def test_invite_user(self):
        """The inviter gets the id and expiry; the recipient gets INVITATION_RECEIVED at once."""
        reply = await self.alice.request("INVITE_USER:bob:lair:come: in")
        self.assertRegex(reply[-1], r"^OK:INVITE_USER:\d+:bob:lair:\d{13}$")
        number, expires = invitation_id(reply), int(reply[-1].split(":")[5])
        event = await self.bob.event("INVITATION_RECEIVED:")
        self.assertEqual(event, f"INVITATION_RECEIVED:{number}:alice:lair:member:{expires}:come: in")
        invitation = await self.store.invitations.get(number)
        self.assertEqual(invitation.expires_ms - invitation.created_ms, 7 * 24 * 3600 * 1000)
        await self.carol.no_event("INVITATION_RECEIVED")

    async def test_invite_refusals(self):
        """Each refusal has its code and stores nothing."""
        await ban(self.store, self.room, await self.server.server.store.users.by_name("bob"))
        await self.server.user("erin")
        await make_room(self.store, "hidden", self.users["bob"], privacy="private")
        cases = [
            (self.alice, "INVITE_USER:nobody:lair", "ERROR:1501:NOT_FOUND:"),
            (self.alice, "INVITE_USER:carol:lair", "ERROR:1211:CONFLICT:carol is already a member"),
            (self.alice, "INVITE_USER:alice:lair", "ERROR:1211:CONFLICT:"),
            (self.alice, "INVITE_USER:bob:lair", "ERROR:1404:ACCESS_DENIED:bob is banned"),
            (self.alice, "INVITE_USER:erin:nowhere", "ERROR:1501:NOT_FOUND:"),
            (self.alice, "INVITE_USER:erin:hidden", "ERROR:1501:NOT_FOUND:"),
            (self.dave, "INVITE_USER:erin:lair", "ERROR:1002:PERMISSION_DENIED:guests cannot invite"),
            (self.bob, "INVITE_USER:erin:lair", "ERROR:1404:ACCESS_DENIED:"),
            (self.alice, "INVITE_USER:9erin:lair", "ERROR:1111:INVALID_INPUT:"),
            (self.alice, "INVITE_USER:erin", "ERROR:1112:INVALID_FORMAT:"),
            (self.alice, "INVITE_USER:erin:lair:" + "x" * 501, "ERROR:1113:INVALID_LENGTH:"),
        ]
        for client, line, expected in cases:
            reply = await client.request(line)
            self.assertEqual(len(reply), 1)
            self.assertTrue(reply[0].startswith(expected), (line, reply))
        self.assertEqual(await self.count(), 0)

    async def test_already_pending(self):
        """A second invitation for the same room and recipient, by anyone, is a conflict."""
        await self.alice.ok("INVITE_USER:bob:lair")
        reply = await self.carol.request("INVITE_USER:bob:lair")
        self.assertEqual(reply, ["ERROR:1211:CONFLICT:bob already holds a pending invitation to that room"])
        self.assertEqual(await self.count(), 1)

    async def test_concurrent_invitations(self):
        """Two simultaneous INVITE_USER for the same pair: one OK, one 1211, one pending invitation."""
        replies = await both(self.alice.request("INVITE_USER:bob:lair"), self.carol.request("INVITE_USER:bob:lair"))
        finals = sorted(r[-1].split(":")[0] + ":" + r[-1].split(":")[1] for r in replies)
        self.assertEqual(finals, ["ERROR:1211", "OK:INVITE_USER"])
        self.assertEqual(await self.count(), 1)

    async def test_invite_as(self):
        """Roles: never above one's own, moderator/admin only for admin+, never owner."""
        await add_member(self.store, self.room, await self.store.users.by_name("bob"), "admin")
        await self.server.user("erin")
        await self.server.user("fred")
        cases = [
            (self.carol, "INVITE_AS:erin:lair:moderator", "ERROR:1002:PERMISSION_DENIED:only admins and owners"),
            (self.carol, "INVITE_AS:erin:lair:admin", "ERROR:1002:"),
            (self.alice, "INVITE_AS:erin:lair:owner", "ERROR:1111:INVALID_INPUT:an invitation cannot grant ownership"),
            (self.alice, "INVITE_AS:erin:lair:king", "ERROR:1111:INVALID_INPUT:role must be one of"),
        ]
        for client, line, expected in cases:
            reply = await client.request(line)
            self.assertTrue(reply[-1].startswith(expected), (line, reply))
        self.assertEqual(await self.count(), 0)
        await self.carol.ok("INVITE_AS:erin:lair:guest")
        reply = await self.bob.ok("INVITE_AS:fred:lair:ADMIN:welcome")
        event = await (await self.login("fred")).event("INVITATION_RECEIVED:")
        self.assertEqual(event.split(":")[4:6], ["admin", reply[-1].split(":")[5]])

    async def login(self, name):
        """A new connection logged in as C{name}."""
        client = await self.server.connect()
        await client.ok(f"LOGIN:{name}:correct horse 9")
        return client

    async def test_invite_multiple(self):
        """One result per name in order; failures do not undo the others."""
        await self.server.user("erin")
        await self.server.user("fred")
        reply = await self.alice.request("INVITE_MULTIPLE:lair:bob,carol,nobody,erin,9xyz,bob:hello all")
        self.assertEqual(reply[-1], "OK:INVITE_MULTIPLE:2:4")
        results = [line.split(":") for line in reply[:-1]]
        self.assertEqual([(r[1], r[2]) for r in results],
                         [("bob", "OK"), ("carol", "ERROR"), ("nobody", "ERROR"), ("erin", "OK"),
                          ("9xyz", "ERROR"), ("bob", "ERROR")])
        self.assertEqual([r[3] for r in results if r[2] == "ERROR"], ["1211", "1501", "1111", "1211"])
        self.assertEqual(await self.count(), 2)
        event = await self.bob.event("INVITATION_RECEIVED:")
        self.assertTrue(event.endswith(":hello all"), event)
        too_many = ",".join(f"user{n}" for n in range(21))
        self.assertTrue((await self.alice.request(f"INVITE_MULTIPLE:lair:{too_many}"))[-1].startswith("ERROR:1111:"))
        self.assertTrue((await self.alice.request("INVITE_MULTIPLE:lair:bob,,erin"))[-1].startswith("ERROR:1112:"))
        self.assertTrue((await self.dave.request("INVITE_MULTIPLE:lair:fred"))[-1].startswith("ERROR:1002:"))


class AnswerTests(InvitationTestCase):
    """ACCEPT_INVITATION, DECLINE_INVITATION and the bulk forms."""

    async def invite(self, client=None, line="INVITE_USER:bob:lair"):
        """Send an invitation; its id."""
        return invitation_id(await (client or self.alice).ok(line))

    async def test_accept_by_id(self):
        """Membership with the role, events to the sender and the room, and the room becomes current."""
        number = await self.invite(line="INVITE_AS:bob:lair:guest")
        self.assertEqual(await self.bob.request(f"ACCEPT_INVITATION:{number}"), [f"OK:ACCEPT_INVITATION:{number}:lair"])
        self.assertEqual(await self.alice.event("INVITATION_ACCEPTED:"), f"INVITATION_ACCEPTED:{number}:bob:lair")
        self.assertEqual(await self.carol.event("USER_JOINED:"), "USER_JOINED:lair:bob")
        self.assertEqual(await role_of(self.store, self.room, self.users["bob"]), "guest")
        self.assertEqual(await statuses(self.store, number), ("accepted", ["pending", "accepted"]))
        reply = await self.bob.request("hello everyone")
        self.assertTrue(reply[-1].startswith("OK:SEND_MESSAGE:lair:"), reply)
        await self.bob.no_event("USER_JOINED")

    async def test_accept_latest_and_by_room(self):
        """LATEST is the newest pending one received; a room name finds the one to that room."""
        den = await make_room(self.store, "den", self.users["carol"])
        first = await self.invite()
        second = await self.invite(self.carol, "INVITE_USER:bob:den")
        self.assertEqual(await self.bob.request("ACCEPT_INVITATION:latest"), [f"OK:ACCEPT_INVITATION:{second}:den"])
        self.assertEqual(await self.bob.request("ACCEPT_INVITATION:LAIR"), [f"OK:ACCEPT_INVITATION:{first}:lair"])
        self.assertEqual(await role_of(self.store, den, self.users["bob"]), "member")
        reply = await self.bob.request("ACCEPT_INVITATION:LATEST")
        self.assertEqual(reply, ["ERROR:1501:NOT_FOUND:you have no pending invitations"])
        reply = await self.bob.request("ACCEPT_INVITATION:lair")
        self.assertEqual(reply, ["ERROR:1502:GONE:this invitation was already accepted"])

    async def test_someone_elses_invitation_is_not_revealed(self):
        """Accepting or declining another's invitation reads exactly like a missing one."""
        number = await self.invite()
        for client in (self.carol, self.alice):
            mine = await client.request(f"ACCEPT_INVITATION:{number}")
            missing = await client.request(f"ACCEPT_INVITATION:{number + 1000}")
            self.assertEqual(mine, [f"ERROR:1501:NOT_FOUND:you have no invitation {number}"])
            self.assertEqual(missing, [f"ERROR:1501:NOT_FOUND:you have no invitation {number + 1000}"])
            declined = await client.request(f"DECLINE_INVITATION:{number}")
            self.assertTrue(declined[0].startswith("ERROR:1501:"), declined)
        self.assertEqual(await self.carol.request("ACCEPT_INVITATION:lair"),
                         ["ERROR:1501:NOT_FOUND:you have no invitation to lair"])
        self.assertEqual(await statuses(self.store, number), ("pending", ["pending"]))

    async def test_accept_refusals(self):
        """Answered, revoked, banned, malformed: each refused, nothing changed."""
        number = await self.invite()
        await ban(self.store, self.room, self.users["bob"])
        reply = await self.bob.request(f"ACCEPT_INVITATION:{number}")
        self.assertEqual(reply, ["ERROR:1404:ACCESS_DENIED:you are banned from lair"])
        self.assertIsNone(await role_of(self.store, self.room, self.users["bob"]))
        self.assertEqual(await statuses(self.store, number), ("pending", ["pending"]))
        await self.alice.ok(f"REVOKE_INVITATION:{number}")
        self.assertEqual(await self.bob.request(f"ACCEPT_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation was revoked"])
        self.assertTrue((await self.bob.request("ACCEPT_INVITATION:_x"))[0].startswith("ERROR:1112:"))
        self.assertTrue((await self.bob.request("ACCEPT_INVITATION"))[0].startswith("ERROR:1112:"))

    async def test_decline(self):
        """The sender hears of it; the reason is in the trail; a second answer is gone."""
        number = await self.invite()
        self.assertEqual(await self.bob.request("DECLINE_INVITATION:latest:busy: sorry"),
                         [f"OK:DECLINE_INVITATION:{number}:lair"])
        self.assertEqual(await self.alice.event("INVITATION_DECLINED:"), f"INVITATION_DECLINED:{number}:bob:lair")
        reply = await self.alice.request(f"VIEW_INVITATION:{number}")
        self.assertEqual(reply[2].split(":")[3:], ["declined", "bob", "busy", " sorry"])
        self.assertIsNone(await role_of(self.store, self.room, self.users["bob"]))
        self.assertEqual(await self.bob.request(f"DECLINE_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation was already declined"])

    async def test_accept_all(self):
        """One result per pending invitation, oldest first; a refused one does not undo the others."""
        den = await make_room(self.store, "den", self.users["carol"])
        await make_room(self.store, "cave", self.users["carol"])
        first = await self.invite()
        second = await self.invite(self.carol, "INVITE_USER:bob:den")
        third = await self.invite(self.carol, "INVITE_USER:bob:cave")
        await ban(self.store, den, self.users["bob"])
        reply = await self.bob.request("ACCEPT_ALL")
        self.assertEqual(reply, [
            f"ACCEPT_RESULT:{first}:lair:OK",
            f"ACCEPT_RESULT:{second}:den:ERROR:1404:you are banned from den",
            f"ACCEPT_RESULT:{third}:cave:OK",
            "OK:ACCEPT_ALL_INVITATIONS:2:1",
        ])
        self.assertEqual(await role_of(self.store, self.room, self.users["bob"]), "member")
        self.assertEqual((await statuses(self.store, second))[0], "pending")
        self.assertEqual(await self.bob.request("ACCEPT_ALL_INVITATIONS"),
                         [f"ACCEPT_RESULT:{second}:den:ERROR:1404:you are banned from den",
                          "OK:ACCEPT_ALL_INVITATIONS:0:1"])

    async def test_accept_all_sets_current_room_only_when_none(self):
        """With no current room, the first room accepted becomes current."""
        await self.invite()
        await self.bob.ok("ACCEPT_ALL")
        reply = await self.bob.request("hello")
        self.assertTrue(reply[-1].startswith("OK:SEND_MESSAGE:lair:"), reply)

    async def test_decline_all(self):
        """Every pending invitation declined, one ACCEPT_RESULT line each, the reason in each trail."""
        await make_room(self.store, "den", self.users["carol"])
        first = await self.invite()
        second = await self.invite(self.carol, "INVITE_USER:bob:den")
        reply = await self.bob.request("DECLINE_ALL_INVITATIONS:not now")
        self.assertEqual(reply, [f"ACCEPT_RESULT:{first}:lair:OK", f"ACCEPT_RESULT:{second}:den:OK",
                                 "OK:DECLINE_ALL_INVITATIONS:2:0"])
        self.assertEqual(await self.carol.event("INVITATION_DECLINED:"), f"INVITATION_DECLINED:{second}:bob:den")
        events = await self.store.invitations.events(first)
        self.assertEqual(events[-1].note, "not now")
        self.assertEqual(await self.bob.request("DECLINE_ALL_INVITATIONS"), ["OK:DECLINE_ALL_INVITATIONS:0:0"])

    async def test_accept_racing_revoke(self):
        """ACCEPT and REVOKE at once over two connections: exactly one wins."""
        for _ in range(5):
            number = await self.invite()
            accepted, revoked = await both(self.bob.request(f"ACCEPT_INVITATION:{number}"),
                                           self.alice.request(f"REVOKE_INVITATION:{number}"))
            outcomes = [accepted[-1].startswith("OK:"), revoked[-1].startswith("OK:")]
            self.assertEqual(outcomes.count(True), 1, (accepted, revoked))
            loser = revoked if outcomes[0] else accepted
            self.assertTrue(loser[-1].startswith("ERROR:1502:GONE:"), loser)
            status, trail = await statuses(self.store, number)
            self.assertEqual(trail, ["pending", status])
            self.assertEqual(await role_of(self.store, self.room, self.users["bob"]) is not None,
                             status == "accepted")
            await self.store.db.execute("DELETE FROM room_members WHERE user_id = %s", (self.users["bob"].id,))


class OverseeTests(InvitationTestCase):
    """Lists, VIEW_INVITATION, REVOKE_INVITATION, INVITATION_STATS, SET_INVITE_TEMPLATE."""

    async def test_lists(self):
        """Received, sent and room lists with their filters and permissions."""
        await self.server.user("erin")
        first = invitation_id(await self.alice.ok("INVITE_USER:bob:lair:hi"))
        second = invitation_id(await self.carol.ok("INVITE_AS:erin:lair:guest"))
        await self.bob.ok(f"DECLINE_INVITATION:{first}")
        self.assertEqual(await self.bob.request("LIST_INVITATIONS"), ["OK:LIST_INVITATIONS:0"])
        reply = await self.bob.request("LIST_INVITATIONS:declined")
        self.assertRegex(reply[0], rf"^INVITATION:{first}:alice:bob:lair:declined:member:\d{{13}}:\d{{13}}:hi$")
        self.assertEqual(reply[-1], "OK:LIST_INVITATIONS:1")
        self.assertEqual((await self.alice.request("LIST_SENT_INVITATIONS:all"))[-1], "OK:LIST_SENT_INVITATIONS:1")
        self.assertEqual((await self.alice.request("LIST_SENT_INVITATIONS"))[-1], "OK:LIST_SENT_INVITATIONS:0")
        reply = await self.alice.request("LIST_ROOM_INVITATIONS:lair:all")
        self.assertEqual([line.split(":")[1] for line in reply[:-1]], [str(second), str(first)])
        self.assertEqual(reply[-1], "OK:LIST_ROOM_INVITATIONS:2")
        self.assertEqual(len(await self.alice.request("LIST_ROOM_INVITATIONS:lair")), 2)
        self.assertTrue((await self.carol.request("LIST_ROOM_INVITATIONS:lair"))[0].startswith("ERROR:1002:"))
        self.assertTrue((await self.bob.request("LIST_ROOM_INVITATIONS:lair"))[0].startswith("ERROR:1404:"))
        self.assertTrue((await self.bob.request("LIST_INVITATIONS:maybe"))[0].startswith("ERROR:1111:"))

    async def test_view(self):
        """Sender, recipient and room admins see the invitation and its trail; others read 'not found'."""
        number = invitation_id(await self.carol.ok("INVITE_USER:bob:lair"))
        await self.bob.ok(f"ACCEPT_INVITATION:{number}")
        for client in (self.carol, self.bob, self.alice):
            reply = await client.request(f"VIEW_INVITATION:{number}")
            self.assertTrue(reply[0].startswith(f"INVITATION:{number}:carol:bob:lair:accepted:member:"), reply)
            self.assertRegex(reply[1], rf"^INVITATION_EVENT:{number}:\d{{13}}:pending:carol:sent$")
            self.assertRegex(reply[2], rf"^INVITATION_EVENT:{number}:\d{{13}}:accepted:bob:$")
            self.assertEqual(reply[3], f"OK:VIEW_INVITATION:{number}")
        await self.server.user("erin")
        erin = await self.server.connect()
        await erin.ok("LOGIN:erin:correct horse 9")
        for client in (self.dave, erin):
            self.assertEqual(await client.request(f"VIEW_INVITATION:{number}"),
                             [f"ERROR:1501:NOT_FOUND:no invitation {number}"])

    async def test_revoke(self):
        """The sender or a room admin revokes; the recipient hears of it; others are refused."""
        await add_member(self.store, self.room, await self.store.users.by_name("bob"), "admin")
        await self.server.user("erin")
        erin = await self.server.connect()
        await erin.ok("LOGIN:erin:correct horse 9")
        number = invitation_id(await self.carol.ok("INVITE_USER:erin:lair"))
        self.assertEqual(await erin.request(f"REVOKE_INVITATION:{number}"),
                         ["ERROR:1002:PERMISSION_DENIED:only the sender or an admin of the room can revoke this invitation"])
        self.assertEqual(await self.dave.request(f"REVOKE_INVITATION:{number}"),
                         [f"ERROR:1501:NOT_FOUND:no invitation {number}"])
        await self.server.user("root_user")
        await self.store.users.set_server_role("root_user", "admin")
        root = await self.server.connect()
        await root.ok("LOGIN:root_user:correct horse 9")
        self.assertEqual((await root.request(f"VIEW_INVITATION:{number}"))[-1], f"OK:VIEW_INVITATION:{number}")
        self.assertTrue((await root.request(f"REVOKE_INVITATION:{number}"))[0].startswith("ERROR:1002:"))
        self.assertEqual(await self.bob.request(f"REVOKE_INVITATION:{number}"), [f"OK:REVOKE_INVITATION:{number}"])
        self.assertEqual(await erin.event("INVITATION_REVOKED:"), f"INVITATION_REVOKED:{number}:lair:bob")
        self.assertEqual(await self.carol.request(f"REVOKE_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation was revoked"])
        again = invitation_id(await self.carol.ok("INVITE_USER:erin:lair"))
        self.assertEqual(await self.carol.request(f"REVOKE_INVITATION:{again}"), [f"OK:REVOKE_INVITATION:{again}"])
        self.assertEqual((await self.store.audit.latest(1))[0].action, "revoke")

    async def test_stats(self):
        """One's own, a room's for its admins, the server's for server admins."""
        await self.server.user("erin")
        first = invitation_id(await self.alice.ok("INVITE_USER:bob:lair"))
        await self.alice.ok("INVITE_USER:erin:lair")
        await self.bob.ok(f"ACCEPT_INVITATION:{first}")
        reply = await self.alice.request("INVITATION_STATS")
        self.assertEqual([line.split(":")[1] for line in reply[:-1]],
                         ["sent", "received", "pending", "accepted", "declined", "expired", "revoked",
                          "acceptance_rate", "median_response_ms"])
        values = {line.split(":")[1]: line.split(":")[2] for line in reply[:-1]}
        self.assertEqual((values["sent"], values["received"], values["pending"], values["accepted"]),
                         ("2", "0", "1", "1"))
        self.assertEqual(values["acceptance_rate"], "1.000")
        self.assertEqual(reply[-1], "OK:INVITATION_STATS:alice")
        self.assertEqual((await self.alice.request("INVITATION_STATS:lair"))[-1], "OK:INVITATION_STATS:lair")
        self.assertTrue((await self.carol.request("INVITATION_STATS:lair"))[0].startswith("ERROR:1002:"))
        self.assertTrue((await self.alice.request("INVITATION_STATS:*"))[0].startswith("ERROR:1002:"))
        await self.store.users.set_server_role("erin", "admin")
        root = await self.server.connect()
        await root.ok("LOGIN:erin:correct horse 9")
        reply = await root.request("INVITATION_STATS:*")
        self.assertEqual((reply[0], reply[-1]), ("STAT:sent:2", "OK:INVITATION_STATS:*"))
        self.assertEqual((await root.request("INVITATION_STATS:lair"))[0], "STAT:sent:2")

    async def test_template(self):
        """An admin's template fills the message of invitations sent without one."""
        self.assertTrue((await self.carol.request("SET_INVITE_TEMPLATE:lair:hi"))[0].startswith("ERROR:1002:"))
        self.assertEqual(await self.alice.request("SET_INVITE_TEMPLATE:lair:{sender} asks {recipient} to {room}: until {expires}"),
                         ["OK:SET_INVITE_TEMPLATE:lair"])
        reply = await self.carol.ok("INVITE_USER:bob:lair")
        event = await self.bob.event("INVITATION_RECEIVED:")
        self.assertRegex(event, r":carol asks bob to lair: until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        await self.bob.ok(f"DECLINE_INVITATION:{invitation_id(reply)}")
        await self.carol.ok("INVITE_USER:bob:lair:my own words")
        self.assertTrue((await self.bob.event("INVITATION_RECEIVED:")).endswith(":my own words"))
        self.assertEqual(await self.alice.request("SET_INVITE_TEMPLATE:lair:"), ["OK:SET_INVITE_TEMPLATE:lair"])
        self.assertIsNone((await self.store.rooms.by_id(self.room)).invite_template)

    async def test_template_filled_past_the_limit(self):
        """
        A template whose placeholders fill it past 500 characters gives a
        message cut to 500, the most an invitation message holds.
        """
        await self.alice.ok("SET_INVITE_TEMPLATE:lair:" + "{expires}" * 55)
        reply = await self.carol.ok("INVITE_USER:bob:lair")
        message = (await self.bob.event("INVITATION_RECEIVED:")).split(":", 6)[6]
        self.assertEqual(len(message), 500)
        self.assertRegex(message, r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)+\d")
        stored = (await self.bob.request(f"VIEW_INVITATION:{invitation_id(reply)}"))[0]
        self.assertEqual(stored.split(":", 9)[9], message)


class EventLogTests(InvitationTestCase):
    """
    Each command's change and its event commit together: every event is in
    the event log once, from this node; a refused command logs none.
    """

    KINDS = ("InvitationReceived", "InvitationAccepted", "InvitationDeclined", "InvitationRevoked", "UserJoined")

    async def test_each_change_logged_once(self):
        """Invite, accept, decline, revoke: one event each (and the join); refusals add nothing."""
        await self.server.user("erin")
        erin = await self.server.connect()
        await erin.ok("LOGIN:erin:correct horse 9")
        accepted = invitation_id(await self.alice.ok("INVITE_USER:bob:lair"))
        await self.bob.ok(f"ACCEPT_INVITATION:{accepted}")
        declined = invitation_id(await self.carol.ok("INVITE_USER:erin:lair"))
        await erin.ok(f"DECLINE_INVITATION:{declined}")
        revoked = invitation_id(await self.alice.ok("INVITE_USER:erin:lair"))
        await self.alice.ok(f"REVOKE_INVITATION:{revoked}")
        found = await logged(self.store, *self.KINDS)
        self.assertEqual([(type(e).__name__, getattr(e, "invitation_id", None)) for e in found], [
            ("InvitationReceived", accepted),
            ("InvitationAccepted", accepted),
            ("UserJoined", None),
            ("InvitationReceived", declined),
            ("InvitationDeclined", declined),
            ("InvitationReceived", revoked),
            ("InvitationRevoked", revoked),
        ])
        self.assertEqual({e.origin.node for e in found}, {self.server.server.node})
        refusals = [
            (self.carol, f"ACCEPT_INVITATION:{accepted}"),
            (self.bob, f"ACCEPT_INVITATION:{accepted}"),
            (erin, f"ACCEPT_INVITATION:{revoked}"),
            (self.alice, f"ACCEPT_INVITATION:{declined}"),
            (self.alice, "INVITE_USER:carol:lair"),
            (self.dave, "INVITE_USER:erin:lair"),
            (self.alice, f"REVOKE_INVITATION:{revoked}"),
            (erin, "DECLINE_INVITATION:LATEST"),
        ]
        for client, line in refusals:
            reply = await client.request(line)
            self.assertTrue(reply[-1].startswith("ERROR:"), (line, reply))
        self.assertEqual(await logged(self.store, *self.KINDS), found)


class RoomCommandTests(InvitationTestCase):
    """How invitations meet the room commands."""

    async def test_ban_revokes_pending_invitations(self):
        """BAN_USER revokes the banned user's pending invitation, with its event and trail entry."""
        number = invitation_id(await self.carol.ok("INVITE_USER:bob:lair"))
        await self.alice.ok("BAN_USER:lair:bob:spam")
        self.assertEqual(await self.bob.event("INVITATION_REVOKED:"), f"INVITATION_REVOKED:{number}:lair:alice")
        self.assertEqual(await statuses(self.store, number), ("revoked", ["pending", "revoked"]))
        self.assertEqual(await self.bob.request(f"ACCEPT_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation was revoked"])
        self.assertTrue((await self.carol.request("INVITE_USER:bob:lair"))[0].startswith("ERROR:1404:"))

    async def test_private_room_by_invitation(self):
        """A private room refuses JOIN_ROOM; an accepted invitation lets one in."""
        await self.alice.ok("CREATE_ROOM:vault:private")
        self.assertTrue((await self.bob.request("JOIN_ROOM:vault"))[0].startswith("ERROR:1404:"))
        await self.alice.ok("INVITE_USER:bob:vault")
        self.assertEqual((await self.bob.request("ACCEPT_INVITATION:vault"))[-1].split(":")[:2],
                         ["OK", "ACCEPT_INVITATION"])
        self.assertEqual(await self.alice.event("USER_JOINED:"), "USER_JOINED:vault:bob")
        reply = await self.bob.request("ROOM_MEMBERS:vault")
        self.assertIn("MEMBER:vault:bob:member:online", reply)


class DeliveryTests(InvitationTestCase):
    """Pending invitations at login and across a restart."""

    async def test_pending_at_login(self):
        """Each pending invitation arrives as INVITATION_RECEIVED right after OK:LOGIN, oldest first."""
        await make_room(self.store, "den", self.users["carol"])
        await self.bob.ok("LOGOUT")
        first = invitation_id(await self.alice.ok("INVITE_USER:bob:lair:one"))
        second = invitation_id(await self.carol.ok("INVITE_USER:bob:den:two"))
        client = await self.server.connect()
        reply = await client.request("LOGIN:bob:correct horse 9")
        self.assertTrue(reply[-1].startswith("OK:LOGIN:bob:"))
        self.assertTrue((await client.line()).startswith(f"INVITATION_RECEIVED:{first}:alice:lair:member:"))
        self.assertTrue((await client.line()).startswith(f"INVITATION_RECEIVED:{second}:carol:den:member:"))

    async def test_pending_survives_restart(self):
        """A pending invitation outlives a restart: delivered at the next login, and acceptable."""
        number = invitation_id(await self.alice.ok("INVITE_USER:bob:lair"))
        await self.server.stop()
        again = await RunningServer(self, self.server.config).start()
        client = await again.connect()
        await client.ok("LOGIN:bob:correct horse 9")
        self.assertTrue((await client.event("INVITATION_RECEIVED:")).startswith(f"INVITATION_RECEIVED:{number}:alice:lair:"))
        self.assertEqual(await client.request("ACCEPT_INVITATION:LATEST"), [f"OK:ACCEPT_INVITATION:{number}:lair"])


class ExpiryTests(InvitationTestCase):
    """The sweeper in the running server, with a two-second lifetime."""

    settings = {"invite_ttl": 2, "sweep_interval": 0.5}

    async def test_expiry_end_to_end(self):
        """Both parties hear of the expiry; then the invitation is gone."""
        number = invitation_id(await self.alice.ok("INVITE_USER:bob:lair"))
        self.assertEqual(await self.bob.event("INVITATION_REMINDER:"),
                         f"INVITATION_REMINDER:{number}:lair:{(await self.store.invitations.get(number)).expires_ms}")
        self.assertEqual(await self.alice.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:lair")
        self.assertEqual(await self.bob.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:lair")
        self.assertEqual(await self.bob.request(f"ACCEPT_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation has expired"])
        self.assertEqual(await statuses(self.store, number), ("expired", ["pending", "expired"]))
        await self.bob.no_event("INVITATION_REMINDER")
        await self.carol.ok("INVITE_USER:bob:lair")
