# -*- test-case-name: tests.test_admin -*-
"""
Server-wide counts for SERVER_STATS.
"""

from lairchat.store.database import Database


class StatsStore:
    """Counts over every table, in one round trip."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def counts(self) -> dict[str, int]:
        """
        How many users, suspended users, rooms, conversations, messages,
        pending invitations and live sessions there are.
        """
        row = await self._db.fetchone(
            "SELECT"
            " (SELECT count(*) FROM users),"
            " (SELECT count(*) FROM users WHERE suspended),"
            " (SELECT count(*) FROM rooms WHERE kind = 'room'),"
            " (SELECT count(*) FROM rooms WHERE kind = 'direct'),"
            " (SELECT count(*) FROM messages WHERE deleted_at IS NULL),"
            " (SELECT count(*) FROM invitations WHERE status = 'pending'),"
            " (SELECT count(*) FROM sessions WHERE revoked_at IS NULL AND expires_at > now())"
        )
        keys = ("users", "suspended_users", "rooms", "conversations", "messages",
                "pending_invitations", "live_sessions")
        return dict(zip(keys, row))
