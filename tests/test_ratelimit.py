"""
Tests for L{lairchat.ratelimit}: token buckets per connection, address and
account on a L{Clock}; delays, the backlog bound, registrations.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.context import Config
from lairchat.errors import RateLimited
from lairchat.metrics import Metrics
from lairchat.ratelimit import (
    CONNECTION_RATES, DEFAULT_RATES, PRUNE_INTERVAL, FloodControl, Flooding, Rate, TokenBucket, retry_seconds,
)

EPSILON = 1e-6
"""Slack for floating-point sums of times."""


def single(rate: Rate, clock: Clock, backlog: float = 1e9) -> FloodControl:
    """Flood control with one class C{x} of shape C{rate}, per connection only."""
    return FloodControl(clock, connection_rates={"x": rate}, address_rates={}, account_rates={}, backlog=backlog)


class TokenBucketTests(SynchronousTestCase):
    """
    L{TokenBucket}: refills at its rate up to its burst, goes into debt.
    """

    def test_wait_is_time_until_a_token(self):
        """
        An empty bucket's wait is the time until it holds one token; each
        token taken in debt adds one refill period.
        """
        bucket = TokenBucket(Rate(burst=2, per_second=0.5), 2, 0.0)
        bucket.take(0.0)
        bucket.take(0.0)
        self.assertEqual(bucket.wait(0.0), 2.0)
        bucket.take(0.0)
        self.assertEqual(bucket.wait(0.0), 4.0)
        self.assertEqual(bucket.wait(3.0), 1.0)
        self.assertEqual(bucket.wait(4.0), 0.0)

    def test_capped_at_burst(self):
        """A long quiet spell refills to the burst, no further."""
        bucket = TokenBucket(Rate(burst=3, per_second=1), 0, 0.0)
        self.assertEqual(bucket.level(3600), 3)
        self.assertTrue(bucket.full(3600))
        self.assertFalse(bucket.full(2.5))

    def test_give_back(self):
        """A token given back is there again, never above the burst."""
        bucket = TokenBucket(Rate(burst=1, per_second=1), 1, 0.0)
        bucket.take(0.0)
        bucket.give_back(0.0)
        bucket.give_back(0.0)
        self.assertEqual(bucket.level(0.0), 1)


class FloodControlTests(SynchronousTestCase):
    """
    L{FloodControl}: the delay is the longest of the buckets that apply.
    """

    def setUp(self):
        """Flood control with the default tables on a fresh clock."""
        self.clock = Clock()
        self.flood = FloodControl(self.clock)

    def charge(self, times: int, rate_class: str = "auth", connection: int = 1, address: str | None = None,
               account: int | None = None) -> list[float]:
        """The delays of C{times} requests at once."""
        return [self.flood.charge(rate_class, connection, address, account) for _ in range(times)]

    def test_burst_then_delay(self):
        """
        A full budget lets its burst through at once; each request after
        that waits one refill period longer than the one before.
        """
        for name, rate in DEFAULT_RATES.items():
            delays = self.charge(int(rate.burst) + 2, name, connection=name)
            self.assertEqual(delays[:-2], [0.0] * int(rate.burst))
            self.assertAlmostEqual(delays[-2], 1 / rate.per_second)
            self.assertAlmostEqual(delays[-1], 2 / rate.per_second)

    def test_never_refused_within_backlog(self):
        """Requests within the backlog are delayed, never refused."""
        delays = self.charge(11)
        self.assertEqual(delays[5:], [5.0, 10.0, 15.0, 20.0, 25.0, 30.0])

    def test_flooding_past_backlog(self):
        """
        A request that would wait longer than the backlog raises
        L{Flooding} (C{1110}, closing) and takes nothing.
        """
        self.charge(11)
        error = self.assertRaises(Flooding, self.flood.charge, "auth", 1)
        self.assertEqual((error.code, error.name, error.closes), (1110, "RATE_LIMITED", True))
        self.clock.advance(5)
        self.assertEqual(self.flood.charge("auth", 1), 30.0)

    def test_address_shared_across_connections(self):
        """
        Connections from one address share its budget (twice a
        connection's); another address has its own.
        """
        for connection in range(2):
            self.assertEqual(self.charge(5, connection=connection, address="10.0.0.1"), [0.0] * 5)
        self.assertEqual(self.flood.charge("auth", 3, "10.0.0.1"), 2.5)
        self.assertEqual(self.flood.charge("auth", 4, "10.0.0.2"), 0.0)
        self.assertEqual(self.flood.charge("auth", 5, None), 0.0)

    def test_account_shared_across_connections(self):
        """Connections of one account share its budget."""
        for connection in range(2):
            self.charge(5, connection=connection, account=7)
        self.assertEqual(self.flood.charge("auth", 3, None, 7), 2.5)
        self.assertEqual(self.flood.charge("auth", 4, None, 8), 0.0)

    def test_wait_is_the_longest(self):
        """The wait is that of the emptiest bucket that applies."""
        self.charge(5, address="10.0.0.1")
        self.assertEqual(self.flood.charge("auth", 1, "10.0.0.1"), 5.0)

    def test_classes_independent(self):
        """Emptying one class's budget leaves the others full."""
        self.charge(5)
        self.assertEqual(self.charge(30, "message"), [0.0] * 30)

    def test_free_and_unknown_classes(self):
        """A class with no shape (C{free}, any other name) is never delayed."""
        self.assertEqual(set(self.charge(1000, "free", address="10.0.0.1", account=1)), {0.0})
        self.assertEqual(set(self.charge(1000, "no-such-class")), {0.0})
        self.assertEqual(self.flood.buckets, {})

    def test_disabled(self):
        """With flood control off (C{--no-rate-limit}) nothing waits, nothing is refused."""
        flood = FloodControl(self.clock, enabled=False, registrations_per_hour=1)
        self.assertEqual({flood.charge("auth", 1, "10.0.0.1", 1) for _ in range(1000)}, {0.0})
        for _ in range(10):
            flood.reserve_registration("10.0.0.1")

    def test_from_config(self):
        """The tables and bounds come from the L{Config}."""
        config = Config(connection_rates={"auth": Rate(1, 1)}, flood_backlog=2, registrations_per_hour=0)
        flood = FloodControl.from_config(self.clock, config)
        self.assertEqual([flood.charge("auth", 1) for _ in range(3)], [0.0, 1.0, 2.0])
        self.assertRaises(Flooding, flood.charge, "auth", 1)
        flood.reserve_registration("10.0.0.1")
        self.assertIs(Config().connection_rates, CONNECTION_RATES)

    def test_forget_connection(self):
        """A closed connection's buckets go; its address's stay."""
        self.charge(3, address="10.0.0.1")
        self.flood.forget_connection(1)
        self.assertEqual({key[0] for key in self.flood.buckets}, {"address"})

    def test_prune_full_buckets(self):
        """
        Buckets full again are forgotten (at most once per
        L{PRUNE_INTERVAL}); those still refilling are kept.
        """
        self.flood = FloodControl(self.clock, address_rates={"slow": Rate(1, 1 / (1.5 * PRUNE_INTERVAL))})
        self.charge(1, "default", connection=1, address="10.0.0.1")
        self.charge(1, "slow", connection=2, address="10.0.0.2")
        self.clock.advance(PRUNE_INTERVAL)
        self.flood.charge("free", 3)
        self.assertEqual(list(self.flood.buckets), [("address", "10.0.0.2", "slow")])
        self.clock.advance(PRUNE_INTERVAL)
        self.flood.charge("free", 3)
        self.assertEqual(self.flood.buckets, {})

    def test_metrics(self):
        """Delays are counted and observed; a cut-off is counted as refused."""
        metrics = Metrics()
        flood = FloodControl(self.clock, metrics=metrics, backlog=5)
        for _ in range(6):
            flood.charge("auth", 1)
        self.assertRaises(Flooding, flood.charge, "auth", 1)
        value = metrics.registry.get_sample_value
        self.assertEqual(value("lairchat_requests_delayed_total", {"class": "auth"}), 1.0)
        self.assertEqual(value("lairchat_request_delay_seconds_sum"), 5.0)
        self.assertEqual(value("lairchat_requests_refused_total", {"class": "auth", "reason": "flood"}), 1.0)

    def test_on_refused(self):
        """
        L{FloodControl.on_refused} hears of each cut-off and refused
        registration, with the real address even when it has no budget.
        """
        heard = []
        flood = FloodControl(self.clock, connection_rates={"auth": Rate(1, 1)}, backlog=0, registrations_per_hour=1)
        flood.on_refused = lambda address, reason, rate_class: heard.append((address, reason, rate_class))
        flood.charge("auth", 1, None, refused_address="10.0.0.5")
        self.assertRaises(Flooding, flood.charge, "auth", 1, None, refused_address="10.0.0.5")
        flood.reserve_registration("10.0.0.6")
        self.assertRaises(RateLimited, flood.reserve_registration, "10.0.0.6")
        self.assertEqual(heard, [("10.0.0.5", "flood", "auth"), ("10.0.0.6", "registrations", "auth")])


class RegistrationTests(SynchronousTestCase):
    """
    New accounts per address per hour: refused, with a truthful retry time.
    """

    def setUp(self):
        """Three registrations per address per hour."""
        self.clock = Clock()
        self.flood = FloodControl(self.clock, registrations_per_hour=3)

    def test_limit_and_retry_time(self):
        """The fourth within the hour is refused, saying when the next is allowed."""
        for _ in range(3):
            self.flood.reserve_registration("10.0.0.1")
        error = self.assertRaises(RateLimited, self.flood.reserve_registration, "10.0.0.1")
        self.assertFalse(error.closes)
        self.assertEqual(error.message, "too many registrations from your address; retry in 1200 s")
        self.clock.advance(1199.99)
        error = self.assertRaises(RateLimited, self.flood.reserve_registration, "10.0.0.1")
        self.assertEqual(error.message, "too many registrations from your address; retry in 1 s")
        self.clock.advance(0.01)
        self.flood.reserve_registration("10.0.0.1")

    def test_release(self):
        """A registration given back (it failed) does not count."""
        for _ in range(10):
            self.flood.reserve_registration("10.0.0.1")
            self.flood.release_registration("10.0.0.1")

    def test_unlimited_without_address(self):
        """No address (exempt, unknown) is never limited."""
        for _ in range(10):
            self.flood.reserve_registration(None)

    @given(st.floats(min_value=0, max_value=1e6, allow_nan=False))
    def test_retry_seconds_never_zero(self, wait):
        """The retry time is whole seconds, at least 1, and never before the true wait."""
        seconds = retry_seconds(wait)
        self.assertIsInstance(seconds, int)
        self.assertGreaterEqual(seconds, 1)
        self.assertGreaterEqual(seconds, wait - EPSILON)


class BudgetPropertyTests(SynchronousTestCase):
    """
    Over any sequence of request times, what the delays let through never
    exceeds the burst plus the refill since the start, and each delay is the
    true time until a token.
    """

    @settings(max_examples=200, deadline=None)
    @given(
        burst=st.integers(min_value=1, max_value=10),
        per_second=st.sampled_from([0.1, 0.5, 1.0, 3.0, 20.0]),
        gaps=st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), min_size=1, max_size=60),
    )
    def test_granted_never_exceed_budget(self, burst, per_second, gaps):
        """
        Requests come at the times C{gaps} apart; each is let through at its
        time plus its delay.  By any time T, at most burst + rate × T of
        them are through; and a request that waits would have had no token
        any earlier.
        """
        clock = Clock()
        rate = Rate(burst, per_second)
        flood = single(rate, clock)
        through = []
        for gap in gaps:
            clock.advance(gap)
            bucket = flood.buckets.get(("connection", 1, "x"))
            level_before = rate.burst if bucket is None else bucket.level(clock.seconds())
            wait = flood.charge("x", 1)
            through.append(clock.seconds() + wait)
            if wait > 0:
                # the true time until a token: the level reaches one then, not before
                self.assertAlmostEqual(level_before + wait * per_second, 1.0, delta=EPSILON)
            else:
                self.assertGreaterEqual(level_before, 1.0 - EPSILON)
        self.assertEqual(through, sorted(through))
        for index, moment in enumerate(through):
            self.assertLessEqual(index + 1, burst + per_second * moment + EPSILON)
