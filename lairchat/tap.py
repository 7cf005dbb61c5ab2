# -*- test-case-name: tests.test_tap -*-
"""
C{twistd lairchat}: the command-line options and the service that runs the
server: the database (embedded when there is no C{--dsn}), the schema, one
listening port per C{--port} endpoint (the line protocol) and per
C{--irc-port} endpoint (the IRC front end), and every extension's services (the
invitation sweeper among them).
"""

import gc
import math
from typing import Any

from attrs import evolve

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
from lairchat.irc.protocol import IRCFactory
from lairchat.node import NODE_TIMEOUT, NodeService, new_node_id
from lairchat.passwords import Passwords
from lairchat.plugins import load_commands, load_extensions
from lairchat.protocol import ChatFactory
from lairchat.store import Database, Store, schema_text
from lairchat.suspicion import SuspicionRules
from lairchat.validation import username as valid_username

_POSITIVE_INTEGERS = {
    "max-line": 64,
    "pool-size": 1,
    "invite-ttl": 1,
    "invite-retention": 1,
    "session-ttl": 60,
    "max-output-buffer": 4096,
    "max-connections-per-ip": 1,
    "max-new-connections-per-ip": 1,
    "keepalive-idle": 0,
    "keepalive-interval": 1,
    "keepalive-count": 1,
    "registrations-per-hour": 0,
}
_POSITIVE_NUMBERS = {
    "sweep-interval": 0.05,
    "node-timeout": 1.0,
    "new-connection-window": 0.1,
    "login-timeout": 0.1,
    "tcp-user-timeout": 0.0,
    "block-threshold": 1.0,
    "block-seconds": 1.0,
    "flood-backlog": 1.0,
}

FILE_RESERVE = 64
"""
File descriptors kept back from client connections (the database pool, the
event listener, log files, the metrics port): the total connection limit is
the soft C{RLIMIT_NOFILE} minus this.
"""


def raise_file_limit(resource_module: Any = None) -> tuple[int | None, int | None, int | None]:
    """
    Raise the soft limit on open files (C{RLIMIT_NOFILE}) to the hard one.

    @param resource_module: the L{resource} module (a double in tests).
    @return: the soft limit before, the soft limit now and the hard limit
        (C{resource.RLIM_INFINITY} for none), or L{None}s where the
        platform has no such limit.
    """
    if resource_module is None:
        try:
            import resource as resource_module
        except ImportError:
            return None, None, None
    before, hard = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    if before != hard:
        try:
            resource_module.setrlimit(resource_module.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    soft, hard = resource_module.getrlimit(resource_module.RLIMIT_NOFILE)
    return before, soft, hard


def connection_total(wanted: int | None, soft: int | None, infinity: int = -1) -> int | None:
    """
    The total connection limit: C{wanted} (C{--max-connections}), never
    above the soft file limit minus L{FILE_RESERVE} (at least 1); with no
    C{wanted}, that ceiling.  L{None} (no limit) only when neither the
    option nor a finite file limit gives one.
    """
    if soft is None or soft == infinity or soft < 0:
        return wanted
    ceiling = max(soft - FILE_RESERVE, 1)
    return ceiling if wanted is None else min(wanted, ceiling)


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
        ["block-threshold", None, "30",
         "The suspicion score at which intrusion detection blocks an address (see docs/protocol.md)."],
        ["block-seconds", None, "900",
         "How long an address's first block lasts, in seconds (doubling on each return within a day)."],
        ["max-connections-per-ip", None, "32", "Open connections allowed from one address."],
        ["max-new-connections-per-ip", None, "20",
         "New connections allowed from one address per --new-connection-window."],
        ["new-connection-window", None, "10", "The window of --max-new-connections-per-ip, in seconds."],
        ["max-connections", None, None,
         f"Open connections allowed in all (default and ceiling: the open-file limit minus {FILE_RESERVE})."],
        ["login-timeout", None, "120",
         "Seconds a connection may stay without logging in (its TLS handshake included) before it is closed."],
        ["keepalive-idle", None, "60",
         "Seconds a client socket may be silent before TCP keepalive probes it (0: no keepalive)."],
        ["keepalive-interval", None, "10", "Seconds between TCP keepalive probes."],
        ["keepalive-count", None, "6", "Unanswered TCP keepalive probes after which a connection is dropped."],
        ["tcp-user-timeout", None, "120",
         "Seconds output may stay unacknowledged before the connection is dropped (TCP_USER_TIMEOUT; "
         "0: the system's)."],
        ["flood-backlog", None, "30",
         "Seconds of delay a client over its request budget may owe before it is disconnected."],
        ["registrations-per-hour", None, "5",
         "New accounts one address may create per hour (0: no limit; exempt networks have none)."],
    ]
    optFlags = [
        ["no-rate-limit", None, "Turn flood control and rate limits off (for benchmarks)."],
        ["irc-guests", None, "Let IRC clients that register without credentials chat as ephemeral guests "
                             "(their nick is no account's; they are deleted when they leave)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["irc-port"] = []
        self["admin"] = []
        self["exempt-network"] = []

    def opt_port(self, endpoint: str) -> None:
        """A Twisted server endpoint to listen on, e.g. tcp:8080 or ssl:6697:privateKey=key.pem
        (repeatable; default tcp:8080)."""
        self["port"].append(endpoint)

    def opt_irc_port(self, endpoint: str) -> None:
        """A Twisted server endpoint for IRC clients, e.g. tcp:6667 or ssl:6697:privateKey=key.pem
        (repeatable; default none: no IRC front end)."""
        self["irc-port"].append(endpoint)

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
        if self["max-connections"] is not None:
            try:
                value = int(self["max-connections"])
            except (TypeError, ValueError):
                raise usage.UsageError(
                    f"--max-connections must be a whole number, not {self['max-connections']!r}") from None
            if value < 1:
                raise usage.UsageError("--max-connections must be at least 1")
            self["max-connections"] = value
        if not self["port"]:
            self["port"] = ["tcp:8080"]
        from twisted.internet import reactor

        endpoints = [("port", e) for e in self["port"]] + [("irc-port", e) for e in self["irc-port"]]
        if self["metrics"]:
            endpoints.append(("port", self["metrics"]))
        for option, endpoint in endpoints:
            try:
                parsed = serverFromString(reactor, endpoint)
            except Exception as error:
                raise usage.UsageError(f"--{option} {endpoint!r} is not a valid endpoint: {error}") from None
            # TCP, TCP6 and SSL endpoints keep their port number here, unchecked until listen().
            number = getattr(parsed, "_port", None)
            if isinstance(number, int) and not 0 <= number <= 65535:
                raise usage.UsageError(f"--{option} {endpoint!r} is not a valid endpoint: ports are 0 to 65535")

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
            suspicion=SuspicionRules(threshold=self["block-threshold"], block_seconds=self["block-seconds"],
                                     max_block_seconds=max(self["block-seconds"], 24 * 3600.0)),
            max_connections_per_ip=self["max-connections-per-ip"],
            max_connections=self["max-connections"],
            new_connections_per_ip=self["max-new-connections-per-ip"],
            new_connection_window=self["new-connection-window"],
            login_timeout=self["login-timeout"],
            keepalive_idle=self["keepalive-idle"],
            keepalive_interval=self["keepalive-interval"],
            keepalive_count=self["keepalive-count"],
            tcp_user_timeout=self["tcp-user-timeout"],
            flood_backlog=self["flood-backlog"],
            registrations_per_hour=self["registrations-per-hour"],
            irc_guests=bool(self["irc-guests"]),
        )


def freeze_startup_heap(log: Logger) -> None:
    """
    Leave what the server holds once started (modules, classes, functions:
    some 65,000 objects) out of every later garbage collection.

    Python's collector takes a full collection whenever the objects that
    survived its younger ones reach a quarter of the old ones; under load
    that is about once a second, and each such collection walked every
    object of the process, this startup heap included: about 30 ms on a
    2-CPU machine, in which nothing was delivered.  Frozen, a full
    collection walks only what was made since.  A frozen object is still
    freed when nothing refers to it, but never when it is in a cycle, so
    this is done once, by a server process (L{makeService}), not by the
    services tests start many times in one process.
    """
    gc.collect()
    gc.freeze()
    log.info("{count} objects of the started server left out of garbage collection", count=gc.get_freeze_count())


class LairchatService(MultiService):
    """
    The whole server.  Starting is asynchronous: L{ready} fires once every
    port listens (or fails with the reason the server could not start).

    @ivar ports: the listening ports, once L{ready} fired.
    @ivar server: the L{ServerContext}, once L{ready} fired.
    @ivar freeze_heap: whether to freeze the heap once started
        (L{freeze_startup_heap}): only a server process, never a test.
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
        irc_endpoints: list[str] = (),
        freeze_heap: bool = False,
    ) -> None:
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.config = config
        self.endpoints = endpoints
        self.irc_endpoints = list(irc_endpoints)
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
        self._irc_factory: IRCFactory | None = None
        self.irc_ports: list = []
        self._node: NodeService | None = None
        self.freeze_heap = freeze_heap

    def startService(self) -> None:
        """Start the children, then the database and the ports in the background."""
        super().startService()
        self.ready = Deferred.fromCoroutine(self._start())
        self.ready.addErrback(self._failed)

    async def _start(self) -> "LairchatService":
        """Database, schema, server context, extension services, ports."""
        started = self.reactor.seconds()
        self._limit_connections()
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
        await self.server.intrusion.refresh()
        self.server.intrusion.service().setServiceParent(self)
        for extension in self.server.extensions:
            for service in extension.services(self.server):
                service.setServiceParent(self)
        factory = self._factory = ChatFactory(self.server)
        for endpoint in self.endpoints:
            port = await serverFromString(self.reactor, endpoint).listen(factory)
            self.ports.append(port)
            self.log.info("lairchat listening on {address}", address=port.getHost())
        if self.irc_endpoints:
            self._irc_factory = IRCFactory(self.server)
        for endpoint in self.irc_endpoints:
            port = await serverFromString(self.reactor, endpoint).listen(self._irc_factory)
            self.ports.append(port)
            self.irc_ports.append(port)
            self.log.info("lairchat IRC listening on {address}", address=port.getHost())
        if self.metrics_endpoint:
            port = await serverFromString(self.reactor, self.metrics_endpoint).listen(self.server.metrics.site())
            self.ports.append(port)
            self.log.info("lairchat metrics at http://{address.host}:{address.port}/metrics", address=port.getHost())
        if self.freeze_heap:
            freeze_startup_heap(self.log)
        self.log.info(
            "lairchat ready in {seconds:.2f} s with {count} commands",
            seconds=self.reactor.seconds() - started,
            count=len(self.server.commands()),
        )
        return self

    def _limit_connections(self) -> None:
        """
        Raise the soft open-file limit to the hard one, log both, and keep
        the total connection limit below it (L{connection_total}).
        """
        before, soft, hard = raise_file_limit()
        try:
            import resource

            infinity = resource.RLIM_INFINITY
        except ImportError:
            infinity = -1
        total = connection_total(self.config.max_connections, soft, infinity)
        if before is not None:
            self.log.info(
                "open-file limit: soft {soft} (was {before}), hard {hard}; at most {total} connections",
                soft="unlimited" if soft == infinity else soft, before="unlimited" if before == infinity else before,
                hard="unlimited" if hard == infinity else hard, total="unlimited" if total is None else total,
            )
        if self.config.max_connections is not None and total != self.config.max_connections:
            self.log.warn(
                "--max-connections {wanted} lowered to {total}: the open-file limit is {soft}, "
                "and {reserve} descriptors are kept for the database and files",
                wanted=self.config.max_connections, total=total, soft=soft, reserve=FILE_RESERVE,
            )
        self.config = evolve(self.config, max_connections=total)

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
        self.irc_ports = []
        if self._factory is not None:
            connections = [c for f in (self._factory, self._irc_factory) if f is not None for c in f.connections]
            for connection in connections:
                connection.close()
            await gatherResults([c.lost for c in connections])
            if self._irc_factory is not None:
                # guests whose connections closed leave their rooms first
                await self._irc_factory.commands.settled()
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
        irc_endpoints=options["irc-port"],
        freeze_heap=True,
    )
