# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics: requests by command and outcome, request latency,
connections, online users (of this node), event deliveries, how far
this node got in the event log, connections by state, refused or timed
out, flood control (delayed and refused requests), failed and throttled
logins, the password hashing queue and its waits, the database pool (in
use, waits), group-committed writes (size, wait, round trip), conflict
retries, lost commits, embedded-database restarts and invitation sweeps
(runs, durations), served over HTTP at C{/metrics} when C{--metrics
ENDPOINT} is given.
"""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Site


class _CountersOf:
    """
    A collector of the counters an object keeps itself (a L{Database}'s
    waits and conflict retries, a watchdog's restarts), read when scraped.
    """

    def __init__(self, source: Any) -> None:
        self.source = source

    def collect(self) -> Any:
        """The counters the source has."""
        source = self.source
        if hasattr(source, "waits"):
            waits = CounterMetricFamily("lairchat_database_pool_waits",
                                        "Queries that found no free pooled connection and waited.")
            waits.add_metric([], source.waits)
            yield waits
        if hasattr(source, "retries"):
            retries = CounterMetricFamily("lairchat_database_retries",
                                          "Transactions run again after losing a conflict, by reason.",
                                          labels=["reason"])
            for reason in ("deadlock", "serialization"):
                retries.add_metric([reason], source.retries[reason])
            yield retries
        if hasattr(source, "unknown_outcomes"):
            outcomes = CounterMetricFamily("lairchat_database_lost_commits",
                                           "Commits that lost their connection, by what they turned out to be.",
                                           labels=["outcome"])
            for outcome in ("committed", "aborted", "unknown"):
                outcomes.add_metric([outcome], source.unknown_outcomes[outcome])
            yield outcomes
        if hasattr(source, "restarts"):
            restarts = CounterMetricFamily("lairchat_embedded_database_restarts",
                                           "Times the embedded Postgres died and was started again.")
            restarts.add_metric([], source.restarts)
            yield restarts
            failed = CounterMetricFamily("lairchat_embedded_database_start_failures",
                                         "Attempts to start the dead embedded Postgres again that failed.")
            failed.add_metric([], source.failures)
            yield failed


class Metrics:
    """
    The server's metrics, in a registry of their own (so several servers in
    one process, as in tests, do not collide).
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "lairchat_requests", "Requests answered, by command and outcome (ok or the error NAME).",
            ["command", "outcome"], registry=self.registry,
        )
        self.latency = Histogram(
            "lairchat_request_seconds", "Time from a request's turn to its reply, by command.",
            ["command"], registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self._request_series: dict[tuple[str, str], tuple] = {}
        self.connections = Gauge("lairchat_connections", "Logged-in connections.", registry=self.registry)
        self.online_users = Gauge("lairchat_online_users", "Users with a connection.", registry=self.registry)
        self.deliveries = Gauge(
            "lairchat_event_deliveries", "Event lines delivered to connections since start.", registry=self.registry
        )
        self.bus_sequence = Gauge(
            "lairchat_bus_sequence", "The sequence number of the last event this node handed on.",
            registry=self.registry,
        )
        self.bus_events = Gauge(
            "lairchat_bus_events", "Events (of any node) this node handed to its connections since start.",
            registry=self.registry,
        )
        self.sweeps = Counter(
            "lairchat_sweep_runs", "Invitation sweeps run, by outcome (ok or failed).", ["outcome"],
            registry=self.registry,
        )
        self.sweep_seconds = Histogram(
            "lairchat_sweep_seconds", "How long an invitation sweep took.", registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.bus_reads = Gauge(
            "lairchat_bus_reads", "Reads of the event log since start (notifications, gaps, polls).",
            registry=self.registry,
        )
        self.bus_inline = Gauge(
            "lairchat_bus_inline", "Notifications whose events were handed on as they came, without a read.",
            registry=self.registry,
        )
        # Group-committed writes (messages, joins)
        self.batch_size = Histogram(
            "lairchat_batch_size", "Items per group-committed database write (one statement, one commit), by kind.",
            ["kind"], registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 500),
        )
        self.batch_wait = Histogram(
            "lairchat_batch_wait_seconds",
            "How long the oldest item of a group-committed write waited for the writes before it, by kind.",
            ["kind"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.1, 0.25, 0.5, 1, 2, 4),
        )
        self.batch_seconds = Histogram(
            "lairchat_batch_seconds",
            "Time from starting a group-committed write to the database to reading its answer, by kind.",
            ["kind"], registry=self.registry,
            buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.1, 0.25, 0.5, 1, 2, 4),
        )
        # Intrusion detection
        self.suspicious_acts = Counter(
            "lairchat_suspicious_acts", "Suspicious acts scored against an address, by kind.", ["kind"],
            registry=self.registry,
        )
        self.blocks = Counter(
            "lairchat_address_blocks", "Addresses this node saw blocked (by intrusion detection or an admin).",
            registry=self.registry,
        )
        self.blocked_addresses = Gauge(
            "lairchat_blocked_addresses", "Addresses blocked now, as this node knows them.", registry=self.registry,
        )
        self._add_connection_metrics()
        self._flood_metrics()
        self._password_metrics()

    # Flood control (issue 8, item 1) -------------------------------------

    def _flood_metrics(self) -> None:
        """The figures of L{lairchat.ratelimit.FloodControl}."""
        self.requests_delayed = Counter(
            "lairchat_requests_delayed", "Requests made to wait for their rate budget, by rate class.",
            ["class"], registry=self.registry,
        )
        self.request_delay = Histogram(
            "lairchat_request_delay_seconds", "How long a delayed request waited for its rate budget.",
            registry=self.registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.requests_refused = Counter(
            "lairchat_requests_refused",
            "Requests refused for their rate, by rate class and reason (flood: cut off; registrations).",
            ["class", "reason"], registry=self.registry,
        )

    # Password guessing and the password hasher --------------------------

    def _password_metrics(self) -> None:
        """The figures of the guessing throttle and the password hasher."""
        self.suspicious_logins = Counter(
            "lairchat_suspicious_logins",
            "Failed logins (failed) and logins refused by the guessing throttle "
            "(throttled:account for one account from one address, throttled:address for one address).",
            ["reason"], registry=self.registry,
        )
        self.hash_queue = Gauge(
            "lairchat_hash_queue", "Password hashes waiting for a hashing slot.", registry=self.registry
        )
        self.hash_busy = Gauge(
            "lairchat_hash_slots_busy", "Hashing slots in use.", registry=self.registry
        )
        self.hash_wait = Histogram(
            "lairchat_hash_wait_seconds", "Time a password hash waited for its slot.", registry=self.registry,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.hash_refused = Counter(
            "lairchat_hash_refused", "Password hashes refused because the hashing queue was full.",
            registry=self.registry,
        )

    def request_delayed(self, rate_class: str, seconds: float) -> None:
        """Count one request that waits C{seconds} for its budget."""
        self.requests_delayed.labels(rate_class).inc()
        self.request_delay.observe(seconds)

    def request_refused(self, rate_class: str, reason: str) -> None:
        """Count one request refused for its rate."""
        self.requests_refused.labels(rate_class, reason).inc()

    def watch_hub(self, hub: Any) -> None:
        """Read the connection, user and delivery figures from the hub when scraped."""
        self.connections.set_function(hub.connection_count)
        self.online_users.set_function(lambda: len(hub.online_users()))
        self.deliveries.set_function(lambda: hub.delivered)

    def watch_bus(self, bus: Any) -> None:
        """Read how far the bus got in the event log when scraped."""
        self.bus_sequence.set_function(lambda: bus.last)
        self.bus_events.set_function(lambda: bus.handed)
        self.bus_reads.set_function(lambda: bus.reads)
        self.bus_inline.set_function(lambda: bus.inline)

    def watch_batches(self, kind: str, group_commit: Any) -> None:
        """
        Measure each batch that C{group_commit} (a
        L{lairchat.store.batch.GroupCommit}) writes; C{kind}: messages, joins.
        """
        size, wait, took = (self.batch_size.labels(kind), self.batch_wait.labels(kind),
                            self.batch_seconds.labels(kind))

        def observe(items: int, waited: float, seconds: float) -> None:
            """One batch of C{items}, its oldest item queued C{waited} s, written in C{seconds} s."""
            size.observe(items)
            wait.observe(waited)
            took.observe(seconds)

        group_commit.observe = observe

    def watch_passwords(self, passwords: Any) -> None:
        """Read the hashing queue when scraped, and time each hash's wait for its slot."""
        queue = getattr(passwords, "queue", None)
        if queue is None:
            return
        self.hash_queue.set_function(lambda: len(queue))
        self.hash_busy.set_function(queue.busy)
        passwords.waited = self.hash_wait.observe
        passwords.refused = self.hash_refused.inc

    def suspicious_login(self, reason: str) -> None:
        """Count one failed or throttled login (see L{lairchat.domain.accounts.suspicious_login})."""
        self.suspicious_logins.labels(reason).inc()

    # Faults: the database pool, conflicts, the embedded database, the sweep

    def watch_database(self, db: Any) -> None:
        """Read the pool's figures and the conflict retries from the L{Database} when scraped."""
        Gauge("lairchat_database_pool_in_use", "Pooled database connections running a query now.",
              registry=self.registry).set_function(lambda: db.in_use)
        Gauge("lairchat_database_up", "1 while at least one pooled database connection is up, else 0.",
              registry=self.registry).set_function(lambda: 1 if db.connected else 0)
        Gauge("lairchat_database_pool_waiting", "Queries waiting for a free pooled connection now.",
              registry=self.registry).set_function(lambda: db.waiting)
        self.registry.register(_CountersOf(db))

    def watch_embedded(self, watchdog: Any) -> None:
        """Read the embedded database's restarts from its watchdog when scraped."""
        self.registry.register(_CountersOf(watchdog))

    def observe(self, command: str, outcome: str, seconds: float) -> None:
        """
        Count one answered request (the labelled series of each command and
        outcome, a bounded set, are looked up once and kept).
        """
        series = self._request_series.get((command, outcome))
        if series is None:
            series = self._request_series[command, outcome] = (self.requests.labels(command, outcome),
                                                                self.latency.labels(command))
        series[0].inc()
        series[1].observe(seconds)

    # Connections: admission, login timeouts, states.

    def _add_connection_metrics(self) -> None:
        """The metrics of connection limits and timeouts."""
        self.connections_by_state = Gauge(
            "lairchat_connections_by_state",
            "Open connections of this node by state: tls_handshake, anonymous (not logged in), logged_in.",
            ["state"], registry=self.registry,
        )
        self.connections_refused = Counter(
            "lairchat_connections_refused",
            "Connections refused for a limit, by reason: total, per_address, rate.",
            ["reason"], registry=self.registry,
        )
        self.connections_timed_out = Counter(
            "lairchat_connections_timed_out",
            "Connections closed for not logging in in time, by reason: login, tls_handshake.",
            ["reason"], registry=self.registry,
        )

    def watch_connections(self, states: Any) -> None:
        """Read the connections by state from C{states()} (a dict of counts) when scraped."""
        for state in ("tls_handshake", "anonymous", "logged_in"):
            self.connections_by_state.labels(state).set_function(lambda state=state: states()[state])

    def connection_refused(self, reason: str) -> None:
        """Count a connection refused for C{reason}."""
        self.connections_refused.labels(reason).inc()

    def connection_timed_out(self, reason: str) -> None:
        """Count a connection closed for not logging in in time."""
        self.connections_timed_out.labels(reason).inc()

    def site(self) -> Site:
        """An HTTP site serving C{/metrics}."""
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry=self.registry))
        return Site(root)
