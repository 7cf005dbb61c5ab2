"""
Tests for connection limits, the login timeout and keepalive in
L{lairchat.protocol} and L{lairchat.liveness}: protocols on
L{StringTransport}s and a L{Clock}, no network, no database.
"""

import socket

from attrs import evolve
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import INegotiated
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from lairchat.addresses import Networks
from lairchat.context import Config, ServerContext
from lairchat.liveness import client_socket, keep_alive
from lairchat.protocol import ChatFactory, ChatProtocol, RefusedConnection
from tests.test_protocol import FakePasswords, FakeStore, connect, registry


def peer(host: str) -> IPv4Address:
    """A TCP peer address at C{host}."""
    return IPv4Address("TCP", host, 40000)


class Server:
    """A L{ChatFactory} over a store double and a L{Clock}."""

    def __init__(self, **settings) -> None:
        self.clock = Clock()
        self.server = ServerContext(
            config=Config(**settings), store=FakeStore(), clock=self.clock, passwords=FakePasswords(),
            registry=registry(),
        )
        self.factory = ChatFactory(self.server)

    def connect(self, host: str = "10.0.0.1") -> tuple:
        """A connection from C{host}: its protocol and transport."""
        protocol = self.factory.buildProtocol(peer(host))
        transport = StringTransport(peerAddress=peer(host))
        protocol.makeConnection(transport)
        return protocol, transport


class RefusalTests(SynchronousTestCase):
    """The factory refuses connections over a limit with one line and a close."""

    def test_per_address(self):
        """
        The connection past C{max_connections_per_ip} reads one
        C{TOO_MANY_CONNECTIONS} line (no greeting) and is closed; another
        address still gets in; a close makes room.
        """
        server = Server(max_connections_per_ip=2)
        first, _ = server.connect()
        server.connect()
        refused, transport = server.connect()
        self.assertIsInstance(refused, RefusedConnection)
        self.assertEqual(
            transport.value(),
            b"ERROR:1110:TOO_MANY_CONNECTIONS:at most 2 connections from one address; close one and try again\r\n",
        )
        self.assertTrue(transport.disconnecting)
        self.assertIsInstance(server.connect("10.0.0.2")[0], ChatProtocol)
        first.connectionLost(None)
        self.assertIsInstance(server.connect()[0], ChatProtocol)
        self.assertEqual(server.server.metrics.connections_refused.labels("per_address")._value.get(), 1)

    def test_refused_reads_nothing(self):
        """A refused connection reads nothing and never reaches the router."""
        server = Server(max_connections_per_ip=1)
        server.connect()
        refused, transport = server.connect()
        transport.clear()
        refused.dataReceived(b"REGISTER:alice:correct horse 9\n")
        self.assertEqual(transport.value(), b"")
        self.assertEqual(server.server.store.users.users, {})

    def test_refused_cut_after_grace(self):
        """A refused connection that does not go (its peer reads nothing) is cut."""
        server = Server(max_connections_per_ip=1, login_timeout=30)
        server.connect()
        refused, transport = server.connect()
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)
        server.clock.advance(9)
        self.assertEqual(aborted, [])
        server.clock.advance(1)
        self.assertEqual(aborted, [True])

    def test_refused_gone_no_cut(self):
        """A refused connection that went leaves no timer behind."""
        server = Server(max_connections_per_ip=1)
        server.connect()
        refused, _ = server.connect()
        refused.connectionLost(None)
        self.assertEqual(len(server.clock.getDelayedCalls()), 1)  # the admitted one's login timer

    def test_rate(self):
        """The new connection past the window's limit is C{RATE_LIMITED} with its retry time."""
        server = Server(new_connections_per_ip=2, new_connection_window=10)
        for _ in range(2):
            protocol, _ = server.connect()
            protocol.connectionLost(None)
        _, transport = server.connect()
        self.assertEqual(
            transport.value(),
            b"ERROR:1110:RATE_LIMITED:at most 2 new connections from one address in 10 s; retry in 10 s\r\n",
        )

    def test_exempt(self):
        """A trusted network's address has no per-address limit."""
        server = Server(max_connections_per_ip=1, new_connections_per_ip=1,
                        exempt_networks=Networks(("10.0.0.0/8",)))
        for _ in range(5):
            self.assertIsInstance(server.connect()[0], ChatProtocol)

    def test_total(self):
        """Past C{max_connections} in all, the next is refused as the server being full."""
        server = Server(max_connections=2)
        server.connect("10.0.0.1")
        server.connect("10.0.0.2")
        _, transport = server.connect("10.0.0.3")
        self.assertEqual(transport.value(), b"ERROR:1110:TOO_MANY_CONNECTIONS:the server is full; try again later\r\n")
        self.assertEqual(server.server.metrics.connections_refused.labels("total")._value.get(), 1)

    def test_released_once(self):
        """A closed connection's place is given back once, and its count never goes negative."""
        server = Server()
        protocol, _ = server.connect()
        self.assertEqual(server.factory.gate.open_total, 1)
        protocol.connectionLost(None)
        self.assertEqual(server.factory.gate.open_total, 0)
        self.assertEqual(server.factory.gate.open_from("10.0.0.1"), 0)


class LoginTimeoutTests(SynchronousTestCase):
    """An anonymous connection is closed after the login timeout."""

    def test_closed_with_line(self):
        """
        Nobody logged in within C{login_timeout}: the connection reads why
        and is closed.
        """
        connection = connect(login_timeout=30)
        connection.clock.advance(29)
        self.assertEqual(connection.lines(), [])
        self.assertFalse(connection.transport.disconnecting)
        connection.clock.advance(1)
        self.assertEqual(connection.lines(), ["ERROR:1303:TIMEOUT:no login within 30 s; closing the connection"])
        self.assertTrue(connection.transport.disconnecting)
        self.assertEqual(connection.server.metrics.connections_timed_out.labels("login")._value.get(), 1)

    def test_default(self):
        """The default timeout is two minutes."""
        connection = connect()
        connection.clock.advance(119)
        self.assertFalse(connection.transport.disconnecting)
        connection.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)

    def test_activity_does_not_count(self):
        """Sending requests without logging in does not keep the connection."""
        connection = connect(login_timeout=30)
        for _ in range(10):
            connection.clock.advance(5)
            connection.request("PING")
        self.assertTrue(connection.transport.disconnecting)

    def test_logged_in_stays(self):
        """A connection logged in before the timeout stays."""
        connection = connect(login_timeout=30)
        connection.register()
        connection.clock.advance(3600)
        self.assertEqual(connection.lines(), [])
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(connection.request("WHOAMI"), ["OK:WHOAMI:alice:user"])

    def test_logout_restarts(self):
        """After C{LOGOUT} the connection is anonymous again, with a fresh timeout."""
        connection = connect(login_timeout=30)
        connection.register()
        connection.clock.advance(100)
        self.assertEqual(connection.request("LOGOUT"), ["OK:LOGOUT"])
        connection.clock.advance(29)
        self.assertFalse(connection.transport.disconnecting)
        connection.clock.advance(1)
        self.assertTrue(connection.transport.disconnecting)

    def test_cut_when_not_going(self):
        """A timed-out connection whose peer takes nothing is cut after a grace period."""
        connection = connect(login_timeout=30)
        aborted = []
        connection.transport.abortConnection = lambda: aborted.append(True)
        connection.clock.advance(30)
        connection.clock.advance(9.9)
        self.assertEqual(aborted, [])
        connection.clock.advance(0.1)
        self.assertEqual(aborted, [True])

    def test_no_timer_after_close(self):
        """A closed connection leaves no timer behind."""
        connection = connect(login_timeout=30)
        connection.protocol.connectionLost(None)
        self.assertEqual([c for c in connection.clock.getDelayedCalls() if c.active()], [])

    def test_tls_handshake(self):
        """
        A TLS handshake not finished within the login timeout is cut at
        once, with no line (nobody could read it); one that finished gets
        the line.
        """
        server = Server(login_timeout=5)
        protocol = server.factory.buildProtocol(peer("10.0.0.1"))
        transport = StringTransport(peerAddress=peer("10.0.0.1"))
        directlyProvides(transport, INegotiated)
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)
        protocol.makeConnection(transport)
        self.assertEqual(server.factory.connection_states()["tls_handshake"], 1)
        transport.clear()
        server.clock.advance(5)
        self.assertEqual(aborted, [True])
        self.assertEqual(transport.value(), b"")
        self.assertEqual(server.server.metrics.connections_timed_out.labels("tls_handshake")._value.get(), 1)

        protocol = server.factory.buildProtocol(peer("10.0.0.1"))
        transport = StringTransport(peerAddress=peer("10.0.0.1"))
        directlyProvides(transport, INegotiated)
        protocol.makeConnection(transport)
        protocol.handshakeCompleted()
        self.assertEqual(server.factory.connection_states()["anonymous"], 1)
        transport.clear()
        server.clock.advance(5)
        self.assertEqual(transport.value(), b"ERROR:1303:TIMEOUT:no login within 5 s; closing the connection\r\n")


class LostDuringLoginTests(SynchronousTestCase):
    """A connection lost while its login was checked is not left online."""

    def test_not_attached(self):
        """Logging in on a lost connection attaches nothing to the hub."""
        connection = connect()
        connection.register()
        user = connection.protocol.user
        connection.protocol.connectionLost(None)
        self.successResultOf(connection.protocol.log_in(user, 2))
        self.assertFalse(connection.server.hub.is_online(user.id))
        self.assertIsNone(connection.protocol.user)


class StateTests(SynchronousTestCase):
    """Connections by state, for the metrics."""

    def test_states(self):
        """Anonymous and logged-in connections are counted apart."""
        connection = connect()
        states = connection.factory.connection_states
        self.assertEqual(states(), {"tls_handshake": 0, "anonymous": 1, "logged_in": 0})
        connection.register()
        self.assertEqual(states(), {"tls_handshake": 0, "anonymous": 0, "logged_in": 1})
        metrics = connection.server.metrics
        self.assertEqual(metrics.registry.get_sample_value("lairchat_connections_by_state", {"state": "logged_in"}), 1)


class KeepAliveTests(SynchronousTestCase):
    """TCP keepalive and the user timeout on a real socket."""

    def test_options(self):
        """The options are set on the socket under the transport."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)

        class Transport:
            def getHandle(self):
                return sock

        applied = keep_alive(Transport(), idle=60, interval=10, count=6, user_timeout=120)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(applied["SO_KEEPALIVE"], 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 60)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 10)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), 6)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), 120000)

    def test_through_wrapping(self):
        """A wrapping transport (TLS) whose handle is no socket is looked through."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)

        class Inner:
            def getHandle(self):
                return sock

        class Wrapper:
            transport = Inner()

            def getHandle(self):
                return object()

        self.assertIs(client_socket(Wrapper()), sock)

    def test_no_socket(self):
        """A transport with no TCP socket is left alone."""
        self.assertEqual(keep_alive(StringTransport()), {})
        self.assertIsNone(client_socket(None))

    def test_off(self):
        """Idle 0 and user timeout 0 set nothing."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)

        class Transport:
            def getHandle(self):
                return sock

        self.assertEqual(keep_alive(Transport(), idle=0, user_timeout=0), {})
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 0)
