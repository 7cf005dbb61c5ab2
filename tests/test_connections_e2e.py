"""
Connection limits, the login timeout, the TLS handshake timeout and TCP
keepalive, end to end: the real server on real TCP (and TLS), clients bound
to several loopback source addresses (127.0.0.N).
"""

import socket
import tempfile

from attrs import evolve
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from lairchat.addresses import Networks
from lairchat.liveness import client_socket
from lairchat.tap import LairchatService
from tests.support import CONNECTION_LIMITS, TEST_CONFIG, TIMEOUT, LineClient, fresh_database, start_server, test_dsn
from tests.test_tls_e2e import self_signed


async def raw(server, source: str) -> LineClient:
    """A client connected from C{source}, greeting not read."""
    client = LineClient()
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", server.port, bindAddress=(source, 0))
    await connectProtocol(endpoint, client)
    server.testcase.addCleanup(client.close)
    return client


async def closed(client: LineClient) -> None:
    """Wait until the server closed C{client} (a hang is a failure)."""
    d = Deferred()
    client.closed.addBoth(lambda _: d.callback(None) if not d.called else None)
    d.addTimeout(TIMEOUT, reactor)
    await d


async def refused_with(testcase: TestCase, client: LineClient, prefix: str) -> str:
    """C{client} reads one line starting with C{prefix}, then is closed; the line."""
    line = await client.line()
    testcase.assertTrue(line.startswith(prefix), line)
    await closed(client)
    return line


def server_connection(server, address: str):
    """The server's L{ChatProtocol} of a connection from C{address}."""
    [connection] = [c for c in server.service._factory.connections if c.address == address]
    return connection


class LimitTests(TestCase):
    """Per-address, per-window and total limits over real TCP."""

    async def test_per_address(self):
        """
        The (N+1)-th concurrent connection from one address reads one
        C{TOO_MANY_CONNECTIONS} line and is closed; another address still
        connects; closing one makes room.
        """
        server = await start_server(self, max_connections_per_ip=3)
        clients = [await server.connect("127.0.0.5") for _ in range(3)]
        refused = await raw(server, "127.0.0.5")
        line = await refused_with(self, refused, "ERROR:1110:TOO_MANY_CONNECTIONS:")
        self.assertEqual(line, "ERROR:1110:TOO_MANY_CONNECTIONS:at most 3 connections from one address; "
                               "close one and try again")
        other = await server.connect("127.0.0.6")
        self.assertEqual(await other.request("PING"), ["OK:PING"])
        await clients[0].close()
        again = await server.connect("127.0.0.5")
        self.assertEqual(await again.request("PING"), ["OK:PING"])
        metrics = server.server.metrics.registry
        self.assertEqual(metrics.get_sample_value("lairchat_connections_refused_total", {"reason": "per_address"}), 1)

    async def test_default_per_address(self):
        """By default 32 connections may be open from one address, not 33."""
        server = await start_server(self, **{**CONNECTION_LIMITS, "new_connections_per_ip": 100})
        self.assertEqual(server.server.config.max_connections_per_ip, 32)
        for _ in range(32):
            await server.connect("127.0.0.7")
        await refused_with(self, await raw(server, "127.0.0.7"), "ERROR:1110:TOO_MANY_CONNECTIONS:")

    async def test_default_window(self):
        """
        By default 20 new connections from one address within 10 s get in
        (closed again at once), the 21st reads C{RATE_LIMITED} with a
        retry time; another address is not affected.
        """
        server = await start_server(self, **CONNECTION_LIMITS)
        for _ in range(20):
            client = await server.connect("127.0.0.8")
            await client.close()
        line = await refused_with(self, await raw(server, "127.0.0.8"), "ERROR:1110:RATE_LIMITED:")
        self.assertRegex(line, r"^ERROR:1110:RATE_LIMITED:at most 20 new connections from one address in 10 s; "
                               r"retry in \d+ s$")
        self.assertEqual(await (await server.connect("127.0.0.9")).request("PING"), ["OK:PING"])

    async def test_exempt(self):
        """An exempt address is held to neither per-address limit."""
        server = await start_server(self, max_connections_per_ip=2, new_connections_per_ip=2,
                                    exempt_networks=Networks(("127.0.0.10/32",)))
        clients = [await server.connect("127.0.0.10") for _ in range(6)]
        for client in clients:
            self.assertEqual(await client.request("PING"), ["OK:PING"])
        await server.connect("127.0.0.11")
        await server.connect("127.0.0.11")
        await refused_with(self, await raw(server, "127.0.0.11"), "ERROR:1110:")

    async def test_total(self):
        """Past the total, a connection from any address is refused as the server being full."""
        server = await start_server(self, max_connections=3)
        for n in (12, 13, 14):
            await server.connect(f"127.0.0.{n}")
        await refused_with(self, await raw(server, "127.0.0.15"),
                           "ERROR:1110:TOO_MANY_CONNECTIONS:the server is full")

    async def test_file_limit(self):
        """With no --max-connections, the total stays below the open-file limit."""
        import resource

        server = await start_server(self)
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        total = server.server.config.max_connections
        self.assertIsNotNone(total)
        self.assertLess(total, soft)
        self.assertEqual(server.service._factory.gate.total, total)


class LoginTimeoutTests(TestCase):
    """A connection that does not log in in time is closed, saying why."""

    async def test_anonymous_closed(self):
        """
        An idle anonymous connection reads the reason and is closed; one
        that logged in meanwhile stays.
        """
        server = await start_server(self, login_timeout=2)
        idle = await server.connect("127.0.0.20")
        member = await server.user("alice", source="127.0.0.21")
        self.assertEqual(await idle.line(), "ERROR:1303:TIMEOUT:no login within 2 s; closing the connection")
        await closed(idle)
        self.assertEqual(await member.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        states = server.server.metrics.registry
        self.assertEqual(states.get_sample_value("lairchat_connections_by_state", {"state": "logged_in"}), 1)
        self.assertEqual(states.get_sample_value("lairchat_connections_timed_out_total", {"reason": "login"}), 1)


class SilentPeer(Protocol):
    """A TCP client that sends nothing and notes when it is closed."""

    def __init__(self) -> None:
        self.received = b""
        self.closed: Deferred = Deferred()

    def dataReceived(self, data: bytes) -> None:
        """Keep what arrives."""
        self.received += data

    def connectionLost(self, reason=None) -> None:
        """Note the close."""
        self.closed.callback(None)


class TLSTests(TestCase):
    """The handshake timeout, and keepalive through the TLS layer."""

    async def start(self, **settings) -> LairchatService:
        """A server on an C{ssl:} endpoint; its port."""
        await fresh_database(self)
        key, cert = self_signed(tempfile.mkdtemp(prefix="lairchat-tls-"))
        service = LairchatService(
            evolve(TEST_CONFIG, **settings), [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
            dsn=test_dsn(), pool_size=2, stop_reactor_on_failure=False,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        return service

    async def test_handshake_timeout(self):
        """
        A client that connects to the TLS port and never starts the
        handshake is closed after the login timeout.
        """
        service = await self.start(login_timeout=0.5)
        port = service.ports[0].getHost().port
        silent = SilentPeer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), silent)
        self.addCleanup(lambda: silent.transport.abortConnection() if silent.transport.connected else None)
        silent.closed.addTimeout(TIMEOUT, reactor)
        await silent.closed
        self.assertEqual(silent.received, b"")
        self.assertEqual(service.server.metrics.registry.get_sample_value(
            "lairchat_connections_timed_out_total", {"reason": "tls_handshake"}), 1)

    async def test_tls_login_timeout_and_keepalive(self):
        """
        Past the handshake, a TLS connection has keepalive on its socket,
        and reads the login timeout's line like any other.
        """
        service = await self.start(login_timeout=1)
        port = service.ports[0].getHost().port
        client = LineClient()
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, ssl.CertificateOptions(verify=False))
        await connectProtocol(endpoint, client)
        self.addCleanup(client.close)
        self.assertTrue((await client.line()).startswith("WELCOME:"))
        await client.line()
        [connection] = service._factory.connections
        sock = client_socket(connection.transport)
        self.assertIsNotNone(sock)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        self.assertEqual(await client.line(), "ERROR:1303:TIMEOUT:no login within 1 s; closing the connection")
        await closed(client)


class KeepAliveTests(TestCase):
    """Every client socket has keepalive and a user timeout."""

    async def test_options(self):
        """Idle 60 s, interval 10 s, 6 probes, 120 s unacknowledged output, by default."""
        server = await start_server(self)
        await server.connect("127.0.0.30")
        sock = client_socket(server_connection(server, "127.0.0.30").transport)
        self.assertEqual(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1)
        if hasattr(socket, "TCP_KEEPIDLE"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE), 60)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL), 10)
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT), 6)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            self.assertEqual(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT), 120_000)
