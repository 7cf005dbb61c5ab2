"""
Tests for password hashing (L{lairchat.passwords}): the fair, bounded
queue of hashing slots, alone and under L{Passwords}, with a thread pool
the test runs by hand and a L{Clock}.
"""

from collections import Counter

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.errors import RateLimited
from lairchat.passwords import FairQueue, Passwords, QueueFull


class HandRunPool:
    """A thread pool whose jobs run when the test says so."""

    def __init__(self) -> None:
        self.jobs: list = []

    def callInThreadWithCallback(self, on_result, work, *args, **kwargs):
        """Keep the job."""
        self.jobs.append((on_result, work, args, kwargs))

    def run(self, index: int = 0) -> None:
        """Run one kept job (the oldest by default) and report its result."""
        on_result, work, args, kwargs = self.jobs.pop(index)
        on_result(True, work(*args, **kwargs))


class ThreadlessReactor(Clock):
    """A L{Clock} that runs what threads hand back at once."""

    def callFromThread(self, f, *args, **kwargs):
        """Run C{f} now."""
        f(*args, **kwargs)


class ReadableHasher:
    """An argon2 stand-in: instant, readable, and counting its checks."""

    def __init__(self) -> None:
        self.checks = 0

    def hash(self, password: str) -> str:
        """A readable hash."""
        return "hash:" + password

    def verify(self, password_hash: str, password: str) -> bool:
        """Whether it matches; counted."""
        self.checks += 1
        return password_hash == "hash:" + password


class FairQueueTests(SynchronousTestCase):
    """L{FairQueue}: slots, caps, bounds, and the round-robin order."""

    def served(self, queue: FairQueue, key: str, order: list) -> Deferred:
        """Ask for a slot for C{key}; note C{key} in C{order} when it is given."""
        d = queue.ask(key)
        d.addCallback(lambda _: order.append(key))
        return d

    def test_free_slot_at_once(self):
        """A free slot is given at once."""
        queue = FairQueue(slots=2, per_address=1)
        self.successResultOf(queue.ask("a"))
        self.assertEqual((queue.busy(), len(queue)), (1, 0))

    def test_per_address_cap(self):
        """An address holds no more than its share, even with slots free; others get them."""
        queue, order = FairQueue(slots=4, per_address=2), []
        for _ in range(3):
            self.served(queue, "flood", order)
        self.served(queue, "bystander", order)
        self.assertEqual(order, ["flood", "flood", "bystander"])
        self.assertEqual((queue.busy(), len(queue)), (3, 1))
        queue.done("flood")
        self.assertEqual(order, ["flood", "flood", "bystander", "flood"])

    def test_bystander_goes_before_the_flood(self):
        """
        Fifty hashes of one address wait; a bystander who comes after them
        gets the next free slot.
        """
        queue, order = FairQueue(slots=2, per_address=2, limit=100, per_address_limit=100), []
        for _ in range(50):
            self.served(queue, "flood", order)
        self.served(queue, "bystander", order)
        self.assertEqual(order, ["flood", "flood"])
        queue.done("flood")
        self.assertEqual(order[-1], "bystander")

    def test_bounds(self):
        """A full queue, or a full share of it, refuses at once and queues nothing."""
        queue = FairQueue(slots=1, per_address=1, limit=3, per_address_limit=2)
        queue.ask("a")
        queue.ask("a")
        queue.ask("a")
        self.assertRaises(QueueFull, queue.ask, "a")
        queue.ask("b")
        self.assertRaises(QueueFull, queue.ask, "c")
        self.assertEqual(len(queue), 3)

    def test_cancelled_waiter_leaves(self):
        """A waiter that gives up leaves the queue; the slot goes to the next."""
        queue, order = FairQueue(slots=1, per_address=1), []
        queue.ask("a")
        gone = queue.ask("b")
        self.served(queue, "c", order)
        gone.cancel()
        self.failureResultOf(gone)
        self.assertEqual(len(queue), 1)
        queue.done("a")
        self.assertEqual(order, ["c"])

    @given(
        st.lists(st.sampled_from("abcde"), min_size=1, max_size=60),
        st.integers(1, 4),
        st.integers(1, 3),
    )
    def test_every_request_served_within_caps(self, arrivals, slots, per_address):
        """
        With every request queued before any slot frees up, and slots given
        back in the order they were given: every request is served once, and
        no address ever holds more than its share, nor all more slots than
        there are.
        """
        queue = FairQueue(slots=slots, per_address=per_address, limit=1000, per_address_limit=1000)
        order: list = []
        for key in arrivals:
            self.served(queue, key, order)
        given_back = 0
        while given_back < len(order):
            self.assertLessEqual(queue.busy(), slots)
            for key in set(order):
                self.assertLessEqual(queue.held_by(key), per_address)
            queue.done(order[given_back])
            given_back += 1
        self.assertEqual(Counter(order), Counter(arrivals))
        self.assertEqual((queue.busy(), len(queue)), (0, 0))

    @given(st.lists(st.sampled_from("abcde"), min_size=1, max_size=60))
    def test_round_robin(self, arrivals):
        """
        With one slot: between two turns of an address, no other address
        has two turns (each waiting address is served once per round).
        """
        queue = FairQueue(slots=1, per_address=1, limit=1000, per_address_limit=1000)
        order: list = []
        for key in arrivals:
            self.served(queue, key, order)
        for given_back in range(len(arrivals)):
            queue.done(order[given_back])
        waited = order[1:]
        for index, key in enumerate(waited):
            if key in waited[index + 1:]:
                between = waited[index + 1:index + 1 + waited[index + 1:].index(key)]
                self.assertEqual(len(between), len(set(between)), (waited, key))


class PasswordsTests(SynchronousTestCase):
    """L{Passwords} through its queue."""

    def setUp(self):
        self.reactor = ThreadlessReactor()
        self.pool = HandRunPool()
        self.hasher = ReadableHasher()
        self.passwords = Passwords(self.reactor, self.pool, self.hasher,
                                   FairQueue(slots=2, per_address=1, limit=3, per_address_limit=2))
        self.waits: list = []
        self.passwords.waited = self.waits.append

    def test_hash_and_verify(self):
        """Hashing and checking go through the pool, and each hash's wait is timed."""
        hashed = Deferred.fromCoroutine(self.passwords.hash("secret 1", "10.0.0.1"))
        self.pool.run()
        self.assertEqual(self.successResultOf(hashed), "hash:secret 1")
        checked = Deferred.fromCoroutine(self.passwords.verify("hash:secret 1", "secret 1", "10.0.0.1"))
        self.pool.run()
        self.assertTrue(self.successResultOf(checked))
        self.assertEqual(self.waits, [0, 0])

    def test_excess_waits_behind_others(self):
        """
        An address over its share waits (the time it waited is timed); a
        later address goes first.
        """
        flood = [Deferred.fromCoroutine(self.passwords.hash(f"pw {n}", "10.0.0.1")) for n in range(3)]
        self.reactor.advance(5)
        bystander = Deferred.fromCoroutine(self.passwords.verify("hash:x", "x", "10.0.0.2"))
        self.assertEqual(len(self.pool.jobs), 2)
        self.pool.run(1)
        self.assertTrue(self.successResultOf(bystander))
        self.assertNoResult(flood[1])
        self.pool.run(0)
        self.assertEqual(self.successResultOf(flood[0]), "hash:pw 0")
        self.pool.run(0)
        self.assertEqual(self.successResultOf(flood[1]), "hash:pw 1")
        self.assertEqual(self.waits, [0, 0, 5, 5])
        self.pool.run(0)
        self.successResultOf(flood[2])

    def test_closed_callers_leave_quietly(self):
        """
        Callers closed without finishing (their coroutines are collected as
        the process winds down): a waiting one leaves the queue, one
        hashing gives its slot back, and the next live caller is served in
        a turn of its own, with no error from a closed coroutine.
        """
        holding = self.passwords.hash("pw 0", "10.0.0.1")
        Deferred.fromCoroutine(_driven(holding))
        waiting = self.passwords.hash("pw 1", "10.0.0.1")
        Deferred.fromCoroutine(_driven(waiting))
        self.assertEqual(len(self.passwords.queue), 1)
        live = Deferred.fromCoroutine(self.passwords.hash("pw 2", "10.0.0.1"))
        self.assertEqual(len(self.passwords.queue), 2)
        waiting.close()
        self.assertEqual(len(self.passwords.queue), 1)
        holding.close()
        self.assertEqual(self.passwords.queue.held_by("10.0.0.1"), 0)
        self.assertEqual(len(self.passwords.queue), 1)
        self.reactor.advance(0)
        self.assertEqual(self.passwords.queue.held_by("10.0.0.1"), 1)
        self.pool.run(len(self.pool.jobs) - 1)
        self.assertEqual(self.successResultOf(live), "hash:pw 2")

    def test_full_queue_refused(self):
        """Past the address's share of the queue: 1110, with a retry time of at least a second."""
        for n in range(3):
            Deferred.fromCoroutine(self.passwords.hash(f"pw {n}", "10.0.0.1"))
        refused = Deferred.fromCoroutine(self.passwords.hash("pw 4", "10.0.0.1"))
        failure = self.failureResultOf(refused, RateLimited)
        self.assertRegex(failure.value.message, r"retry in [1-9]\d* s$")

    def test_no_address_no_cap(self):
        """Work for no address (or an exempt one) is not capped per address."""
        for n in range(2):
            Deferred.fromCoroutine(self.passwords.hash(f"pw {n}", None))
        self.assertEqual(len(self.pool.jobs), 2)

    def test_unknown_user_checks_a_decoy(self):
        """With no hash, a decoy is checked, and the answer is no."""
        checked = Deferred.fromCoroutine(self.passwords.verify(None, "x", "10.0.0.1"))
        self.pool.run()
        self.pool.run()
        self.assertFalse(self.successResultOf(checked))
        self.assertEqual(self.hasher.checks, 1)


async def _driven(coroutine):
    """Await C{coroutine}, so a test can still close it by hand."""
    return await coroutine
