# -*- test-case-name: tests.test_store -*-
"""
Sessions: opaque tokens, stored only as their SHA-256 digest, that survive
restarts, expire, and can be revoked.
"""

import hashlib
import secrets

from lairchat.models import Session, to_ms
from lairchat.store.database import Database, Transaction
from lairchat.store.users import USER_COLUMNS, user_from_row


def token_digest(token: str) -> bytes:
    """The stored form of a session token."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class SessionStore:
    """The C{sessions} table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def open(self, user_id: int, ttl_seconds: int) -> tuple[str, int]:
        """
        Open a session for an account.

        @return: the token (shown to the client once, never stored) and the
            session id.
        """
        token = secrets.token_hex(32)

        async def insert(tx: Transaction) -> tuple:
            return await tx.fetchone(
                "INSERT INTO sessions (token_hash, user_id, expires_at) "
                "VALUES (%s, %s, now() + make_interval(secs => %s)) RETURNING id",
                (token_digest(token), user_id, ttl_seconds),
            )

        row = await self._db.transaction(insert)
        return token, row[0]

    async def resume(self, token: str) -> Session | None:
        """
        The live session this token opens, or L{None} when the token is
        unknown, revoked or expired.
        """
        row = await self._db.fetchone(
            f"SELECT s.id, s.expires_at, {USER_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id "
            "WHERE s.token_hash = %s AND s.revoked_at IS NULL AND s.expires_at > now()",
            (token_digest(token),),
        )
        if row is None:
            return None
        return Session(id=row[0], expires_ms=to_ms(row[1]), user=user_from_row(row[2:]))

    async def revoke(self, session_id: int) -> None:
        """Revoke one session."""
        await self._db.execute(
            "UPDATE sessions SET revoked_at = now() WHERE id = %s AND revoked_at IS NULL", (session_id,)
        )

    async def revoke_all(self, user_id: int, keep: int | None = None) -> int:
        """
        Revoke every live session of an account except C{keep}.

        @return: how many were revoked.
        """
        return await self._db.transaction(lambda tx: self.revoke_all_in(tx, user_id, keep))

    @staticmethod
    async def revoke_all_in(tx: Transaction, user_id: int, keep: int | None = None) -> int:
        """
        L{revoke_all}, inside a transaction that changes something else too
        (a suspension, a password change).

        @return: how many were revoked.
        """
        return await tx.execute(
            "UPDATE sessions SET revoked_at = now() "
            "WHERE user_id = %s AND revoked_at IS NULL AND id IS DISTINCT FROM %s",
            (user_id, keep),
        )

    async def is_live(self, session_id: int) -> bool:
        """Whether a session is neither revoked nor expired."""
        row = await self._db.fetchone(
            "SELECT 1 FROM sessions WHERE id = %s AND revoked_at IS NULL AND expires_at > now()", (session_id,)
        )
        return row is not None
