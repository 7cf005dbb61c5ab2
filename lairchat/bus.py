# -*- test-case-name: tests.test_event_log -*-
"""
The bus: every event, from this node or another, handed to this node's
hub exactly once and in sequence order (which is commit order, see
L{lairchat.store.events}).

Events come in three ways.  An operation of this node that committed
events hands them over at once (L{Bus.committed}); when they directly
follow what was already handed on, they are delivered without a query.
Another node's message batch comes with its events in its C{NOTIFY}
(when they fit in one); when they directly follow what was already
handed on, they too are delivered without a query (notifications arrive
in commit order).  Everything else is read from the events table after
C{last}: when a C{NOTIFY} says there is more, when a local commit or a
notification left a gap (a commit this node was not told of in between),
every L{POLL_INTERVAL} in case a notification was lost, and after the
listening connection reconnected.  Reads are one at a time and skip what
was already delivered, so nothing is delivered twice and nothing is
skipped.

With no event log (a store double in protocol tests) the bus delivers
committed events straight away.

The events of one local commit, and of one read of the log, are handed
on under one L{Hub.hold}: each connection writes its share of them at
once.
"""

import time
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger

from lairchat.events import Event
from lairchat.hub import output_held
from lairchat.store.events import inline_events

FETCH_LIMIT = 1000
"""The most events one read of the log takes."""

FAST_PATH_MAX = 100
"""The most events of one local commit handed on at once; more go through the reader, which yields."""

YIELD_AFTER = 0.25
"""
Seconds of handing on (real time: the work itself, whatever clock the
server runs on) after which the reader lets the reactor run before
going on (a node of 5,000 users going offline in a room of 5,000 is
12,500,000 lines: heartbeats must not wait for all of them).  Not much
more often: every turn of the reactor flushes every connection's output,
and many small writes cost more than a few large ones.
"""


class Bus:
    """
    Ordered delivery of events to this node's hub.

    @ivar last: the sequence number of the last event handed to the hub.
    @ivar handed: how many events were handed to the hub.
    @ivar reads: how many times the event log was read.
    @ivar inline: how many notifications were handed on with the events
        they carried, without a read.
    """

    log = Logger()

    def __init__(self, hub: Any, event_log: Any = None, clock: Any = None) -> None:
        self.hub = hub
        self.event_log = event_log
        self.clock = clock
        self.last = 0
        self.handed = 0
        self.reads = 0
        self.inline = 0
        self._pumping = False
        self._again = False
        self._waiters: list[tuple[int, Deferred]] = []
        self.observers: list[Callable[[Event], Any]] = []

    @property
    def node(self) -> str:
        """This node's id."""
        return self.hub.node

    async def start(self) -> None:
        """Start from the newest event: a new node does not replay history."""
        if self.event_log is not None:
            self.last = await self.event_log.latest()

    def _hand_on(self, seq: int, event: Event) -> None:
        """Give one event to the hub (and the observers); never raises."""
        try:
            self.hub.dispatch(event)
        except Exception:
            self.log.failure("delivering event {seq} failed", seq=seq)
        for observer in self.observers:
            try:
                observer(event)
            except Exception:
                self.log.failure("an event observer failed on {seq}", seq=seq)
        self.last = seq
        self.handed += 1

    def _wake_waiters(self) -> None:
        """
        Let the operations waiting for what was handed on go on (after the
        hub released the output of those events, so their replies follow).
        """
        if self._waiters:
            seq = self.last
            ready = [d for target, d in self._waiters if target <= seq]
            self._waiters = [(t, d) for t, d in self._waiters if t > seq]
            for d in ready:
                d.callback(None)

    async def committed(self, seqs: list[int], events: list[Event]) -> None:
        """
        Events this node just committed, with their sequence numbers:
        deliver them, after every event committed before them.  Fires once
        they were handed on (so a reply goes out after its events).
        """
        if not events:
            return
        if self.event_log is None:
            with output_held(self.hub):
                for event in events:
                    self._hand_on(self.last + 1, event)
            return
        if (not self._pumping and len(events) <= FAST_PATH_MAX and seqs[0] == self.last + 1
                and seqs[-1] - seqs[0] == len(seqs) - 1):
            with output_held(self.hub):
                for seq, event in zip(seqs, events):
                    self._hand_on(seq, event)
            return
        if seqs[-1] <= self.last:
            return
        waiter: Deferred = Deferred()
        self._waiters.append((seqs[-1], waiter))
        self.wake()
        await waiter

    def wake(self, seq: int | None = None, node: str | None = None, inline: str | None = None) -> None:
        """
        There may be events to read (a notification says up to C{seq},
        written by C{node}, perhaps with the events, C{inline}: see
        L{EventListener}; L{None}: perhaps some were missed).  This node's
        own commits are handed on by L{committed}: their notifications are
        not read for (were one lost with its connection, the next poll
        reads it).
        """
        if self.event_log is None or (seq is not None and (seq <= self.last or node == self.node)):
            return
        if inline is not None and not self._pumping and self._hand_on_inline(inline):
            return
        if self._pumping:
            self._again = True
            return
        Deferred.fromCoroutine(self._pump())

    def _hand_on_inline(self, inline: str) -> bool:
        """
        Hand on the events a notification carried, if they directly follow
        what was handed on and every one can be read; whether it did (if
        not, the log is read instead).
        """
        found = inline_events(inline)
        if not found or [logged.seq for logged in found] != list(range(self.last + 1, self.last + 1 + len(found))):
            return False
        with output_held(self.hub):
            for logged in found:
                self._hand_on(logged.seq, logged.event)
        self.inline += 1
        self._wake_waiters()
        return True

    async def _pump(self) -> None:
        """Read and hand on events until there are no more; one reader at a time."""
        self._pumping = True
        try:
            while True:
                self._again = False
                self.reads += 1
                try:
                    found = await self.event_log.since(self.last, FETCH_LIMIT)
                except Exception as error:
                    self.log.warn("cannot read the event log: {error}", error=error)
                    self._release_waiters()
                    return
                began = time.monotonic()
                index = 0
                while index < len(found):
                    # a stretch handed on under one hold, until the reader lets the reactor run
                    with output_held(self.hub):
                        while index < len(found):
                            logged = found[index]
                            index += 1
                            if logged.seq > self.last:
                                self._hand_on(logged.seq, logged.event)
                                if self.clock is not None and time.monotonic() - began >= YIELD_AFTER:
                                    break
                    self._wake_waiters()
                    if index < len(found):
                        await deferLater(self.clock, 0, lambda: None)
                        began = time.monotonic()
                if len(found) < FETCH_LIMIT and not self._again:
                    break
            self._release_waiters()
        finally:
            self._pumping = False

    def _release_waiters(self) -> None:
        """
        Let every waiting operation go on: what it waited for was either
        delivered, or cannot be read now (the poll will deliver it later).
        """
        waiters, self._waiters = self._waiters, []
        for _, d in waiters:
            d.callback(None)
