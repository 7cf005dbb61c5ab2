# -*- test-case-name: tests.test_store -*-
"""
The connection to Postgres: a txpostgres pool whose connections reconnect
on their own, with every database failure turned into the one error a
client may see (C{1212 DATABASE_UNAVAILABLE}).

This module and its siblings are the only places that hold SQL.
"""

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg2
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.python.failure import Failure
from txpostgres import retrying, txpostgres
from txpostgres.reconnection import ConnectionDead, DeadConnectionDetector

from lairchat.errors import DatabaseUnavailable, Timeout

T = TypeVar("T")

SCHEMA_LOCK_KEY = 0x1A12C4A7
"""The advisory lock held while the schema is applied."""

_UNAVAILABLE = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    ConnectionDead,
    txpostgres.RollbackFailed,
)


_STATEMENT_ENDED = (
    psycopg2.errors.QueryCanceled,
    psycopg2.errors.LockNotAvailable,
    psycopg2.extensions.TransactionRollbackError,
)
"""
Errors psycopg2 files under OperationalError that end one statement (a
timeout, a lock timeout, a deadlock, a serialization failure) while the
connection lives on.
"""


CONFLICT_ATTEMPTS = 3
"""
How many times a transaction (or a single write) that lost a deadlock or a
serialization conflict is run before the client is answered C{1212}.
"""

CONFLICT_BACKOFF = 0.02
"""
Seconds: the mean pause before the first re-run after a conflict, doubled
for each further one, with full jitter (a random pause between none and
twice this), so that the two losers of a conflict do not meet again.
"""

OUTCOME_CHECKS = (0.25, 0.5, 1.0, 2.0)
"""
Pauses, in seconds, between the attempts to learn whether a transaction
whose C{COMMIT} lost its connection committed (L{Database.transaction}).
"""

MAY_HAVE_BEEN_SAVED = (
    "the database went away while your change was being saved; it may have been saved, "
    "check before trying again"
)
"""The C{1212} message when a change's outcome is unknown: never "nothing was changed"."""


class CommitUnknown(Exception):
    """
    The connection was lost during C{COMMIT}: the transaction may or may
    not have committed.

    @ivar xid: the transaction's id (C{txid_current()}), to ask
        C{txid_status} once the database is back.
    @ivar result: what the transaction's work returned, should it have
        committed.
    @ivar reason: the error that ended the connection.
    """

    def __init__(self, xid: int, result: Any, reason: BaseException) -> None:
        super().__init__(f"commit of transaction {xid} lost its connection: {reason}")
        self.xid = xid
        self.result = result
        self.reason = reason


def describe(error: BaseException) -> str:
    """
    A database error in one line, for the log: a failed rollback is told
    by the error that caused it.
    """
    while isinstance(error, txpostgres.RollbackFailed) and error.originalFailure is not None:
        error = error.originalFailure.value
    text = str(error).strip() or repr(error)
    return " ".join(text.split())


def _conflict_reason(error: BaseException) -> str:
    """The C{reason} label of a retried conflict: C{deadlock} or C{serialization}."""
    return "deadlock" if isinstance(error, psycopg2.errors.DeadlockDetected) else "serialization"


def is_unavailable(failure_or_error: BaseException) -> bool:
    """
    Whether an exception means the database cannot be reached (as opposed
    to a query the database refused or a statement it ended).
    """
    return isinstance(failure_or_error, _UNAVAILABLE) and not isinstance(failure_or_error, _STATEMENT_ENDED)


class Transaction:
    """
    One open transaction: a thin, awaitable face over a txpostgres cursor.
    """

    def __init__(self, cursor: txpostgres.Cursor) -> None:
        self._cursor = cursor
        self._undo: list[Callable[[], Any]] = []

    def on_rollback(self, undo: Callable[[], Any]) -> None:
        """
        Call C{undo} should this transaction not commit: work kept outside
        the database (events gathered for delivery) is taken back, so that
        a transaction run again after a conflict does not keep it twice.
        """
        self._undo.append(undo)

    def rolled_back(self) -> None:
        """This transaction did not commit: take back what L{on_rollback} was given."""
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            step()

    async def execute(self, sql: str, params: Any = None) -> int:
        """Run a statement; return how many rows it touched."""
        await self._cursor.execute(sql, params)
        return self._cursor.rowcount

    async def fetchall(self, sql: str, params: Any = None) -> list[tuple]:
        """Run a query; return every row."""
        await self._cursor.execute(sql, params)
        return self._cursor.fetchall()

    async def fetchone(self, sql: str, params: Any = None) -> tuple | None:
        """Run a query; return its first row, or L{None}."""
        await self._cursor.execute(sql, params)
        return self._cursor.fetchone()


class _WatchedConnection(txpostgres.Connection):
    """
    A txpostgres connection that takes the database going away while it is
    idle as a lost connection (and so reconnects through its detector)
    rather than as an unhandled error in the reactor.
    """

    log = Logger()

    def doRead(self) -> Any:
        """Read; a dead server is returned as the reason to disconnect."""
        try:
            return super().doRead()
        except _UNAVAILABLE as error:
            self.log.warn("database connection lost while idle: {error}", error=describe(error))
            return error

    def _runInteraction(self, interaction: Any, *args: Any, **kwargs: Any) -> Deferred:
        """
        Run C{interaction} in a transaction, as txpostgres does, but:

          - the transaction's id is taken before C{COMMIT}, so that a C{COMMIT}
            that loses its connection is a L{CommitUnknown} (whose outcome
            the caller can ask for later), never a plain failure;
          - a C{ROLLBACK} that fails (the database went away) is a one-line
            warning, not an "Unhandled Error" traceback in the log.
        """
        cursor = self.cursor()
        begun = cursor.execute("BEGIN")

        def run(_: Any) -> Deferred:
            # the id is asked for last: a transaction that wrote nothing has none
            ran = maybeDeferred(interaction, cursor, *args, **kwargs)
            ran.addCallback(lambda result: cursor.execute("SELECT txid_current_if_assigned()").addCallback(
                lambda _: (result, cursor.fetchone()[0])))
            return ran

        def rollback(reason: Failure) -> Deferred:
            ending = maybeDeferred(cursor.execute, "ROLLBACK")

            def rollback_failed(why: Failure) -> Failure:
                self.log.warn("rollback failed, the connection is gone: {error}", error=describe(why.value))
                return Failure(txpostgres.RollbackFailed(self, reason))

            ending.addCallbacks(lambda _: reason, rollback_failed)
            return ending

        def commit(ran: tuple[Any, int | None]) -> Deferred:
            result, xid = ran
            committing = maybeDeferred(cursor.execute, "COMMIT")

            def commit_failed(why: Failure) -> Failure:
                if xid is not None and is_unavailable(why.value):
                    return Failure(CommitUnknown(xid, result, why.value))
                return why

            committing.addCallbacks(lambda _: result, commit_failed)
            return committing

        begun.addCallback(run)
        begun.addCallbacks(commit, rollback)
        return begun


def _is_dead(failure: Any) -> bool:
    """
    Whether a failure means the connection is dead: a lost server (also
    during a C{COMMIT}), not a statement that ran past its timeout or lost
    a deadlock.
    """
    if isinstance(failure.value, CommitUnknown):
        return True
    return is_unavailable(failure.value)


class Reconnector(DeadConnectionDetector):
    """
    A txpostgres dead-connection detector that logs what it does in one
    line each (connection lost, reconnected), never a traceback, and whose
    reconnection attempts stop for good on L{stop} (when the pool closes).
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        super().__init__(deathChecker=_is_dead, reactor=reactor)
        self._reconnecting: Deferred | None = None
        self._connecting = False
        self._stopped = False

    def startReconnecting(self, f: Failure) -> None:
        """The connection is dead: reconnect, with backoff, until it works or L{stop}."""
        if self._stopped:
            return
        self.log.warn("database connection lost ({error}); reconnecting", error=describe(f.value))
        attempts = retrying.RetryingCall(self.reconnect)
        attempts.reactor = self.reactor
        self._reconnecting = attempts.start(self.reconnectionIterator(),
                                            failureTester=lambda why: why if self._stopped else None)
        self._reconnecting.addCallbacks(lambda _: self.connectionRecovered(), self._gave_up)

    @property
    def reconnecting(self) -> bool:
        """Whether the connection was lost and is not back yet."""
        return self._reconnecting is not None

    def reconnect(self) -> Deferred:
        """One attempt to connect again."""
        self._connecting = True

        def done(result: Any) -> Any:
            self._connecting = False
            return result

        return maybeDeferred(super().reconnect).addBoth(done)

    def _gave_up(self, failure: Failure) -> None:
        """Reconnection stopped: on purpose (L{stop}), or for a reason worth one line."""
        if not (self._stopped or failure.check(CancelledError)):
            self.log.warn("database connection not restored: {error}", error=describe(failure.value))

    def connectionRecovered(self) -> Deferred | None:
        """Reconnected: say so, and run the recovery handlers (unless stopped meanwhile)."""
        self._reconnecting = None
        if self._stopped:
            return None
        self.log.info("database connection restored")
        return super().connectionRecovered()

    def stop(self) -> None:
        """Never reconnect again; a pause between two attempts is cut short."""
        self._stopped = True
        self.setReconnectable(_Closed())
        reconnecting, self._reconnecting = self._reconnecting, None
        if reconnecting is not None and not reconnecting.called and not self._connecting:
            # waiting out the backoff (a connect under way cannot be cancelled;
            # the closed connection never answers it)
            reconnecting.cancel()


def _connection_factory(reactor: Any, cooperator: Any) -> txpostgres.Connection:
    """
    Make one pooled connection with its own dead-connection detector, so a
    connection lost with the database reconnects by itself.
    """
    detector = Reconnector(reactor)
    return _WatchedConnection(reactor, cooperator, detector=detector)


class _Pool(txpostgres.ConnectionPool):
    """A txpostgres pool whose connections reconnect."""

    connectionFactory = staticmethod(_connection_factory)

    def runQueryNoting(self, sql: str, params: Any, backends: list) -> Deferred:
        """
        L{runQuery}, appending to C{backends} the process id of the server
        backend it is sent to (known without asking the server).
        """
        return self._semaphore.run(self._runQueryNoting, sql, params, backends)

    def _runQueryNoting(self, sql: str, params: Any, backends: list) -> Deferred:
        """L{runQueryNoting} once a connection is free."""
        c = self.connections.pop()
        try:
            backends.append(c._connection.get_backend_pid())
        except Exception:
            pass  # a closed connection: the statement is never sent
        d = c.runQuery(sql, params)
        return d.addBoth(self._putBackAndPassthrough, c)


class Database:
    """
    The pool, and the three ways to use it: a read, a write, a transaction.

    @ivar dsn: the libpq connection string.
    @ivar waits: how many calls found no free connection and waited.
    @ivar retries: how many times a transaction or statement was run again
        after a conflict, by reason (C{deadlock}, C{serialization}).
    @ivar unknown_outcomes: commits that lost their connection, by what
        they turned out to be (C{committed}, C{aborted}, C{unknown}).
    """

    log = Logger()

    def __init__(self, dsn: str, size: int = 4, statement_timeout_ms: int = 15000, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.dsn = dsn
        self._reactor = reactor
        self._pool = _Pool.__new__(_Pool)
        self._pool.reactor = reactor
        self._pool.__init__(
            None,
            dsn,
            min=size,
            connect_timeout=10,
            options=f"-c statement_timeout={statement_timeout_ms}",
        )
        # The pool takes a connection out of its set while a query runs on it;
        # remember them all so that close() reaches the busy ones too.
        self._connections = list(self._pool.connections)
        self.waits = 0
        self.retries: Counter[str] = Counter()
        self.unknown_outcomes: Counter[str] = Counter()

    async def start(self) -> None:
        """
        Open every connection of the pool.

        @raise DatabaseUnavailable: the database cannot be reached (libpq's
            words for why are its C{reason}, for an operator).
        """
        try:
            await self._pool.start()
        except Exception as error:
            underlying = getattr(error, "subFailure", None)
            reason = underlying.value if underlying is not None else error
            self.log.error("cannot connect to the database: {reason}", reason=reason)
            unavailable = DatabaseUnavailable("the database cannot be reached")
            unavailable.reason = str(reason).strip() or repr(reason)
            raise unavailable from None

    def close(self) -> None:
        """Close every connection of the pool, idle or busy."""
        for connection in self._connections:
            if isinstance(connection.detector, Reconnector):
                connection.detector.stop()
            try:
                connection.close()
            except Exception:
                pass

    @property
    def in_use(self) -> int:
        """How many of the pool's connections are running a query now."""
        semaphore = self._pool._semaphore
        return semaphore.limit - semaphore.tokens

    @property
    def connected(self) -> int:
        """How many of the pool's connections are up (not lost and reconnecting)."""
        return sum(
            1 for c in self._connections
            if not (isinstance(c.detector, Reconnector) and c.detector.reconnecting)
        )

    @property
    def waiting(self) -> int:
        """How many queries are waiting for a free connection now."""
        return len(self._pool._semaphore.waiting)

    def _counted(self, deferred_call: Callable[[], Deferred]) -> Deferred:
        """Start a pool call, counting it in L{waits} when no connection is free."""
        if self._pool._semaphore.tokens <= 0:
            self.waits += 1
        return deferred_call()

    async def _guard(self, deferred: Deferred) -> Any:
        """
        Await a pool call, turning a lost database into L{DatabaseUnavailable}
        (a conflict, L{psycopg2.extensions.TransactionRollbackError}, is
        left to L{_conflicts_retried}).
        """
        try:
            return await deferred
        except (psycopg2.errors.QueryCanceled, CancelledError):
            # txpostgres reports a cancelled statement as a CancelledError
            self.log.warn("a statement ran past the statement timeout")
            raise Timeout("the request took too long; nothing was changed") from None
        except psycopg2.extensions.TransactionRollbackError:
            raise
        except Exception as error:
            if is_unavailable(error):
                self.log.warn("database unavailable: {error}", error=describe(error))
                unavailable = DatabaseUnavailable()
                # a connection known to be dead, or closed, was never sent the statement
                unavailable.sent = not isinstance(error, (ConnectionDead, psycopg2.InterfaceError))
                raise unavailable from None
            raise

    async def _conflicts_retried(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """
        Run C{attempt} (a whole transaction, or one statement, which a
        conflict rolls back entirely) again when it lost a deadlock or a
        serialization conflict: at most L{CONFLICT_ATTEMPTS} times in all,
        after a jittered pause on the reactor.
        """
        tries = 0
        while True:
            tries += 1
            try:
                return await attempt()
            except psycopg2.extensions.TransactionRollbackError as error:
                reason = _conflict_reason(error)
                if tries >= CONFLICT_ATTEMPTS:
                    self.log.warn("a transaction lost a {reason} conflict {tries} times; giving up",
                                  reason=reason, tries=tries)
                    raise DatabaseUnavailable(
                        "a conflicting change was under way; try again; nothing was changed"
                    ) from None
                self.retries[reason] += 1
                pause = random.uniform(0, 2 * CONFLICT_BACKOFF * 2 ** (tries - 1))
                self.log.info("a transaction lost a {reason} conflict; running it again in {pause:.3f} s",
                              reason=reason, pause=pause)
                await deferLater(self._reactor, pause, lambda: None)

    async def fetchall(self, sql: str, params: Any = None, retry: bool = True) -> list[tuple]:
        """
        Run a query and return its rows.  A read is idempotent, so it is
        tried once more on another connection when the first is lost
        (C{retry=False} for a statement that writes: when its connection is
        lost, its outcome is unknown, and the error says so).  A statement
        that lost a conflict did nothing, and is run again.
        """

        async def attempt() -> list[tuple]:
            try:
                return await self._guard(self._counted(lambda: self._pool.runQuery(sql, params)))
            except DatabaseUnavailable as error:
                if not retry:
                    raise _unknown_if_sent(error) from None
                return await self._guard(self._counted(lambda: self._pool.runQuery(sql, params)))

        return await self._conflicts_retried(attempt)

    async def fetchone(self, sql: str, params: Any = None) -> tuple | None:
        """Run a read-only query and return its first row, or L{None}."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Any = None) -> None:
        """
        Run one statement on its own (autocommitted); never retried when
        its connection is lost (its outcome is then unknown), run again when
        it lost a conflict (it then did nothing).
        """

        async def attempt() -> None:
            try:
                await self._guard(self._counted(lambda: self._pool.runOperation(sql, params)))
            except DatabaseUnavailable as error:
                raise _unknown_if_sent(error) from None

        await self._conflicts_retried(attempt)

    async def transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """
        Run C{work} in one transaction: committed when it returns, rolled
        back when it raises.

        A transaction that lost a deadlock or a serialization conflict is
        run again from the start (C{work} must keep nothing outside the
        database but through L{Transaction.on_rollback}), a few times,
        before the caller gets C{1212}.  A transaction whose C{COMMIT} lost
        its connection is never run again: its outcome is asked for once
        the database answers; committed, its result is returned; unknown,
        the error says that it may have been saved.

        @param work: an async function of a L{Transaction}.
        """

        async def attempt() -> T:
            transactions: list[Transaction] = []

            def interaction(cursor: txpostgres.Cursor) -> Deferred:
                tx = Transaction(cursor)
                transactions.append(tx)
                return Deferred.fromCoroutine(work(tx))

            try:
                return await self._guard(self._counted(lambda: self._pool.runInteraction(interaction)))
            except CommitUnknown as unknown:
                if await self._committed(unknown):
                    return unknown.result
                for tx in transactions:
                    tx.rolled_back()
                raise DatabaseUnavailable() from None
            except DatabaseUnavailable:
                for tx in transactions:
                    tx.rolled_back()
                raise
            except BaseException:
                for tx in transactions:
                    tx.rolled_back()
                raise

        return await self._conflicts_retried(attempt)

    async def write_once(self, sql: str, params: Any, settle: Callable[[], Awaitable[Any]]) -> list[tuple]:
        """
        Run one autocommitted statement that writes, in one round trip, and
        return its rows.

        When its connection is lost after it was sent, its outcome is
        learnt, never guessed: once its server backend is gone (so its
        transaction has ended one way or the other), C{settle()} reads what
        it stored: its rows as the statement would have returned them, or
        L{None} when it stored nothing (then the error says nothing was
        changed).  When the database does not answer meanwhile, the error
        says the change may have been saved.  A statement that lost a
        conflict is run again, as in L{transaction}.
        """

        async def attempt() -> list[tuple]:
            backends: list[int] = []
            try:
                return await self._guard(self._counted(lambda: self._pool.runQueryNoting(sql, params, backends)))
            except DatabaseUnavailable as error:
                if not getattr(error, "sent", True):
                    raise
                if not backends:
                    raise DatabaseUnavailable(MAY_HAVE_BEEN_SAVED) from None
                return await self._settled(backends[0], settle)

        return await self._conflicts_retried(attempt)

    async def _settled(self, backend: int, settle: Callable[[], Awaitable[Any]]) -> Any:
        """
        What a statement whose connection was lost did, once its backend
        C{backend} is gone (asked until the database answers,
        L{OUTCOME_CHECKS}).

        @raise DatabaseUnavailable: it stored nothing (nothing was changed),
            or the database did not answer (it may have been saved).
        """
        self.log.warn("the database connection was lost during a write; asking what it did")
        for pause in (0.0,) + OUTCOME_CHECKS:
            if pause:
                await deferLater(self._reactor, pause, lambda: None)
            try:
                if await self._guard(self._pool.runQuery("SELECT 1 FROM pg_stat_activity WHERE pid = %s",
                                                         (backend,))):
                    continue  # still running: it has not yet noticed its lost client
                result = await settle()
            except DatabaseUnavailable:
                continue
            if result is not None:
                self.unknown_outcomes["committed"] += 1
                return result
            self.unknown_outcomes["aborted"] += 1
            raise DatabaseUnavailable()
        self.unknown_outcomes["unknown"] += 1
        raise DatabaseUnavailable(MAY_HAVE_BEEN_SAVED)

    async def _committed(self, unknown: CommitUnknown) -> bool:
        """
        Whether the transaction whose C{COMMIT} lost its connection
        committed, asked of the database (C{txid_status}) until it answers
        (L{OUTCOME_CHECKS}).

        @return: C{True} when it committed, C{False} when it was rolled back.
        @raise DatabaseUnavailable: the database did not answer; the
            message says the change may have been saved.
        """
        self.log.warn("the database went away during a commit ({error}); asking whether it committed",
                      error=describe(unknown.reason))
        for pause in (0.0,) + OUTCOME_CHECKS:
            if pause:
                await deferLater(self._reactor, pause, lambda: None)
            try:
                row = await self._guard(self._pool.runQuery("SELECT txid_status(%s)", (unknown.xid,)))
            except DatabaseUnavailable:
                continue
            status = row[0][0] if row else None
            self.log.info("transaction {xid} turned out {status}", xid=unknown.xid, status=status)
            if status == "committed":
                self.unknown_outcomes["committed"] += 1
                return True
            if status in ("aborted", None):
                self.unknown_outcomes["aborted"] += 1
                return False
            # "in progress": its backend has not yet noticed the lost client
        self.unknown_outcomes["unknown"] += 1
        raise DatabaseUnavailable(MAY_HAVE_BEEN_SAVED)

    async def apply_schema(self, sql: str) -> None:
        """
        Apply the schema under an advisory lock, so that nodes starting at
        once apply it one after another.
        """

        async def apply(tx: Transaction) -> None:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            await tx.execute(sql)

        await self.transaction(apply)


def _unknown_if_sent(error: DatabaseUnavailable) -> DatabaseUnavailable:
    """
    The error for a write whose connection was lost: its outcome is
    unknown unless the connection was known to be dead before it was sent.
    """
    if not getattr(error, "sent", True):
        return error
    return DatabaseUnavailable(MAY_HAVE_BEEN_SAVED)


class _Closed:
    """A reconnectable that refuses to reconnect: the pool was closed on purpose."""

    def close(self) -> None:
        """Nothing to close."""

    def connect(self, *args: Any, **kwargs: Any) -> Deferred:
        """Never reconnect a closed pool."""
        return Deferred()
