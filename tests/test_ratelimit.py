"""
Tests for L{lairchat.ratelimit}: token buckets on a L{Clock}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.errors import RateLimited
from lairchat.ratelimit import DEFAULT_RATES, Rate, RateLimiter


class RateLimiterTests(SynchronousTestCase):
    """
    L{RateLimiter}: a burst at once, then a steady refill.
    """

    def setUp(self):
        """A limiter with the default rates on a fresh clock."""
        self.clock = Clock()
        self.limiter = RateLimiter(self.clock)

    def take(self, rate_class: str, times: int) -> None:
        """Take C{times} tokens, each of which must be granted."""
        for _ in range(times):
            self.limiter.take(rate_class)

    def test_burst(self):
        """
        A full bucket grants its burst at once; the next is refused with
        C{1110 RATE_LIMITED}.
        """
        for name, rate in DEFAULT_RATES.items():
            self.take(name, int(rate.burst))
            error = self.assertRaises(RateLimited, self.limiter.take, name)
            self.assertEqual((error.code, error.name), (1110, "RATE_LIMITED"))

    def test_retry_time(self):
        """
        The refusal says when a token will be there, counting down as the
        clock runs.
        """
        self.take("auth", 5)
        error = self.assertRaises(RateLimited, self.limiter.take, "auth")
        self.assertEqual(error.message, "too many requests; retry in 5.0 s")
        self.clock.advance(2.5)
        error = self.assertRaises(RateLimited, self.limiter.take, "auth")
        self.assertEqual(error.message, "too many requests; retry in 2.5 s")

    def test_refill(self):
        """
        After the retry time one more request passes, and only one.
        """
        self.take("auth", 5)
        self.assertRaises(RateLimited, self.limiter.take, "auth")
        self.clock.advance(5)
        self.limiter.take("auth")
        self.assertRaises(RateLimited, self.limiter.take, "auth")

    def test_refill_capped_at_burst(self):
        """
        A long quiet spell refills to the burst, no further.
        """
        self.take("invite", 1)
        self.clock.advance(3600)
        self.take("invite", 20)
        self.assertRaises(RateLimited, self.limiter.take, "invite")

    def test_refused_requests_cost_nothing(self):
        """
        Refused attempts do not push the retry time further out.
        """
        self.take("auth", 5)
        for _ in range(10):
            self.assertRaises(RateLimited, self.limiter.take, "auth")
        self.clock.advance(5)
        self.limiter.take("auth")

    def test_classes_independent(self):
        """
        Emptying one class's bucket leaves the others full.
        """
        self.take("auth", 5)
        self.assertRaises(RateLimited, self.limiter.take, "auth")
        self.take("message", 30)
        self.take("default", 60)

    def test_unknown_class_unlimited(self):
        """
        A class with no rate (C{free}, or any other name) is never limited.
        """
        self.take("free", 10000)
        self.take("no-such-class", 10000)

    def test_no_rates(self):
        """
        With an empty table (C{--no-rate-limit}) nothing is limited.
        """
        limiter = RateLimiter(self.clock, {})
        for _ in range(1000):
            limiter.take("auth")

    def test_custom_rate(self):
        """
        A custom shape is honoured: burst 2, one token every 4 seconds.
        """
        limiter = RateLimiter(self.clock, {"x": Rate(burst=2, per_second=0.25)})
        limiter.take("x")
        limiter.take("x")
        error = self.assertRaises(RateLimited, limiter.take, "x")
        self.assertIn("retry in 4.0 s", error.message)
        self.clock.advance(4)
        limiter.take("x")

    def test_per_limiter(self):
        """
        Each limiter (each connection) has its own buckets.
        """
        self.take("auth", 5)
        RateLimiter(self.clock).take("auth")
