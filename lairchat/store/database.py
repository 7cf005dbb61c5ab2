# -*- test-case-name: tests.test_store -*-
"""
The connection to Postgres: a txpostgres pool whose connections reconnect
on their own, with every database failure turned into the one error a
client may see (C{1212 DATABASE_UNAVAILABLE}).

This module and its siblings are the only places that hold SQL.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import psycopg2
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from txpostgres import txpostgres
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
    psycopg2.extensions.TransactionRollbackError,
)
"""
Errors psycopg2 files under OperationalError that end one statement (a
timeout, a deadlock, a serialization failure) while the connection lives on.
"""


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
            self.log.warn("database connection lost while idle: {error}", error=str(error).strip())
            return error


def _is_dead(failure: Any) -> bool:
    """
    Whether a failure means the connection is dead: a lost server, not a
    statement that ran past its timeout or lost a deadlock.
    """
    return is_unavailable(failure.value)


def _connection_factory(reactor: Any, cooperator: Any) -> txpostgres.Connection:
    """
    Make one pooled connection with its own dead-connection detector, so a
    connection lost with the database reconnects by itself.
    """
    detector = DeadConnectionDetector(deathChecker=_is_dead, reactor=reactor)
    return _WatchedConnection(reactor, cooperator, detector=detector)


class _Pool(txpostgres.ConnectionPool):
    """A txpostgres pool whose connections reconnect."""

    connectionFactory = staticmethod(_connection_factory)


class Database:
    """
    The pool, and the three ways to use it: a read, a write, a transaction.

    @ivar dsn: the libpq connection string.
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

    async def start(self) -> None:
        """
        Open every connection of the pool.

        @raise DatabaseUnavailable: the database cannot be reached.
        """
        try:
            await self._pool.start()
        except Exception as error:
            underlying = getattr(error, "subFailure", None)
            reason = underlying.value if underlying is not None else error
            self.log.error("cannot connect to the database: {reason}", reason=reason)
            raise DatabaseUnavailable("the database cannot be reached") from None

    def close(self) -> None:
        """Close every connection of the pool, idle or busy."""
        for connection in self._connections:
            if connection.detector is not None:
                connection.detector.setReconnectable(_Closed())
            try:
                connection.close()
            except Exception:
                pass

    async def _guard(self, deferred: Deferred) -> Any:
        """Await a pool call, turning a lost database into L{DatabaseUnavailable}."""
        try:
            return await deferred
        except (psycopg2.errors.QueryCanceled, CancelledError):
            # txpostgres reports a cancelled statement as a CancelledError
            self.log.warn("a statement ran past the statement timeout")
            raise Timeout("the request took too long; nothing was changed") from None
        except psycopg2.extensions.TransactionRollbackError:
            self.log.warn("a transaction lost a deadlock or a serialization conflict")
            raise DatabaseUnavailable(
                "a conflicting change was under way; try again; nothing was changed"
            ) from None
        except Exception as error:
            if is_unavailable(error):
                self.log.warn("database unavailable: {error!r}", error=error)
                raise DatabaseUnavailable() from None
            raise

    async def fetchall(self, sql: str, params: Any = None, retry: bool = True) -> list[tuple]:
        """
        Run a read-only query and return its rows.  A read is idempotent, so
        it is tried once more on another connection when the first is lost.
        """
        try:
            return await self._guard(self._pool.runQuery(sql, params))
        except DatabaseUnavailable:
            if not retry:
                raise
            return await self._guard(self._pool.runQuery(sql, params))

    async def fetchone(self, sql: str, params: Any = None) -> tuple | None:
        """Run a read-only query and return its first row, or L{None}."""
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Any = None) -> None:
        """Run one statement on its own (autocommitted); never retried."""
        await self._guard(self._pool.runOperation(sql, params))

    async def transaction(self, work: Callable[[Transaction], Awaitable[T]]) -> T:
        """
        Run C{work} in one transaction: committed when it returns, rolled
        back when it raises.  Never retried (it may not be idempotent).

        @param work: an async function of a L{Transaction}.
        """

        def interaction(cursor: txpostgres.Cursor) -> Deferred:
            return Deferred.fromCoroutine(work(Transaction(cursor)))

        return await self._guard(self._pool.runInteraction(interaction))

    async def apply_schema(self, sql: str) -> None:
        """
        Apply the schema under an advisory lock, so that nodes starting at
        once apply it one after another.
        """

        async def apply(tx: Transaction) -> None:
            await tx.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            await tx.execute(sql)

        await self.transaction(apply)


class _Closed:
    """A reconnectable that refuses to reconnect: the pool was closed on purpose."""

    def close(self) -> None:
        """Nothing to close."""

    def connect(self, *args: Any, **kwargs: Any) -> Deferred:
        """Never reconnect a closed pool."""
        return Deferred()
