"""
Tests for the pure rules against password guessing
(L{lairchat.login_throttle}): the delay, the reservation that counts an
attempt before its check, and the counted summaries of refusals.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat.login_throttle import (
    ACCOUNT_AND_ADDRESS,
    ADDRESS,
    SUMMARY_INTERVAL_MS,
    ThrottleRule,
    ThrottleState,
    decide,
    reserve,
    succeed,
)

RULE = ThrottleRule(threshold=5, first_delay=1, cap=900, forget=86400)
"""The default rule for one account from one address."""

rules = st.builds(
    ThrottleRule,
    threshold=st.integers(1, 30),
    first_delay=st.integers(1, 120),
    cap=st.integers(1, 7 * 24 * 3600),
    forget=st.integers(1, 7 * 24 * 3600),
)
"""Any rule."""

NOW = 1_800_000_000_000
"""An instant, in epoch ms."""


class DelayTests(SynchronousTestCase):
    """L{ThrottleRule.delay}."""

    def test_default_steps(self):
        """No delay for four failures, then 1, 2, 4 ... seconds, capped at 15 minutes."""
        self.assertEqual([RULE.delay(n) for n in range(0, 16)],
                         [0, 0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900])
        self.assertEqual(RULE.delay(10_000), 900)

    @given(rules, st.integers(0, 200))
    def test_shape(self, rule, failures):
        """
        Zero below the threshold; from there, at least the first delay,
        never more than the cap, never less than the delay one failure
        earlier, and at most twice it.
        """
        delay = rule.delay(failures)
        if failures < rule.threshold:
            self.assertEqual(delay, 0)
            return
        if failures == rule.threshold:
            self.assertEqual(delay, min(rule.first_delay, rule.cap))
        self.assertGreaterEqual(delay, min(rule.first_delay, rule.cap))
        self.assertLessEqual(delay, rule.cap)
        before = rule.delay(failures - 1)
        self.assertGreaterEqual(delay, before)
        if before:
            self.assertLessEqual(delay, 2 * before)


class ReserveTests(SynchronousTestCase):
    """L{reserve}, L{succeed} and L{decide}."""

    @given(rules, st.integers(1, 100))
    def test_burst_gets_at_most_threshold_checks(self, rule, attempts):
        """
        However many attempts arrive at one instant, at most C{threshold}
        of them are allowed: each is counted before its check.
        """
        state, allowed = ThrottleState(), 0
        for _ in range(attempts):
            state, verdict = reserve(rule, state, NOW)
            allowed += verdict.allowed
        self.assertEqual(allowed, min(attempts, rule.threshold))

    def test_progressive(self):
        """
        The fifth failure blocks for 1 s (on a whole second); the next
        attempt after it is allowed and blocks for 2 s.
        """
        state = ThrottleState()
        for _ in range(4):
            state, verdict = reserve(RULE, state, NOW)
            self.assertEqual((verdict.allowed, verdict.until_ms), (True, 0))
        state, verdict = reserve(RULE, state, NOW + 1)
        self.assertEqual((verdict.allowed, verdict.until_ms), (True, NOW + 2000))
        state, refused = reserve(RULE, state, NOW + 1999)
        self.assertEqual((refused.allowed, refused.until_ms), (False, NOW + 2000))
        state, verdict = reserve(RULE, state, NOW + 2000)
        self.assertEqual((verdict.allowed, verdict.until_ms), (True, NOW + 4000))

    def test_success_resets(self):
        """The right password forgets the failures of its key, and any block."""
        state = ThrottleState()
        for _ in range(5):
            state, _ = reserve(RULE, state, NOW)
        state = succeed(RULE, state, resets=True)
        self.assertEqual((state.failures, state.blocked_until_ms), (0, 0))

    @given(st.integers(0, 40))
    def test_success_gives_back_one(self, failures):
        """
        Across accounts, a success gives back only its own attempt, and
        lifts the block only when the failures left call for none.
        """
        rule = ThrottleRule(threshold=20, first_delay=1, cap=3600, forget=3600)
        state = ThrottleState(failures=failures, blocked_until_ms=NOW + 5000)
        after = succeed(rule, state, resets=False)
        self.assertEqual(after.failures, max(failures - 1, 0))
        self.assertEqual(after.blocked_until_ms, NOW + 5000 if rule.delay(after.failures) else 0)

    def test_forgotten(self):
        """After C{forget} seconds without an attempt, the count starts again."""
        state = ThrottleState(failures=7, blocked_until_ms=NOW + 1000, last_ms=NOW)
        _, verdict = reserve(RULE, state, NOW + RULE.forget * 1000)
        self.assertEqual((verdict.allowed, verdict.until_ms), (True, 0))

    @given(st.lists(st.integers(0, 3 * SUMMARY_INTERVAL_MS), min_size=1, max_size=60))
    def test_summaries_count_every_refusal(self, offsets):
        """
        Refusals are reported in summaries at most one a minute; every
        refusal is in exactly one summary once an attempt is allowed again.
        """
        rule = ThrottleRule(threshold=1, first_delay=3600, cap=3600, forget=86400)
        state, _ = reserve(rule, ThrottleState(), NOW)
        reported, times = 0, []
        for offset in sorted(offsets):
            state, verdict = reserve(rule, state, NOW + 1 + offset)
            self.assertFalse(verdict.allowed)
            if verdict.summary:
                reported += verdict.summary
                times.append(offset)
        for earlier, later in zip(times, times[1:]):
            self.assertGreaterEqual(later - earlier, SUMMARY_INTERVAL_MS)
        state, verdict = reserve(rule, state, state.blocked_until_ms)
        self.assertTrue(verdict.allowed)
        self.assertEqual(reported + verdict.summary, len(offsets))

    def test_decide_refusal_leaves_the_other_key(self):
        """
        An attempt the address's key refuses is not counted against the
        account-and-address key, and the other way round.
        """
        address_rule = ThrottleRule(threshold=20, first_delay=1, cap=3600, forget=3600)
        blocked = ThrottleState(failures=20, blocked_until_ms=NOW + 60_000, last_ms=NOW)
        fresh = ThrottleState()
        pair, whole, reservation = decide(RULE, fresh, address_rule, blocked, NOW + 1)
        self.assertEqual(pair, fresh)
        self.assertEqual((reservation.allowed, reservation.scope, reservation.until_ms),
                         (False, ADDRESS, NOW + 60_000))
        self.assertEqual(whole.failures, 20)
        pair, whole, reservation = decide(RULE, blocked, address_rule, fresh, NOW + 1)
        self.assertEqual(whole, fresh)
        self.assertEqual(reservation.scope, ACCOUNT_AND_ADDRESS)

    def test_decide_exempt(self):
        """With no address rule (an exempt network), only the account-and-address key counts."""
        pair, whole, reservation = decide(RULE, ThrottleState(), None, None, NOW)
        self.assertTrue(reservation.allowed)
        self.assertIsNone(whole)
        self.assertEqual(pair.failures, 1)
