"""
Tests for L{lairchat.hub.Hub} (who is online where, and delivery) and the
presence hooks of L{lairchat.context.ServerContext}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.command import Extension
from lairchat.context import Config, ServerContext
from lairchat.hub import Hub
from lairchat.models import User


def user(user_id: int, name: str) -> User:
    """An account."""
    return User(id=user_id, username=name, server_role="user", suspended=False, created_ms=0)


ALICE = user(1, "alice")
BOB = user(2, "Bob")
CAROL = user(3, "carol")


class FakeConnection:
    """Anything with C{send_event}: records what it was sent."""

    def __init__(self) -> None:
        self.events: list[str] = []

    def send_event(self, line: str) -> None:
        """Record."""
        self.events.append(line)


class AttachTests(SynchronousTestCase):
    """
    L{Hub.attach} and L{Hub.detach}: a user comes online with the first
    connection and goes offline with the last.
    """

    def test_first_and_last(self):
        """
        Only the first attach and the last detach say so.
        """
        hub = Hub()
        one, two = FakeConnection(), FakeConnection()
        self.assertTrue(hub.attach(one, ALICE))
        self.assertFalse(hub.attach(two, ALICE))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertFalse(hub.detach(one, ALICE))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertTrue(hub.detach(two, ALICE))
        self.assertFalse(hub.is_online(ALICE.id))

    def test_attach_twice(self):
        """
        Attaching the same connection again is not a second connection.
        """
        hub = Hub()
        one = FakeConnection()
        hub.attach(one, ALICE)
        self.assertFalse(hub.attach(one, ALICE))
        self.assertEqual(hub.connection_count(), 1)
        self.assertTrue(hub.detach(one, ALICE))

    def test_detach_unknown(self):
        """
        Detaching a connection that is not attached changes nothing.
        """
        hub = Hub()
        one, other = FakeConnection(), FakeConnection()
        self.assertFalse(hub.detach(one, ALICE))
        hub.attach(one, ALICE)
        self.assertFalse(hub.detach(other, ALICE))
        self.assertFalse(hub.detach(one, BOB))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertTrue(hub.detach(one, ALICE))
        self.assertFalse(hub.detach(one, ALICE))

    def test_listing(self):
        """
        Online users are listed once each, by name regardless of case;
        connections are counted and listed per user.
        """
        hub = Hub()
        connections = [FakeConnection() for _ in range(4)]
        hub.attach(connections[0], CAROL)
        hub.attach(connections[1], ALICE)
        hub.attach(connections[2], BOB)
        hub.attach(connections[3], ALICE)
        self.assertEqual([u.username for u in hub.online_users()], ["alice", "Bob", "carol"])
        self.assertEqual(hub.connection_count(), 4)
        self.assertEqual(set(hub.connections_of(ALICE.id)), {connections[1], connections[3]})
        self.assertEqual(hub.connections_of(99), [])


class DeliverTests(SynchronousTestCase):
    """
    L{Hub.deliver}: to every connection of every listed user, except the
    one that caused the event.
    """

    def setUp(self):
        """Alice on two connections, Bob on one, Carol offline."""
        self.hub = Hub()
        self.alice1, self.alice2, self.bob = FakeConnection(), FakeConnection(), FakeConnection()
        self.hub.attach(self.alice1, ALICE)
        self.hub.attach(self.alice2, ALICE)
        self.hub.attach(self.bob, BOB)

    def test_everyone(self):
        """
        Every connection of every listed user gets the line once; offline
        users are skipped; the count says how many got it.
        """
        sent = self.hub.deliver([ALICE.id, BOB.id, CAROL.id], "MESSAGE:general:1:x:0:hi")
        self.assertEqual(sent, 3)
        for connection in (self.alice1, self.alice2, self.bob):
            self.assertEqual(connection.events, ["MESSAGE:general:1:x:0:hi"])

    def test_exclude(self):
        """
        The causing connection is left out; the user's other connections
        still get it.
        """
        sent = self.hub.deliver([ALICE.id, BOB.id], "MESSAGE:general:1:alice:0:hi", exclude=self.alice1)
        self.assertEqual(sent, 2)
        self.assertEqual(self.alice1.events, [])
        self.assertEqual(self.alice2.events, ["MESSAGE:general:1:alice:0:hi"])
        self.assertEqual(self.bob.events, ["MESSAGE:general:1:alice:0:hi"])

    def test_duplicate_ids(self):
        """
        A user listed twice gets the line once.
        """
        self.assertEqual(self.hub.deliver([BOB.id, BOB.id], "PRESENCE:alice:online"), 1)
        self.assertEqual(self.bob.events, ["PRESENCE:alice:online"])

    def test_nobody(self):
        """
        No recipients, nothing sent.
        """
        self.assertEqual(self.hub.deliver([], "X"), 0)
        self.assertEqual(self.hub.deliver([CAROL.id], "X"), 0)

    def test_running_total(self):
        """
        C{delivered} counts every line sent by every delivery.
        """
        self.hub.deliver([ALICE.id], "A")
        self.hub.deliver([ALICE.id, BOB.id], "B", exclude=self.bob)
        self.assertEqual(self.hub.delivered, 4)

    def test_detached_gets_nothing(self):
        """
        A detached connection is no longer delivered to.
        """
        self.hub.detach(self.alice2, ALICE)
        self.assertEqual(self.hub.deliver([ALICE.id], "X"), 1)
        self.assertEqual(self.alice2.events, [])


class Watcher(Extension):
    """An extension that records presence changes."""

    def __init__(self) -> None:
        self.changes: list[tuple[str, bool]] = []

    def presence_changed(self, server, who, online):
        """Record."""
        self.changes.append((who.username, online))


class Broken(Extension):
    """An extension whose presence hook fails."""

    def presence_changed(self, server, who, online):
        """Fail."""
        raise RuntimeError("broken hook")


class PresenceTests(SynchronousTestCase):
    """
    L{ServerContext.user_online} and L{ServerContext.user_offline} tell the
    extensions when a user's first connection arrives and the last leaves.
    """

    def server(self, *extensions: Extension) -> ServerContext:
        """A server context with these extensions."""
        return ServerContext(config=Config(), store=None, clock=Clock(), passwords=None,
                             extensions=list(extensions))

    def test_first_and_last(self):
        """
        Presence changes once online, once offline, however many
        connections come and go between.
        """
        watcher = Watcher()
        server = self.server(watcher)
        one, two = FakeConnection(), FakeConnection()
        server.user_online(one, ALICE)
        server.user_online(two, ALICE)
        server.user_offline(one, ALICE)
        self.assertEqual(watcher.changes, [("alice", True)])
        server.user_offline(two, ALICE)
        self.assertEqual(watcher.changes, [("alice", True), ("alice", False)])

    def test_failing_hook(self):
        """
        A failing hook is logged; the others still run and nothing raises.
        """
        watcher = Watcher()
        server = self.server(Broken(), watcher)
        server.user_online(FakeConnection(), ALICE)
        self.assertEqual(watcher.changes, [("alice", True)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
