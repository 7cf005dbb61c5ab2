# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics: requests by command and outcome, request latency,
connections, online users (of this node), event deliveries and how far
this node got in the event log, the database pool (in use, waits),
conflict retries, lost commits, embedded-database restarts and invitation
sweeps (runs, durations), served over HTTP at
C{/metrics} when C{--metrics ENDPOINT} is given.
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

    # Faults: the database pool, conflicts, the embedded database, the sweep

    def watch_database(self, db: Any) -> None:
        """Read the pool's figures and the conflict retries from the L{Database} when scraped."""
        Gauge("lairchat_database_pool_in_use", "Pooled database connections running a query now.",
              registry=self.registry).set_function(lambda: db.in_use)
        Gauge("lairchat_database_pool_waiting", "Queries waiting for a free pooled connection now.",
              registry=self.registry).set_function(lambda: db.waiting)
        self.registry.register(_CountersOf(db))

    def watch_embedded(self, watchdog: Any) -> None:
        """Read the embedded database's restarts from its watchdog when scraped."""
        self.registry.register(_CountersOf(watchdog))

    def observe(self, command: str, outcome: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(command, outcome).inc()
        self.latency.labels(command).observe(seconds)

    def site(self) -> Site:
        """An HTTP site serving C{/metrics}."""
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry=self.registry))
        return Site(root)
