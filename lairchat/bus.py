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
in commit order).  Events of either kind that come ahead of their turn
are kept until it comes: while the log is being read (they are handed
on after what the read found, without reading again), and for at most
L{GAP_WAIT} when what is missing before them is this node's own commit,
whose notification came but whose result (on another connection) has
not yet.  Everything else is read from the events table after C{last}:
when a C{NOTIFY} says there is more, when a local commit or a
notification left any other gap (a commit this node was not told of in
between), every L{POLL_INTERVAL} in case a notification was lost, and
after the listening connection reconnected.  Reads are one at a time
and skip what was already delivered, so nothing is delivered twice and
nothing is skipped.

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

GAP_WAIT = 0.05
"""
Seconds that events known ahead of a gap wait for this node's own commits
to fill it (their results come on another connection than the
notifications that follow them) before the log is read instead.
"""

EARLY_MAX = 1000
"""The most events kept ahead of their turn; past it the log is read instead."""

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
        they carried as they came, without a read.
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
        self._early: dict[int, Event] = {}
        self._own_notified = 0
        self._gap_call: Any = None
        self._stopped = False
        self._waiters: list[tuple[int, Deferred]] = []
        self.observers: list[Callable[[Event], Any]] = []

    @property
    def node(self) -> str:
        """This node's id."""
        return self.hub.node

    async def start(self, last: int | None = None) -> None:
        """
        Start after event C{last}, by default the newest event: a new node
        does not replay history.
        """
        if last is not None:
            self.last = last
        elif self.event_log is not None:
            self.last = await self.event_log.latest()

    def stop(self) -> None:
        """The node leaves: no more waiting for gaps to fill (a gap is read for at once, one waiting now too)."""
        self._stopped = True
        self._mind_the_gap()  # a timer runs only while events are kept, and this reads for them

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
        if seqs[-1] <= self.last:
            return
        if (len(events) <= FAST_PATH_MAX and seqs[-1] - seqs[0] == len(seqs) - 1 and seqs[0] > self.last
                and len(self._early) < EARLY_MAX):
            # handed on now, or kept until what comes before them is known
            # (or until the read under way ends)
            self._early.update(zip(seqs, events))
            if not self._pumping and seqs[0] == self.last + 1:
                self._hand_on_early()
                return
            waiter: Deferred = Deferred()
            self._waiters.append((seqs[-1], waiter))
            self._mind_the_gap()
            await waiter
            return
        waiter = Deferred()
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
        if self.event_log is None:
            return
        if seq is not None and node == self.node:
            # this node's own commit: L{committed} hands it on
            self._own_notified = max(self._own_notified, seq)
            return
        if seq is not None and seq <= self.last:
            return
        if inline is not None and self._keep_inline(inline):
            if not self._pumping:
                self._hand_on_early()
                if seq is not None and seq <= self.last:
                    self.inline += 1
                self._mind_the_gap()
            return
        if self._pumping:
            self._again = True
            return
        self._pump_now()

    def _keep_inline(self, inline: str) -> bool:
        """
        Keep the events a notification carried, to be handed on in their
        turn; whether it could (every one read, in sequence; if not, the
        log is read instead).
        """
        found = inline_events(inline)
        if not found or [logged.seq for logged in found] != list(range(found[0].seq, found[0].seq + len(found))):
            return False
        if len(self._early) + len(found) > EARLY_MAX:
            return False
        for logged in found:
            if logged.seq > self.last:
                self._early[logged.seq] = logged.event
        return True

    def _hand_on_early(self) -> None:
        """
        Hand on the events kept ahead (L{_early}) that now directly follow
        what was handed on, under one hold; forget those already handed on.
        """
        early = self._early
        if self.last + 1 in early:
            with output_held(self.hub):
                while self.last + 1 in early:
                    seq = self.last + 1
                    self._hand_on(seq, early.pop(seq))
            self._wake_waiters()
        if early and min(early) <= self.last:
            for seq in [seq for seq in early if seq <= self.last]:
                del early[seq]
        if not early:
            self._cancel_gap_call()

    def _mind_the_gap(self) -> None:
        """
        Events are kept ahead of a gap: when this node's own commits, whose
        results are on their way, may fill it (and there are not too many),
        wait L{GAP_WAIT} for them; otherwise, or then, read the log.
        """
        if not self._early or self._pumping:
            return
        if self.clock is None or self._stopped or min(self._early) - 1 > self._own_notified:
            self._pump_now()
        elif self._gap_call is None or not self._gap_call.active():
            self._gap_call = self.clock.callLater(GAP_WAIT, self._gap_waited)

    def _gap_waited(self) -> None:
        """The gap was not filled in time: read the log."""
        self._gap_call = None
        if self._early and not self._pumping:
            self._pump_now()

    def _cancel_gap_call(self) -> None:
        """No more waiting for a gap to fill (see L{_mind_the_gap})."""
        if self._gap_call is not None and self._gap_call.active():
            self._gap_call.cancel()
        self._gap_call = None

    def _pump_now(self) -> None:
        """Start reading the log (nobody is reading it)."""
        self._cancel_gap_call()
        Deferred.fromCoroutine(self._pump())

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
                    self._pumping = False
                    self._hand_on_early()
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
                # what notifications brought meanwhile, and this node's own commits
                self._hand_on_early()
                if len(found) < FETCH_LIMIT and not self._again and not self._early:
                    break
            self._pumping = False
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
