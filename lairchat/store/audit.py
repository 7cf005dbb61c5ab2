# -*- test-case-name: tests.test_store -*-
"""
The audit log: who did what to whom, and how it ended.
"""

from lairchat.models import AuditEntry, to_ms
from lairchat.store.database import Database, Transaction


class AuditStore:
    """The C{audit_log} table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def record(
        self, actor: str, action: str, target: str = "", outcome: str = "ok", detail: str = ""
    ) -> None:
        """Append one entry."""
        await self._db.execute(
            "INSERT INTO audit_log (actor, action, target, outcome, detail) VALUES (%s, %s, %s, %s, %s)",
            (actor, action, target, outcome, detail),
        )

    @staticmethod
    async def record_in(
        tx: Transaction, actor: str, action: str, target: str = "", outcome: str = "ok", detail: str = ""
    ) -> None:
        """Append one entry inside a transaction that changes something else too."""
        await tx.execute(
            "INSERT INTO audit_log (actor, action, target, outcome, detail) VALUES (%s, %s, %s, %s, %s)",
            (actor, action, target, outcome, detail),
        )

    async def latest(self, limit: int) -> list[AuditEntry]:
        """The newest C{limit} entries, newest first."""
        rows = await self._db.fetchall(
            "SELECT ts, actor, action, target, outcome, detail FROM audit_log ORDER BY id DESC LIMIT %s",
            (limit,),
        )
        return [AuditEntry(to_ms(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in rows]
