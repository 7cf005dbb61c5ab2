"""
Tests for L{lairchat.tap.Options}: the command line of C{twistd lairchat}.
"""

import gc

from twisted.logger import Logger
from twisted.python import usage
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from lairchat.context import Config
from lairchat.tap import (
    FILE_RESERVE,
    LairchatService,
    Options,
    connection_total,
    freeze_startup_heap,
    makeService,
    raise_file_limit,
)


def parse(*arguments: str) -> Options:
    """Options parsed from C{arguments}."""
    options = Options()
    options.parseOptions(list(arguments))
    return options


class DefaultsTests(SynchronousTestCase):
    """
    With no arguments, the documented defaults.
    """

    def test_defaults(self):
        """
        Port tcp:8080, the data directory, the server name, and numbers
        as numbers.
        """
        options = parse()
        self.assertEqual(options["port"], ["tcp:8080"])
        self.assertEqual(options["admin"], [])
        self.assertIsNone(options["dsn"])
        self.assertEqual(options["data-dir"], "./lairchat-data")
        self.assertEqual(options["server-name"], "lair")
        self.assertEqual(options["max-line"], 16384)
        self.assertEqual(options["pool-size"], 4)
        self.assertEqual(options["session-ttl"], 604800)
        self.assertEqual(options["invite-ttl"], 604800)
        self.assertEqual(options["sweep-interval"], 60.0)
        self.assertEqual(options["invite-retention"], 7776000)
        self.assertEqual(options["max-output-buffer"], 1048576)
        self.assertFalse(options["no-rate-limit"])
        self.assertEqual(options["flood-backlog"], 30.0)
        self.assertEqual(options["registrations-per-hour"], 5)

    def test_default_config(self):
        """
        The default options make the default L{Config}.
        """
        self.assertEqual(parse().config(), Config())

    def test_fresh_lists(self):
        """
        Repeatable options do not leak from one parse into the next.
        """
        parse("--port", "tcp:1234", "--admin", "alice")
        self.assertEqual(parse()["port"], ["tcp:8080"])
        self.assertEqual(parse()["admin"], [])


class ValuesTests(SynchronousTestCase):
    """
    Values given on the command line, and how they reach the L{Config}.
    """

    def test_repeatable_port(self):
        """
        C{--port} may be given more than once; the default is then not
        added.
        """
        options = parse("--port", "tcp:8081", "--port", "tcp:8082:interface=127.0.0.1")
        self.assertEqual(options["port"], ["tcp:8081", "tcp:8082:interface=127.0.0.1"])

    def test_repeatable_admin(self):
        """
        C{--admin} may be given more than once.
        """
        options = parse("--admin", "alice", "--admin", "Bob_2")
        self.assertEqual(options["admin"], ["alice", "Bob_2"])
        self.assertEqual(options.config().admins, ("alice", "Bob_2"))

    def test_repeatable_exempt_network(self):
        """
        C{--exempt-network} may be given more than once, as networks or
        single addresses; the config holds them all.
        """
        options = parse("--exempt-network", "10.0.0.0/8", "--exempt-network", "127.0.0.1")
        exempt = options.config().exempt_networks
        self.assertIn("10.200.0.1", exempt)
        self.assertIn("127.0.0.1", exempt)
        self.assertNotIn("127.0.0.2", exempt)
        self.assertFalse(parse().config().exempt_networks)

    def test_config(self):
        """
        Every setting reaches the L{Config} field of the same meaning.
        """
        options = parse(
            "--server-name", "den",
            "--max-line", "2048",
            "--session-ttl", "3600",
            "--invite-ttl", "7200",
            "--sweep-interval", "0.5",
            "--invite-retention", "86400",
            "--max-output-buffer", "65536",
            "--admin", "root_user",
            "--no-rate-limit",
            "--flood-backlog", "12.5",
            "--registrations-per-hour", "2",
        )
        self.assertEqual(
            options.config(),
            Config(
                server_name="den",
                max_line=2048,
                session_ttl=3600,
                invite_ttl=7200,
                sweep_interval=0.5,
                invite_retention=86400,
                max_output_buffer=65536,
                admins=("root_user",),
                rate_limits=False,
                flood_backlog=12.5,
                registrations_per_hour=2,
            ),
        )

    def test_smallest_values(self):
        """
        The smallest accepted value of each setting is accepted.
        """
        options = parse("--max-line", "64", "--pool-size", "1", "--session-ttl", "60",
                        "--max-output-buffer", "4096", "--sweep-interval", "0.05",
                        "--invite-ttl", "1", "--invite-retention", "1")
        self.assertEqual((options["max-line"], options["pool-size"], options["sweep-interval"]), (64, 1, 0.05))

    def test_make_service(self):
        """
        C{makeService} builds a L{LairchatService} over the options, without
        starting it.
        """
        options = parse("--port", "tcp:0", "--dsn", "dbname=x", "--pool-size", "2", "--data-dir", "/tmp/x")
        service = makeService(options)
        self.assertIsInstance(service, LairchatService)
        self.assertEqual((service.endpoints, service.dsn, service.pool_size, service.data_dir),
                         (["tcp:0"], "dbname=x", 2, "/tmp/x"))
        self.assertEqual(service.config, options.config())
        self.assertFalse(service.running)

    def test_server_process_freezes_its_heap(self):
        """
        The service C{twistd lairchat} starts freezes its heap once started;
        one built otherwise (the tests start many in one process) does not.
        """
        self.assertTrue(makeService(parse("--dsn", "dbname=x")).freeze_heap)
        self.assertFalse(LairchatService(Config(), ["tcp:0"], dsn="dbname=x").freeze_heap)


class FreezeStartupHeapTests(SynchronousTestCase):
    """
    L{freeze_startup_heap} leaves the objects alive when it is called out
    of later garbage collections.
    """

    def test_frozen(self):
        """
        An object alive before the call is no longer among those the
        collector walks; one made after it is; collection stays on.
        """
        self.addCleanup(gc.unfreeze)
        before = ["alive before"]
        freeze_startup_heap(Logger(observer=lambda event: None))
        after = ["made after"]
        walked = gc.get_objects()
        self.assertFalse(any(o is before for o in walked))
        self.assertTrue(any(o is after for o in walked))
        self.assertGreater(gc.get_freeze_count(), 0)
        self.assertTrue(gc.isenabled())


class BadValuesTests(SynchronousTestCase):
    """
    Every bad value is a L{usage.UsageError} (twistd prints the usage and
    exits non-zero).
    """

    def assertRefused(self, *arguments: str) -> usage.UsageError:
        """Parsing C{arguments} raises L{usage.UsageError}."""
        return self.assertRaises(usage.UsageError, parse, *arguments)

    def test_not_numbers(self):
        """
        A word, a fraction or nothing where a whole number goes is refused,
        naming the option.
        """
        for name in ["max-line", "pool-size", "session-ttl", "invite-ttl", "invite-retention",
                     "max-output-buffer", "registrations-per-hour"]:
            for value in ["nope", "1.5", "", "0x10"]:
                error = self.assertRefused(f"--{name}", value)
                self.assertIn(f"--{name}", str(error))

    def test_too_small(self):
        """
        Values under each minimum are refused, zero and negatives included.
        """
        for name, value in [("max-line", "63"), ("pool-size", "0"), ("session-ttl", "59"),
                            ("invite-ttl", "0"), ("invite-retention", "-1"), ("max-output-buffer", "4095"),
                            ("sweep-interval", "0.01"), ("sweep-interval", "-5"), ("flood-backlog", "0.5"),
                            ("registrations-per-hour", "-1")]:
            error = self.assertRefused(f"--{name}", value)
            self.assertIn("at least", str(error))

    def test_sweep_interval_not_a_number(self):
        """
        The sweep interval must be a finite number: words, NaN and infinity
        are refused.
        """
        for value in ["soon", "nan", "NaN", "inf", "-inf", "infinity"]:
            self.assertRefused("--sweep-interval", value)

    def test_node_timeout(self):
        """
        The node timeout is a finite number of seconds, at least one; it
        reaches the service (which heartbeats five times per timeout).
        """
        for value in ["soon", "nan", "inf", "0.5", "0", "-3"]:
            self.assertRefused("--node-timeout", value)
        options = parse("--node-timeout", "2.5")
        self.assertEqual(makeService(options).node_timeout, 2.5)
        self.assertEqual(makeService(parse()).node_timeout, 10.0)

    def test_invalid_endpoint(self):
        """
        A C{--port} that is not a server endpoint, or whose port number is
        out of range, is refused (before anything starts).
        """
        for endpoint in ["8080x", "bogus:1", "tcp:notaport", "tcp:", "tcp:65536", "tcp:-1", "tcp6:99999"]:
            error = self.assertRefused("--port", endpoint)
            self.assertIn("--port", str(error))

    def test_invalid_admin(self):
        """
        A C{--admin} that is no valid username is refused.
        """
        for name in ["ab", "1alice", "al ice", "a" * 21, ""]:
            error = self.assertRefused("--admin", name)
            self.assertIn("--admin", str(error))

    def test_invalid_exempt_network(self):
        """
        A C{--exempt-network} that is no network is refused.
        """
        for network in ["10.0.0.0/33", "lair", "", "300.1.1.1"]:
            error = self.assertRefused("--exempt-network", network)
            self.assertIn("--exempt-network", str(error))

    def test_unknown_option(self):
        """
        An option lairchat does not have is refused.
        """
        self.assertRefused("--colour", "blue")


class ConnectionOptionsTests(SynchronousTestCase):
    """
    The connection limits, the login timeout and keepalive: defaults,
    values, bad values.
    """

    def test_defaults(self):
        """
        32 connections per address, 20 new ones per 10 s, no total of its
        own (the file limit decides at start), a 120 s login timeout,
        keepalive 60/10/6 and a 120 s user timeout.
        """
        options = parse()
        self.assertEqual(
            [options[name] for name in ["max-connections-per-ip", "max-new-connections-per-ip",
                                        "new-connection-window", "max-connections", "login-timeout",
                                        "keepalive-idle", "keepalive-interval", "keepalive-count",
                                        "tcp-user-timeout"]],
            [32, 20, 10.0, None, 120.0, 60, 10, 6, 120.0],
        )
        config = options.config()
        self.assertEqual((config.max_connections_per_ip, config.new_connections_per_ip, config.new_connection_window,
                          config.max_connections, config.login_timeout),
                         (32, 20, 10.0, None, 120.0))
        self.assertEqual((config.keepalive_idle, config.keepalive_interval, config.keepalive_count,
                          config.tcp_user_timeout), (60, 10, 6, 120.0))

    def test_values(self):
        """Every value reaches its L{Config} field."""
        config = parse(
            "--max-connections-per-ip", "4", "--max-new-connections-per-ip", "7", "--new-connection-window", "2.5",
            "--max-connections", "500", "--login-timeout", "0.5", "--keepalive-idle", "0",
            "--keepalive-interval", "3", "--keepalive-count", "2", "--tcp-user-timeout", "0",
        ).config()
        self.assertEqual(
            config,
            Config(max_connections_per_ip=4, new_connections_per_ip=7, new_connection_window=2.5,
                   max_connections=500, login_timeout=0.5, keepalive_idle=0, keepalive_interval=3,
                   keepalive_count=2, tcp_user_timeout=0.0),
        )

    def test_bad_values(self):
        """Words, fractions where whole numbers go, and values under each minimum are refused."""
        for name, value in [
            ("max-connections-per-ip", "0"), ("max-connections-per-ip", "many"), ("max-connections-per-ip", "1.5"),
            ("max-new-connections-per-ip", "0"), ("new-connection-window", "0"), ("new-connection-window", "nan"),
            ("max-connections", "0"), ("max-connections", "-1"), ("max-connections", "lots"),
            ("login-timeout", "0"), ("login-timeout", "-1"), ("login-timeout", "inf"), ("login-timeout", "soon"),
            ("keepalive-idle", "-1"), ("keepalive-interval", "0"), ("keepalive-count", "0"),
            ("tcp-user-timeout", "-1"), ("tcp-user-timeout", "nan"),
        ]:
            error = self.assertRaises(usage.UsageError, parse, f"--{name}", value)
            self.assertIn(f"--{name}", str(error))


class FakeResource:
    """A double of the L{resource} module's file limits."""

    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft: int, hard: int, refuse: bool = False) -> None:
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which: int) -> tuple[int, int]:
        """The limits."""
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which: int, limits: tuple[int, int]) -> None:
        """Set the limits, or refuse as a system may."""
        assert which == self.RLIMIT_NOFILE
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


class FileLimitTests(SynchronousTestCase):
    """The soft open-file limit is raised at start and the total kept under it."""

    def test_raised(self):
        """The soft limit goes up to the hard one; both are reported."""
        resource = FakeResource(1024, 524288)
        self.assertEqual(raise_file_limit(resource), (1024, 524288, 524288))
        self.assertEqual(resource.limits, (524288, 524288))

    def test_refused(self):
        """A system that will not raise it leaves the soft limit as it was."""
        self.assertEqual(raise_file_limit(FakeResource(1024, 4096, refuse=True)), (1024, 1024, 4096))

    def test_total(self):
        """
        The total is the soft limit minus the reserve, or the option's
        value when lower; never above the ceiling, never under 1.
        """
        self.assertEqual(connection_total(None, 1024), 1024 - FILE_RESERVE)
        self.assertEqual(connection_total(100, 1024), 100)
        self.assertEqual(connection_total(5000, 1024), 1024 - FILE_RESERVE)
        self.assertEqual(connection_total(None, 10), 1)
        self.assertIsNone(connection_total(None, -1))
        self.assertEqual(connection_total(77, None), 77)

    def test_real(self):
        """On this system the soft limit ends up at the hard one (or as high as allowed)."""
        before, soft, hard = raise_file_limit()
        if before is None:
            raise SkipTest("no RLIMIT_NOFILE here")
        self.assertGreaterEqual(soft, before)
