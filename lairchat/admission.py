# -*- test-case-name: tests.test_admission -*-
"""
Admission of new connections: how many are open from each address and in
all, and how many each address opened lately.  Pure bookkeeping on an
injected clock (a L{Clock} in tests); the protocol factory asks it before it
serves a connection and tells it when one closes.
"""

import math
from collections import deque
from typing import Any

from attrs import frozen

from lairchat.addresses import UNKNOWN_ADDRESS
from lairchat.errors import ChatError, RateLimited, TooManyConnections


@frozen
class Refusal:
    """
    Why a connection is not served.

    @ivar reason: a short name for metrics and logs: C{total} (the server
        is full), C{per_address} (too many open from the address) or
        C{rate} (too many new ones from the address lately).
    @ivar error: the error line the client reads before the close.
    """

    reason: str
    error: ChatError


class ConnectionGate:
    """
    Counts the open connections per address and in total, and each
    address's recent new connections, and says whether one more may come.

    An exempt address (a trusted network) has no per-address limit, but its
    connections count towards the total.  So does a connection with no IP
    address (L{UNKNOWN_ADDRESS}, say a Unix socket): the per-address limits
    would lump all of them together.

    Every attempt from a limited address counts towards its window, the
    refused ones too: a client retrying in a tight loop stays refused until
    it slows down.  Only the last C{per_window} attempts of an address are
    kept, so memory stays bounded however hard it hammers; addresses quiet
    for a whole window are forgotten.

    @param clock: an L{IReactorTime}.
    @param per_address: open connections allowed from one address.
    @param total: open connections allowed in all, or L{None} for no limit.
    @param per_window: new connections allowed from one address within
        C{window} seconds.
    @param window: the length of that window, in seconds.
    """

    def __init__(
        self,
        clock: Any,
        per_address: int = 32,
        total: int | None = None,
        per_window: int = 20,
        window: float = 10.0,
    ) -> None:
        self.clock = clock
        self.per_address = per_address
        self.total = total
        self.per_window = per_window
        self.window = window
        self.open_total = 0
        self._open: dict[str, int] = {}
        self._recent: dict[str, deque] = {}
        self._swept = clock.seconds()

    def open_from(self, address: str) -> int:
        """How many admitted connections from C{address} are open."""
        return self._open.get(address, 0)

    def tracked_addresses(self) -> int:
        """How many addresses the gate keeps anything about (for tests and metrics)."""
        return len(set(self._open) | set(self._recent))

    def admit(self, address: str, exempt: bool = False) -> Refusal | None:
        """
        A new connection from C{address}: count it as open and return
        L{None}, or return the L{Refusal} that keeps it out (and count
        nothing open).  Every admitted connection must be L{release}d once.
        """
        now = self.clock.seconds()
        self._sweep(now)
        limited = not exempt and address != UNKNOWN_ADDRESS
        refusal = None
        if limited:
            refusal = self._rate_refusal(address, now)
        if refusal is None and self.total is not None and self.open_total >= self.total:
            refusal = Refusal("total", TooManyConnections("the server is full; try again later"))
        if refusal is None and limited and self._open.get(address, 0) >= self.per_address:
            refusal = Refusal(
                "per_address",
                TooManyConnections(
                    f"at most {self.per_address} connections from one address; close one and try again"
                ),
            )
        if refusal is not None:
            return refusal
        self.open_total += 1
        self._open[address] = self._open.get(address, 0) + 1
        return None

    def release(self, address: str) -> None:
        """An admitted connection from C{address} closed."""
        count = self._open.get(address, 0)
        if count <= 0:
            raise ValueError(f"no open connection from {address!r} to release")
        self.open_total -= 1
        if count == 1:
            del self._open[address]
        else:
            self._open[address] = count - 1

    def _rate_refusal(self, address: str, now: float) -> Refusal | None:
        """
        Note an attempt from C{address}; a refusal when it made
        C{per_window} others within the window.
        """
        recent = self._recent.get(address)
        if recent is None:
            recent = self._recent[address] = deque(maxlen=max(self.per_window, 1))
        limited = self.per_window <= 0 or (len(recent) >= self.per_window and now - recent[0] < self.window)
        recent.append(now)
        if not limited:
            return None
        if self.per_window <= 0:
            return Refusal("rate", RateLimited("no new connections are accepted from your address"))
        # The refused attempt counts too: the next one gets in once the
        # oldest of the last per_window attempts is a window old.
        wait = max(1, math.ceil(recent[0] + self.window - now))
        return Refusal(
            "rate",
            RateLimited(
                f"at most {self.per_window} new connections from one address in {self.window:g} s; "
                f"retry in {wait} s"
            ),
        )

    def _sweep(self, now: float) -> None:
        """Once per window, forget the addresses that made no attempt within it."""
        if now - self._swept < self.window:
            return
        self._swept = now
        for address in [a for a, recent in self._recent.items() if not recent or now - recent[-1] >= self.window]:
            del self._recent[address]
