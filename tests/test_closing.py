# -*- test-case-name: tests.test_closing -*-
"""
How the server closes a connection: after C{QUIT}, after a suspension, and
at shutdown.

A connection is its transport's streaming producer, and a transport pauses
it when a reply larger than its buffer is written.  Such a transport, once
its buffer drains, resumes the paused producer instead of closing; a close
asked for meanwhile never happened.  So a C{QUIT} pipelined after a long
history got its C{OK:QUIT} and the connection stayed open for good, and the
server could not stop.  The connection now drops its producer registration
before it closes.
"""

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from tests.support import LineClient, RunningServer, start_server
from tests.test_protocol import connect

PASSWORD = "correct horse 9"


class ClosingClient(LineClient):
    """
    A L{LineClient} whose line queue also reports the close (as L{None}),
    so that a reader waiting for a line learns the connection went away.
    """

    def connectionLost(self, reason: Any = None) -> None:
        """Note the close and wake a waiting reader."""
        super().connectionLost(reason)
        self._lines.put(None)

    async def until_closed(self) -> list[str]:
        """Every line until the server closes the connection."""
        lines = []
        while (line := await self.line()) is not None:
            lines.append(line)
        return lines


async def closing_client(testcase: TestCase, running: RunningServer) -> ClosingClient:
    """A L{ClosingClient} connected to the server, past the greeting."""
    client = ClosingClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", running.port), client)
    testcase.addCleanup(client.close)
    await client.line()
    await client.line()
    return client


class ClosingProtocolTests(SynchronousTestCase):
    """The protocol's side, on a L{twisted.internet.testing.StringTransport}."""

    def test_quit_unregisters_the_producer(self):
        """
        C{QUIT} drops the connection's producer registration before closing.
        """
        connection = connect()
        self.assertIs(connection.transport.producer, connection.protocol)
        self.assertEqual(connection.request("QUIT"), ["OK:QUIT"])
        self.assertIsNone(connection.transport.producer)
        self.assertTrue(connection.transport.disconnecting)

    def test_nothing_read_after_quit(self):
        """
        Bytes that arrive after C{QUIT} (as they may over TLS, whose
        transport reads until the peer's close), over-long ones included,
        are neither answered nor acted on.
        """
        connection = connect(max_line=64)
        self.assertEqual(connection.request("QUIT"), ["OK:QUIT"])
        connection.send(b"x" * 65)
        connection.send(b"PING\n" + b"x" * 65)
        connection.send(b"\nPING\n")
        self.assertEqual(connection.lines(), [])


class ClosingEndToEndTests(TestCase):
    """
    Over TCP: a connection the server closes right after a reply larger
    than the transport's buffer still closes once the client has read
    everything.
    """

    timeout = 60

    async def large_history(self, running: RunningServer) -> ClosingClient:
        """alice, in a room holding more than 64 KiB of messages."""
        alice = await closing_client(self, running)
        await alice.ok(f"REGISTER:alice:{PASSWORD}")
        await alice.ok("CREATE_ROOM:hall")
        for number in range(20):
            await alice.ok(f"SEND_MESSAGE:hall:{number} {'x' * 3990}")
        return alice

    async def paused_by_large_replies(self, running: RunningServer, alice: ClosingClient) -> None:
        """
        Stop reading and ask for the long history again and again until the
        socket buffers are full and the server's transport has paused
        alice's connection as a producer.
        """
        alice.transport.pauseProducing()
        hub = running.server.hub
        [user] = [user for user in hub.online_users() if user.username == "alice"]
        [connection] = hub.connections_of(user.id)
        while not connection.transport.producerPaused:
            for _ in range(10):
                alice.send("GET_HISTORY:hall:200")
            await deferLater(reactor, 0.05, lambda: None)

    async def test_quit_after_large_reply(self):
        """A C{QUIT} pipelined after a reply of 80 KB closes the connection."""
        running = await start_server(self)
        alice = await self.large_history(running)
        alice.send("GET_HISTORY:hall:200\nQUIT")
        lines = await alice.until_closed()
        self.assertEqual(lines[-2:], ["OK:GET_HISTORY:hall:20", "OK:QUIT"])
        self.assertTrue(alice.is_closed)

    async def test_suspension_after_large_reply(self):
        """
        A suspended user's connection closes even when a large reply had
        paused it as the suspension came.
        """
        running = await start_server(self, admins=("root_user",), max_output_buffer=2**30)
        alice = await self.large_history(running)
        root = await running.user("root_user")
        await self.paused_by_large_replies(running, alice)
        await root.ok("SUSPEND_USER:alice")
        alice.transport.resumeProducing()
        lines = await alice.until_closed()
        self.assertIn("SYSTEM_MESSAGE:your account was suspended", lines)
        self.assertTrue(alice.is_closed)

    async def test_stop_after_large_reply(self):
        """The server stops even when a large reply had paused a connection."""
        running = await start_server(self, max_output_buffer=2**30)
        alice = await self.large_history(running)
        await self.paused_by_large_replies(running, alice)
        stopped = Deferred.fromCoroutine(running.stop())
        alice.transport.resumeProducing()
        await stopped
        await alice.until_closed()
        self.assertTrue(alice.is_closed)
