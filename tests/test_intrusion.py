"""
Tests of intrusion detection: the blocks table against the real database,
and scoring, blocking, refusing and lifting over real TCP from several
loopback addresses.
"""

from twisted.trial.unittest import SynchronousTestCase, TestCase

from lairchat.addresses import Networks
from lairchat.suspicion import SuspicionRules
from tests.support import fresh_store, start_nodes, start_server

DETECTING = {"suspicion": SuspicionRules(), "admins": ("root_user",)}
"""Config overrides: intrusion detection with its defaults, and an admin."""

BAD_LINE = b"HELLO\x01THERE"
"""A line with a control character: malformed, 2 points."""


async def storm(client, lines: int = 20) -> list[str]:
    """
    Send malformed lines and read until the 1401 line that blocks the
    address, then wait for the close; the lines read.
    """
    for _ in range(lines):
        client.send(BAD_LINE)
    read = [await client.line()]
    while not read[-1].startswith("ERROR:1401:"):
        read.append(await client.line())
    await client.closed
    return read


class BlockStoreTests(TestCase):
    """L{lairchat.store.blocks.BlockStore} against the real database."""

    async def test_block_and_lift(self):
        """A block is in force until lifted; both are audited."""
        store = await fresh_store(self)
        block = await store.blocks.block("10.0.0.1", 60, "testing", "root")
        self.assertEqual((block.address, block.reason, block.blocked_by, block.strikes), ("10.0.0.1", "testing", "root", 0))
        self.assertEqual([b.address for b in await store.blocks.active()], ["10.0.0.1"])
        self.assertTrue(await store.blocks.lift("10.0.0.1", "root"))
        self.assertFalse(await store.blocks.lift("10.0.0.1", "root"))
        self.assertEqual(await store.blocks.active(), [])
        audit = [(e.actor, e.action, e.target) for e in await store.audit.latest(5)]
        self.assertEqual(audit, [("root", "unblock", "10.0.0.1"), ("root", "block", "10.0.0.1")])

    async def test_strikes_lengthen(self):
        """A second block within a day is a second strike and lasts twice as long."""
        store = await fresh_store(self)
        rules = SuspicionRules(block_seconds=100)
        first = await store.blocks.block("10.0.0.2", None, "x", "server", rules)
        await store.blocks.lift("10.0.0.2", "root")
        second = await store.blocks.block("10.0.0.2", None, "x", "server", rules)
        self.assertEqual((first.strikes, second.strikes), (0, 1))
        # 200 s from the second block against 100 s from the first
        self.assertGreater(second.until_ms - first.until_ms, 90_000)

    async def test_keeps_later_end(self):
        """Blocking a blocked address again never shortens its block."""
        store = await fresh_store(self)
        long = await store.blocks.block("10.0.0.3", 3600, "x", "root")
        again = await store.blocks.block("10.0.0.3", 10, "y", "root")
        self.assertEqual(again.until_ms, long.until_ms)


    async def test_forget_old(self):
        """Blocks that ended and began over a day ago are forgotten; others are kept."""
        store = await fresh_store(self)
        await store.blocks.block("10.0.0.4", 60, "x", "root")
        await store.blocks.block("10.0.0.5", 60, "x", "root")
        await store.db.execute(
            "UPDATE address_blocks SET blocked_at = now() - interval '3 days',"
            " blocked_until = now() - interval '2 days' WHERE address = '10.0.0.4'"
        )
        self.assertEqual(await store.blocks.forget_old(), 1)
        rows = await store.db.fetchall("SELECT address FROM address_blocks")
        self.assertEqual(rows, [("10.0.0.5",)])


class IntrusionEndToEndTests(TestCase):
    """Scoring, blocking and lifting over real TCP."""

    async def test_malformed_storm_blocks(self):
        """
        A storm of malformed lines from one address closes it with 1401;
        a new connection from it is refused; another address is served.
        """
        server = await start_server(self, **DETECTING)
        attacker = await server.connect("127.0.0.5")
        read = await storm(attacker)
        self.assertTrue(attacker.is_closed)
        self.assertTrue(read[-1].startswith("ERROR:1401:SECURITY_VIOLATION:your address is blocked until "), read)
        self.assertIn("malformed line", read[-1])
        self.assertTrue(all(line.startswith("ERROR:1114:") for line in read[:-1]), read)
        refused = await server.connect_refused("127.0.0.5")
        self.assertTrue(refused.startswith("ERROR:1401:SECURITY_VIOLATION:your address is blocked until "), refused)
        bystander = await server.connect("127.0.0.6")
        self.assertEqual(await bystander.request("PING"), ["OK:PING"])

    async def test_guessing_across_accounts_blocks(self):
        """
        Wrong passwords for many accounts from one address (3 points each;
        no fading here) get it blocked at the tenth; the owners, elsewhere,
        still log in.
        """
        server = await start_server(self, **dict(DETECTING, suspicion=SuspicionRules(half_life=1e12)))
        for i in range(10):
            await server.user(f"owner{i}", source="127.0.0.2")
        guesser = await server.connect("127.0.0.9")
        for i in range(10):
            reply = await guesser.request(f"LOGIN:owner{i}:not the password 1")
            self.assertTrue(reply[0].startswith("ERROR:1004:"), reply)
        line = await guesser.line()
        self.assertTrue(line.startswith("ERROR:1401:SECURITY_VIOLATION:"), line)
        self.assertIn("failed login", line)
        await guesser.closed
        self.assertTrue((await server.connect_refused("127.0.0.9")).startswith("ERROR:1401:"))
        owner = await server.connect("127.0.0.3")
        self.assertTrue((await owner.request("LOGIN:owner0:correct horse 9"))[-1].startswith("OK:LOGIN:"))

    async def test_admin_lists_and_lifts(self):
        """
        LIST_BLOCKS shows the block; UNBLOCK_ADDRESS lifts it (audited);
        the address may connect again.
        """
        server = await start_server(self, **DETECTING)
        root = await server.user("root_user", source="127.0.0.2")
        await storm(await server.connect("127.0.0.5"))
        reply = await root.request("LIST_BLOCKS")
        self.assertEqual(reply[-1], "OK:LIST_BLOCKS:1")
        kind, until, by, strike, reason, address = reply[0].split(":", 5)
        self.assertEqual((kind, by, strike, address), ("BLOCKED", "server", "1", "127.0.0.5"))
        self.assertIn("malformed line", reason)
        self.assertEqual(await root.request("UNBLOCK_ADDRESS:127.0.0.5"), ["OK:UNBLOCK_ADDRESS:127.0.0.5"])
        reply = await root.request("UNBLOCK_ADDRESS:127.0.0.5")
        self.assertTrue(reply[0].startswith("ERROR:1501:NOT_FOUND:"), reply)
        again = await server.connect("127.0.0.5")
        self.assertEqual(await again.request("PING"), ["OK:PING"])
        audit = [line.split(":")[2:5] for line in (await root.request("AUDIT_LOG:3"))[:-1]]
        self.assertIn(["root_user", "unblock", "127.0.0.5"], audit)
        self.assertIn(["server", "block", "127.0.0.5"], audit)

    async def test_admin_blocks(self):
        """BLOCK_ADDRESS closes the address's connections at once, with 1401."""
        server = await start_server(self, **DETECTING)
        root = await server.user("root_user", source="127.0.0.2")
        victim = await server.user("mallory", source="127.0.0.7")
        reply = await root.request("BLOCK_ADDRESS:60:127.0.0.7")
        self.assertTrue(reply[0].startswith("OK:BLOCK_ADDRESS:") and reply[0].endswith(":127.0.0.7"), reply)
        line = await victim.event("ERROR:1401:")
        self.assertIn("blocked by root_user", line)
        await victim.closed
        for bad, code in (("BLOCK_ADDRESS:60:127.0.0.2", "1111"), ("BLOCK_ADDRESS:60:lair", "1112"),
                          ("BLOCK_ADDRESS:0:127.0.0.9", "1111"), ("UNBLOCK_ADDRESS:300.1.1.1", "1112")):
            reply = await root.request(bad)
            self.assertTrue(reply[0].startswith(f"ERROR:{code}:"), (bad, reply))
        mallory = await server.user("bob", source="127.0.0.8")
        for line in ("LIST_BLOCKS", "BLOCK_ADDRESS:60:127.0.0.9", "UNBLOCK_ADDRESS:127.0.0.7"):
            self.assertEqual(await mallory.request(line), ["ERROR:1002:PERMISSION_DENIED:only server admins can do that"])

    async def test_exempt_never_blocked(self):
        """An address in an exempt network storms without being blocked, and admins cannot block it."""
        server = await start_server(self, exempt_networks=Networks(("127.0.0.5/32",)), **DETECTING)
        client = await server.connect("127.0.0.5")
        for _ in range(40):
            client.send(BAD_LINE)
        for _ in range(40):
            self.assertTrue((await client.line()).startswith("ERROR:1114:"))
        self.assertEqual(await client.request("PING"), ["OK:PING"])
        root = await server.user("root_user", source="127.0.0.2")
        reply = await root.request("BLOCK_ADDRESS:60:127.0.0.5")
        self.assertTrue(reply[0].startswith("ERROR:1111:"), reply)

    async def test_block_reaches_other_nodes(self):
        """A block made on one node closes and refuses the address on another."""
        first, second = await start_nodes(self, 2, **DETECTING)
        elsewhere = await second.user("mallory", source="127.0.0.5")
        await storm(await first.connect("127.0.0.5"))
        line = await elsewhere.event("ERROR:1401:")
        self.assertIn("blocked until", line)
        await elsewhere.closed
        refused = await second.connect_refused("127.0.0.5")
        self.assertTrue(refused.startswith("ERROR:1401:"), refused)


class _Blocks:
    """A double of the blocks store whose Deferreds have fired."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.made: list = []

    async def block(self, address, seconds, reason, blocked_by, rules=None):
        """Record the block; it lasts as the rules say."""
        from lairchat.models import AddressBlock

        duration = seconds if seconds is not None else rules.block_duration(0)
        block = AddressBlock(address, reason, blocked_by, int((self.clock.seconds() + duration) * 1000))
        self.made.append(block)
        return block


class IntrusionDetectorTests(SynchronousTestCase):
    """L{IntrusionDetector} on a Clock over a store double."""

    def setUp(self) -> None:
        from twisted.internet.task import Clock

        from lairchat.intrusion import IntrusionDetector

        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.store = type("Store", (), {})()
        self.store.blocks = _Blocks(self.clock)
        self.closed: list = []
        self.detector = IntrusionDetector(self.store, self.clock, Networks(("10.9.0.0/16",)),
                                          SuspicionRules(threshold=10, block_seconds=60))
        self.detector.add_front_end(lambda address, error: self.closed.append((address, error.code)))

    def test_blocks_at_threshold(self) -> None:
        """The act that reaches the threshold blocks: connections close, new ones are refused."""
        for _ in range(4):
            self.detector.note("10.0.0.1", "malformed_line")
        self.assertIsNone(self.detector.refusal("10.0.0.1"))
        self.detector.note("10.0.0.1", "malformed_line")
        self.assertEqual(self.closed, [("10.0.0.1", 1401)])
        self.assertEqual(self.detector.refusal("10.0.0.1").code, 1401)
        self.assertIsNone(self.detector.refusal("10.0.0.2"))

    def test_block_ends(self) -> None:
        """A block ends at its time; the address is let in again."""
        self.detector.note("10.0.0.1", "flood")
        self.clock.advance(59)
        self.assertIsNotNone(self.detector.refusal("10.0.0.1"))
        self.clock.advance(1)
        self.assertIsNone(self.detector.refusal("10.0.0.1"))

    def test_exempt_and_unknown(self) -> None:
        """Exempt and unknown addresses are never scored nor blocked."""
        for address in ("10.9.1.1", "unknown", None):
            for _ in range(10):
                self.detector.note(address, "flood")
            self.assertIsNone(self.detector.refusal(address))
        self.assertEqual(self.store.blocks.made, [])

    def test_blocked_once(self) -> None:
        """Acts of an address already blocked make no second block."""
        for _ in range(5):
            self.detector.note("10.0.0.1", "flood")
        self.assertEqual(len(self.store.blocks.made), 1)
