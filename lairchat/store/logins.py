# -*- test-case-name: tests.test_guessing_e2e -*-
"""
The state of the rules against password guessing (the C{login_throttle}
table), kept in Postgres so that it holds across nodes and restarts.

The rules themselves are pure (L{lairchat.login_throttle}); this module
reads a login attempt's two keys under a row lock, applies them, and writes
the outcome back in the same transaction.  The lock is what makes the check
and the count one step: parallel attempts on the same key queue on it, and
each sees the count the one before it left.
"""

from lairchat.login_throttle import (
    EVERY_ACCOUNT,
    Reservation,
    ThrottleRule,
    ThrottleState,
    decide,
    succeed,
)
from lairchat.store.database import Database, Transaction

COLUMNS = "account, failures, blocked_until, last_attempt, refused, reported_at"
"""The columns L{_state} reads, the account first."""


def _state(row: tuple) -> ThrottleState:
    """A L{ThrottleState} from a row of L{COLUMNS}."""
    return ThrottleState(failures=row[1], blocked_until_ms=row[2], last_ms=row[3], refused=row[4],
                         reported_ms=row[5])


class LoginThrottleStore:
    """The C{login_throttle} table: one row per (account, address) and per address."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    async def _locked(tx: Transaction, account: str, address: str, exempt: bool) -> dict[str, ThrottleState]:
        """
        The states of an attempt's keys, created when missing and locked
        until C{tx} ends (always in the same order, so two attempts never
        wait for each other crosswise).
        """
        keys = [account] if exempt else [EVERY_ACCOUNT, account]
        values = ", ".join(["(%s, %s)"] * len(keys))
        params = [p for key in keys for p in (key, address)]
        states: dict[str, ThrottleState] = {}
        # a row deleted by another transaction between the INSERT (which saw
        # it) and the SELECT is simply made again
        for _ in range(3):
            await tx.execute(
                f"INSERT INTO login_throttle (account, address) VALUES {values} ON CONFLICT DO NOTHING", params
            )
            rows = await tx.fetchall(
                f"SELECT {COLUMNS} FROM login_throttle WHERE address = %s AND account = ANY(%s) "
                "ORDER BY account FOR UPDATE",
                (address, keys),
            )
            states = {row[0]: _state(row) for row in rows}
            if len(states) == len(keys):
                break
        return states

    @staticmethod
    async def _write(tx: Transaction, account: str, address: str, state: ThrottleState) -> None:
        """Store one key's state."""
        await tx.execute(
            "UPDATE login_throttle SET failures = %s, blocked_until = %s, last_attempt = %s, refused = %s, "
            "reported_at = %s WHERE account = %s AND address = %s",
            (state.failures, state.blocked_until_ms, state.last_ms, state.refused, state.reported_ms,
             account, address),
        )

    async def reserve(
        self,
        username: str,
        address: str,
        now_ms: int,
        pair_rule: ThrottleRule,
        address_rule: ThrottleRule | None,
    ) -> Reservation:
        """
        Decide whether a login attempt for C{username} from C{address} may
        check its password, and count it as a failure until
        L{release} says otherwise (see L{lairchat.login_throttle.decide}).

        @param address_rule: the per-address rule, or L{None} for an
            exempt address (only the account-and-address key applies).
        """
        account = username.lower()

        async def reserve_in(tx: Transaction) -> Reservation:
            states = await self._locked(tx, account, address, address_rule is None)
            pair, whole = states[account], states.get(EVERY_ACCOUNT)
            new_pair, new_whole, reservation = decide(pair_rule, pair, address_rule, whole, now_ms)
            if new_pair != pair:
                await self._write(tx, account, address, new_pair)
            if new_whole is not None and new_whole != whole:
                await self._write(tx, EVERY_ACCOUNT, address, new_whole)
            return reservation

        return await self._db.transaction(reserve_in)

    async def release(
        self, username: str, address: str, pair_rule: ThrottleRule, address_rule: ThrottleRule | None,
        correct: bool,
    ) -> None:
        """
        Settle an attempt L{reserve} counted as a failure that was not one.

        @param correct: the password was right: forget the failures of this
            account from this address, and give the one attempt back to the
            address's count across accounts.  When false, the password was
            never checked (the hasher was too busy): give the attempt back
            to both keys.
        """
        account = username.lower()

        async def release_in(tx: Transaction) -> None:
            states = await self._locked(tx, account, address, address_rule is None)
            await self._write(tx, account, address, succeed(pair_rule, states[account], resets=correct))
            if address_rule is not None:
                whole = states[EVERY_ACCOUNT]
                await self._write(tx, EVERY_ACCOUNT, address, succeed(address_rule, whole, resets=False))

        await self._db.transaction(release_in)

    async def state(self, username: str | None, address: str) -> ThrottleState | None:
        """
        The state of one key (C{username} L{None}: the address across
        accounts), or L{None} when it has none.
        """
        account = EVERY_ACCOUNT if username is None else username.lower()
        row = await self._db.fetchone(
            f"SELECT {COLUMNS} FROM login_throttle WHERE account = %s AND address = %s", (account, address)
        )
        return _state(row) if row else None

    async def forget_before(self, before_ms: int, now_ms: int) -> int:
        """
        Delete the keys whose last attempt is older than C{before_ms}, that
        block nothing any more and have no refusal left to report.

        @return: how many were deleted.
        """

        async def delete_in(tx: Transaction) -> int:
            return await tx.execute(
                "DELETE FROM login_throttle WHERE last_attempt < %s AND blocked_until <= %s AND refused = 0",
                (before_ms, now_ms),
            )

        return await self._db.transaction(delete_in)
