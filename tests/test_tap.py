"""
Tests for L{lairchat.tap.Options}: the command line of C{twistd lairchat}.
"""

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from lairchat.context import Config
from lairchat.tap import LairchatService, Options, makeService


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
