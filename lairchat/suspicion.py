# -*- test-case-name: tests.test_suspicion -*-
"""
Suspicion scores per address: what intrusion detection counts before it
blocks an address.  Pure rules on an injected clock; no I/O.

Each suspicious act adds its weight to its address's score; scores halve
every C{half_life} seconds, so a burst counts and slow noise fades.  An
address whose score reaches the threshold is to be blocked, for longer each
time it comes back within a day.
"""

import math
from typing import Any

from attrs import define, field, frozen

WEIGHTS = {
    "failed_login": 3.0,
    "throttled_login": 1.0,
    "flood": 10.0,
    "malformed_line": 2.0,
    "security_violation": 10.0,
    "refused_connection": 1.0,
}
"""What each kind of suspicious act adds to its address's score."""

KINDS = frozenset(WEIGHTS)
"""The kinds of suspicious act."""


@frozen
class SuspicionRules:
    """
    The shape of intrusion detection.

    @ivar threshold: the score at which an address is blocked.
    @ivar half_life: seconds in which a score halves.
    @ivar block_seconds: how long a first block lasts.
    @ivar max_block_seconds: the longest a block lasts however often the
        address comes back.
    """

    threshold: float = 30.0
    half_life: float = 300.0
    block_seconds: float = 900.0
    max_block_seconds: float = 24 * 3600.0

    def decayed(self, score: float, elapsed: float) -> float:
        """A score C{elapsed} seconds later."""
        if elapsed <= 0:
            return score
        return score * math.pow(0.5, elapsed / self.half_life)

    def block_duration(self, strikes: int) -> float:
        """
        How long the block with C{strikes} earlier blocks of the same
        address in the day before it lasts: doubling per strike, capped.
        """
        return min(self.max_block_seconds, self.block_seconds * math.pow(2, min(max(strikes, 0), 20)))


@define
class SuspicionScores:
    """
    The scores of the addresses that did something suspicious lately.

    @param clock: an L{IReactorTime} (a L{Clock} in tests).
    @param rules: the L{SuspicionRules}.
    """

    clock: Any
    rules: SuspicionRules = field(factory=SuspicionRules)
    _scores: dict = field(factory=dict)

    def note(self, address: str, kind: str, count: int = 1) -> bool:
        """
        Count C{count} suspicious acts of C{kind} by C{address}.

        @return: whether the address's score reached the threshold (its
            score starts again from zero: the caller blocks it).
        @raise KeyError: C{kind} is not one of L{KINDS}.
        """
        weight = WEIGHTS[kind] * count
        now = self.clock.seconds()
        score = self.score(address) + weight
        if score >= self.rules.threshold - 1e-6:  # fading by a hair does not save an address
            self._scores.pop(address, None)
            return True
        self._scores[address] = (score, now)
        if len(self._scores) > 4096:
            self.forget_faded()
        return False

    def score(self, address: str) -> float:
        """An address's score now (0 when it did nothing lately)."""
        entry = self._scores.get(address)
        if entry is None:
            return 0.0
        score, then = entry
        return self.rules.decayed(score, self.clock.seconds() - then)

    def forget(self, address: str) -> None:
        """Start an address's score from zero (it was unblocked)."""
        self._scores.pop(address, None)

    def forget_faded(self) -> None:
        """Drop the scores that have faded below one point."""
        for address in [a for a in self._scores if self.score(a) < 1.0]:
            del self._scores[address]

    def __len__(self) -> int:
        """How many addresses have a score."""
        return len(self._scores)
