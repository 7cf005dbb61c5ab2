# -*- test-case-name: tests.test_invitations -*-
"""
The invitations aggregate's SQL (not built yet).
"""

from lairchat.store.database import Database


class InvitationStore:
    """The invitations tables."""

    def __init__(self, db: Database) -> None:
        self._db = db
