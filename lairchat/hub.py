# -*- test-case-name: tests.test_hub -*-
"""
Who is online where, and the delivery of event lines to the right
connections.

The hub only knows connections (anything with C{send_event(line)}) and the
users logged in on them; which users an event is for is the caller's
business (the members of a room, the two parties of an invitation).
Delivery never blocks: a connection queues the line with its transport,
and a connection that stops reading is closed by its own output limit.
"""

from collections.abc import Iterable
from typing import Any

from lairchat.models import User


class Hub:
    """The online users of this node and their connections."""

    def __init__(self) -> None:
        self._by_user: dict[int, set[Any]] = {}
        self._users: dict[int, User] = {}
        self.delivered = 0

    def attach(self, connection: Any, user: User) -> bool:
        """
        Note that C{user} is logged in on C{connection}.

        @return: whether this is the user's first connection (they came online).
        """
        connections = self._by_user.setdefault(user.id, set())
        first = not connections
        connections.add(connection)
        self._users[user.id] = user
        return first

    def detach(self, connection: Any, user: User) -> bool:
        """
        Note that C{connection} is no longer logged in as C{user}.

        @return: whether that was the user's last connection (they went offline).
        """
        connections = self._by_user.get(user.id)
        if not connections or connection not in connections:
            return False
        connections.discard(connection)
        if connections:
            return False
        del self._by_user[user.id]
        self._users.pop(user.id, None)
        return True

    def connections_of(self, user_id: int) -> list[Any]:
        """Every connection the user is logged in on."""
        return list(self._by_user.get(user_id, ()))

    def is_online(self, user_id: int) -> bool:
        """Whether the user has a connection here."""
        return user_id in self._by_user

    def online_users(self) -> list[User]:
        """Every online user, by name."""
        return sorted(self._users.values(), key=lambda u: u.username.lower())

    def connection_count(self) -> int:
        """How many logged-in connections there are."""
        return sum(len(c) for c in self._by_user.values())

    def deliver(self, user_ids: Iterable[int], line: str, exclude: Any = None) -> int:
        """
        Send an event line to every connection of every listed user, except
        C{exclude} (the connection whose request caused the event).

        @return: how many connections it was sent to.
        """
        sent = 0
        for user_id in set(user_ids):
            for connection in self._by_user.get(user_id, ()):
                if connection is not exclude:
                    connection.send_event(line)
                    sent += 1
        self.delivered += sent
        return sent
