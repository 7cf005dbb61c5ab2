"""
L{lairchat.tcp_output.write_at_once} over real loopback TCP connections:
what it sends leaves before the reactor turns, the order of everything
written holds, and what the socket does not take is sent later by the
transport.
"""

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed
from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.internet.task import deferLater
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import TestCase

from lairchat.tcp_output import write_at_once


class Accepted(Protocol):
    """
    The server side of a test connection; C{made} fires with it, C{lost}
    once it is lost (the reason in C{reason}).
    """

    def __init__(self, made: Deferred) -> None:
        self.made = made
        self.lost: Deferred = Deferred()
        self.reason = None

    def connectionLost(self, reason: object) -> None:
        """Note why; fire C{lost}."""
        self.reason = reason
        self.lost.callback(None)

    def connectionMade(self) -> None:
        """Hand this side to the test."""
        self.made.callback(self)


class Reader(Protocol):
    """A client that keeps what it reads; C{done} fires once it has C{expected} bytes."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.received = bytearray()
        self.done: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Keep it; fire C{done} at the expected length."""
        self.received += data
        if len(self.received) >= self.expected and not self.done.called:
            self.done.callback(bytes(self.received))


class WriteAtOnceTests(TestCase):
    """A server connection accepted by the reactor, and a client socket."""

    async def accepted(self) -> tuple[Protocol, socket.socket]:
        """A listening port, a plain client socket connected to it, and the server's side of the connection."""
        made: Deferred = Deferred()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: Accepted(made)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        client = socket.create_connection(("127.0.0.1", port.getHost().port))
        self.addCleanup(client.close)
        client.setblocking(False)
        server = await made
        self.addCleanup(server.transport.abortConnection)
        return server, client

    def pending(self, client: socket.socket) -> bytes:
        """What the client socket can read now, without waiting."""
        try:
            return client.recv(65536)
        except BlockingIOError:
            return b""

    async def test_sent_before_the_reactor_turns(self):
        """
        The bytes are on the client's socket as soon as the call returns,
        and the transport neither buffers them nor waits to write.
        """
        server, client = await self.accepted()
        write_at_once(server.transport, b"hello\r\n")
        self.assertEqual(self.pending(client), b"hello\r\n")
        self.assertNotIn(server.transport, reactor.getWriters())

    async def test_waits_behind_what_is_buffered(self):
        """
        Bytes written through the transport's own buffer first are sent
        first: what comes after them waits too, and both arrive in order.
        """
        server, client = await self.accepted()
        server.transport.write(b"first\r\n")
        write_at_once(server.transport, b"second\r\n")
        self.assertEqual(self.pending(client), b"")
        received = b""
        for _ in range(100):
            await deferLater(reactor, 0.01, lambda: None)
            received += self.pending(client)
            if len(received) >= len(b"first\r\nsecond\r\n"):
                break
        self.assertEqual(received, b"first\r\nsecond\r\n")

    async def test_what_the_socket_cannot_take_is_buffered(self):
        """
        More than the socket buffers hold: part goes at once, the rest is
        left to the transport, and a later write queues behind it; the
        client reads every byte in order.
        """
        made: Deferred = Deferred()
        port = reactor.listenTCP(0, Factory.forProtocol(lambda: Accepted(made)), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        big = bytes(range(256)) * 16384  # 4 MiB
        tail = b"tail\r\n"
        reader = Reader(len(big) + len(tail))
        connector = reactor.connectTCP("127.0.0.1", port.getHost().port, ClientFactory.forProtocol(lambda: reader))
        self.addCleanup(connector.disconnect)
        server = await made
        self.addCleanup(server.transport.loseConnection)
        write_at_once(server.transport, big)
        self.assertTrue(server.transport.dataBuffer or server.transport._tempDataLen,
                        "4 MiB fitted in the socket buffers: nothing was left to the transport")
        write_at_once(server.transport, tail)
        received = await reader.done
        self.assertEqual(received, big + tail)

    def test_other_transports_write_as_usual(self):
        """A transport that is not a plain TCP connection gets a plain C{write}."""
        transport = StringTransport()
        write_at_once(transport, b"a\r\n")
        write_at_once(transport, b"b\r\n")
        self.assertEqual(transport.value(), b"a\r\nb\r\n")

    async def test_closing_connection_writes_as_usual(self):
        """
        A connection asked to close sends nothing at once: what is written
        goes through the transport, which decides what a closing
        connection still sends.
        """
        server, client = await self.accepted()
        server.transport.loseConnection()
        write_at_once(server.transport, b"after\r\n")
        self.assertEqual(self.pending(client), b"")
        self.assertIn(b"after\r\n", server.transport._tempDataBuffer)

    async def test_reset_by_the_client(self):
        """
        A client gone with a reset: the socket's error is not raised to the
        writer; the write is left to the transport, which loses the
        connection the usual way.
        """
        import struct

        server, client = await self.accepted()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # the reset reaches the server's socket at once, before the reactor reads it
        self.assertTrue(server.transport.connected)
        for _ in range(3):
            write_at_once(server.transport, b"to nobody\r\n")
        await server.lost
        self.assertIsNotNone(server.reason.check(ConnectionClosed))
