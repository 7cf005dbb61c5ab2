# -*- test-case-name: tests.test_passwords -*-
"""
Password hashing with argon2id, off the reactor thread, through a fair,
bounded queue.

Hashing is deliberately slow and takes memory (64 MiB a hash with the
default profile), so every hash and every verification runs in a thread
pool, and only L{SLOTS} of them at once.  Who waits for a slot waits in a
L{FairQueue}: one address holds at most L{SLOTS_PER_ADDRESS} slots, and the
slots that free up go round the waiting addresses in turn, so an address
that floods the server with C{REGISTER}s waits behind the others' logins
instead of in front of them.  The queue is bounded, in all and per
address: past the bound a request is refused at once with C{1110
RATE_LIMITED} and an estimate of when to retry.

Work done for no client address, or for an exempt network, is queued as
its own address each time (no per-address cap; still fair and bounded).
"""

import math
from collections import deque
from typing import Any, Callable

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from lairchat.errors import RateLimited

SLOTS = 4
"""How many hashes run at once (each takes 64 MiB with the default profile)."""

SLOTS_PER_ADDRESS = 2
"""How many of them one address may hold."""

QUEUE_LIMIT = 256
"""How many hashes may wait for a slot, in all."""

QUEUE_PER_ADDRESS = 32
"""How many of them one address may have waiting."""


class QueueFull(Exception):
    """The queue (or an address's share of it) is full; nothing was queued."""


class FairQueue:
    """
    Slots handed round-robin to the addresses that wait for one.

    A caller L{ask}s for a slot under a key (its address), gets a Deferred
    that fires once it holds one, and gives it back with L{done}.  A key
    holds at most C{per_address} slots; each free slot goes to the waiting
    address that may take one and was given a slot least recently (one
    that had none yet first, in the order they came): round-robin over the
    addresses, whatever their number of requests.  No clock, no threads:
    the order is all there is to it.

    @ivar slots: how many slots there are.
    @ivar per_address: how many one key may hold.
    @ivar limit: how many callers may wait, in all.
    @ivar per_address_limit: how many callers of one key may wait.
    """

    def __init__(self, slots: int = SLOTS, per_address: int = SLOTS_PER_ADDRESS, limit: int = QUEUE_LIMIT,
                 per_address_limit: int = QUEUE_PER_ADDRESS) -> None:
        self.slots = slots
        self.per_address = per_address
        self.limit = limit
        self.per_address_limit = per_address_limit
        self._running: dict[Any, int] = {}
        self._waiting: dict[Any, deque] = {}
        self._waiting_count = 0
        self._last_turn: dict[Any, int] = {}
        self._turns = 0

    def __len__(self) -> int:
        """How many callers wait for a slot."""
        return self._waiting_count

    def busy(self) -> int:
        """How many slots are held."""
        return sum(self._running.values())

    def held_by(self, key: Any) -> int:
        """How many slots C{key} holds."""
        return self._running.get(key, 0)

    def ask(self, key: Any) -> Deferred:
        """
        A slot for C{key}: a Deferred that fires (with L{None}) once C{key}
        holds it, at once when one is free for it.

        @raise QueueFull: C{key} would have to wait, and the queue or
            C{key}'s share of it is full.
        """
        if self.busy() < self.slots and self.held_by(key) < self.per_address:
            self._take(key)
            d = Deferred()
            d.callback(None)
            return d
        queued = self._waiting.get(key)
        if self._waiting_count >= self.limit or (queued is not None and len(queued) >= self.per_address_limit):
            raise QueueFull()
        d = Deferred(lambda cancelled: self._forget(key, cancelled))
        self._waiting.setdefault(key, deque()).append(d)
        self._waiting_count += 1
        return d

    def _forget(self, key: Any, d: Deferred) -> None:
        """A caller that gave up waiting (its Deferred was cancelled) leaves the queue."""
        queued = self._waiting.get(key)
        if queued is not None and d in queued:
            queued.remove(d)
            self._waiting_count -= 1
            if not queued:
                del self._waiting[key]
                if not self.held_by(key):
                    self._last_turn.pop(key, None)

    def _take(self, key: Any) -> None:
        """C{key} takes a slot now."""
        self._running[key] = self.held_by(key) + 1
        self._turns += 1
        self._last_turn[key] = self._turns

    def done(self, key: Any, serve: bool = True) -> None:
        """
        C{key} gives a slot back; the next in turn gets it (with C{serve}
        false, only at the next L{serve}).
        """
        held = self.held_by(key) - 1
        if held > 0:
            self._running[key] = held
        else:
            self._running.pop(key, None)
            if key not in self._waiting:
                self._last_turn.pop(key, None)
        if serve:
            self.serve()

    def leave(self, key: Any, d: Deferred) -> None:
        """A caller stops waiting for its slot (C{d}, from L{ask}) without firing it."""
        self._forget(key, d)

    def serve(self) -> None:
        """Hand out the free slots in turn, then fire the Deferreds of those served."""
        served = []
        while self.busy() < self.slots:
            eligible = [k for k in self._waiting if self.held_by(k) < self.per_address]
            if not eligible:
                break
            key = min(eligible, key=lambda k: self._last_turn.get(k, 0))
            queued = self._waiting[key]
            served.append(queued.popleft())
            self._waiting_count -= 1
            if not queued:
                del self._waiting[key]
            self._take(key)
        for d in served:
            d.callback(None)


class Passwords:
    """
    Hash and verify passwords in a thread pool, through a L{FairQueue}.

    @ivar hasher: the argon2 L{PasswordHasher} (RFC 9106's low-memory
        profile by default).
    @ivar queue: the L{FairQueue} of hashing slots.
    @ivar waited: called with the seconds each hash waited for its slot
        (for metrics), or L{None}.
    @ivar refused: called once per hash refused for a full queue, or L{None}.
    """

    def __init__(self, reactor: Any, threadpool: Any = None, hasher: PasswordHasher | None = None,
                 queue: FairQueue | None = None) -> None:
        self._reactor = reactor
        self._threadpool = threadpool if threadpool is not None else reactor.getThreadPool()
        self.hasher = hasher or PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY)
        self.queue = queue if queue is not None else FairQueue()
        self.waited: Callable[[float], None] | None = None
        self.refused: Callable[[], None] | None = None
        self._decoy: str | None = None
        self._mean_seconds = 0.1

    def queue_length(self) -> int:
        """How many hashes wait for a slot."""
        return len(self.queue)

    async def hash(self, password: str, address: str | None = None) -> str:
        """
        The argon2id hash of a password, hashed in C{address}'s turn.

        @raise RateLimited: too many hashes wait (in all, or for C{address}).
        """
        return await self._run(address, self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str, address: str | None = None) -> bool:
        """
        Whether C{password} matches C{password_hash}, checked in
        C{address}'s turn.  With no hash (an unknown user) a decoy hash is
        verified instead, so the answer takes as long either way and never
        tells whether the user exists.

        @raise RateLimited: too many hashes wait (in all, or for C{address}).
        """
        if password_hash is None:
            if self._decoy is None:
                self._decoy = await self.hash("decoy password 0", address)
            await self._run(address, self._check, self._decoy, password)
            return False
        return await self._run(address, self._check, password_hash, password)

    async def _run(self, address: str | None, work: Callable[..., Any], *args: Any) -> Any:
        """Run C{work(*args)} in the pool once C{address} holds a slot."""
        key = address if address is not None else object()
        asked = self._reactor.seconds()
        try:
            turn = self.queue.ask(key)
        except QueueFull:
            if self.refused is not None:
                self.refused()
            raise RateLimited(f"too many passwords are waiting to be checked; retry in {self.retry_after()} s")
        try:
            await turn
        except GeneratorExit:
            # closed while waiting (its caller is gone, the process winds
            # down): leave the queue without a turn ever reaching it
            self.queue.leave(key, turn)
            raise
        started = self._reactor.seconds()
        if self.waited is not None:
            self.waited(started - asked)
        try:
            result = await deferToThreadPool(self._reactor, self._threadpool, work, *args)
        except GeneratorExit:
            # closed while hashing: give the slot back, and serve the next
            # in a turn of the reactor of its own, not from inside a closing
            # coroutine (those waiting may be closing too)
            self.queue.done(key, serve=False)
            self._reactor.callLater(0, self.queue.serve)
            raise
        except BaseException:
            self._finished(key, started)
            raise
        self._finished(key, started)
        return result

    def _finished(self, key: Any, started: float) -> None:
        """A hash is done: note how long it took, and hand the slot on."""
        self._mean_seconds = 0.8 * self._mean_seconds + 0.2 * max(self._reactor.seconds() - started, 0.0)
        self.queue.done(key)

    def retry_after(self) -> int:
        """Whole seconds (at least 1) until the queue as it is now has likely been worked off."""
        rounds = (len(self.queue) + self.queue.busy()) / max(self.queue.slots, 1)
        return max(1, math.ceil(rounds * self._mean_seconds))

    def _check(self, password_hash: str, password: str) -> bool:
        """Verify in the calling (pool) thread."""
        try:
            return self.hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
