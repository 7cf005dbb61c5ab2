# -*- test-case-name: tests.test_nodes_e2e -*-
"""
This node among the others on the same database: it registers itself,
listens for events, says it is alive, and notices the nodes that died.

Five times per C{--node-timeout} a node writes that it is alive and how
far it has read the event log; every L{POLL_INTERVAL} it reads the log in
case a notification was lost.  A node not heard from for
C{node_timeout} seconds is taken for dead by the first live node to
notice: its connections are gone, so its users who are online nowhere
else are announced offline, in the same transaction that forgets the
node.  The events every live node has read are trimmed.  A node that
posted messages moves the search index's pending entries every
L{SEARCH_INDEX_INTERVAL} (see L{index_pending}).

A node that finds itself forgotten (it was stalled past the timeout)
registers again; its users' presence is written again as they log in.
"""

import secrets
import socket
from typing import Any

import psycopg2
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from lairchat.events import Origin, PresenceChanged
from lairchat.store.database import Database
from lairchat.store.events import EventListener, EventLog, Outbox
from lairchat.store.messages import index_pending

HEARTBEAT_SHARE = 5
"""A node says it is alive this many times per C{node_timeout}."""

POLL_INTERVAL = 1.0
"""Seconds between two reads of the event log that no notification asked for."""

NODE_TIMEOUT = 10.0
"""Seconds without a heartbeat after which a node is taken for dead."""

SEARCH_INDEX_INTERVAL = 2.0
"""
Seconds between two looks of a node that posted messages at the search
index's pending entries (L{index_pending}).
"""


HOUSEKEEPING_INTERVAL = 600.0
"""Seconds between two runs of L{NodeService.housekeeping} on a node."""

GUEST_GRACE = 60.0
"""
Seconds an IRC guest online nowhere is left alone by housekeeping: one
that registers is a row a moment before it is noted online.
"""


def new_node_id() -> str:
    """A node id, new at every start: the host name and a random part."""
    return f"{socket.gethostname()[:40]}-{secrets.token_hex(4)}"


def offline(user_id: int, username: str, room_ids: list[int]) -> PresenceChanged:
    """The event of a user going offline."""
    return PresenceChanged(user_id, username, False, tuple(room_ids))


class NodeService(Service):
    """
    The node's life on the shared database: registration, listening,
    heartbeats, polling, reaping dead nodes, trimming the log.
    """

    name = "node"
    log = Logger()

    def __init__(self, server: Any, dsn: str, node_timeout: float = NODE_TIMEOUT) -> None:
        self.server = server
        self.dsn = dsn
        self.node_timeout = node_timeout
        self._listener = None
        self._upkeep: Database | None = None
        self._events: EventLog | None = None
        self._heartbeat: LoopingCall | None = None
        self._reaper: LoopingCall | None = None
        self._next_housekeeping = 0.0
        self._reaping: Deferred | None = None
        self._reannouncing: Deferred | None = None
        self._poll: LoopingCall | None = None
        self._beating: Deferred | None = None
        self._indexer: LoopingCall | None = None
        self._indexing: Deferred | None = None
        self._indexed = 0
        self._index_refused = False

    @property
    def node(self) -> str:
        """This node's id."""
        return self.server.hub.node

    async def begin(self) -> None:
        """
        Listen, then register and find where the log ends in one step
        (L{EventLog.join_at_end}: every commit after that end notifies this
        node), called before the ports open.  The node's own upkeep
        (heartbeats, reaping, trimming) runs on a database connection of
        its own, so that a pool busy with requests never delays a
        heartbeat past the timeout.
        """
        server = self.server
        self._upkeep = Database(self.dsn, 1, reactor=server.clock)
        await self._upkeep.start()
        self._events = EventLog(self._upkeep)
        self._listener = EventListener(self.dsn, server.bus.wake, server.clock)
        await self._listener.start()
        await server.bus.start(await self._events.join_at_end(self.node))

    def startService(self) -> None:
        """Start the heartbeat and the poll."""
        super().startService()
        self._heartbeat = LoopingCall(self._beat)
        self._heartbeat.clock = self.server.clock
        self._heartbeat.start(self.node_timeout / HEARTBEAT_SHARE, now=False)
        self._reaper = LoopingCall(self._reap)
        self._reaper.clock = self.server.clock
        self._reaper.start(self.node_timeout / HEARTBEAT_SHARE, now=False)
        self._poll = LoopingCall(self.server.bus.wake)
        self._poll.clock = self.server.clock
        self._poll.start(POLL_INTERVAL, now=False)
        self._indexer = LoopingCall(self._index)
        self._indexer.clock = self.server.clock
        self._indexer.start(SEARCH_INDEX_INTERVAL, now=False)

    def _beat(self) -> Deferred:
        """One heartbeat; never raises (a LoopingCall would stop for good)."""
        d = Deferred.fromCoroutine(self.beat())
        d.addErrback(lambda f: self.log.warn("heartbeat failed: {error}", error=f.value))
        self._beating = d
        return d

    def _reap(self) -> Deferred:
        """One look for dead nodes; never raises."""
        d = Deferred.fromCoroutine(self.reap())
        d.addErrback(lambda f: self.log.warn("looking for dead nodes failed: {error}", error=f.value))
        self._reaping = d
        return d

    def _index(self) -> Deferred | None:
        """
        When this node posted messages since the last look, move the search
        index's pending entries (on the upkeep connection, so that no
        request waits for it); never raises.
        """
        posted = self.server.store.messages.posted
        if posted == self._indexed or self._index_refused:
            return None
        # noted before it is done: after a failure the entries wait for this
        # node's next message (or another node's look); an edit adds entries
        # too, but edits are few and the next message takes them along
        self._indexed = posted
        d = Deferred.fromCoroutine(index_pending(self._upkeep))
        d.addErrback(self._index_failed)
        self._indexing = d
        return d

    def _index_failed(self, failure: Any) -> None:
        """Say why the pending entries were not moved; stop trying when the database refuses for good."""
        if failure.check(psycopg2.errors.InsufficientPrivilege):
            self._index_refused = True
            self.log.warn("this database role does not own the search index (messages_search), so it cannot move "
                          "its pending entries; a message write will now and then take them in, and wait")
        else:
            self.log.warn("moving the search index's pending entries failed: {error}", error=failure.value)

    async def beat(self) -> None:
        """
        Say this node lives; when the others took it for dead, register
        again and, in the background (a heartbeat must never wait for
        it), note its users online again.
        """
        server, events = self.server, self._events
        if await events.heartbeat(self.node, server.bus.last):
            return
        self.log.warn("this node was taken for dead; registering again")
        await events.join(self.node, server.bus.last)
        if self._reannouncing is None:
            self._reannouncing = Deferred.fromCoroutine(server.presence.reannounce())
            self._reannouncing.addErrback(lambda f: self.log.warn("users not noted online again: {error}",
                                                                  error=f.value))

            def done(_: Any) -> None:
                self._reannouncing = None

            self._reannouncing.addBoth(done)

    async def reap(self) -> None:
        """Take the nodes not heard from for too long for dead, and trim the log."""
        server, events = self.server, self._events
        for dead in await events.dead_nodes(self.node_timeout):
            if dead == self.node:
                continue
            self.log.warn("node {node} stopped answering; its users are offline", node=dead)
            outbox = Outbox(Origin(self.node))
            await events.remove_node(dead, outbox, offline)
            await server.deliver(outbox)
        await events.trim()
        now = server.clock.seconds()
        if now >= self._next_housekeeping:
            self._next_housekeeping = now + HOUSEKEEPING_INTERVAL
            await self.housekeeping(int(now * 1000))

    async def housekeeping(self, now_ms: int) -> None:
        """
        Forget what the hardening rules no longer need: login-throttle keys
        idle longer than their memory, address blocks that ended more than
        a day ago (their strikes no longer count), and IRC guests whose node
        died before it could delete them (online nowhere).
        """
        store, config = self.server.store, self.server.config
        guests = await store.users.sweep_guests(GUEST_GRACE)
        if guests:
            self.log.info("removed {count} IRC guests left by stopped nodes", count=guests)
        memory = max(config.login_failure_memory, config.address_failure_memory)
        forgotten = await store.logins.forget_before(now_ms - int(memory * 1000), now_ms)
        ended = await store.blocks.forget_old()
        if forgotten or ended:
            self.log.info("forgot {keys} idle login-throttle keys and {blocks} old address blocks",
                          keys=forgotten, blocks=ended)

    async def end(self) -> None:
        """Leave the cluster: stop listening, forget this node (its users go offline)."""
        for call in (self._heartbeat, self._reaper, self._poll, self._indexer):
            if call is not None and call.running:
                call.stop()
        for running in (self._beating, self._reaping, self._reannouncing, self._indexing):
            if running is not None and not running.called:
                try:
                    await running
                except Exception:
                    pass
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.server.bus.stop()
        try:
            await self._events.remove_node(self.node, Outbox(Origin(self.node)), offline)
        except Exception as error:
            self.log.warn("could not deregister this node: {error}", error=error)
        if self._upkeep is not None:
            self._upkeep.close()
            self._upkeep = None
