# -*- test-case-name: tests.test_rooms -*-
"""
The domain: what lairchat does, as operations on typed arguments that
return typed results, raise L{lairchat.errors.ChatError}s and publish
L{lairchat.events}.  It knows no wire, no connection and no "current
room": every front end (the line protocol's C{commands/}, others to come)
parses its requests, calls these operations as an L{Actor}, and renders
what they return and the events they cause.

An operation that changes something records its events in the same
transaction through an outbox (L{Actor.outbox}, handed to the store) and
delivers them once it committed (L{Actor.deliver}).
"""

from typing import Any

from attrs import frozen

from lairchat.errors import AuthRequired
from lairchat.events import Origin
from lairchat.store.events import Outbox


@frozen
class Actor:
    """
    Who does an operation, and where: a logged-in user (or nobody yet),
    the server they act on, and the origin their events carry (so the
    connection that asked gets its answer instead of the event), the
    network address the request came from (L{None} when it came from no
    client, as for the sweeper), and what to call once the operation's
    change has its place in commit order (L{place_taken}).
    """

    server: Any
    user_or_none: Any
    origin: Origin
    address: str | None = None
    queued: Any = None

    def place_taken(self) -> None:
        """
        The operation's change has its place in commit order (it waits in
        its group commit): a front end that answers a connection's requests
        in order may start the next one now (L{queued}, when there is one).
        """
        if self.queued is not None:
            self.queued()

    @property
    def user(self) -> Any:
        """
        The acting user.

        @raise AuthRequired: nobody is logged in.
        """
        if self.user_or_none is None:
            raise AuthRequired("log in first")
        return self.user_or_none

    @property
    def store(self) -> Any:
        """The server's store."""
        return self.server.store

    @property
    def config(self) -> Any:
        """The server's settings."""
        return self.server.config

    def now_ms(self) -> int:
        """The server clock, in epoch milliseconds."""
        return int(self.server.clock.seconds() * 1000)

    def outbox(self) -> Outbox:
        """An outbox for the events of one operation."""
        return Outbox(self.origin)

    async def deliver(self, outbox: Outbox) -> None:
        """Deliver the events a committed operation recorded."""
        await self.server.deliver(outbox)
