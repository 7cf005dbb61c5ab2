"""
What the tests share: a real Postgres (C{LAIRCHAT_TEST_DSN}, or an embedded
one started once per test run), a fresh store per test, the whole server on
a real TCP port, and a line client that talks to it over a socket.
"""

import atexit
import itertools
import os
import shutil
import tempfile
from typing import Any

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.task import deferLater
from twisted.protocols.basic import LineOnlyReceiver

from lairchat.context import Config
from lairchat.store import Database, Store, schema_text
from lairchat.suspicion import SuspicionRules
from lairchat.tap import LairchatService

TIMEOUT = 10.0
"""Seconds a test waits for a line before it fails (a hang is a failure)."""

_dsn: str | None = None
_embedded: Any = None


def test_dsn() -> str:
    """
    The Postgres the tests use: C{LAIRCHAT_TEST_DSN} when set, else an
    embedded server in a temporary directory, started on first use and
    removed when the test run ends.
    """
    global _dsn, _embedded
    if _dsn is None:
        _dsn = os.environ.get("LAIRCHAT_TEST_DSN")
        if not _dsn:
            from lairchat.embedded import EmbeddedPostgres

            directory = tempfile.mkdtemp(prefix="lairchat-test-")
            _embedded = EmbeddedPostgres(directory)
            _dsn = _embedded.start()

            def remove() -> None:
                _embedded.stop()
                shutil.rmtree(directory, ignore_errors=True)

            atexit.register(remove)
    return _dsn


_schema_applied = False


async def fresh_database(testcase: Any, size: int = 2) -> Database:
    """
    A pool on the test database with the schema applied and every table
    emptied; closed when the test ends.
    """
    global _schema_applied
    db = Database(test_dsn(), size)
    await db.start()
    testcase.addCleanup(db.close)
    if not _schema_applied:
        await db.apply_schema(schema_text())
        _schema_applied = True
    rows = await db.fetchall(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'schema_version'"
    )
    await db.execute("TRUNCATE " + ", ".join(r[0] for r in rows) + " RESTART IDENTITY CASCADE")
    return db


async def fresh_store(testcase: Any) -> Store:
    """A L{Store} over L{fresh_database}."""
    return Store(await fresh_database(testcase))


WAITING_FOR_A_LOCK = (
    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
)
"""How many sessions of the test database wait for a lock."""


async def held_open(testcase: Any, sql: str, params: Any) -> tuple[Deferred, Deferred]:
    """
    Run C{sql} in a transaction on a connection of its own and keep that
    transaction open, holding its locks, once the statement has run.

    @return: C{(commit, committed)}: fire C{commit} to let it commit;
        C{committed} fires once it has.
    """
    db = Database(test_dsn(), 1)
    await db.start()
    testcase.addCleanup(db.close)
    done: Deferred = Deferred()
    commit: Deferred = Deferred()

    async def hold(tx: Any) -> None:
        await tx.execute(sql, params)
        done.callback(None)
        await commit

    committed = Deferred.fromCoroutine(db.transaction(hold))
    await done
    return commit, committed


async def until_waiting_for_a_lock(db: Database, outcome: Deferred) -> None:
    """Wait until some session of the test database waits for a lock, or C{outcome} fired."""
    while not outcome.called and (await db.fetchone(WAITING_FOR_A_LOCK))[0] == 0:
        await deferLater(reactor, 0.01, lambda: None)


TEST_CONFIG = Config(rate_limits=False, max_connections_per_ip=10_000, new_connections_per_ip=10_000,
                     suspicion=SuspicionRules(threshold=1e9))
"""
The server settings end-to-end tests start from: no rate limits, no
per-address connection limits (tests open many connections from
127.0.0.1; L{CONNECTION_LIMITS} puts the defaults back), and no intrusion
detection to speak of (the fuzz tests send storms of malformed lines);
tests of those set their own.
"""

CONNECTION_LIMITS = {
    name: getattr(Config(), name) for name in ("max_connections_per_ip", "new_connections_per_ip")
}
"""The default per-address connection limits, as L{start_server} settings."""


class RunningServer:
    """
    The real lairchat service on a loopback TCP port, over the test
    database.

    @ivar port: the TCP port it listens on.
    """

    def __init__(self, testcase: Any, config: Config = TEST_CONFIG, node_timeout: float | None = None,
                 dsn: str | None = None, irc: bool = False) -> None:
        self.testcase = testcase
        self.config = config
        self.node_timeout = node_timeout
        self.dsn = dsn
        self.irc = irc
        self.service: LairchatService | None = None
        self.port = 0
        self.irc_port = 0

    async def start(self) -> "RunningServer":
        """Start the service and wait until it listens."""
        extra = {} if self.node_timeout is None else {"node_timeout": self.node_timeout}
        self.service = LairchatService(
            self.config,
            ["tcp:0:interface=127.0.0.1"],
            dsn=self.dsn or test_dsn(),
            pool_size=3,
            stop_reactor_on_failure=False,
            irc_endpoints=["tcp:0:interface=127.0.0.1"] if self.irc else [],
            **extra,
        )
        self.service.startService()
        await self.service.ready
        self.port = self.service.ports[0].getHost().port
        if self.irc:
            self.irc_port = self.service.irc_ports[0].getHost().port
        self.testcase.addCleanup(self.stop)
        return self

    async def stop(self) -> None:
        """Stop the service (idempotent)."""
        if self.service is not None and self.service.running:
            await self.service.stopService()

    @property
    def server(self) -> Any:
        """The running L{lairchat.context.ServerContext}."""
        return self.service.server

    async def connect(self, source: str = "127.0.0.1") -> "LineClient":
        """
        A new client connection from the loopback address C{source}
        (127.0.0.N: any N works on Linux), past the greeting.
        """
        client = LineClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        await connectProtocol(endpoint, client)
        self.testcase.addCleanup(client.close)
        welcome = await client.line()
        assert welcome.startswith("WELCOME:"), welcome
        await client.line()
        return client

    async def connect_refused(self, source: str = "127.0.0.1") -> str:
        """
        A new connection from C{source} that is refused: the one line it
        gets instead of the greeting, once the server closed it.
        """
        client = LineClient()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        await connectProtocol(endpoint, client)
        self.testcase.addCleanup(client.close)
        line = await client.line()
        await client.closed
        return line

    async def user(self, name: str, password: str = "correct horse 9", source: str = "127.0.0.1") -> "LineClient":
        """A new connection from C{source}, registered as C{name}."""
        client = await self.connect(source)
        reply = await client.request(f"REGISTER:{name}:{password}")
        assert reply[-1].startswith(f"OK:REGISTER:{name}:"), reply
        return client


async def start_server(testcase: Any, irc: bool = False, **settings: Any) -> RunningServer:
    """
    Start a L{RunningServer} on a fresh database (with an IRC port too when
    C{irc}); C{settings} override fields of L{TEST_CONFIG}.
    """
    await fresh_database(testcase)
    return await RunningServer(testcase, evolve(TEST_CONFIG, **settings), irc=irc).start()


NODE_TIMEOUT = 3.0
"""The C{node_timeout} of the nodes L{start_nodes} starts (seconds)."""


async def start_nodes(
    testcase: Any, count: int, node_timeout: float = NODE_TIMEOUT, irc: bool = False, **settings: Any
) -> list[RunningServer]:
    """
    Start C{count} L{RunningServer} nodes, one after another, on one fresh
    database (emptied once, before the first starts), each with a short
    C{node_timeout} (and an IRC port each when C{irc}); C{settings} override
    fields of L{TEST_CONFIG}.
    """
    await fresh_database(testcase)
    config = evolve(TEST_CONFIG, **settings)
    return [await RunningServer(testcase, config, node_timeout, irc=irc).start() for _ in range(count)]


class LineClient(LineOnlyReceiver):
    """
    A test client: sends lines, reads replies (by label) and events.

    @ivar events: event lines that arrived while a reply was awaited.
    """

    delimiter = b"\n"
    MAX_LENGTH = 10_000_000
    _labels = itertools.count(1)

    def __init__(self) -> None:
        self._lines: DeferredQueue = DeferredQueue()
        self.events: list[str] = []
        self.closed: Deferred = Deferred()
        self.closed.addErrback(lambda f: None)
        self.is_closed = False

    def lineReceived(self, line: bytes) -> None:
        """Queue a line, without its CR."""
        self._lines.put(line.rstrip(b"\r").decode("utf-8"))

    def connectionLost(self, reason: Any = None) -> None:
        """Note the close."""
        self.is_closed = True
        self.closed.callback(None)

    def send(self, line: str | bytes) -> None:
        """Send one raw line."""
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        self.transport.write(data + b"\n")

    async def line(self, timeout: float = TIMEOUT) -> str:
        """The next line, whatever it is."""
        d = self._lines.get()
        d.addTimeout(timeout, reactor)
        return await d

    async def request(self, line: str | bytes, timeout: float = TIMEOUT) -> list[str]:
        """
        Send a request with a label of our own, and return its reply lines
        (label removed), the final OK or ERROR last.  Lines without the label
        are events: they go to L{events}.
        """
        label = f"t{next(self._labels)}"
        prefix = f"@label={label} "
        data = line if isinstance(line, bytes) else line.encode("utf-8")
        self.send(prefix.encode() + data)
        reply = []
        while True:
            received = await self.line(timeout)
            if not received.startswith(prefix):
                self.events.append(received)
                continue
            received = received[len(prefix):]
            reply.append(received)
            if received.startswith(("OK:", "ERROR:")):
                return reply

    async def ok(self, line: str | bytes) -> list[str]:
        """L{request}, asserting that it succeeded; the reply lines."""
        reply = await self.request(line)
        if not reply[-1].startswith("OK:"):
            raise AssertionError(f"{line!r} answered {reply}")
        return reply

    async def event(self, prefix: str = "", timeout: float = TIMEOUT) -> str:
        """
        The next event starting with C{prefix} (from L{events} first, then
        the wire).  Events that do not match are kept.
        """
        for index, seen in enumerate(self.events):
            if seen.startswith(prefix):
                return self.events.pop(index)
        while True:
            received = await self.line(timeout)
            if received.startswith(prefix):
                return received
            self.events.append(received)

    async def no_event(self, prefix: str = "", wait: float = 0.3) -> None:
        """
        Assert that no event starting with C{prefix} arrives within C{wait}
        seconds (a PING round trip is made first, so anything already sent
        has arrived).
        """
        from twisted.internet.task import deferLater

        await deferLater(reactor, wait, lambda: None)
        await self.request("PING")
        for seen in self.events:
            if seen.startswith(prefix):
                raise AssertionError(f"unexpected event {seen!r}")

    def close(self) -> Deferred:
        """Close the connection; the Deferred fires once it is closed."""
        if self.is_closed:
            return Deferred.fromCoroutine(_nothing())
        done = Deferred()
        self.closed.addBoth(lambda _: done.callback(None))
        self.transport.loseConnection()
        return done


async def _nothing() -> None:
    """An already-fired Deferred's coroutine."""
