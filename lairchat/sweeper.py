# -*- test-case-name: tests.test_invitations_sweeper -*-
"""
The invitation sweep: every C{--sweep-interval} seconds, expire the
invitations that are due (a set-based statement per batch), tell both parties
where online, remind online recipients once of invitations about to
expire, and delete answered invitations older than C{--invite-retention}.

Each expiry and each reminder records its event in the transaction of its
status change (L{lairchat.store.invitations}), and the sweep delivers them
once it committed, from this node (L{Origin} with no connection).  Every
node sweeps; they share the work, and each invitation expires, and is
told, once.

It runs on the server's clock (a L{twisted.internet.task.Clock} in tests).
A run that fails (the database is down) is logged, and the schedule goes
on: a L{LoopingCall} whose function raises would stop for good, so
L{InvitationSweeper.run_once} never raises.
"""

import time
from typing import Any

from attrs import frozen
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lairchat.errors import ChatError
from lairchat.events import Origin
from lairchat.store.events import Outbox


@frozen
class SweepReport:
    """What one run did."""

    expired: int
    reminded: int
    purged: int


EXPIRY_BATCH = 100_000
"""
The most invitations one statement expires.  A backlog larger than this
(a server down for long) takes several statements in the same run, so no
single statement outlives the database's statement timeout and the sweep
never wedges on a backlog.
"""


async def sweep(server: Any, now_ms: int, batch_size: int = EXPIRY_BATCH) -> SweepReport:
    """
    One run of the sweep at C{now_ms} over C{server}'s store; its events go
    to every node.

    @param server: a L{lairchat.context.ServerContext}.
    @param batch_size: the most invitations one statement expires.
    @raise ChatError: the database failed; what was already committed stays.
    """
    store, config = server.store.invitations, server.config
    origin = Origin(server.node)
    expired = 0
    while True:
        outbox = Outbox(origin)
        batch = await store.expire_due(now_ms, outbox, batch_size)
        await server.deliver(outbox)
        expired += len(batch)
        if len(batch) < batch_size:
            break
    outbox = Outbox(origin)
    reminded = await store.remind(now_ms, config.reminder_window * 1000, outbox)
    await server.deliver(outbox)
    purged = await store.purge_answered(now_ms - config.invite_retention * 1000)
    return SweepReport(expired, len(reminded), purged)


class InvitationSweeper(Service):
    """
    The service that runs L{sweep} every C{config.sweep_interval} seconds,
    first as soon as it starts.  Stopping waits for a run in progress.
    """

    name = "invitation-sweeper"
    log = Logger()

    def __init__(self, server: Any) -> None:
        self.server = server
        self._loop: LoopingCall | None = None
        self._loop_done: Deferred | None = None
        self._current: Deferred | None = None
        self.runs = 0
        self.failures = 0

    def startService(self) -> None:
        """Start the schedule."""
        super().startService()
        self._loop = LoopingCall(self._tick)
        self._loop.clock = self.server.clock
        self._loop_done = self._loop.start(self.server.config.sweep_interval, now=True)

    def _tick(self) -> Deferred:
        """One scheduled run; the loop waits for it before the next."""
        self._current = Deferred.fromCoroutine(self.run_once())
        return self._current

    def idle(self) -> Deferred:
        """A Deferred that fires when no run is in progress."""
        current = self._current
        if current is None or current.called:
            return succeed(None)
        done: Deferred = Deferred()
        current.addBoth(lambda result: (done.callback(None), result)[1])
        return done

    async def run_once(self) -> SweepReport | None:
        """
        Sweep now.  Never raises: a failure is logged and L{None} returned,
        so the schedule goes on.
        """
        self.runs += 1
        now_ms = int(self.server.clock.seconds() * 1000)
        began = time.perf_counter()
        try:
            report = await sweep(self.server, now_ms)
        except ChatError as error:
            self._measure("failed", began)
            self.failures += 1
            self.log.warn("invitation sweep failed ({error}); trying again in {interval} s",
                          error=error.message, interval=self.server.config.sweep_interval)
            return None
        except Exception:
            self._measure("failed", began)
            self.failures += 1
            self.log.failure("invitation sweep failed; trying again in {interval} s",
                             interval=self.server.config.sweep_interval)
            return None
        self._measure("ok", began)
        if report.expired or report.reminded or report.purged:
            self.log.info("invitation sweep: {expired} expired, {reminded} reminded, {purged} purged",
                          expired=report.expired, reminded=report.reminded, purged=report.purged)
        return report

    def _measure(self, outcome: str, began: float) -> None:
        """Count a run and how long it took (real time) in the server's metrics."""
        metrics = getattr(self.server, "metrics", None)
        if metrics is not None:
            metrics.sweeps.labels(outcome).inc()
            metrics.sweep_seconds.observe(time.perf_counter() - began)

    def stopService(self) -> Deferred:
        """Stop the schedule; the Deferred fires once a run in progress ends."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self.idle()
