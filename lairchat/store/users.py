# -*- test-case-name: tests.test_store -*-
"""
Accounts: create, look up, change passwords, server roles and
suspension.

A change that other connections must hear of records its event in its own
transaction, through the L{Outbox} it is given, as that transaction's last
statement.
"""

import psycopg2

from lairchat.errors import Conflict
from lairchat.events import AccountSuspended, ServerRoleChanged, SessionsRevoked, UserRenamed
from lairchat.models import Credentials, User, to_ms
from lairchat.store.audit import AuditStore
from lairchat.store.database import Database, Transaction
from lairchat.store.events import Outbox

USER_COLUMNS = "u.id, u.username, u.server_role, u.suspended, u.created_at, u.locked_until, u.guest"
"""The columns L{user_from_row} reads, for a C{users} table aliased C{u}."""


def user_from_row(row: tuple) -> User:
    """Build a L{User} from the first seven columns of C{row} (L{USER_COLUMNS})."""
    return User(
        id=row[0],
        username=row[1],
        server_role=row[2],
        suspended=row[3],
        created_ms=to_ms(row[4]),
        locked_until_ms=to_ms(row[5]),
        guest=row[6],
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

    async def create_guest(self, nick: str) -> User:
        """
        Create an ephemeral guest: a C{users} row flagged C{guest}, with no
        password (L{credentials} never finds it, so nobody logs in as it).

        @raise Conflict: the name is an account's or another guest's
            (case-insensitively).
        """

        async def insert(tx: Transaction) -> tuple:
            return await tx.fetchone(
                "INSERT INTO users AS u (username, password_hash, guest) VALUES (%s, '', true) "
                f"RETURNING {USER_COLUMNS}",
                (nick, ),
            )

        try:
            row = await self._db.transaction(insert)
        except psycopg2.errors.UniqueViolation:
            raise Conflict("that nick is taken") from None
        return user_from_row(row)

    async def rename_guest(self, user_id: int, nick: str, outbox: Outbox) -> User | None:
        """
        Give a guest another nick, and record L{UserRenamed} (for the
        members of its rooms) in the same transaction; the guest as it is
        now, or L{None} when it is no guest (any more).

        @raise Conflict: the name is taken.
        """

        async def rename_in(tx: Transaction) -> tuple | None:
            old = await tx.fetchone("SELECT username FROM users WHERE id = %s AND guest FOR UPDATE", (user_id,))
            if old is None:
                return None
            row = await tx.fetchone(
                f"UPDATE users AS u SET username = %s WHERE u.id = %s RETURNING {USER_COLUMNS}", (nick, user_id)
            )
            rooms = await tx.fetchall(
                "SELECT m.room_id FROM room_members m JOIN rooms r ON r.id = m.room_id "
                "WHERE m.user_id = %s AND r.kind = 'room' ORDER BY m.room_id",
                (user_id,),
            )
            await outbox.add_in(tx, [UserRenamed(user_id, old[0], nick, tuple(r[0] for r in rooms))])
            return row

        try:
            row = await self._db.transaction(rename_in)
        except psycopg2.errors.UniqueViolation:
            raise Conflict("that nick is taken") from None
        return user_from_row(row) if row else None

    async def remove_guest(self, user_id: int) -> bool:
        """
        Delete a guest (never an account): its memberships, bans,
        invitations, reactions and sessions go with it (C{ON DELETE
        CASCADE}); its messages stay, anonymised (C{sender_id} becomes
        NULL).  Whether there was such a guest.
        """
        row = await self._db.fetchone("DELETE FROM users WHERE id = %s AND guest RETURNING id", (user_id,))
        return row is not None

    async def sweep_guests(self, grace_seconds: float) -> int:
        """
        Delete the guests online on no node and older than
        C{grace_seconds} (their node died before it could remove them),
        and the rooms left without members; how many guests went.
        """

        async def sweep_in(tx: Transaction) -> int:
            rows = await tx.fetchall(
                "DELETE FROM users u WHERE u.guest AND u.created_at < now() - make_interval(secs => %s) "
                "AND NOT EXISTS (SELECT 1 FROM online o WHERE o.user_id = u.id) RETURNING u.id",
                (grace_seconds,),
            )
            await tx.execute(
                "DELETE FROM rooms r WHERE r.kind = 'room' "
                "AND NOT EXISTS (SELECT 1 FROM room_members m WHERE m.room_id = r.id)"
            )
            return len(rows)

        return await self._db.transaction(sweep_in)

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
        """The account and its password hash, for a login, or L{None} (always for a guest)."""
        row = await self._db.fetchone(
            f"SELECT {USER_COLUMNS}, u.password_hash, u.failed_logins FROM users u "
            "WHERE lower(u.username) = lower(%s) AND NOT u.guest",
            (username,),
        )
        if row is None:
            return None
        return Credentials(user=user_from_row(row), password_hash=row[7], failed_logins=row[8])

    async def login_succeeded(self, user_id: int) -> None:
        """
        Note when the user was seen.  (Failed logins are counted by account
        and address, in L{lairchat.store.logins}; the old account-wide
        C{failed_logins} and C{locked_until} columns are no longer used and
        are cleared here.)
        """
        await self._db.execute(
            "UPDATE users SET failed_logins = 0, locked_until = NULL, last_seen = now() WHERE id = %s",
            (user_id,),
        )

    async def change_password(self, user: User, password_hash: str, keep_session: int | None,
                              outbox: Outbox, by: str | None = None) -> None:
        """
        Replace an account's password hash and revoke every session of it
        but C{keep_session}, in one transaction with its audit entry (C{by}
        changed it: the user themself when L{None}) and L{SessionsRevoked}
        (which logs the other connections out).
        """

        async def change_in(tx: Transaction) -> None:
            await tx.execute("UPDATE users SET password_hash = %s WHERE id = %s", (password_hash, user.id))
            await _revoke_sessions_in(tx, user.id, keep=keep_session)
            await AuditStore.record_in(tx, by or user.username, "change_password", user.username)
            await outbox.add_in(tx, [SessionsRevoked(user.id, keep_session)])

        await self._db.transaction(change_in)

    async def set_server_role(self, username: str, role: str, outbox: Outbox | None = None) -> User | None:
        """
        Give an account a server role, recording L{ServerRoleChanged} in
        C{outbox} (when given: the account may have connections) in the same
        transaction.

        @return: the account as it is now, or L{None} when there is no such
            account (nothing is recorded).
        """

        async def set_role_in(tx: Transaction) -> tuple | None:
            row = await tx.fetchone(
                f"UPDATE users AS u SET server_role = %s WHERE lower(u.username) = lower(%s) "
                f"RETURNING {USER_COLUMNS}",
                (role, username),
            )
            if row is not None and outbox is not None:
                await outbox.add_in(tx, [ServerRoleChanged(row[0], role)])
            return row

        row = await self._db.transaction(set_role_in)
        return user_from_row(row) if row else None

    async def suspend(self, user: User, reason: str, by: str, outbox: Outbox) -> None:
        """
        Suspend an account and revoke every session of it, in one
        transaction with the audit entry (C{by} is who suspended it) and
        L{AccountSuspended} (which closes its connections).
        """

        async def suspend_in(tx: Transaction) -> None:
            await tx.execute(
                "UPDATE users SET suspended = true, suspend_reason = %s WHERE id = %s", (reason, user.id)
            )
            await _revoke_sessions_in(tx, user.id)
            await AuditStore.record_in(tx, by, "suspend_user", user.username, detail=reason)
            await outbox.add_in(tx, [AccountSuspended(user.id, reason)])

        await self._db.transaction(suspend_in)

    async def reinstate(self, user: User, by: str) -> None:
        """Lift an account's suspension, in one transaction with the audit entry (C{by} lifted it)."""

        async def reinstate_in(tx: Transaction) -> None:
            await tx.execute("UPDATE users SET suspended = false, suspend_reason = '' WHERE id = %s", (user.id,))
            await AuditStore.record_in(tx, by, "unsuspend_user", user.username)

        await self._db.transaction(reinstate_in)

    async def everyone(self) -> list[User]:
        """Every account, by name (case-insensitively)."""
        rows = await self._db.fetchall(f"SELECT {USER_COLUMNS} FROM users u ORDER BY lower(u.username)")
        return [user_from_row(r) for r in rows]

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


async def _revoke_sessions_in(tx: Transaction, user_id: int, keep: int | None = None) -> int:
    """
    Revoke the account's live sessions but C{keep} inside C{tx} (see
    L{lairchat.store.sessions.SessionStore.revoke_all_in}, which imports
    this module).
    """
    from lairchat.store.sessions import SessionStore

    return await SessionStore.revoke_all_in(tx, user_id, keep)
