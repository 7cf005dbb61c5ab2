"""
Tests of the database layer's failure handling against a real Postgres.
"""

from twisted.internet.defer import Deferred
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


class DeathCheckerTests(TestCase):
    """Which failures make a pooled connection reconnect."""

    def test_lost_server_is_death(self):
        """A lost server or interface error is a dead connection."""
        from twisted.python.failure import Failure

        import psycopg2

        from lairchat.store.database import _is_dead

        self.assertTrue(_is_dead(Failure(psycopg2.OperationalError("server closed the connection"))))
        self.assertTrue(_is_dead(Failure(psycopg2.InterfaceError("connection already closed"))))

    def test_statement_endings_are_not_death(self):
        """A timeout, a deadlock or a serialization failure leaves the connection alive."""
        from twisted.python.failure import Failure

        import psycopg2

        from lairchat.store.database import _is_dead

        for error in (psycopg2.errors.QueryCanceled(), psycopg2.errors.DeadlockDetected(),
                      psycopg2.errors.SerializationFailure(), psycopg2.errors.UniqueViolation()):
            self.assertFalse(_is_dead(Failure(error)), error)


class DeadlockTests(TestCase):
    """Two transactions that deadlock: the loser gets 1212, the pool stays whole."""

    async def test_deadlock_loser(self):
        """The losing transaction is DatabaseUnavailable and its connection still serves."""
        from twisted.internet import reactor
        from twisted.internet.defer import DeferredList
        from twisted.internet.task import deferLater

        from lairchat.errors import DatabaseUnavailable

        db = Database(test_dsn(), size=2)
        await db.start()
        self.addCleanup(db.close)
        await db.execute("CREATE TABLE IF NOT EXISTS deadlock_probe (id int PRIMARY KEY, n int)")
        await db.execute("TRUNCATE deadlock_probe")
        await db.execute("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)")

        def locker(first, second):
            async def work(tx):
                await tx.execute("UPDATE deadlock_probe SET n = n + 1 WHERE id = %s", (first,))
                await deferLater(reactor, 0.3, lambda: None)
                await tx.execute("UPDATE deadlock_probe SET n = n + 1 WHERE id = %s", (second,))
            return Deferred.fromCoroutine(db.transaction(work))

        results = await DeferredList([locker(1, 2), locker(2, 1)], consumeErrors=True)
        failures = [r for ok, r in results if not ok]
        self.assertEqual(len(failures), 1, results)
        self.assertIsInstance(failures[0].value, DatabaseUnavailable)
        self.assertEqual(await db.fetchall("SELECT sum(n) FROM deadlock_probe"), [(2,)])
        self.assertEqual(await db.fetchall("SELECT 1"), [(1,)])
        self.assertEqual(await db.fetchall("SELECT 2"), [(2,)])
        await db.execute("DROP TABLE deadlock_probe")
