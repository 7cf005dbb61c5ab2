# -*- test-case-name: tests.test_rooms -*-
"""
The rooms aggregate's SQL (not built yet).
"""

from lairchat.store.database import Database


class RoomStore:
    """The rooms tables."""

    def __init__(self, db: Database) -> None:
        self._db = db
