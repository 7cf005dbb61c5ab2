# -*- test-case-name: tests.test_store -*-
"""
Accounts: create, look up, lock after failed logins, change passwords,
server roles and suspension.
"""

import psycopg2

from lairchat.errors import Conflict
from lairchat.models import Credentials, User, to_ms
from lairchat.store.database import Database, Transaction

USER_COLUMNS = "u.id, u.username, u.server_role, u.suspended, u.created_at, u.locked_until"
"""The columns L{user_from_row} reads, for a C{users} table aliased C{u}."""


def user_from_row(row: tuple) -> User:
    """Build a L{User} from the first six columns of C{row} (L{USER_COLUMNS})."""
    return User(
        id=row[0],
        username=row[1],
        server_role=row[2],
        suspended=row[3],
        created_ms=to_ms(row[4]),
        locked_until_ms=to_ms(row[5]),
    )


class UserStore:
    """The C{users} table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, username: str, password_hash: str) -> User:
        """
        Create an account.

        @raise Conflict: the username is taken (case-insensitively).
        """

        async def insert(tx: Transaction) -> tuple:
            return await tx.fetchone(
                "INSERT INTO users AS u (username, password_hash) VALUES (%s, %s) "
                f"RETURNING {USER_COLUMNS}",
                (username, password_hash),
            )

        try:
            row = await self._db.transaction(insert)
        except psycopg2.errors.UniqueViolation:
            raise Conflict("that username is taken") from None
        return user_from_row(row)

    async def by_name(self, username: str) -> User | None:
        """The account with this name (case-insensitively), or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {USER_COLUMNS} FROM users u WHERE lower(u.username) = lower(%s)", (username,)
        )
        return user_from_row(row) if row else None

    async def by_id(self, user_id: int) -> User | None:
        """The account with this id, or L{None}."""
        row = await self._db.fetchone(f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = %s", (user_id,))
        return user_from_row(row) if row else None

    async def credentials(self, username: str) -> Credentials | None:
        """The account and its password hash, for a login, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {USER_COLUMNS}, u.password_hash, u.failed_logins FROM users u "
            "WHERE lower(u.username) = lower(%s)",
            (username,),
        )
        if row is None:
            return None
        return Credentials(user=user_from_row(row), password_hash=row[6], failed_logins=row[7])

    async def login_succeeded(self, user_id: int) -> None:
        """Clear the failure count and the lock; note when the user was seen."""
        await self._db.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_seen = now() WHERE id = %s",
            (user_id,),
        )

    async def login_failed(self, user_id: int, threshold: int, lock_seconds: int) -> int:
        """
        Count a failed login; at C{threshold} failures in a row, lock the
        account for C{lock_seconds} and start counting again.

        @return: when the lock ends, in epoch ms, or 0 when not locked.
        """

        async def count(tx: Transaction) -> tuple:
            return await tx.fetchone(
                "UPDATE users SET "
                "  failed_logins = CASE WHEN failed_logins + 1 >= %(t)s THEN 0 ELSE failed_logins + 1 END,"
                "  locked_until = CASE WHEN failed_logins + 1 >= %(t)s"
                "    THEN now() + make_interval(secs => %(s)s) ELSE locked_until END "
                "WHERE id = %(id)s RETURNING locked_until",
                {"t": threshold, "s": lock_seconds, "id": user_id},
            )

        row = await self._db.transaction(count)
        return to_ms(row[0]) if row else 0

    async def set_password(self, user_id: int, password_hash: str) -> None:
        """Replace an account's password hash."""
        await self._db.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user_id))

    async def set_server_role(self, username: str, role: str) -> User | None:
        """Give an account a server role; L{None} when there is no such account."""
        row = await self._db.fetchone(
            f"UPDATE users AS u SET server_role = %s WHERE lower(u.username) = lower(%s) RETURNING {USER_COLUMNS}",
            (role, username),
        )
        return user_from_row(row) if row else None

    async def set_suspended(self, user_id: int, suspended: bool, reason: str = "") -> None:
        """Suspend or reinstate an account."""
        await self._db.execute(
            "UPDATE users SET suspended = %s, suspend_reason = %s WHERE id = %s", (suspended, reason, user_id)
        )

    async def online_names(self) -> list[str]:
        """The names of the users online on any node, by name."""
        rows = await self._db.fetchall(
            "SELECT u.username FROM users u WHERE EXISTS (SELECT 1 FROM online o WHERE o.user_id = u.id) "
            "ORDER BY lower(u.username)"
        )
        return [r[0] for r in rows]

    async def touch(self, user_id: int) -> None:
        """Note that the user was seen now."""
        await self._db.execute("UPDATE users SET last_seen = now() WHERE id = %s", (user_id,))
