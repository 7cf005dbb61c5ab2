"""
Tests for L{lairchat.admission.ConnectionGate}: connection limits per
address, in total and per window, on a L{Clock}.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.addresses import UNKNOWN_ADDRESS
from lairchat.admission import ConnectionGate
from lairchat.wire import render_error


class PerAddressTests(SynchronousTestCase):
    """Open connections from one address."""

    def test_limit(self):
        """
        The connection past C{per_address} from one address is refused
        with C{TOO_MANY_CONNECTIONS}; another address still gets in.
        """
        gate = ConnectionGate(Clock(), per_address=3, per_window=100)
        for _ in range(3):
            self.assertIsNone(gate.admit("10.0.0.1"))
        refusal = gate.admit("10.0.0.1")
        self.assertEqual(refusal.reason, "per_address")
        self.assertEqual(
            render_error(refusal.error),
            "ERROR:1110:TOO_MANY_CONNECTIONS:at most 3 connections from one address; close one and try again",
        )
        self.assertTrue(refusal.error.closes)
        self.assertIsNone(gate.admit("10.0.0.2"))
        self.assertEqual(gate.open_from("10.0.0.1"), 3)
        self.assertEqual(gate.open_total, 4)

    def test_release(self):
        """A closed connection makes room for another from its address."""
        gate = ConnectionGate(Clock(), per_address=1, per_window=100)
        self.assertIsNone(gate.admit("10.0.0.1"))
        self.assertIsNotNone(gate.admit("10.0.0.1"))
        gate.release("10.0.0.1")
        self.assertEqual(gate.open_from("10.0.0.1"), 0)
        self.assertIsNone(gate.admit("10.0.0.1"))

    def test_release_unknown(self):
        """Releasing what was never admitted is a bug, said loudly."""
        gate = ConnectionGate(Clock())
        self.assertRaises(ValueError, gate.release, "10.0.0.1")
        self.assertEqual(gate.open_total, 0)

    def test_exempt(self):
        """An exempt address has no per-address limit."""
        gate = ConnectionGate(Clock(), per_address=1, per_window=1)
        for _ in range(50):
            self.assertIsNone(gate.admit("127.0.0.1", exempt=True))
        self.assertEqual(gate.open_from("127.0.0.1"), 50)

    def test_unknown_address(self):
        """Connections with no IP address are not lumped into one address's limit."""
        gate = ConnectionGate(Clock(), per_address=1, per_window=1)
        for _ in range(5):
            self.assertIsNone(gate.admit(UNKNOWN_ADDRESS))


class TotalTests(SynchronousTestCase):
    """Open connections in all."""

    def test_total(self):
        """
        Past C{total} open connections, from any address, the next is
        refused as the server being full, exempt or not.
        """
        gate = ConnectionGate(Clock(), total=2)
        self.assertIsNone(gate.admit("10.0.0.1"))
        self.assertIsNone(gate.admit("10.0.0.2", exempt=True))
        for address, exempt in [("10.0.0.3", False), ("10.0.0.2", True)]:
            refusal = gate.admit(address, exempt)
            self.assertEqual(refusal.reason, "total")
            self.assertEqual(render_error(refusal.error),
                             "ERROR:1110:TOO_MANY_CONNECTIONS:the server is full; try again later")
        gate.release("10.0.0.1")
        self.assertIsNone(gate.admit("10.0.0.3"))

    def test_no_total(self):
        """With no total, only the per-address limits hold."""
        gate = ConnectionGate(Clock(), total=None, per_address=1000, per_window=1000)
        for _ in range(500):
            self.assertIsNone(gate.admit("10.0.0.1"))


class WindowTests(SynchronousTestCase):
    """New connections per address per window."""

    def test_window(self):
        """
        The C{per_window}+1-th new connection within the window is refused
        with C{RATE_LIMITED} and a truthful retry time, although the
        others closed; once the window passed, it gets in.
        """
        clock = Clock()
        gate = ConnectionGate(clock, per_window=3, window=10)
        for _ in range(3):
            self.assertIsNone(gate.admit("10.0.0.1"))
            gate.release("10.0.0.1")
            clock.advance(1)
        refusal = gate.admit("10.0.0.1")
        self.assertEqual(refusal.reason, "rate")
        self.assertEqual(
            render_error(refusal.error),
            "ERROR:1110:RATE_LIMITED:at most 3 new connections from one address in 10 s; retry in 8 s",
        )
        self.assertIsNone(gate.admit("10.0.0.2"))
        clock.advance(7.5)
        self.assertIsNotNone(gate.admit("10.0.0.1"))
        # Too early: refused, and that attempt counts too; 8 s later it is in.
        clock.advance(8)
        self.assertIsNone(gate.admit("10.0.0.1"))

    def test_retry_time_truthful(self):
        """A client that waits as long as it was told gets in."""
        clock = Clock()
        gate = ConnectionGate(clock, per_window=2, window=10)
        gate.admit("10.0.0.1")
        clock.advance(3)
        gate.admit("10.0.0.1")
        clock.advance(1)
        refusal = gate.admit("10.0.0.1")
        wait = int(refusal.error.message.rsplit("retry in ", 1)[1].split()[0])
        clock.advance(wait)
        self.assertIsNone(gate.admit("10.0.0.1"))

    def test_retry_never_zero(self):
        """A retry time is at least one second."""
        clock = Clock()
        gate = ConnectionGate(clock, per_window=1, window=1)
        self.assertIsNone(gate.admit("10.0.0.1"))
        clock.advance(0.999)
        refusal = gate.admit("10.0.0.1")
        self.assertTrue(refusal.error.message.endswith("retry in 1 s"), refusal.error.message)

    def test_hammering_stays_refused(self):
        """Refused attempts count: a client retrying faster than the limit stays out."""
        clock = Clock()
        gate = ConnectionGate(clock, per_window=2, window=10)
        gate.admit("10.0.0.1")
        gate.admit("10.0.0.1")
        for _ in range(100):
            clock.advance(1)
            self.assertEqual(gate.admit("10.0.0.1").reason, "rate")

    def test_exempt_not_rate_limited(self):
        """An exempt address may open as many connections as it likes."""
        gate = ConnectionGate(Clock(), per_window=1, window=10)
        for _ in range(20):
            self.assertIsNone(gate.admit("127.0.0.1", exempt=True))

    def test_quiet_addresses_forgotten(self):
        """An address quiet for a whole window leaves nothing behind once it has no connection open."""
        clock = Clock()
        gate = ConnectionGate(clock, per_window=5, window=10)
        for n in range(100):
            gate.admit(f"10.0.{n}.1")
            gate.release(f"10.0.{n}.1")
        self.assertEqual(gate.tracked_addresses(), 100)
        clock.advance(10)
        gate.admit("10.1.0.1")
        self.assertEqual(gate.tracked_addresses(), 1)


ADDRESSES = st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.3", "127.0.0.1", UNKNOWN_ADDRESS])
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("open"), ADDRESSES, st.booleans()),
        st.tuples(st.just("close"), st.integers(min_value=0, max_value=1000)),
        st.tuples(st.just("wait"), st.floats(min_value=0, max_value=15)),
    ),
    max_size=200,
)


class CountProperties(SynchronousTestCase):
    """Whatever happens, the counts add up."""

    @settings(max_examples=200, deadline=None)
    @given(STEPS, st.integers(1, 4), st.one_of(st.none(), st.integers(1, 6)), st.integers(1, 4))
    def test_counts(self, steps, per_address, total, per_window):
        """
        The open count equals admissions minus releases, in all and per
        address; no count is ever negative; no limit is ever passed.
        """
        clock = Clock()
        gate = ConnectionGate(clock, per_address=per_address, total=total, per_window=per_window, window=5)
        opened: list[tuple[str, bool]] = []
        admitted = released = 0
        for step in steps:
            if step[0] == "open":
                _, address, exempt = step
                if gate.admit(address, exempt) is None:
                    admitted += 1
                    opened.append((address, exempt))
            elif step[0] == "close" and opened:
                address, _ = opened.pop(step[1] % len(opened))
                gate.release(address)
                released += 1
            else:
                clock.advance(step[-1])
            self.assertEqual(gate.open_total, admitted - released)
            self.assertGreaterEqual(gate.open_total, 0)
            for address in {a for a, _ in opened} | {"10.0.0.1"}:
                count = gate.open_from(address)
                self.assertGreaterEqual(count, 0)
                self.assertEqual(count, sum(1 for a, _ in opened if a == address))
            if total is not None:
                self.assertLessEqual(gate.open_total, total)
            for address in {a for a, exempt in opened if not exempt and a != UNKNOWN_ADDRESS}:
                limited = sum(1 for a, exempt in opened if a == address and not exempt)
                self.assertLessEqual(limited, per_address)
