# -*- test-case-name: tests.test_login_throttle -*-
"""
The rules against password guessing, as pure values: no clock, no I/O.

A login attempt is throttled under two keys at once: the account it names
together with the address it comes from (so the owner elsewhere is never
locked out by someone guessing), and the address alone across accounts (so
one address cannot guess at every account in turn).  Each key has a
L{ThrottleState}; L{reserve} decides, before the password is checked,
whether the attempt may go on, and counts it as a failure at once; L{succeed}
gives that count back when the password was right.  Counting before the
check is what makes parallel guesses useless: the store runs L{reserve} on a
locked row, so N attempts at once get at most C{rule.threshold} real checks
(see L{lairchat.store.logins}).  An attempt whose check never ends (the
server died) simply stays counted as a failure.

The delay grows with the failures: none for the first C{threshold - 1},
then C{first_delay} after the C{threshold}-th failure, doubling with each
further one, up to C{cap}.  A key with no failure for C{forget} seconds
starts from nothing again.

Refused attempts are reported in counted summaries, at most one per key
per L{SUMMARY_INTERVAL_MS}: see L{ThrottleState.refused}.
"""

from attrs import evolve, frozen

SUMMARY_INTERVAL_MS = 60_000
"""At most one audit line of refused attempts per key per this many ms."""

EVERY_ACCOUNT = ""
"""The account part of a per-address key (no username is empty)."""


@frozen
class ThrottleRule:
    """
    How one kind of key is throttled.

    @ivar threshold: how many failures in a row are free of delay; the
        C{threshold}-th failure starts the delay.  It is also how many real
        password checks a burst of parallel attempts gets.
    @ivar first_delay: seconds to wait after the C{threshold}-th failure.
    @ivar cap: the longest wait, in seconds (the "lock").
    @ivar forget: seconds without a failure after which the count starts
        again from zero.
    """

    threshold: int
    first_delay: float
    cap: float
    forget: float

    def delay(self, failures: int) -> float:
        """
        Seconds to wait before the next attempt after C{failures} failures
        in a row: 0 below the threshold, then C{first_delay} doubling per
        further failure, never more than C{cap}.
        """
        if failures < self.threshold:
            return 0.0
        steps = failures - self.threshold
        if steps >= 64:
            return float(self.cap)
        return float(min(self.first_delay * (2 ** steps), self.cap))


@frozen
class ThrottleState:
    """
    What is known of one key.

    @ivar failures: failed (or still running) attempts in a row.
    @ivar blocked_until_ms: no attempt before this instant (epoch ms; 0: none).
    @ivar last_ms: the last counted attempt (epoch ms; 0: never).
    @ivar refused: attempts refused since the last summary.
    @ivar reported_ms: when the last summary was written (epoch ms; 0: never).
    """

    failures: int = 0
    blocked_until_ms: int = 0
    last_ms: int = 0
    refused: int = 0
    reported_ms: int = 0


@frozen
class Verdict:
    """
    What L{reserve} decided about one attempt under one key.

    @ivar allowed: whether the password may be checked.
    @ivar until_ms: when the key is blocked (epoch ms; 0: it is not): the
        truthful "try again after" of a refusal, or of a failure that started
        a delay.
    @ivar summary: how many refused attempts to report in an audit line now
        (0: none to report yet).
    """

    allowed: bool
    until_ms: int = 0
    summary: int = 0


def _ceil_second(ms: float) -> int:
    """C{ms} rounded up to a whole second, so a time printed in seconds is never early."""
    return int(-(-ms // 1000) * 1000)


def forgotten(rule: ThrottleRule, state: ThrottleState, now_ms: int) -> ThrottleState:
    """C{state}, or a fresh count when its last attempt is older than C{rule.forget} (refusals kept)."""
    if state.failures and now_ms - state.last_ms >= rule.forget * 1000 and state.blocked_until_ms <= now_ms:
        return evolve(state, failures=0, blocked_until_ms=0)
    return state


def reserve(rule: ThrottleRule, state: ThrottleState, now_ms: int) -> tuple[ThrottleState, Verdict]:
    """
    Decide whether an attempt may check its password now, and count it.

    A blocked key refuses (and counts the refusal for the next summary).
    Otherwise the attempt is counted as a failure before its check; when
    that count reaches the threshold, the key is blocked from now for the
    delay it calls for, so that attempts arriving meanwhile are refused.

    @return: the new state and the verdict.
    """
    state = forgotten(rule, state, now_ms)
    due = state.reported_ms == 0 or now_ms - state.reported_ms >= SUMMARY_INTERVAL_MS
    if state.blocked_until_ms > now_ms:
        refused = state.refused + 1
        if due:
            return evolve(state, refused=0, reported_ms=now_ms), Verdict(False, state.blocked_until_ms, refused)
        return evolve(state, refused=refused), Verdict(False, state.blocked_until_ms)
    failures = state.failures + 1
    wait = rule.delay(failures)
    until = _ceil_second(now_ms + wait * 1000) if wait > 0 else 0
    summary, reported = (state.refused, now_ms) if state.refused else (0, state.reported_ms)
    new = ThrottleState(failures, until, now_ms, 0, reported)
    return new, Verdict(True, until, summary)


def succeed(rule: ThrottleRule, state: ThrottleState, resets: bool) -> ThrottleState:
    """
    The attempt L{reserve} counted had the right password.

    @param resets: forget every failure (the key of the account and this
        address: its owner is here), rather than give back the one attempt
        (the key of the address across accounts, which other accounts'
        failures count against too).
    """
    if resets:
        return evolve(state, failures=0, blocked_until_ms=0)
    failures = max(state.failures - 1, 0)
    blocked = state.blocked_until_ms if rule.delay(failures) > 0 else 0
    return evolve(state, failures=failures, blocked_until_ms=blocked)


@frozen
class Reservation:
    """
    What the store decided about one login attempt under both its keys.

    @ivar allowed: whether the password may be checked.
    @ivar until_ms: for a refusal, when the refusing key opens again; for an
        allowed attempt, when the delay its failure would start ends (0: a
        failure starts none).  Epoch ms, on whole seconds.
    @ivar scope: which key refused (L{ACCOUNT_AND_ADDRESS} or L{ADDRESS});
        for an allowed attempt, which key's delay its failure would start
        (L{None}: none).
    @ivar summaries: C{(scope, count)} pairs: refused attempts under a key
        to report in the audit log now.
    """

    allowed: bool
    until_ms: int = 0
    scope: str | None = None
    summaries: tuple = ()


ACCOUNT_AND_ADDRESS = "account"
"""The scope of the key of one account from one address."""

ADDRESS = "address"
"""The scope of the key of one address across accounts."""


def decide(
    pair_rule: ThrottleRule,
    pair: ThrottleState,
    address_rule: ThrottleRule | None,
    address: ThrottleState | None,
    now_ms: int,
) -> tuple[ThrottleState, ThrottleState | None, Reservation]:
    """
    Decide one attempt under its account-and-address key and (unless the
    address is exempt: C{address_rule} is L{None}) its address key.

    The attempt goes on only if both keys allow it; then both count it.
    When one refuses, only the refusing key changes (it counts the refusal
    for its summary): the other is left as it was.

    @return: the new states of both keys and the L{Reservation}.
    """
    new_pair, pair_verdict = reserve(pair_rule, pair, now_ms)
    if address_rule is None or address is None:
        new_address, address_verdict = None, Verdict(True)
    else:
        new_address, address_verdict = reserve(address_rule, address, now_ms)
    if pair_verdict.allowed and address_verdict.allowed:
        summaries = tuple(
            (scope, verdict.summary)
            for scope, verdict in ((ACCOUNT_AND_ADDRESS, pair_verdict), (ADDRESS, address_verdict))
            if verdict.summary
        )
        until, scope = max((pair_verdict.until_ms, ACCOUNT_AND_ADDRESS), (address_verdict.until_ms, ADDRESS))
        return new_pair, new_address, Reservation(True, until, scope if until else None, summaries)
    refusals = [
        (scope, verdict)
        for scope, verdict in ((ACCOUNT_AND_ADDRESS, pair_verdict), (ADDRESS, address_verdict))
        if not verdict.allowed
    ]
    scope, verdict = max(refusals, key=lambda refusal: refusal[1].until_ms)
    summaries = tuple((s, v.summary) for s, v in refusals if v.summary)
    kept_pair = new_pair if not pair_verdict.allowed else pair
    kept_address = new_address if not address_verdict.allowed else address
    return kept_pair, kept_address, Reservation(False, verdict.until_ms, scope, summaries)
