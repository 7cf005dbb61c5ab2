"""
End-to-end tests of rooms: the real service on a TCP port, several real
clients (one user on two connections), a real Postgres.  They check that
each event reaches exactly the connections it is for: every connection of
every member but the one whose request caused it, and never a non-member.
"""

from twisted.trial.unittest import TestCase

from tests.support import start_server


class RoomsEndToEndTests(TestCase):
    """Room events over TCP."""

    async def hall(self):
        """
        alice owns the public room hall; bob is in it on two connections
        (the first joined); carol is online but not a member.
        """
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        bob_again = await server.connect()
        await bob_again.ok("LOGIN:bob:correct horse 9")
        carol = await server.user("carol")
        self.assertEqual(await alice.request("CREATE_ROOM:hall"), ["OK:CREATE_ROOM:hall"])
        self.assertEqual(await bob.request("JOIN_ROOM:hall"), ["OK:JOIN_ROOM:hall"])
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")
        self.assertEqual(await bob_again.event("USER_JOINED:"), "USER_JOINED:hall:bob")
        await bob.no_event("USER_JOINED:")
        await carol.no_event("USER_JOINED:")
        return server, alice, bob, bob_again, carol

    async def test_topic_reaches_both_connections_of_a_member(self):
        """TOPIC_CHANGED reaches bob twice over, the setter only as an OK, carol never."""
        server, alice, bob, bob_again, carol = await self.hall()
        self.assertEqual(await alice.request("SET_TOPIC:hall:tea: at five"), ["OK:SET_TOPIC:hall"])
        for connection in (bob, bob_again):
            self.assertEqual(await connection.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:hall:alice:tea: at five")
        await alice.no_event("TOPIC_CHANGED:")
        await carol.no_event("TOPIC_CHANGED:")
        reply = await carol.request("ROOM_INFO:hall")
        self.assertTrue(reply[0].startswith("OK:ROOM_INFO:hall:public:alice:2:"), reply)
        self.assertTrue(reply[0].endswith(":tea: at five"), reply)

    async def test_role_change_then_kick(self):
        """
        ROLE_CHANGED goes to the room; a kick reaches the room and both of
        the kicked user's connections, and clears the current room of the
        one that had it.
        """
        server, alice, bob, bob_again, carol = await self.hall()
        dave = await server.user("dave")
        await dave.ok("JOIN_ROOM:hall")
        await alice.event("USER_JOINED:hall:dave")
        self.assertEqual(await alice.request("SET_ROLE:hall:dave:moderator"), ["OK:SET_ROLE:hall:dave:moderator"])
        for connection in (bob, bob_again, dave):
            self.assertEqual(await connection.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:dave:moderator:alice")
        self.assertEqual(await dave.request("KICK_USER:hall:bob:be nice"), ["OK:KICK_USER:hall:bob"])
        for connection in (alice, bob, bob_again):
            self.assertEqual(await connection.event("USER_KICKED:"), "USER_KICKED:hall:bob:dave:be nice")
        await dave.no_event("USER_KICKED:")
        await carol.no_event("USER_KICKED:")
        self.assertEqual((await bob.request("hello?"))[0].split(":")[:3], ["ERROR", "1111", "NO_CURRENT_ROOM"])
        self.assertEqual(
            await alice.request("ROOM_MEMBERS:hall"),
            ["MEMBER:hall:alice:owner:online", "MEMBER:hall:dave:moderator:online", "OK:ROOM_MEMBERS:2"],
        )

    async def test_kicked_user_hears_no_more(self):
        """After a kick, the room's events no longer reach the kicked user."""
        server, alice, bob, bob_again, carol = await self.hall()
        await alice.ok("KICK_USER:hall:bob")
        await bob.event("USER_KICKED:")
        await bob_again.event("USER_KICKED:")
        await alice.ok("SET_TOPIC:hall:private now")
        await bob.no_event("TOPIC_CHANGED:")
        await bob_again.no_event("TOPIC_CHANGED:")

    async def test_ban(self):
        """A ban reaches the room and the banned; the banned cannot come back until unbanned."""
        server, alice, bob, bob_again, carol = await self.hall()
        self.assertEqual(await alice.request("BAN_USER:hall:bob:spam"), ["OK:BAN_USER:hall:bob"])
        for connection in (bob, bob_again):
            self.assertEqual(await connection.event("USER_BANNED:"), "USER_BANNED:hall:bob:alice:spam")
        await carol.no_event("USER_BANNED:")
        reply = await bob.request("JOIN_ROOM:hall")
        self.assertTrue(reply[0].startswith("ERROR:1404:ACCESS_DENIED:"), reply)
        await alice.ok("UNBAN_USER:hall:bob")
        await bob.ok("JOIN_ROOM:hall")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")

    async def test_leave_and_succession(self):
        """The owner leaves: the room hears USER_LEFT, then who owns it now."""
        server, alice, bob, bob_again, carol = await self.hall()
        alice_again = await server.connect()
        await alice_again.ok("LOGIN:alice:correct horse 9")
        await alice_again.ok("JOIN_ROOM:hall")
        self.assertEqual(await alice.request("LEAVE_ROOM"), ["OK:LEAVE_ROOM:hall"])
        for connection in (bob, bob_again):
            self.assertEqual(await connection.event("USER_LEFT:"), "USER_LEFT:hall:alice")
            self.assertEqual(await connection.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:bob:owner:alice")
        self.assertEqual(await alice_again.event("USER_LEFT:"), "USER_LEFT:hall:alice")
        await alice_again.no_event("ROLE_CHANGED:")
        await carol.no_event("USER_LEFT:")
        self.assertEqual((await alice_again.request("plain words"))[0].split(":")[:3], ["ERROR", "1111", "NO_CURRENT_ROOM"])
        reply = await carol.request("ROOM_INFO:hall")
        self.assertTrue(reply[0].startswith("OK:ROOM_INFO:hall:public:bob:1:"), reply)

    async def test_private_rooms_stay_private(self):
        """Outsiders do not see, enter, or hear a private room."""
        server, alice, bob, bob_again, carol = await self.hall()
        await alice.ok("CREATE_ROOM:den:private")
        self.assertEqual(await carol.request("LIST_ROOMS"), ["ROOM:hall:public:2:", "OK:LIST_ROOMS:1"])
        self.assertEqual(
            await alice.request("LIST_ROOMS"), ["ROOM:den:private:1:", "ROOM:hall:public:2:", "OK:LIST_ROOMS:2"]
        )
        self.assertTrue((await carol.request("ROOM_INFO:den"))[0].startswith("ERROR:1501:NOT_FOUND:"))
        self.assertTrue((await carol.request("JOIN_ROOM:den"))[0].startswith("ERROR:1404:ACCESS_DENIED:"))
        await alice.ok("SET_TOPIC:den:secret plans")
        await carol.no_event("TOPIC_CHANGED:")
        await bob.no_event("TOPIC_CHANGED:")

    async def test_presence(self):
        """Those sharing a room hear a user come and go; others do not."""
        server, alice, bob, bob_again, carol = await self.hall()
        await bob.close()
        await alice.no_event("PRESENCE:bob:offline")
        await bob_again.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")
        back = await server.connect()
        await back.ok("LOGIN:bob:correct horse 9")
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:online")
        await carol.no_event("PRESENCE:")

    async def test_labels_and_refusals(self):
        """Refusals are single labelled lines; the room hears nothing of them."""
        server, alice, bob, bob_again, carol = await self.hall()
        self.assertEqual((await bob.request("SET_TOPIC:hall:mine"))[0].split(":")[:3], ["ERROR", "1002", "PERMISSION_DENIED"])
        self.assertEqual((await carol.request("KICK_USER:hall:bob"))[0].split(":")[:3], ["ERROR", "1404", "ACCESS_DENIED"])
        self.assertEqual((await alice.request("CREATE_ROOM:HALL"))[0].split(":")[:3], ["ERROR", "1211", "CONFLICT"])
        await alice.no_event("TOPIC_CHANGED:")
        await bob_again.no_event("USER_KICKED:")
