# -*- test-case-name: tests.test_event_log -*-
"""
Group commit: requests that arrive while a statement is under way are
gathered and written together by the next one, so that under load many
messages share one statement and one commit, and alone a message goes out
at once.
"""

import time
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

MAX_BATCH = 500
"""The most items one statement writes."""


class GroupCommit:
    """
    Runs C{write(items)} (an async function returning one result per item)
    for batches of submitted items, at most C{in_flight} batches at a time.

    @ivar output: L{None}, or what holds the server's output (C{hold()} and
        C{release()}: the hub): a batch's results are handed out under one
        hold, so that the replies and deliveries they cause go out as one
        write per connection.
    @ivar observe: L{None}, or what is told of each batch once it is
        written (or failed), before its results are handed out: its size,
        how long its oldest item waited to be written (behind the batches
        in flight), and how long the write took, from its start to its
        answer, in seconds (the metrics).  Should it fail, that is logged
        and the batch's results are handed out all the same.

    The times are read from C{clock} (its C{seconds()}: an
    L{twisted.internet.interfaces.IReactorTime}, as a test's
    L{twisted.internet.task.Clock}), or by default from C{time.monotonic},
    which a change of the wall clock does not move.
    """

    log = Logger()

    def __init__(self, write: Callable[[list], Awaitable[list]], in_flight: int = 1,
                 max_batch: int = MAX_BATCH, clock: Any = None) -> None:
        self._write = write
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._seconds: Callable[[], float] = clock.seconds if clock is not None else time.monotonic
        self._running = 0
        self._queue: list[tuple[Any, Deferred, float]] = []
        self.batches = 0
        self.items = 0
        self.output: Any = None
        self.observe: Callable[[int, float, float], None] | None = None

    def submit(self, item: Any) -> Deferred:
        """Queue one item; the Deferred fires with its result (or its batch's failure)."""
        d: Deferred = Deferred()
        self._queue.append((item, d, self._seconds()))
        if self._running < self._in_flight:
            self._next()
        return d

    def _next(self) -> None:
        """Start a batch with what is queued."""
        batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        if not batch:
            return
        self._running += 1
        self.batches += 1
        self.items += len(batch)
        Deferred.fromCoroutine(self._run(batch, self._seconds()))

    def _written(self, batch: list, started: float) -> None:
        """
        A batch started at C{started} is written (or failed): the next may
        start; it is observed (its time taken before the next starts, whose
        start is not this one's write).
        """
        took = self._seconds() - started
        self._finished()
        observe = self.observe
        if observe is not None:
            try:
                observe(len(batch), started - batch[0][2], took)
            except Exception:
                self.log.failure("observing a written batch failed")

    async def _run(self, batch: list, started: float) -> None:
        """
        Write one batch; start the next with what queued meanwhile; then
        hand each item its result (so that the database writes the next
        batch while this one's results are handed out).
        """
        try:
            results = await self._write([item for item, _, _ in batch])
        except Exception:
            failure = Failure()
            self._written(batch, started)
            for _, d, _ in batch:
                d.errback(failure)
            return
        except BaseException:
            self._finished()
            raise
        self._written(batch, started)
        output = self.output
        if output is not None:
            output.hold()
        try:
            for (_, d, _), result in zip(batch, results):
                d.callback(result)
        finally:
            if output is not None:
                output.release()

    def _finished(self) -> None:
        """A batch is written: the next one may start."""
        self._running -= 1
        if self._queue and self._running < self._in_flight:
            self._next()
