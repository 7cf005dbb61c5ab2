# -*- test-case-name: tests.test_intrusion -*-
"""
Blocked addresses: the C{address_blocks} table, shared by every node, each
block and lift audited in the same transaction.
"""

from lairchat.models import AddressBlock, to_ms
from lairchat.store.audit import AuditStore
from lairchat.store.database import Database, Transaction

_COLUMNS = "address, reason, blocked_by, blocked_until, strikes"


def _block(row: tuple) -> AddressBlock:
    """A row as an L{AddressBlock}."""
    return AddressBlock(row[0], row[1], row[2], to_ms(row[3]), row[4])


class BlockStore:
    """The C{address_blocks} table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def block(self, address: str, seconds: float | None, reason: str, blocked_by: str,
                    rules=None) -> AddressBlock:
        """
        Block C{address} (again): for C{seconds}, or, with C{seconds}
        L{None}, for as long as C{rules} (L{lairchat.suspicion.SuspicionRules})
        say for its strikes, a strike being a block of the same address
        that began in the day before.  An address already blocked keeps the
        later end.  Audited as C{block}.
        """

        async def work(tx: Transaction) -> AddressBlock:
            row = await tx.fetchone(
                "SELECT strikes + 1 FROM address_blocks WHERE address = %s"
                " AND blocked_at > now() - interval '1 day' FOR UPDATE",
                (address,),
            )
            strikes = row[0] if row else 0
            duration = seconds if seconds is not None else rules.block_duration(strikes)
            row = await tx.fetchone(
                f"INSERT INTO address_blocks ({_COLUMNS})"
                " VALUES (%(a)s, %(r)s, %(b)s, now() + make_interval(secs => %(s)s), %(k)s)"
                " ON CONFLICT (address) DO UPDATE SET reason = EXCLUDED.reason,"
                "  blocked_by = EXCLUDED.blocked_by, blocked_at = now(), strikes = EXCLUDED.strikes,"
                "  blocked_until = CASE WHEN address_blocks.blocked_until > now()"
                "    THEN greatest(address_blocks.blocked_until, EXCLUDED.blocked_until)"
                "    ELSE EXCLUDED.blocked_until END"
                f" RETURNING {_COLUMNS}",
                {"a": address, "r": reason, "b": blocked_by, "s": float(duration), "k": strikes},
            )
            block = _block(row)
            await AuditStore.record_in(
                tx, blocked_by, "block", address, "ok", f"{reason}; for {int(duration)} s, strike {strikes + 1}"
            )
            return block

        return await self._db.transaction(work)

    async def lift(self, address: str, lifted_by: str) -> bool:
        """
        End C{address}'s block now (its strikes are kept for the day).
        Audited as C{unblock}.

        @return: whether it was blocked.
        """

        async def work(tx: Transaction) -> bool:
            row = await tx.fetchone(
                "UPDATE address_blocks SET blocked_until = now()"
                " WHERE address = %s AND blocked_until > now() RETURNING address",
                (address,),
            )
            if row is None:
                return False
            await AuditStore.record_in(tx, lifted_by, "unblock", address)
            return True

        return await self._db.transaction(work)

    async def active(self) -> list[AddressBlock]:
        """The blocks in force, soonest to end first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM address_blocks WHERE blocked_until > now()"
            " ORDER BY blocked_until, address"
        )
        return [_block(r) for r in rows]

    async def forget_old(self) -> int:
        """Drop blocks that ended more than a day ago (their strikes no longer count)."""
        rows = await self._db.fetchall(
            "DELETE FROM address_blocks WHERE blocked_until < now() - interval '1 day'"
            " AND blocked_at < now() - interval '1 day' RETURNING address",
            retry=False,
        )
        return len(rows)
