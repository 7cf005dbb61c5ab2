# -*- test-case-name: tests.test_ratelimit -*-
"""
Flood control: token buckets per connection, per address and per account,
kept server-wide on an injected clock (a L{Clock} in tests).

A request is never refused for going too fast: it is I{delayed} (IRC's
"fakelag").  L{FloodControl.charge} takes a token from every bucket that
applies and says how long the request must wait until each of them had
one; a bucket may go into debt, so the requests queued behind it wait in
turn.  Only a connection whose owed delay would pass the backlog bound is
refused, with L{Flooding}, and cut off.

Refusal with C{1110} stays for what delay makes no sense for: new accounts
per address per hour (L{FloodControl.reserve_registration}), with the true
retry time rounded up to whole seconds.
"""

import math
from typing import Any, Mapping

from attrs import define, frozen

from lairchat.errors import RateLimited


@frozen
class Rate:
    """
    A bucket's shape.

    @ivar burst: how many requests may come at once.
    @ivar per_second: how fast the bucket refills.
    """

    burst: float
    per_second: float


DEFAULT_RATES = {
    "auth": Rate(burst=5, per_second=0.2),
    "message": Rate(burst=30, per_second=10),
    "invite": Rate(burst=20, per_second=2),
    "default": Rate(burst=60, per_second=20),
}
"""
The rate classes and their shapes for one connection; C{free} (and any
class absent from a table) is never limited.
"""

CONNECTION_RATES = DEFAULT_RATES
"""The budget of one connection, by rate class."""

ADDRESS_RATES = {name: Rate(rate.burst * 2, rate.per_second * 2) for name, rate in DEFAULT_RATES.items()}
"""
The budget shared by every connection from one address: twice a
connection's, so two clients behind one address go at full speed while
reconnecting (or opening more connections) gains nothing beyond that.
"""

ACCOUNT_RATES = {name: Rate(rate.burst * 2, rate.per_second * 2) for name, rate in DEFAULT_RATES.items()}
"""The budget shared by every connection logged in as one account (a user on two devices)."""

FLOOD_BACKLOG = 30.0
"""Seconds of delay a connection may owe before it is cut off as flooding."""

REGISTRATIONS_PER_HOUR = 5
"""New accounts one address may create per hour (the bucket holds this many and refills over the hour)."""

PRUNE_INTERVAL = 60.0
"""Seconds between sweeps that forget buckets idle long enough to be full again."""


class Flooding(RateLimited):
    """
    A connection owes more delay than the backlog bound allows: the
    C{1110} line is its last, the connection is closed after it.
    """

    closes = True


@define
class TokenBucket:
    """
    One bucket: C{tokens} at time C{updated}, refilling at its rate up to
    its burst.  C{tokens} goes below zero while requests wait for tokens
    already promised to them.
    """

    rate: Rate
    tokens: float
    updated: float

    def level(self, now: float) -> float:
        """The tokens in the bucket at C{now} (negative while in debt)."""
        return min(self.rate.burst, self.tokens + (now - self.updated) * self.rate.per_second)

    def wait(self, now: float) -> float:
        """Seconds from C{now} until the bucket holds a whole token (0 if it does)."""
        return max(0.0, (1 - self.level(now)) / self.rate.per_second)

    def take(self, now: float) -> None:
        """Take one token, into debt if need be."""
        self.tokens = self.level(now) - 1
        self.updated = now

    def give_back(self, now: float) -> None:
        """Return one token taken earlier (never above the burst)."""
        self.tokens = min(self.rate.burst, self.level(now) + 1)
        self.updated = now

    def full(self, now: float) -> bool:
        """Whether the bucket is full, so forgetting it changes nothing."""
        return self.level(now) >= self.rate.burst


def retry_seconds(wait: float) -> int:
    """
    A wait as the whole seconds a refusal tells the client: rounded up, and
    at least 1 (a refusal never says "retry in 0 s").
    """
    return max(1, math.ceil(round(wait, 6)))


class FloodControl:
    """
    Every token bucket of the server, keyed by connection, address and
    account, created on first use and forgotten once full again.

    @param clock: an L{IReactorTime} (a L{Clock} in tests).
    @param enabled: with L{False} (C{--no-rate-limit}) nothing is delayed or
        refused.
    @param connection_rates: the per-connection shapes by rate class.
    @param address_rates: the per-address shapes by rate class.
    @param account_rates: the per-account shapes by rate class.
    @param backlog: the seconds of delay a connection may owe.
    @param registrations_per_hour: new accounts per address per hour (0:
        unlimited).
    @param metrics: a L{lairchat.metrics.Metrics}, or L{None}.
    """

    def __init__(
        self,
        clock: Any,
        enabled: bool = True,
        connection_rates: Mapping[str, Rate] = CONNECTION_RATES,
        address_rates: Mapping[str, Rate] = ADDRESS_RATES,
        account_rates: Mapping[str, Rate] = ACCOUNT_RATES,
        backlog: float = FLOOD_BACKLOG,
        registrations_per_hour: int = REGISTRATIONS_PER_HOUR,
        metrics: Any = None,
        intrusion: Any = None,
    ) -> None:
        self.clock = clock
        self.enabled = enabled
        self.backlog = backlog
        self.metrics = metrics
        self.intrusion = intrusion
        self._rates = {"connection": connection_rates, "address": address_rates, "account": account_rates}
        self._registration_rate = (
            Rate(burst=registrations_per_hour, per_second=registrations_per_hour / 3600.0)
            if registrations_per_hour > 0 else None
        )
        self.buckets: dict[tuple, TokenBucket] = {}
        self._next_prune = clock.seconds() + PRUNE_INTERVAL

    @classmethod
    def from_config(cls, clock: Any, config: Any, metrics: Any = None, intrusion: Any = None) -> "FloodControl":
        """The flood control a L{lairchat.context.Config} asks for."""
        return cls(
            clock,
            enabled=config.rate_limits,
            connection_rates=config.connection_rates,
            address_rates=config.address_rates,
            account_rates=config.account_rates,
            backlog=config.flood_backlog,
            registrations_per_hour=config.registrations_per_hour,
            metrics=metrics,
            intrusion=intrusion,
        )

    def _bucket(self, key: tuple, rate: Rate, now: float) -> TokenBucket:
        """The bucket under C{key}, made full if there is none."""
        bucket = self.buckets.get(key)
        if bucket is None:
            bucket = self.buckets[key] = TokenBucket(rate, rate.burst, now)
        return bucket

    def _keys(self, rate_class: str, connection: Any, address: str | None, account: Any) -> list:
        """The keys and shapes of the buckets a request of C{rate_class} draws from."""
        found = []
        for scope, identity in (("connection", connection), ("address", address), ("account", account)):
            rate = self._rates[scope].get(rate_class)
            if identity is not None and rate is not None:
                found.append(((scope, identity, rate_class), rate))
        return found

    def charge(self, rate_class: str, connection: Any, address: str | None = None, account: Any = None,
               refused_address: str | None = None) -> float:
        """
        Take a token for one request from each bucket that applies: the
        connection's, the address's (C{None} for an exempt or unknown
        address) and the account's (C{None} before login).

        @return: the seconds until every one of them had a token for it: how
            long the request waits (0: at once).
        @raise Flooding: that wait is over the backlog bound; nothing was
            taken.  C{refused_address} (the real address, even when exempt)
            is what L{on_refused} is told.
        """
        if not self.enabled:
            return 0.0
        now = self.clock.seconds()
        self._prune(now)
        buckets = [self._bucket(key, rate, now) for key, rate in self._keys(rate_class, connection, address, account)]
        wait = max((bucket.wait(now) for bucket in buckets), default=0.0)
        if wait > self.backlog:
            self.on_refused(refused_address if refused_address is not None else address, "flood", rate_class)
            raise Flooding(
                f"flooding: over {self.backlog:g} s of requests waiting; disconnected "
                "(reconnect and send more slowly)"
            )
        for bucket in buckets:
            bucket.take(now)
        if wait > 0 and self.metrics is not None:
            self.metrics.request_delayed(rate_class, wait)
        return wait

    def forget_connection(self, connection: Any) -> None:
        """Forget a closed connection's buckets (its address and account keep theirs)."""
        for rate_class in self._rates["connection"]:
            self.buckets.pop(("connection", connection, rate_class), None)

    def reserve_registration(self, address: str | None) -> None:
        """
        Count one new account from C{address} (C{None}: exempt or unknown,
        never limited); give it back with L{release_registration} if the
        registration fails.

        @raise RateLimited: the address made its accounts for this hour; the
            message says in how many whole seconds the next is allowed.
        """
        if not self.enabled or address is None or self._registration_rate is None:
            return
        now = self.clock.seconds()
        self._prune(now)
        bucket = self._bucket(("registrations", address), self._registration_rate, now)
        if bucket.level(now) < 1:
            self.on_refused(address, "registrations", "auth")
            raise RateLimited(
                f"too many registrations from your address; retry in {retry_seconds(bucket.wait(now))} s"
            )
        bucket.take(now)

    def release_registration(self, address: str | None) -> None:
        """Give back what L{reserve_registration} counted: that registration failed."""
        if not self.enabled or address is None or self._registration_rate is None:
            return
        bucket = self.buckets.get(("registrations", address))
        if bucket is not None:
            bucket.give_back(self.clock.seconds())

    def on_refused(self, address: str | None, reason: str, rate_class: str) -> None:
        """
        A request was refused for its rate: C{reason} is C{flood} (the
        connection is cut off) or C{registrations}.  Counts it, and scores
        a flood against the address (L{lairchat.intrusion}).
        """
        if self.metrics is not None:
            self.metrics.request_refused(rate_class, reason)
        if reason == "flood" and self.intrusion is not None:
            self.intrusion.note(address, "flood")

    def _prune(self, now: float) -> None:
        """At most once per L{PRUNE_INTERVAL}, forget every bucket that is full again."""
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL
        for key in [key for key, bucket in self.buckets.items() if bucket.full(now)]:
            del self.buckets[key]
