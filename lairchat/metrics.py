# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics: requests by command and outcome, request latency,
connections, online users (of this node), event deliveries and how far
this node got in the event log, failed and throttled logins, the password
hashing queue and its waits, served over HTTP at
C{/metrics} when C{--metrics ENDPOINT} is given.
"""

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.twisted import MetricsResource
from twisted.web.resource import Resource
from twisted.web.server import Site


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
        self.bus_reads = Gauge(
            "lairchat_bus_reads", "Reads of the event log since start (notifications, gaps, polls).",
            registry=self.registry,
        )

        # --- password guessing and the password hasher (issue 8) ----------
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

    def observe(self, command: str, outcome: str, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(command, outcome).inc()
        self.latency.labels(command).observe(seconds)

    def site(self) -> Site:
        """An HTTP site serving C{/metrics}."""
        root = Resource()
        root.putChild(b"metrics", MetricsResource(registry=self.registry))
        return Site(root)
