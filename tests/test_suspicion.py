"""
Tests for L{lairchat.suspicion}: scores that add up, fade, and say when to
block.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from lairchat.suspicion import KINDS, WEIGHTS, SuspicionRules, SuspicionScores


class SuspicionScoresTests(SynchronousTestCase):
    """L{SuspicionScores} adds weights per address and fades them."""

    def test_threshold(self) -> None:
        """Acts add up to the threshold; the one that reaches it says block."""
        scores = SuspicionScores(Clock(), SuspicionRules(threshold=10))
        self.assertFalse(scores.note("10.0.0.1", "malformed_line", 4))
        self.assertEqual(scores.score("10.0.0.1"), 8.0)
        self.assertTrue(scores.note("10.0.0.1", "malformed_line"))
        self.assertEqual(scores.score("10.0.0.1"), 0.0)

    def test_per_address(self) -> None:
        """One address's acts do not count against another."""
        scores = SuspicionScores(Clock(), SuspicionRules(threshold=10))
        scores.note("10.0.0.1", "malformed_line", 4)
        self.assertFalse(scores.note("10.0.0.2", "malformed_line", 4))

    def test_fades(self) -> None:
        """A score halves every half-life; faded ones are forgotten."""
        clock = Clock()
        scores = SuspicionScores(clock, SuspicionRules(threshold=100, half_life=10))
        scores.note("10.0.0.1", "flood")
        clock.advance(10)
        self.assertAlmostEqual(scores.score("10.0.0.1"), WEIGHTS["flood"] / 2)
        clock.advance(100)
        scores.forget_faded()
        self.assertEqual(len(scores), 0)

    def test_slow_noise(self) -> None:
        """Acts spread out more than the fade never reach the threshold."""
        clock = Clock()
        scores = SuspicionScores(clock, SuspicionRules(threshold=30, half_life=60))
        for _ in range(1000):
            self.assertFalse(scores.note("10.0.0.1", "failed_login"))
            clock.advance(120)

    def test_unknown_kind(self) -> None:
        """A kind that is not one of L{KINDS} is a programming error."""
        self.assertRaises(KeyError, SuspicionScores(Clock()).note, "10.0.0.1", "sneezed")

    @given(st.lists(st.tuples(st.sampled_from(sorted(KINDS)), st.floats(0, 1000)), max_size=60))
    def test_never_negative_never_past(self, acts) -> None:
        """A score is never negative and never stays at or past the threshold."""
        clock = Clock()
        rules = SuspicionRules(threshold=30, half_life=60)
        scores = SuspicionScores(clock, rules)
        for kind, wait in acts:
            clock.advance(wait)
            scores.note("10.0.0.1", kind)
            self.assertTrue(0 <= scores.score("10.0.0.1") < rules.threshold)


class BlockDurationTests(SynchronousTestCase):
    """L{SuspicionRules.block_duration} doubles per strike, capped."""

    def test_doubling(self) -> None:
        """First block the base, then twice, four times..."""
        rules = SuspicionRules(block_seconds=60, max_block_seconds=1000)
        self.assertEqual([rules.block_duration(s) for s in range(6)], [60, 120, 240, 480, 960, 1000])

    @given(st.integers(-5, 10_000))
    def test_bounded(self, strikes) -> None:
        """Never shorter than the base, never longer than the cap."""
        rules = SuspicionRules()
        self.assertTrue(rules.block_seconds <= rules.block_duration(strikes) <= rules.max_block_seconds)
