# -*- test-case-name: tests.test_races_e2e -*-
"""
Requests racing a room's deletion, and a login racing a suspension, over
TCP against the real server.

When the last member leaves, the room is deleted with its messages and
invitations.  A request on the room that was checked before and writes
after (another connection of that member sending, reacting, inviting; an
invitee accepting) must be refused with the error a missing room or
message gets, never answered C{1301} (a foreign key the deletion broke) or
C{1212} (a deadlock between the two transactions, which is no outage).

The deterministic tests hold the deletion open in a transaction of their
own, send the request, wait until it waits for the deletion's locks, then
commit the deletion.
"""

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from lairchat.store import Database
from tests.support import LineClient, RunningServer, start_server, test_dsn

PASSWORD = "correct horse 9"

WAITING = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)
"""How many sessions wait for a lock."""


class VanishingRoomTests(TestCase):
    """A room deleted while a request on it is in flight."""

    timeout = 60

    async def setUp(self):
        """alice on two connections, in hall with one message; bob."""
        self.running: RunningServer = await start_server(self)
        self.alice = await self.running.user("alice", PASSWORD)
        self.other = await self.running.connect()
        await self.other.ok(f"LOGIN:alice:{PASSWORD}")
        self.bob = await self.running.user("bob", PASSWORD)
        await self.alice.ok("CREATE_ROOM:hall")
        self.message = (await self.alice.ok("SEND_MESSAGE:hall:hello"))[-1].split(":")[3]
        self.deleter = Database(test_dsn(), 1)
        await self.deleter.start()
        self.addCleanup(self.deleter.close)

    async def during_deletion(self, client: LineClient, line: str) -> list[str]:
        """
        Delete hall in a transaction held open, send C{line}, let the
        deletion commit once the request waits for it (or has been
        answered), and return the reply.
        """
        return await self.during(["DELETE FROM rooms WHERE name = 'hall'"], client, line)

    async def during(self, statements: list[str], client: LineClient, line: str) -> list[str]:
        """
        Run C{statements} in a transaction held open, send C{line}, commit
        once the request waits for that transaction's locks (or has been
        answered), and return the reply.
        """
        done: Deferred = Deferred()
        release: Deferred = Deferred()

        async def hold(tx: Any) -> None:
            for statement in statements:
                await tx.execute(statement)
            done.callback(None)
            await release

        holding = Deferred.fromCoroutine(self.deleter.transaction(hold))
        await done
        reply = Deferred.fromCoroutine(client.request(line))
        db = self.running.server.store.db
        while not reply.called and (await db.fetchone(WAITING))[0] == 0:
            await deferLater(reactor, 0.01, lambda: None)
        release.callback(None)
        await holding
        return await reply

    async def test_send(self):
        """A message sent as the room goes is refused: the sender is no member."""
        reply = await self.during_deletion(self.alice, "SEND_MESSAGE:hall:still here?")
        self.assertEqual(reply, ["ERROR:1404:ACCESS_DENIED:you are not a member of hall"])

    async def test_reply(self):
        """A reply sent as the room goes is refused like a missing message."""
        reply = await self.during_deletion(self.alice, f"REPLY_MESSAGE:{self.message}:still here?")
        self.assertEqual(reply, [f"ERROR:1501:NOT_FOUND:no message {self.message}"])

    async def test_react(self):
        """A reaction as the room goes is refused like a missing message."""
        reply = await self.during_deletion(self.alice, f"REACT_MESSAGE:{self.message}:+1")
        self.assertEqual(reply, [f"ERROR:1501:NOT_FOUND:no message {self.message}"])

    async def test_invite(self):
        """An invitation as the room goes is refused like a missing room."""
        reply = await self.during_deletion(self.alice, "INVITE_USER:bob:hall")
        self.assertEqual(reply, ["ERROR:1501:NOT_FOUND:that room no longer exists"])

    async def test_invite_during_ban(self):
        """
        An invitation sent as its recipient is banned is refused: nobody
        holds a pending invitation to a room they are banned from.
        """
        reply = await self.during([
            "SELECT 1 FROM rooms WHERE name = 'hall' FOR NO KEY UPDATE",
            "INSERT INTO room_bans (room_id, user_id) SELECT r.id, u.id FROM rooms r, users u "
            "WHERE r.name = 'hall' AND u.username = 'bob'",
        ], self.alice, "INVITE_USER:bob:hall")
        self.assertEqual(reply, ["ERROR:1404:ACCESS_DENIED:bob is banned from that room"])

    async def test_accept(self):
        """An acceptance as the room goes is refused like a missing invitation."""
        invitation = (await self.alice.ok("INVITE_USER:bob:hall"))[-1].split(":")[2]
        reply = await self.during_deletion(self.bob, f"ACCEPT_INVITATION:{invitation}")
        self.assertEqual(reply, [f"ERROR:1501:NOT_FOUND:you have no invitation {invitation}"])


class AcceptWhileLeavingTests(TestCase):
    """An invitee accepting at the moment the room's last member leaves."""

    timeout = 120

    async def test_no_deadlock(self):
        """
        Round after round, the two requests are sent at once: each is
        answered with OK or the error of a missing invitation, never 1212
        (their transactions used to wait for each other), and afterwards
        either bob is the room's owner or the room is gone.
        """
        running = await start_server(self)
        alice = await running.user("alice", PASSWORD)
        other = await running.connect()
        await other.ok(f"LOGIN:alice:{PASSWORD}")
        bob = await running.user("bob", PASSWORD)
        for number in range(30):
            room = f"room{number}"
            await alice.ok(f"CREATE_ROOM:{room}:private")
            invitation = (await alice.ok(f"INVITE_USER:bob:{room}"))[-1].split(":")[2]
            accepted, left = await gatherResults([
                Deferred.fromCoroutine(bob.request(f"ACCEPT_INVITATION:{invitation}")),
                Deferred.fromCoroutine(other.request(f"LEAVE_ROOM:{room}")),
            ])
            self.assertEqual(left, [f"OK:LEAVE_ROOM:{room}"])
            members = await bob.request(f"ROOM_MEMBERS:{room}")
            if accepted == [f"OK:ACCEPT_INVITATION:{invitation}:{room}"]:
                self.assertIn(f"MEMBER:{room}:bob:owner:online", members)
                await bob.ok(f"LEAVE_ROOM:{room}")
            else:
                self.assertEqual(accepted, [f"ERROR:1501:NOT_FOUND:you have no invitation {invitation}"])
                self.assertTrue(members[-1].startswith("ERROR:1501:NOT_FOUND:"), members)


class GatedPasswords:
    """
    The server's password checker, held at each verification until the
    test lets it go on.
    """

    def __init__(self, passwords: Any) -> None:
        self.passwords = passwords
        self.waiting: Deferred = Deferred()
        self.gate: Deferred = Deferred()

    async def hash(self, password: str, address: str | None = None) -> str:
        """Hash as usual."""
        return await self.passwords.hash(password, address)

    async def verify(self, password_hash: str | None, password: str, address: str | None = None) -> bool:
        """Say that a verification waits, wait for the gate, then verify."""
        self.waiting.callback(None)
        await self.gate
        return await self.passwords.verify(password_hash, password, address)


class SuspendWhileLoggingInTests(TestCase):
    """A suspension that comes while a login checks the password."""

    timeout = 60

    async def test_login_refused(self):
        """
        The login is refused (1404), its session revoked, the connection
        not logged in: the suspension holds.
        """
        running = await start_server(self, admins=("root_user",))
        root = await running.user("root_user", PASSWORD)
        await running.user("bob", PASSWORD)
        passwords = GatedPasswords(running.server.passwords)
        self.patch(running.server, "passwords", passwords)
        client = await running.connect()
        login = Deferred.fromCoroutine(client.request(f"LOGIN:bob:{PASSWORD}"))
        await passwords.waiting
        await root.ok("SUSPEND_USER:bob")
        passwords.gate.callback(None)
        self.assertEqual(await login, ["ERROR:1404:ACCESS_DENIED:this account is suspended"])
        whoami = await client.request("WHOAMI")
        self.assertTrue(whoami[0].startswith("ERROR:1001:AUTH_REQUIRED:"), whoami)
        live = await running.server.store.db.fetchall(
            "SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE u.username = 'bob' AND s.revoked_at IS NULL"
        )
        self.assertEqual(live, [])
        self.assertNotIn("bob", [user.username for user in running.server.hub.online_users()])
