# -*- test-case-name: tests.test_nodes_e2e -*-
"""
Who is online, across every node on the database.

A user is online while they have a logged-in connection on some node (the
C{online} table says which).  When a user's first connection on this node
logs in, their rooms are loaded into the hub and the node is noted in
C{online}; when that makes them online anywhere for the first time,
C{PRESENCE:<user>:online} is recorded in the same transaction, for the
users who share a room with them.  Their last connection here leaving
works the other way round.  A node that dies takes its users offline
through L{lairchat.node}.

A user's changes on this node are made one after another, in the order
they happened; stopping the server waits for those under way.
"""

from typing import Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from lairchat.events import Origin, PresenceChanged
from lairchat.models import User
from lairchat.store.events import Outbox


def announcement(online: bool) -> Any:
    """The factory of the presence event the store records."""

    def make(user_id: int, username: str, room_ids: list[int]) -> PresenceChanged:
        return PresenceChanged(user_id, username, online, tuple(room_ids))

    return make


class Presence:
    """The presence of this node's users."""

    log = Logger()

    def __init__(self, server: Any) -> None:
        self.server = server
        self._chains: dict[int, Deferred] = {}
        self._waiting: dict[int, int] = {}

    def _chain(self, user: User, work: Any) -> Deferred:
        """Run C{work()} after the user's earlier changes; the result fires with its outcome."""
        chain = self._chains.get(user.id) or succeed(None)
        self._waiting[user.id] = self._waiting.get(user.id, 0) + 1
        result: Deferred = Deferred()

        def run(_: Any) -> Deferred:
            return Deferred.fromCoroutine(work())

        def done(outcome: Any) -> None:
            self._waiting[user.id] -= 1
            if not self._waiting[user.id]:
                del self._waiting[user.id]
                del self._chains[user.id]
            if isinstance(outcome, Failure):
                result.errback(outcome)
            else:
                result.callback(None)

        # kept before the callbacks are added: with the database known to be
        # down, work() fails at once and done() runs (and forgets it) right away
        self._chains[user.id] = chain
        chain.addCallback(run)
        chain.addBoth(done)
        return result

    def came_online(self, user: User) -> Deferred:
        """
        The user's first connection here logged in: load their rooms (the
        Deferred fails if that is impossible), then note them online.
        """

        async def work() -> None:
            events = self.server.store.events
            self.server.hub.load_rooms(user.id, await events.room_ids_of(user.id))
            outbox = Outbox(Origin(self.node))
            try:
                await events.came_online(self.node, user.id, user.username, outbox, announcement(True))
            except Exception as error:
                self.log.warn("presence of {user} not recorded: {error}", user=user.username, error=error)
                return
            await self.server.deliver(outbox)

        return self._chain(user, work)

    def went_offline(self, user: User) -> Deferred:
        """The user's last connection here went: note them offline here."""

        async def work() -> None:
            # what they were shown is noted before anyone sees them leave
            await self.server.receipts.settled(user.id)
            outbox = Outbox(Origin(self.node))
            try:
                await self.server.store.events.went_offline(
                    self.node, user.id, user.username, outbox, announcement(False)
                )
            except Exception as error:
                self.log.warn("presence of {user} not recorded: {error}", user=user.username, error=error)
                return
            await self.server.deliver(outbox)

        d = self._chain(user, work)
        d.addErrback(lambda f: None)
        return d

    async def reannounce(self) -> None:
        """Note every user online here again (this node was taken for dead)."""
        outbox = Outbox(Origin(self.node))
        users = [user.id for user in self.server.hub.online_users()]
        await self.server.store.events.came_online_all(self.node, users, outbox, announcement(True))
        await self.server.deliver(outbox)

    @property
    def node(self) -> str:
        """This node's id."""
        return self.server.hub.node

    def settled(self) -> Deferred:
        """Fires once every change queued so far was made."""
        waits = []
        for chain in list(self._chains.values()):
            waited: Deferred = Deferred()
            chain.addBoth(lambda result, waited=waited: (waited.callback(None), result)[1])
            waits.append(waited)
        return gatherResults(waits)
