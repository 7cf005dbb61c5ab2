"""
Tests of the Prometheus metrics: counted per request, served over HTTP.
"""

from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from lairchat.events import Origin
from lairchat.hub import Hub
from lairchat.metrics import Metrics
from tests.support import RunningServer, fresh_database, TEST_CONFIG


class MetricsTests(TestCase):
    """The registry's figures."""

    def test_observe_counts_by_command_and_outcome(self):
        """Each observed request adds one to its command and outcome."""
        metrics = Metrics()
        metrics.observe("PING", "ok", 0.001)
        metrics.observe("PING", "ok", 0.002)
        metrics.observe("LOGIN", "INVALID_CREDENTIALS", 0.2)
        value = metrics.registry.get_sample_value
        self.assertEqual(value("lairchat_requests_total", {"command": "PING", "outcome": "ok"}), 2.0)
        self.assertEqual(
            value("lairchat_requests_total", {"command": "LOGIN", "outcome": "INVALID_CREDENTIALS"}), 1.0
        )
        self.assertEqual(value("lairchat_request_seconds_count", {"command": "PING"}), 2.0)

    def test_hub_figures_read_when_scraped(self):
        """Connections and deliveries come from the hub at scrape time."""
        metrics = Metrics()
        hub = Hub()
        metrics.watch_hub(hub)
        hub.delivered = 7
        self.assertEqual(metrics.registry.get_sample_value("lairchat_event_deliveries"), 7.0)
        self.assertEqual(metrics.registry.get_sample_value("lairchat_connections"), 0.0)


class MetricsEndpointTests(TestCase):
    """--metrics serves the figures over HTTP."""

    async def test_scrape(self):
        """After a PING over TCP, /metrics counts it."""
        await fresh_database(self)
        running = RunningServer(self, TEST_CONFIG)
        await running.start()
        client = await running.connect()
        await client.ok("PING")
        site_port = await _listen_metrics(running)
        self.addCleanup(site_port.stopListening)
        response = await Agent(reactor).request(
            b"GET", f"http://127.0.0.1:{site_port.getHost().port}/metrics".encode()
        )
        body = (await readBody(response)).decode()
        self.assertIn('lairchat_requests_total{command="PING",outcome="ok"} 1.0', body)


async def _listen_metrics(running):
    """Serve the running server's metrics on a free loopback port."""
    from twisted.internet.endpoints import serverFromString

    return await serverFromString(reactor, "tcp:0:interface=127.0.0.1").listen(running.server.metrics.site())


class FaultMetricsTests(TestCase):
    """The database, embedded-database and sweep figures, as scraped."""

    def test_database_and_watchdog(self):
        """Pool use, waits, conflict retries, lost commits and restarts are read when scraped."""
        from collections import Counter

        from prometheus_client import generate_latest

        from lairchat.metrics import Metrics

        class Pool:
            in_use, waiting, waits, connected = 2, 1, 5, 3
            retries = Counter({"deadlock": 3})
            unknown_outcomes = Counter({"committed": 1})

        class Watchdog:
            restarts, failures = 1, 2

        metrics = Metrics()
        metrics.watch_database(Pool())
        metrics.watch_embedded(Watchdog())
        scraped = generate_latest(metrics.registry).decode()
        for line in ("lairchat_database_pool_in_use 2.0", "lairchat_database_pool_waiting 1.0",
                     "lairchat_database_up 1.0",
                     "lairchat_database_pool_waits_total 5.0",
                     'lairchat_database_retries_total{reason="deadlock"} 3.0',
                     'lairchat_database_retries_total{reason="serialization"} 0.0',
                     'lairchat_database_lost_commits_total{outcome="committed"} 1.0',
                     "lairchat_embedded_database_restarts_total 1.0",
                     "lairchat_embedded_database_start_failures_total 2.0"):
            self.assertIn(line, scraped)

    def test_sweeps(self):
        """Sweep runs are counted by outcome, with their durations."""
        from prometheus_client import generate_latest

        from lairchat.metrics import Metrics

        metrics = Metrics()
        metrics.sweeps.labels("ok").inc()
        metrics.sweep_seconds.observe(0.01)
        scraped = generate_latest(metrics.registry).decode()
        self.assertIn('lairchat_sweep_runs_total{outcome="ok"} 1.0', scraped)
        self.assertIn("lairchat_sweep_seconds_count 1.0", scraped)


class BatchMetricsTests(TestCase):
    """The group-committed writes of a running server are measured."""

    async def test_messages_and_joins(self):
        """A join and a message each add a batch of their kind: its size, its wait, its round trip."""
        from lairchat.events import MessageSent, RoomRef
        from lairchat.store.events import Outbox

        await fresh_database(self)
        running = await RunningServer(self, TEST_CONFIG).start()
        store = running.server.store
        alice = await store.users.create("alice", "x")
        bob = await store.users.create("bob", "x")
        room = await store.rooms.create("lobby", "public", alice, Outbox(None))
        value = running.server.metrics.registry.get_sample_value
        self.assertEqual(value("lairchat_batch_size_count", {"kind": "joins"}), 0.0)
        await store.rooms.join_with_event(RoomRef(room.id, room.name), bob, Origin("test-node", 1))
        await store.messages.post_with_event(
            MessageSent(RoomRef(room.id, room.name), 0, alice.id, "alice", 0, "hello", origin=Origin("test-node", 1)))
        for kind in ("joins", "messages"):
            self.assertEqual(value("lairchat_batch_size_count", {"kind": kind}), 1.0)
            self.assertEqual(value("lairchat_batch_size_sum", {"kind": kind}), 1.0)
            self.assertEqual(value("lairchat_batch_wait_seconds_count", {"kind": kind}), 1.0)
            self.assertEqual(value("lairchat_batch_seconds_count", {"kind": kind}), 1.0)
            self.assertGreater(value("lairchat_batch_seconds_sum", {"kind": kind}), 0.0)


class AlertRulesTests(TestCase):
    """C{monitoring/alerts.yml} names only metrics the server has."""

    async def test_rules_name_real_metrics(self):
        """
        Every C{lairchat_*} series an alert rule reads is one a running
        server exposes (so renaming a metric cannot silently disarm a rule).
        """
        import re
        from pathlib import Path

        rules = (Path(__file__).resolve().parents[1] / "monitoring" / "alerts.yml").read_text()
        named = set(re.findall(r"\b(lairchat_[a-z_]+)", rules))
        self.assertGreater(len(named), 5)
        await fresh_database(self)
        running = await RunningServer(self, TEST_CONFIG).start()
        registry = running.server.metrics.registry
        # the embedded database's watchdog runs only without --dsn
        running.server.metrics.watch_embedded(type("Watchdog", (), {"restarts": 0, "failures": 0})())
        families = {family.name for family in registry.collect()}
        series = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in named}
        self.assertEqual(series - families, set())
        # an expression goes on over the lines indented deeper than its "expr:"
        for indent, expression in re.findall(r"^( *)expr: (.*(?:\n\1  .*)*)", rules, re.M):
            self.assertEqual(expression.count("("), expression.count(")"), expression)
