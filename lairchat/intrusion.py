# -*- test-case-name: tests.test_intrusion -*-
"""
Intrusion detection: suspicious acts are scored per address (see
L{lairchat.suspicion}); an address whose score reaches the threshold is
blocked on every node for a while.  A blocked address's connections are
closed with C{1401 SECURITY_VIOLATION} and its new ones refused.  Exempt
networks (C{--exempt-network}) are never scored nor blocked.

Blocks live in the database (L{lairchat.store.blocks}); each node keeps
the ones in force in memory, refreshed every few seconds, so a block made
on one node closes the address's connections on the others within that
time.
"""

from datetime import datetime, timezone
from typing import Any, Callable

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from lairchat.addresses import UNKNOWN_ADDRESS, Networks
from lairchat.errors import ChatError, SecurityViolation
from lairchat.models import AddressBlock
from lairchat.suspicion import SuspicionRules, SuspicionScores

REFRESH_SECONDS = 2.0
"""How often a node reads the blocks in force from the database."""


def _moment(ms: int) -> str:
    """Epoch ms as an ISO 8601 UTC moment, to the second."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def block_error(block: AddressBlock) -> SecurityViolation:
    """The error a blocked address's connection gets before it is closed."""
    return SecurityViolation(f"your address is blocked until {_moment(block.until_ms)}: {block.reason}")


class IntrusionDetector:
    """
    Scores, blocks and refuses addresses for one node.

    @ivar blocks: the blocks in force as this node knows them, by address.
    @ivar metrics: a L{lairchat.metrics.Metrics}, or L{None}.
    """

    log = Logger()

    def __init__(self, store: Any, clock: Any, exempt: Networks = Networks(),
                 rules: SuspicionRules = SuspicionRules(), metrics: Any = None) -> None:
        self._store = store
        self._clock = clock
        self.exempt = exempt
        self.rules = rules
        self.scores = SuspicionScores(clock, rules)
        self.metrics = metrics
        self.blocks: dict[str, AddressBlock] = {}
        self._closers: list[Callable[[str, ChatError], None]] = []
        self._blocking: set[str] = set()

    def add_front_end(self, close_address: Callable[[str, ChatError], None]) -> None:
        """
        Register a front end's way to close its connections from an
        address, with the error line to write first.
        """
        self._closers.append(close_address)

    def watched(self, address: str | None) -> bool:
        """Whether an address can be scored and blocked (a real one, not exempt)."""
        return bool(address) and address != UNKNOWN_ADDRESS and address not in self.exempt

    def blocked(self, address: str | None) -> AddressBlock | None:
        """The block in force on C{address}, if any."""
        block = self.blocks.get(address) if address else None
        if block is None:
            return None
        if block.until_ms <= int(self._clock.seconds() * 1000):
            del self.blocks[address]
            return None
        return block

    def refusal(self, address: str | None) -> SecurityViolation | None:
        """The error to refuse a new connection from C{address} with, or L{None} to let it in."""
        if not self.watched(address):
            return None
        block = self.blocked(address)
        return None if block is None else block_error(block)

    def note(self, address: str | None, kind: str, count: int = 1) -> None:
        """
        C{address} did something suspicious (a kind of
        L{lairchat.suspicion.WEIGHTS}); block it once its score reaches the
        threshold.  Never raises; the block is made in the background.
        """
        if not self.watched(address) or address in self._blocking or self.blocked(address) is not None:
            return
        if self.metrics is not None:
            self.metrics.suspicious_acts.labels(kind).inc(count)
        if self.scores.note(address, kind, count):
            reason = f"too much suspicious activity ({kind.replace('_', ' ')})"
            Deferred.fromCoroutine(self._block_quietly(address, reason))

    async def _block_quietly(self, address: str, reason: str) -> None:
        """Block an address that reached the threshold; log, never raise."""
        self._blocking.add(address)
        try:
            block = await self._store.blocks.block(address, None, reason, "server", self.rules)
        except Exception as error:
            self.log.warn("could not block {address}: {error!r}", address=address, error=error)
            return
        finally:
            self._blocking.discard(address)
        self.log.warn("blocked {address} until {until}: {reason}", address=address,
                      until=_moment(block.until_ms), reason=reason)
        self._enforce(block)

    async def block(self, address: str, seconds: float, reason: str, blocked_by: str) -> AddressBlock:
        """Block an address for C{seconds} on an admin's word; its connections here close now."""
        block = await self._store.blocks.block(address, seconds, reason, blocked_by, self.rules)
        self._enforce(block)
        return block

    async def lift(self, address: str, lifted_by: str) -> bool:
        """End an address's block and start its score afresh; whether it was blocked."""
        lifted = await self._store.blocks.lift(address, lifted_by)
        self.blocks.pop(address, None)
        self.scores.forget(address)
        self._count()
        return lifted

    def _enforce(self, block: AddressBlock) -> None:
        """Note a block in force and close this node's connections from its address."""
        fresh = block.address not in self.blocks
        self.blocks[block.address] = block
        self._count(new=fresh)
        error = block_error(block)
        for close in self._closers:
            close(block.address, error)

    def _count(self, new: bool = False) -> None:
        """Bring the metrics up to date."""
        if self.metrics is not None:
            self.metrics.blocked_addresses.set(len(self.blocks))
            if new:
                self.metrics.blocks.inc()

    async def refresh(self) -> None:
        """
        Read the blocks in force from the database: enforce the ones made
        on other nodes, forget the lifted and the ended ones.
        """
        active = {b.address: b for b in await self._store.blocks.active() if self.watched(b.address)}
        for address, block in active.items():
            if address not in self.blocks:
                self._enforce(block)
            else:
                self.blocks[address] = block
        for address in [a for a in self.blocks if a not in active]:
            del self.blocks[address]
            self.scores.forget(address)
        self._count()

    async def _refresh_quietly(self) -> None:
        """L{refresh}, logging a failure (the database may be down) instead of raising."""
        try:
            await self.refresh()
        except Exception as error:
            self.log.debug("could not read the blocks: {error!r}", error=error)

    def service(self, interval: float = REFRESH_SECONDS) -> TimerService:
        """A service that refreshes the blocks every C{interval} seconds."""
        service = TimerService(interval, lambda: Deferred.fromCoroutine(self._refresh_quietly()))
        service.clock = self._clock
        return service
