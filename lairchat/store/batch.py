# -*- test-case-name: tests.test_event_log -*-
"""
Group commit: requests that arrive while a statement is under way are
gathered and written together by the next one, so that under load many
messages share one statement and one commit, and alone a message goes out
at once.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from twisted.internet.defer import Deferred
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
    """

    def __init__(self, write: Callable[[list], Awaitable[list]], in_flight: int = 1,
                 max_batch: int = MAX_BATCH) -> None:
        self._write = write
        self._in_flight = in_flight
        self._max_batch = max_batch
        self._running = 0
        self._queue: list[tuple[Any, Deferred]] = []
        self.batches = 0
        self.items = 0
        self.output: Any = None

    def submit(self, item: Any) -> Deferred:
        """Queue one item; the Deferred fires with its result (or its batch's failure)."""
        d: Deferred = Deferred()
        self._queue.append((item, d))
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
        Deferred.fromCoroutine(self._run(batch))

    async def _run(self, batch: list) -> None:
        """
        Write one batch; start the next with what queued meanwhile; then
        hand each item its result (so that the database writes the next
        batch while this one's results are handed out).
        """
        try:
            results = await self._write([item for item, _ in batch])
        except Exception:
            failure = Failure()
            self._finished()
            for _, d in batch:
                d.errback(failure)
            return
        except BaseException:
            self._finished()
            raise
        self._finished()
        output = self.output
        if output is not None:
            output.hold()
        try:
            for (_, d), result in zip(batch, results):
                d.callback(result)
        finally:
            if output is not None:
                output.release()

    def _finished(self) -> None:
        """A batch is written: the next one may start."""
        self._running -= 1
        if self._queue and self._running < self._in_flight:
            self._next()
