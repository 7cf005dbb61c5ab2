# -*- test-case-name: tests.test_tap -*-
"""
C{twistd lairchat}: the command-line options and the service that runs the
server: the database (embedded when there is no C{--dsn}), the schema, one
listening port per C{--port} endpoint, and every extension's services (the
invitation sweeper among them).
"""

import math
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import serverFromString
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python import usage

from lairchat.addresses import Networks, parse_network
from lairchat.context import Config, ServerContext
from lairchat.embedded import EmbeddedPostgres, EmbeddedWatchdog
from lairchat.hub import Hub
from lairchat.node import NODE_TIMEOUT, NodeService, new_node_id
from lairchat.passwords import Passwords
from lairchat.plugins import load_commands, load_extensions
from lairchat.protocol import ChatFactory
from lairchat.store import Database, Store, schema_text
from lairchat.validation import username as valid_username

_POSITIVE_INTEGERS = {
    "max-line": 64,
    "pool-size": 1,
    "invite-ttl": 1,
    "invite-retention": 1,
    "session-ttl": 60,
    "max-output-buffer": 4096,
}
_POSITIVE_NUMBERS = {"sweep-interval": 0.05, "node-timeout": 1.0}


class Options(usage.Options):
    """The options of C{twistd lairchat}."""

    synopsis = "[options]"
    longdesc = (
        "Run the lairchat server. With no --dsn, an embedded Postgres is started in "
        "--data-dir and stopped on shutdown."
    )
    optParameters = [
        ["dsn", None, None, "Postgres connection string (default: an embedded Postgres in --data-dir)."],
        ["data-dir", None, "./lairchat-data", "Where the embedded Postgres keeps its data."],
        ["server-name", None, "lair", "The name in the WELCOME line."],
        ["max-line", None, "16384", "The longest line a client may send, in bytes."],
        ["pool-size", None, "4", "Database connections in the pool."],
        ["invite-ttl", None, "604800", "How long an invitation stays pending, in seconds."],
        ["sweep-interval", None, "60", "How often expired invitations are swept, in seconds."],
        ["invite-retention", None, "7776000", "How long answered invitations are kept, in seconds."],
        ["session-ttl", None, "604800", "How long a session token lives, in seconds."],
        ["node-timeout", None, "10",
         "Seconds without a heartbeat after which another node on the database is taken for dead."],
        ["metrics", None, None,
         "A Twisted endpoint serving Prometheus metrics at /metrics, e.g. tcp:9100:interface=127.0.0.1."],
        ["max-output-buffer", None, "1048576",
         "Bytes queued for a client that stopped reading before it is disconnected."],
    ]
    optFlags = [
        ["no-rate-limit", None, "Turn request rate limits off (for benchmarks)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["admin"] = []
        self["exempt-network"] = []

    def opt_port(self, endpoint: str) -> None:
        """A Twisted server endpoint to listen on, e.g. tcp:8080 or ssl:6697:privateKey=key.pem
        (repeatable; default tcp:8080)."""
        self["port"].append(endpoint)

    def opt_admin(self, user: str) -> None:
        """A username that holds the server role admin (repeatable)."""
        try:
            self["admin"].append(valid_username(user))
        except Exception as error:
            raise usage.UsageError(f"--admin {user!r}: {error}") from None

    def opt_exempt_network(self, network: str) -> None:
        """A trusted network in CIDR notation (e.g. 10.0.0.0/8 or 127.0.0.1) whose clients no
        per-address limit, flood control or block applies to (repeatable)."""
        try:
            self["exempt-network"].append(parse_network(network))
        except ValueError as error:
            raise usage.UsageError(f"--exempt-network {network!r}: {error}") from None

    def postOptions(self) -> None:
        """Check every value; a bad one is a usage error."""
        for name, minimum in _POSITIVE_INTEGERS.items():
            try:
                value = int(self[name])
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{name} must be a whole number, not {self[name]!r}") from None
            if value < minimum:
                raise usage.UsageError(f"--{name} must be at least {minimum}")
            self[name] = value
        for name, minimum in _POSITIVE_NUMBERS.items():
            try:
                value = float(self[name])
            except (TypeError, ValueError):
                raise usage.UsageError(f"--{name} must be a number, not {self[name]!r}") from None
            if not math.isfinite(value):
                raise usage.UsageError(f"--{name} must be a finite number, not {self[name]!r}")
            if value < minimum:
                raise usage.UsageError(f"--{name} must be at least {minimum}")
            self[name] = value
        if not self["port"]:
            self["port"] = ["tcp:8080"]
        from twisted.internet import reactor

        for endpoint in self["port"] + ([self["metrics"]] if self["metrics"] else []):
            try:
                parsed = serverFromString(reactor, endpoint)
            except Exception as error:
                raise usage.UsageError(f"--port {endpoint!r} is not a valid endpoint: {error}") from None
            # TCP, TCP6 and SSL endpoints keep their port number here, unchecked until listen().
            number = getattr(parsed, "_port", None)
            if isinstance(number, int) and not 0 <= number <= 65535:
                raise usage.UsageError(f"--port {endpoint!r} is not a valid endpoint: ports are 0 to 65535")

    def config(self) -> Config:
        """The server's settings from these options."""
        return Config(
            server_name=self["server-name"],
            max_line=self["max-line"],
            session_ttl=self["session-ttl"],
            invite_ttl=self["invite-ttl"],
            sweep_interval=self["sweep-interval"],
            invite_retention=self["invite-retention"],
            max_output_buffer=self["max-output-buffer"],
            admins=tuple(self["admin"]),
            rate_limits=not self["no-rate-limit"],
            exempt_networks=Networks(tuple(self["exempt-network"])),
        )


class LairchatService(MultiService):
    """
    The whole server.  Starting is asynchronous: L{ready} fires once every
    port listens (or fails with the reason the server could not start).

    @ivar ports: the listening ports, once L{ready} fired.
    @ivar server: the L{ServerContext}, once L{ready} fired.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        endpoints: list[str],
        dsn: str | None = None,
        data_dir: str = "./lairchat-data",
        pool_size: int = 4,
        metrics_endpoint: str | None = None,
        reactor: Any = None,
        stop_reactor_on_failure: bool = True,
        node_timeout: float = NODE_TIMEOUT,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.config = config
        self.endpoints = endpoints
        self.dsn = dsn
        self.data_dir = data_dir
        self.pool_size = pool_size
        self.metrics_endpoint = metrics_endpoint
        self.reactor = reactor
        self.stop_reactor_on_failure = stop_reactor_on_failure
        self.node_timeout = node_timeout
        self.ports: list = []
        self.server: ServerContext | None = None
        self.ready: Deferred | None = None
        self._db: Database | None = None
        self._embedded: EmbeddedPostgres | None = None
        self._factory: ChatFactory | None = None
        self._node: NodeService | None = None

    def startService(self) -> None:
        """Start the children, then the database and the ports in the background."""
        super().startService()
        self.ready = Deferred.fromCoroutine(self._start())
        self.ready.addErrback(self._failed)

    async def _start(self) -> "LairchatService":
        """Database, schema, server context, extension services, ports."""
        started = self.reactor.seconds()
        dsn = self.dsn
        if dsn is None:
            self._embedded = EmbeddedPostgres(self.data_dir)
            dsn = await deferToThread(self._embedded.start)
        self._db = Database(dsn, self.pool_size, reactor=self.reactor)
        await self._db.start()
        await self._db.apply_schema(schema_text())
        store = Store(self._db)
        for admin in self.config.admins:
            await store.users.set_server_role(admin, "admin")
        self.server = ServerContext(
            config=self.config,
            store=store,
            clock=self.reactor,
            passwords=Passwords(self.reactor),
            registry=load_commands(),
            extensions=load_extensions(),
            started=started,
            hub=Hub(new_node_id()),
        )
        self.server.metrics.watch_database(self._db)
        if self._embedded is not None:
            watchdog = EmbeddedWatchdog(self._embedded, self.reactor)
            watchdog.setServiceParent(self)
            self.server.metrics.watch_embedded(watchdog)
        self._node = NodeService(self.server, dsn, self.node_timeout)
        await self._node.begin()
        self._node.setServiceParent(self)
        for extension in self.server.extensions:
            for service in extension.services(self.server):
                service.setServiceParent(self)
        factory = self._factory = ChatFactory(self.server)
        for endpoint in self.endpoints:
            port = await serverFromString(self.reactor, endpoint).listen(factory)
            self.ports.append(port)
            self.log.info("lairchat listening on {address}", address=port.getHost())
        if self.metrics_endpoint:
            port = await serverFromString(self.reactor, self.metrics_endpoint).listen(self.server.metrics.site())
            self.ports.append(port)
            self.log.info("lairchat metrics at http://{address.host}:{address.port}/metrics", address=port.getHost())
        self.log.info(
            "lairchat ready in {seconds:.2f} s with {count} commands",
            seconds=self.reactor.seconds() - started,
            count=len(self.server.commands()),
        )
        return self

    def _failed(self, failure: Any) -> Any:
        """Log why the server could not start, and stop."""
        self.log.failure("lairchat could not start", failure)
        if self.stop_reactor_on_failure and self.reactor.running:
            self.reactor.stop()
        return failure

    async def _stop(self) -> None:
        """Close the ports, the children, the pool, the embedded database."""
        await gatherResults([port.stopListening() for port in self.ports])
        self.ports = []
        if self._factory is not None:
            connections = list(self._factory.connections)
            for connection in connections:
                connection.close()
            await gatherResults([c.lost for c in connections])
        if self.server is not None:
            await self.server.presence.settled()
        await super().stopService()
        if self._node is not None:
            await self._node.end()
            self._node = None
        if self._db is not None:
            self._db.close()
            self._db = None
        if self._embedded is not None:
            await deferToThread(self._embedded.stop)
            self._embedded = None

    def stopService(self) -> Deferred:
        """Stop everything; the Deferred fires when all is closed."""
        return Deferred.fromCoroutine(self._stop())


def makeService(options: Options) -> LairchatService:
    """Build the server from C{twistd lairchat} options."""
    return LairchatService(
        options.config(),
        options["port"],
        dsn=options["dsn"],
        data_dir=options["data-dir"],
        pool_size=options["pool-size"],
        metrics_endpoint=options["metrics"],
        node_timeout=options["node-timeout"],
    )
