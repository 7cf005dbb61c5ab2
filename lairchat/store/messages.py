# -*- test-case-name: tests.test_messages -*-
"""
The messages aggregate's SQL (not built yet).
"""

from lairchat.store.database import Database


class MessageStore:
    """The messages tables."""

    def __init__(self, db: Database) -> None:
        self._db = db
