"""
Password guessing and the fair hasher, end to end: the real service on a
TCP port, clients bound to several loopback source addresses (127.0.0.N),
a real Postgres.  No test depends on how long anything takes: delays are
set long enough that the tests finish well inside them, and the hasher is
held by a gate the test opens.
"""

import threading
from typing import Any

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from lairchat.addresses import Networks
from lairchat.login_throttle import ThrottleRule
from tests.support import fresh_store, start_server

PASSWORD = "correct horse 9"
WRONG = "wrong horse 9"

LONG = dict(login_delay_seconds=600)
"""Settings whose first delay outlasts any test."""


class CountingHasher:
    """The server's argon2 hasher, counting real password checks (from pool threads)."""

    def __init__(self, hasher: Any) -> None:
        self.hasher = hasher
        self.checks = 0
        self._lock = threading.Lock()

    def hash(self, password: str) -> str:
        """Hash as usual."""
        return self.hasher.hash(password)

    def verify(self, password_hash: str, password: str) -> bool:
        """Check as usual, counted."""
        with self._lock:
            self.checks += 1
        return self.hasher.verify(password_hash, password)


class GatedHasher(CountingHasher):
    """Hashes (not checks) wait in their pool thread until the test opens the gate."""

    def __init__(self, hasher: Any) -> None:
        super().__init__(hasher)
        self.gate = threading.Event()
        self.started = 0

    def hash(self, password: str) -> str:
        """Wait for the gate, then hash."""
        with self._lock:
            self.started += 1
        self.gate.wait(30)
        return self.hasher.hash(password)


async def audit(client: Any, limit: int = 50) -> list[list[str]]:
    """The audit log's lines, split into fields (newest first)."""
    reply = await client.ok(f"AUDIT_LOG:{limit}")
    return [line.split(":", 6) for line in reply[:-1]]


class GuessingEndToEndTests(TestCase):
    """The throttle per account and address, and per address."""

    async def test_owner_from_elsewhere_is_not_locked_out(self):
        """
        Five wrong guesses from 127.0.0.1 throttle that address for alice
        (1005 saying until when, even for the right password); alice from
        127.0.0.2 logs in, and her token resumes from 127.0.0.1 meanwhile.
        """
        server = await start_server(self, **LONG)
        await server.user("alice", source="127.0.0.2")
        owner = await server.connect("127.0.0.2")
        token = (await owner.ok(f"LOGIN:alice:{PASSWORD}"))[-1].split(":")[3]
        guesser = await server.connect("127.0.0.1")
        for _ in range(4):
            reply = await guesser.request(f"LOGIN:alice:{WRONG}")
            self.assertTrue(reply[-1].startswith("ERROR:1004:"), reply)
        reply = await guesser.request(f"LOGIN:alice:{WRONG}")
        self.assertRegex(reply[-1], r"^ERROR:1005:ACCOUNT_LOCKED:.*try again after \d{4}-\d\d-\d\dT[\d:]+Z \(in \d+ s\)$")
        reply = await guesser.request(f"LOGIN:alice:{PASSWORD}")
        self.assertTrue(reply[-1].startswith("ERROR:1005:ACCOUNT_LOCKED:"), reply)
        elsewhere = await server.connect("127.0.0.2")
        await elsewhere.ok(f"LOGIN:alice:{PASSWORD}")
        self.assertEqual(await guesser.request(f"RESUME:{token}"), ["OK:RESUME:alice"])
        # bob from the guessing address is not throttled by alice's key
        await server.user("bob", source="127.0.0.3")
        other = await server.connect("127.0.0.1")
        await other.ok(f"LOGIN:bob:{PASSWORD}")

    async def test_parallel_guesses_get_at_most_the_limit(self):
        """
        Twenty connections from one address guess at once: no more real
        password checks than the threshold; the rest are refused (1005).
        """
        server = await start_server(self, **LONG)
        await server.user("alice", source="127.0.0.2")
        hasher = server.server.passwords.hasher = CountingHasher(server.server.passwords.hasher)
        clients = [await server.connect("127.0.0.1") for _ in range(20)]
        replies = await gatherResults([
            Deferred.fromCoroutine(client.request(f"LOGIN:alice:{WRONG}", timeout=60)) for client in clients
        ])
        codes = sorted(reply[-1].split(":")[1] for reply in replies)
        self.assertLessEqual(hasher.checks, server.config.lockout_threshold)
        self.assertEqual(codes.count("1004") + codes.count("1005"), 20, codes)
        self.assertLessEqual(codes.count("1004"), server.config.lockout_threshold)

    async def test_address_across_accounts(self):
        """
        One address failing at several accounts is refused at the next,
        and told so; another address is not; an exempt address never is.
        """
        server = await start_server(self, address_lockout_threshold=3, exempt_networks=Networks(["127.0.0.9"]), **LONG)
        await server.user("alice", source="127.0.0.2")
        guesser = await server.connect("127.0.0.1")
        exempt = await server.connect("127.0.0.9")
        for name in ("carol", "dave"):
            self.assertTrue((await guesser.request(f"LOGIN:{name}:{WRONG}"))[-1].startswith("ERROR:1004:"))
        reply = await guesser.request(f"LOGIN:erin:{WRONG}")
        self.assertRegex(reply[-1], r"^ERROR:1005:ACCOUNT_LOCKED:too many failed logins from your address;")
        reply = await guesser.request(f"LOGIN:alice:{PASSWORD}")
        self.assertRegex(reply[-1], r"^ERROR:1005:ACCOUNT_LOCKED:too many failed logins from your address;")
        for name in ("carol", "dave", "erin", "frank"):
            self.assertTrue((await exempt.request(f"LOGIN:{name}:{WRONG}"))[-1].startswith("ERROR:1004:"))
        await exempt.ok(f"LOGIN:alice:{PASSWORD}")

    async def test_audit_tells_owner_from_attacker(self):
        """
        Failures name their address; refusals come as one counted summary
        per key per minute; the owner's login names hers.
        """
        server = await start_server(self, admins=("root_user",), **LONG)
        root = await server.user("root_user", source="127.0.0.5")
        await server.user("alice", source="127.0.0.2")
        guesser = await server.connect("127.0.0.1")
        for _ in range(5):
            await guesser.request(f"LOGIN:alice:{WRONG}")
        for _ in range(7):
            reply = await guesser.request(f"LOGIN:alice:{WRONG}")
            self.assertTrue(reply[-1].startswith("ERROR:1005:"), reply)
        owner = await server.connect("127.0.0.2")
        await owner.ok(f"LOGIN:alice:{PASSWORD}")
        lines = [line[2:] for line in await audit(root) if line[2] == "alice"]
        self.assertEqual(lines[0], ["alice", "login", "alice", "ok", "from 127.0.0.2"])
        refused = [line for line in lines if line[3] == "refused"]
        self.assertEqual(refused, [["alice", "login", "alice", "refused",
                                    "refused 1 attempt from 127.0.0.1: too many failed logins"]])
        failed = [line for line in lines if line[3] == "failed"]
        self.assertEqual(failed, [["alice", "login", "alice", "failed", "bad credentials from 127.0.0.1"]] * 5)


class ThrottleStoreTests(TestCase):
    """L{lairchat.store.logins} against the real database."""

    async def test_parallel_reservations(self):
        """Twenty reservations at once on one key: exactly the threshold are allowed."""
        store = await fresh_store(self)
        rule = ThrottleRule(threshold=5, first_delay=60, cap=900, forget=86400)
        whole = ThrottleRule(threshold=100, first_delay=60, cap=900, forget=3600)
        reservations = await gatherResults([
            Deferred.fromCoroutine(store.logins.reserve("Alice", "10.0.0.1", 1_000_000, rule, whole))
            for _ in range(20)
        ])
        self.assertEqual(sum(r.allowed for r in reservations), 5)
        self.assertEqual((await store.logins.state("alice", "10.0.0.1")).failures, 5)
        self.assertEqual((await store.logins.state(None, "10.0.0.1")).failures, 5)
        await store.logins.release("alice", "10.0.0.1", rule, whole, correct=True)
        self.assertEqual((await store.logins.state("alice", "10.0.0.1")).failures, 0)
        self.assertEqual((await store.logins.state(None, "10.0.0.1")).failures, 4)
        # alice's key keeps refusals to report; the address's key goes
        self.assertEqual(await store.logins.forget_before(2_000_000, 2_000_000), 1)
        self.assertIsNone(await store.logins.state(None, "10.0.0.1"))
        self.assertEqual((await store.logins.state("alice", "10.0.0.1")).refused, 14)


class FairHasherEndToEndTests(TestCase):
    """One address's flood of REGISTERs waits behind another's LOGIN."""

    timeout = 120

    async def test_bystander_login_passes_the_flood(self):
        """
        Thirty REGISTERs from 127.0.0.3 are all held (two hashing, the rest
        queued); a LOGIN from 127.0.0.4 completes meanwhile; once the
        hasher goes on, every REGISTER is answered.
        """
        server = await start_server(self)
        await server.user("alice", source="127.0.0.4")
        passwords = server.server.passwords
        hasher = passwords.hasher = GatedHasher(passwords.hasher)
        self.addCleanup(hasher.gate.set)
        flood = [await server.connect("127.0.0.3") for _ in range(30)]
        registers = [
            Deferred.fromCoroutine(client.request(f"REGISTER:flood{n}:{PASSWORD}", timeout=60))
            for n, client in enumerate(flood)
        ]
        bystander = await server.connect("127.0.0.4")
        for _ in range(1000):
            if len(passwords.queue) == 28:
                break
            await bystander.ok("PING")
        self.assertEqual(passwords.queue.held_by("127.0.0.3"), 2)
        await bystander.ok(f"LOGIN:alice:{PASSWORD}")
        self.assertEqual([d.called for d in registers], [False] * 30)
        hasher.gate.set()
        replies = await gatherResults(registers)
        self.assertEqual(sorted(r[-1].split(":")[0] for r in replies), ["OK"] * 30)
