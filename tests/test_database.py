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
        """A timeout, a lock timeout, a deadlock or a serialization failure leaves the connection alive."""
        from twisted.python.failure import Failure

        import psycopg2

        from lairchat.store.database import _is_dead

        for error in (psycopg2.errors.QueryCanceled(), psycopg2.errors.LockNotAvailable(),
                      psycopg2.errors.DeadlockDetected(),
                      psycopg2.errors.SerializationFailure(), psycopg2.errors.UniqueViolation()):
            self.assertFalse(_is_dead(Failure(error)), error)


class DeadlockTests(TestCase):
    """Two transactions that deadlock: the loser is run again, and both complete."""

    async def test_deadlock_loser_retried(self):
        """
        The transaction Postgres picks as the deadlock's victim is run
        again and commits; the retry is counted, and the pool stays whole.
        """
        from twisted.internet import reactor
        from twisted.internet.defer import DeferredList
        from twisted.internet.task import deferLater

        db = Database(test_dsn(), size=2)
        await db.start()
        self.addCleanup(db.close)
        await db.execute("CREATE TABLE IF NOT EXISTS deadlock_probe (id int PRIMARY KEY, n int)")
        await db.execute("TRUNCATE deadlock_probe")
        await db.execute("INSERT INTO deadlock_probe VALUES (1, 0), (2, 0)")
        runs = []

        def locker(first, second):
            async def work(tx):
                runs.append(first)
                await tx.execute("UPDATE deadlock_probe SET n = n + 1 WHERE id = %s", (first,))
                if runs.count(first) == 1:
                    # both hold their first row before either asks for its second
                    await deferLater(reactor, 0.3, lambda: None)
                await tx.execute("UPDATE deadlock_probe SET n = n + 1 WHERE id = %s", (second,))
            return Deferred.fromCoroutine(db.transaction(work))

        results = await DeferredList([locker(1, 2), locker(2, 1)], consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True], results)
        self.assertEqual(len(runs), 3, runs)
        self.assertEqual(db.retries, {"deadlock": 1})
        self.assertEqual(await db.fetchall("SELECT sum(n) FROM deadlock_probe"), [(4,)])
        self.assertEqual(await db.fetchall("SELECT 1"), [(1,)])
        self.assertEqual(await db.fetchall("SELECT 2"), [(2,)])
        await db.execute("DROP TABLE deadlock_probe")


_SERIALIZATION_FAILURE = (
    "DO $$ BEGIN RAISE EXCEPTION 'could not serialize access' USING ERRCODE = 'serialization_failure'; END $$"
)


class SerializationConflictTests(TestCase):
    """A serialization failure (SQLSTATE 40001), raised by the real database."""

    async def _start_pool(self):
        """A pool of two on the test database, with the schema, every table empty."""
        from tests.support import fresh_database

        self.db = await fresh_database(self, size=2)

    async def test_serializable_conflict_retried(self):
        """
        Two SERIALIZABLE transactions that each read what the other writes:
        one fails to serialize, is run again, and both commit.
        """
        from twisted.internet import reactor
        from twisted.internet.defer import DeferredList
        from twisted.internet.task import deferLater

        await self._start_pool()
        db = self.db
        await db.execute("CREATE TABLE IF NOT EXISTS serial_probe (id int PRIMARY KEY, n int)")
        await db.execute("TRUNCATE serial_probe")
        await db.execute("INSERT INTO serial_probe VALUES (1, 0), (2, 0)")
        runs = []

        def writer(mine, theirs):
            async def work(tx):
                runs.append(mine)
                await tx.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                (n,) = await tx.fetchone("SELECT n FROM serial_probe WHERE id = %s", (theirs,))
                if runs.count(mine) == 1:
                    await deferLater(reactor, 0.3, lambda: None)
                await tx.execute("UPDATE serial_probe SET n = %s WHERE id = %s", (n + 1, mine))
            return Deferred.fromCoroutine(db.transaction(work))

        results = await DeferredList([writer(1, 2), writer(2, 1)], consumeErrors=True)
        self.assertEqual([ok for ok, _ in results], [True, True], results)
        self.assertEqual(db.retries, {"serialization": 1})
        self.assertEqual(len(runs), 3)
        # run one after the other: the second saw the first's write
        self.assertEqual(await db.fetchall("SELECT n FROM serial_probe ORDER BY n"), [(1,), (2,)])
        await db.execute("DROP TABLE serial_probe")

    async def test_bounded(self):
        """A transaction that always loses is run three times, then answered 1212."""
        from lairchat.errors import DatabaseUnavailable
        from lairchat.store.database import CONFLICT_ATTEMPTS

        await self._start_pool()
        runs = []

        async def work(tx):
            runs.append(1)
            await tx.execute(_SERIALIZATION_FAILURE)

        with self.assertRaises(DatabaseUnavailable) as caught:
            await self.db.transaction(work)
        self.assertIn("nothing was changed", caught.exception.message)
        self.assertEqual(len(runs), CONFLICT_ATTEMPTS)
        self.assertEqual(self.db.retries, {"serialization": CONFLICT_ATTEMPTS - 1})

    async def test_events_kept_once(self):
        """
        Events a transaction gathered for delivery are taken back when it
        loses a conflict, so the run that commits delivers them once.
        """
        from lairchat.events import Origin, UserJoined
        from lairchat.events import RoomRef
        from lairchat.store.events import Outbox

        await self._start_pool()
        outbox = Outbox(Origin("test-node"))
        runs = []

        async def work(tx):
            runs.append(1)
            await outbox.add_in(tx, [UserJoined(RoomRef(1, "probe"), 1, "probe")])
            if len(runs) == 1:
                await tx.execute(_SERIALIZATION_FAILURE)

        await self.db.transaction(work)
        self.assertEqual(len(runs), 2)
        self.assertEqual(len(outbox.events), 1)
        self.assertEqual(len(outbox.seqs), 1)


def _lose_connection_at_commit(tx, commit_first):
    """
    Make C{tx}'s C{COMMIT} lose its connection: after the database
    committed (C{commit_first}), as when the server goes away before its
    answer arrives, or before it was sent.  The injected failure is the
    one psycopg2 raises for a lost server.
    """
    import psycopg2
    from twisted.internet.defer import succeed

    cursor = tx._cursor
    original = cursor.execute

    def execute(sql, *args, **kwargs):
        if sql != "COMMIT":
            return original(sql, *args, **kwargs)
        sent = original(sql) if commit_first else succeed(None)

        def lose(_):
            cursor._connection.close()
            raise psycopg2.OperationalError("server closed the connection unexpectedly")

        return sent.addCallback(lose)

    cursor.execute = execute


def lose_after_query(testcase, db, run=True):
    """
    Make every pooled connection of C{db} lose its connection right after
    its next C{runQuery}: with C{run}, the statement ran first (and, being
    autocommitted, was stored); without, a harmless one was sent instead.
    The injected failure is the one psycopg2 raises for a lost server.
    """
    import psycopg2

    originals = {}
    for connection in db._connections:
        originals[connection] = connection.runQuery

        def run_query(sql, *args, original=connection.runQuery, connection=connection, **kwargs):
            connection.runQuery = originals[connection]
            sent = original(sql, *args, **kwargs) if run else original("SELECT 1")

            def lose(_):
                connection.close()
                raise psycopg2.OperationalError("server closed the connection unexpectedly")

            return sent.addCallback(lose)

        connection.runQuery = run_query

    def restore():
        for connection, original in originals.items():
            connection.runQuery = original

    testcase.addCleanup(restore)


class CommitOutcomeTests(TestCase):
    """A COMMIT that loses its connection: the outcome is asked for, never guessed."""

    async def _start_pool(self):
        """A pool of two on the test database, with the schema, every table empty."""
        from tests.support import fresh_database

        self.db = await fresh_database(self, size=2)
        await self.db.execute("CREATE TABLE IF NOT EXISTS commit_probe (n int)")
        await self.db.execute("TRUNCATE commit_probe")

    async def test_committed_gets_its_result(self):
        """The change committed: the caller gets the work's result, as if nothing happened."""
        await self._start_pool()

        async def work(tx):
            await tx.execute("INSERT INTO commit_probe VALUES (7)")
            _lose_connection_at_commit(tx, commit_first=True)
            return "stored"

        self.assertEqual(await self.db.transaction(work), "stored")
        self.assertEqual(await self.db.fetchall("SELECT n FROM commit_probe"), [(7,)])
        self.assertEqual(self.db.unknown_outcomes, {"committed": 1})

    async def test_rolled_back_is_nothing_changed(self):
        """The change did not commit: 1212, nothing was changed (which is true)."""
        from lairchat.errors import DatabaseUnavailable

        await self._start_pool()

        async def work(tx):
            await tx.execute("INSERT INTO commit_probe VALUES (8)")
            _lose_connection_at_commit(tx, commit_first=False)
            return "stored"

        with self.assertRaises(DatabaseUnavailable) as caught:
            await self.db.transaction(work)
        self.assertIn("nothing was changed", caught.exception.message)
        self.assertEqual(await self.db.fetchall("SELECT n FROM commit_probe"), [])
        self.assertEqual(self.db.unknown_outcomes, {"aborted": 1})

    async def test_message_committed_is_posted(self):
        """
        A message whose COMMIT lost its connection after it was stored is
        handed back as posted, with its event, so SEND_MESSAGE answers OK.
        """
        from lairchat.events import MessageSent, Origin, RoomRef
        from lairchat.store import Store

        await self._start_pool()
        store = Store(self.db)
        alice = await store.users.create("alice", "x")
        from lairchat.store.events import Outbox

        room = await store.rooms.create("lobby", "public", alice, Outbox(None))
        # every pooled connection loses its connection once its next statement
        # has run (autocommitted: stored), as when the server goes away before
        # the answer arrives
        lose_after_query(self, self.db)
        template = MessageSent(RoomRef(room.id, room.name), 0, alice.id, "alice", 0, "hello",
                               origin=Origin("test-node", 1))
        posted = await store.messages.post_with_event(template)
        self.assertEqual(self.db.unknown_outcomes, {"committed": 1})
        self.assertIsNotNone(posted)
        self.assertEqual(posted.message.text, "hello")
        rows = await self.db.fetchall("SELECT id, body FROM messages")
        self.assertEqual(rows, [(posted.message.id, "hello")])

    async def test_message_not_stored_is_nothing_changed(self):
        """
        A message whose statement never stored it (here: the connection was
        lost with another statement sent instead) is answered 1212 "nothing
        was changed", which is true, once its backend is gone.
        """
        from lairchat.errors import DatabaseUnavailable
        from lairchat.events import MessageSent, Origin, RoomRef
        from lairchat.store import Store
        from lairchat.store.events import Outbox

        await self._start_pool()
        store = Store(self.db)
        alice = await store.users.create("alice", "x")
        room = await store.rooms.create("lobby", "public", alice, Outbox(None))
        lose_after_query(self, self.db, run=False)
        template = MessageSent(RoomRef(room.id, room.name), 0, alice.id, "alice", 0, "hello",
                               origin=Origin("test-node", 1))
        with self.assertRaises(DatabaseUnavailable) as caught:
            await store.messages.post_with_event(template)
        self.assertIn("nothing was changed", caught.exception.message)
        self.assertEqual(await self.db.fetchall("SELECT id FROM messages"), [])
        self.assertEqual(self.db.unknown_outcomes, {"aborted": 1})

    async def test_join_committed_is_joined(self):
        """
        A join whose statement lost its connection after it was stored is
        handed back as joined, with its event as recorded (found by the
        batch's token), so JOIN_ROOM answers OK and the members are told.
        """
        from lairchat.events import Origin, RoomRef, UserJoined
        from lairchat.store import Store
        from lairchat.store.events import Outbox
        from lairchat.store.rooms import JOINED

        await self._start_pool()
        store = Store(self.db)
        alice = await store.users.create("alice", "x")
        bob = await store.users.create("bob", "x")
        room = await store.rooms.create("lobby", "public", alice, Outbox(None))
        before = await store.events.latest()
        lose_after_query(self, self.db)
        joined = await store.rooms.join_with_event(RoomRef(room.id, room.name), bob, Origin("test-node", 1))
        self.assertEqual(self.db.unknown_outcomes, {"committed": 1})
        self.assertEqual((joined.status, joined.room), (JOINED, room))
        self.assertEqual(joined.event, UserJoined(RoomRef(room.id, "lobby"), bob.id, "bob",
                                                  origin=Origin("test-node", 1)))
        logged = [e for e in await store.events.since(before) if isinstance(e.event, UserJoined)]
        self.assertEqual([(e.seq, e.event) for e in logged], [(joined.seq, joined.event)])
        self.assertEqual(sorted(await store.rooms.member_ids(room.id)), sorted([alice.id, bob.id]))

    async def test_join_not_stored_is_nothing_changed(self):
        """
        A join whose statement never ran (the connection was lost with
        another statement sent instead) is answered 1212 "nothing was
        changed", which is true, once its backend is gone.
        """
        from lairchat.errors import DatabaseUnavailable
        from lairchat.events import Origin, RoomRef
        from lairchat.store import Store
        from lairchat.store.events import Outbox

        await self._start_pool()
        store = Store(self.db)
        alice = await store.users.create("alice", "x")
        bob = await store.users.create("bob", "x")
        room = await store.rooms.create("lobby", "public", alice, Outbox(None))
        lose_after_query(self, self.db, run=False)
        with self.assertRaises(DatabaseUnavailable) as caught:
            await store.rooms.join_with_event(RoomRef(room.id, room.name), bob, Origin("test-node", 1))
        self.assertIn("nothing was changed", caught.exception.message)
        self.assertEqual(await store.rooms.member_ids(room.id), [alice.id])
        self.assertEqual(self.db.unknown_outcomes, {"aborted": 1})
