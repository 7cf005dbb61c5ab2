"""
Tests of the database layer's failure handling against a real Postgres.
"""

from twisted.trial.unittest import TestCase

from lairchat.errors import Timeout
from lairchat.store.database import Database
from tests.support import test_dsn


class StatementTimeoutTests(TestCase):
    """A statement past the timeout is a 1303, and the connection lives on."""

    async def test_timeout_then_normal_service(self):
        """pg_sleep past the timeout raises Timeout; the next query on the pool works."""
        db = Database(test_dsn(), size=1, statement_timeout_ms=50)
        await db.start()
        self.addCleanup(db.close)
        with self.assertRaises(Timeout) as caught:
            await db.fetchall("SELECT pg_sleep(2)")
        self.assertEqual(caught.exception.code, 1303)
        self.assertEqual(await db.fetchall("SELECT 41 + 1"), [(42,)])

    async def test_timeout_inside_transaction_rolls_back(self):
        """A transaction whose statement times out changes nothing."""
        db = Database(test_dsn(), size=1, statement_timeout_ms=50)
        await db.start()
        self.addCleanup(db.close)
        await db.execute("CREATE TEMPORARY TABLE IF NOT EXISTS probe (n int)")

        async def work(tx):
            await tx.execute("INSERT INTO probe VALUES (1)")
            await tx.execute("SELECT pg_sleep(2)")

        with self.assertRaises(Timeout):
            await db.transaction(work)
        self.assertEqual(await db.fetchall("SELECT count(*) FROM probe"), [(0,)])
