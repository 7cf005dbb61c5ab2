# -*- test-case-name: tests.test_protocol -*-
"""
What a command can reach: the server's shared parts (L{ServerContext}) and
the connection that sent the request (L{RequestContext}).
"""

from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from lairchat.addresses import Networks
from lairchat.admission import ConnectionGate
from lairchat.bus import Bus
from lairchat.domain import Actor
from lairchat.errors import AuthRequired
from lairchat.events import Origin
from lairchat.hub import Hub
from lairchat.intrusion import IntrusionDetector
from lairchat.metrics import Metrics
from lairchat.domain.messages import Receipts, RoomNames
from lairchat.models import User
from lairchat.presence import Presence
from lairchat.ratelimit import (
    ACCOUNT_RATES, ADDRESS_RATES, CONNECTION_RATES, FLOOD_BACKLOG, REGISTRATIONS_PER_HOUR, FloodControl,
)
from lairchat.store.events import Outbox
from lairchat.suspicion import SuspicionRules


@frozen
class Config:
    """
    The server's settings, from the command line (see L{lairchat.tap}).

    Durations are in seconds; sizes in bytes.

    Connections (see L{lairchat.admission}): at most
    C{max_connections_per_ip} open from one address and
    C{new_connections_per_ip} new ones from it per
    C{new_connection_window}, neither for C{exempt_networks}; at most
    C{max_connections} in all (L{None}: derived from the file limit when the
    service starts).  A connection not logged in after C{login_timeout}
    (a TLS handshake included) is closed.  Every client socket has TCP
    keepalive (C{keepalive_idle}, C{keepalive_interval},
    C{keepalive_count}; idle 0 turns it off) and C{tcp_user_timeout}
    (seconds output may stay unacknowledged; 0 leaves the system's).

    Flood control: the rate tables map a rate class to its
    L{lairchat.ratelimit.Rate} (see L{FloodControl}).

    Password guessing (see L{lairchat.login_throttle} and
    C{docs/protocol.md}): C{lockout_threshold} failures in a row of one
    account from one address start a delay of C{login_delay_seconds},
    doubling with each further failure up to C{lockout_seconds}, forgotten
    after C{login_failure_memory} seconds without a failure; the C{address_*}
    settings are the same rule for one address across accounts (its delay
    starts at C{login_delay_seconds} too).
    """

    server_name: str = "lair"
    max_line: int = 16384
    session_ttl: int = 7 * 24 * 3600
    invite_ttl: int = 7 * 24 * 3600
    sweep_interval: float = 60.0
    invite_retention: int = 90 * 24 * 3600
    reminder_window: int = 24 * 3600
    max_output_buffer: int = 1024 * 1024
    admins: tuple[str, ...] = ()
    rate_limits: bool = True
    # password guessing (lairchat.login_throttle): per account and address ...
    lockout_threshold: int = 5
    lockout_seconds: int = 15 * 60
    login_delay_seconds: float = 1.0
    login_failure_memory: int = 24 * 3600
    # ... and per address across accounts (exempt networks skip this one)
    address_lockout_threshold: int = 20
    address_lockout_seconds: int = 3600
    address_failure_memory: int = 3600
    exempt_networks: Networks = Networks()
    suspicion: SuspicionRules = SuspicionRules()
    max_connections_per_ip: int = 32
    max_connections: int | None = None
    new_connections_per_ip: int = 20
    new_connection_window: float = 10.0
    login_timeout: float = 120.0
    keepalive_idle: int = 60
    keepalive_interval: int = 10
    keepalive_count: int = 6
    tcp_user_timeout: float = 120.0
    # Flood control (issue 8, item 1): see lairchat.ratelimit.
    flood_backlog: float = FLOOD_BACKLOG
    registrations_per_hour: int = REGISTRATIONS_PER_HOUR
    # IRC clients without credentials chat as ephemeral guests (--irc-guests).
    irc_guests: bool = False
    connection_rates: dict = field(default=CONNECTION_RATES, hash=False)
    address_rates: dict = field(default=ADDRESS_RATES, hash=False)
    account_rates: dict = field(default=ACCOUNT_RATES, hash=False)


@define
class ServerContext:
    """
    The parts every request shares.

    @ivar registry: every command by each of its names.
    @ivar extensions: every L{lairchat.interfaces.IExtension} plugin.
    @ivar hub: this node's connections and their rooms.
    @ivar bus: hands every event, from any node, to the hub in order.
    @ivar flood: every connection's, address's and account's request
        budget (L{FloodControl}).
    @ivar gate: the L{ConnectionGate} every front end admits connections
        through, so the connection limits count them all together.
    @ivar front_ends: the factories serving this server's connections
        (the line protocol's, the IRC one's).
    """

    config: Config
    store: Any
    clock: Any
    passwords: Any
    registry: dict = field(factory=dict)
    extensions: list = field(factory=list)
    hub: Hub = field(factory=Hub)
    log: Logger = field(factory=Logger)
    started: float = 0.0
    metrics: Metrics = field(factory=Metrics)
    bus: Bus = field(default=None)
    presence: Presence = field(default=None)
    room_names: RoomNames = field(factory=RoomNames)
    receipts: Receipts = field(default=None)
    intrusion: IntrusionDetector = field(default=None)
    flood: FloodControl = field(default=None)
    gate: ConnectionGate = field(default=None)
    front_ends: list = field(factory=list)

    def __attrs_post_init__(self) -> None:
        """
        Let the metrics read the hub, and the group commits of messages and
        of joins hold the hub's output while they hand out a batch's
        results (and be measured); make the bus, presence, flood control,
        intrusion detection and the connection gate.
        """
        self.metrics.watch_hub(self.hub)
        for kind, part in (("messages", getattr(self.store, "messages", None)),
                           ("joins", getattr(self.store, "rooms", None))):
            group_commit = getattr(part, "group_commit", None)
            if group_commit is not None:
                group_commit.output = self.hub
                self.metrics.watch_batches(kind, group_commit)
        self.metrics.watch_passwords(self.passwords)
        if self.bus is None:
            self.bus = Bus(self.hub, getattr(self.store, "events", None), self.clock)
        self.metrics.watch_bus(self.bus)
        if self.presence is None:
            self.presence = Presence(self)
        if self.receipts is None:
            self.receipts = Receipts(self.store)
        if self.intrusion is None:
            self.intrusion = IntrusionDetector(self.store, self.clock, self.config.exempt_networks,
                                               self.config.suspicion, self.metrics)
        if self.flood is None:
            self.flood = FloodControl.from_config(self.clock, self.config, self.metrics, self.intrusion)
        if self.gate is None:
            config = self.config
            self.gate = ConnectionGate(
                self.clock,
                per_address=config.max_connections_per_ip,
                total=config.max_connections,
                per_window=config.new_connections_per_ip,
                window=config.new_connection_window,
            )

    def add_front_end(self, front_end: Any) -> None:
        """
        A front end's factory serves connections of this server: intrusion
        detection can close them (C{front_end.close_address}) and the
        metrics count them (C{front_end.connection_states()}), summed over
        every front end, as the L{gate} counts them against one set of limits.
        """
        self.front_ends.append(front_end)
        self.intrusion.add_front_end(front_end.close_address)
        self.metrics.watch_connections(self.connection_states)

    def connection_states(self) -> dict[str, int]:
        """How many open connections of every front end are in each state."""
        states = {"tls_handshake": 0, "anonymous": 0, "logged_in": 0}
        for front_end in self.front_ends:
            for state, count in front_end.connection_states().items():
                states[state] = states.get(state, 0) + count
        return states

    @property
    def node(self) -> str:
        """This node's id."""
        return self.hub.node

    def commands(self) -> list:
        """Every command once, by name."""
        unique = {id(c): c for c in self.registry.values()}
        return sorted(unique.values(), key=lambda c: c.name)

    def user_online(self, connection: Any, user: User) -> Deferred:
        """
        Attach a freshly logged-in connection to the hub; when it is the
        user's first here, load their rooms and note them online.  The
        Deferred fires once their room events reach the connection.
        """
        if self.hub.attach(connection, user):
            if self.bus.event_log is None:
                self.hub.load_rooms(user.id, [])
                return succeed(None)
            return self.presence.came_online(user)
        return succeed(None)

    def user_offline(self, connection: Any, user: User) -> None:
        """
        Detach a connection that logged out or closed; when it was the
        user's last here, note them offline here.
        """
        if self.hub.detach(connection, user) and self.bus.event_log is not None:
            self.presence.went_offline(user)

    async def deliver(self, outbox: Outbox) -> None:
        """Deliver the events an operation's committed transaction recorded."""
        await self.bus.committed(outbox.seqs, outbox.events)


@define
class RequestContext:
    """
    One request: the server, the connection that sent it, its label.

    @ivar connection: the L{lairchat.protocol.ChatProtocol}.
    @ivar queued: for a pipelined request, what to call once its change has
        its place in commit order (see L{lairchat.domain.Actor.place_taken}).
    """

    server: ServerContext
    connection: Any
    label: str | None = None
    queued: Any = None

    @property
    def store(self) -> Any:
        """The server's store."""
        return self.server.store

    @property
    def hub(self) -> Hub:
        """The server's hub."""
        return self.server.hub

    @property
    def config(self) -> Config:
        """The server's settings."""
        return self.server.config

    @property
    def origin(self) -> Origin:
        """This request's connection as the origin of the events it causes."""
        return Origin(self.server.node, self.connection.connection_id)

    @property
    def actor(self) -> Actor:
        """Who this request acts as, for the domain's operations."""
        return Actor(self.server, self.connection.user, self.origin, getattr(self.connection, "address", None),
                     self.queued)

    @property
    def user(self) -> User:
        """
        The logged-in user.

        @raise AuthRequired: nobody is logged in on this connection.
        """
        user = self.connection.user
        if user is None:
            raise AuthRequired("log in first: LOGIN:<user>:<password> or REGISTER:<user>:<password>")
        return user

    def now_ms(self) -> int:
        """The server clock, in epoch milliseconds."""
        return int(self.server.clock.seconds() * 1000)
