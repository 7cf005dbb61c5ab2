# -*- test-case-name: tests.test_embedded -*-
"""
The embedded Postgres: a real server from the C{pgserver} wheel, run in a
data directory, for a lairchat started with no C{--dsn}, and the watchdog
that restarts it when it dies.

Starting, stopping and restarting block (initdb, pg_ctl), so callers run
them in a thread, never on the reactor.

pgserver stops the server when the last process that holds it lets go; it
keeps the holders' process ids in C{.handle_pids.json} in the data
directory.  A server killed with SIGKILL never takes its id out, so the
next clean shutdown would think another process still needs Postgres and
leave it running.  L{EmbeddedPostgres.start} first drops the ids of
processes that are gone, so the server that starts adopts a Postgres left
running by a killed one and stops it on its own clean shutdown.
"""

import json
import os
from pathlib import Path
from typing import Any

import psutil
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

HANDLES = ".handle_pids.json"
"""pgserver's list of the processes that hold the server, in its data directory."""


def _alive(pid: int) -> bool:
    """Whether a process with this id runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def clear_dead_pid_file(pgdata: Path) -> int | None:
    """
    Remove C{postmaster.pid} when the postmaster it names is dead but not
    yet reaped (a zombie: its parent, often init in a container, has not
    collected it).  pgserver and Postgres both take a zombie for a running
    server and would neither start a new one nor let one start.

    @return: the dead postmaster's id, when the file was removed.
    """
    path = pgdata / "postmaster.pid"
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            return None
    except psutil.NoSuchProcess:
        return None  # Postgres itself takes care of a pid file whose process is gone
    except psutil.Error:
        return None
    path.unlink(missing_ok=True)
    return pid


def forget_dead_handles(pgdata: Path) -> list[int]:
    """
    Take the ids of processes that no longer run out of pgserver's list of
    holders in C{pgdata}.

    @return: the ids taken out.
    """
    path = pgdata / HANDLES
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    dead = [pid for pid in pids if pid != os.getpid() and not _alive(pid)]
    if dead:
        path.write_text(json.dumps([pid for pid in pids if pid not in dead]))
    return dead


class EmbeddedPostgres:
    """
    A Postgres server in C{data_dir}, started on demand and stopped on
    L{stop}.  It listens on a Unix socket only, never on the network.
    """

    log = Logger()

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    @property
    def pgdata(self) -> Path:
        """Postgres's own data directory."""
        return self.data_dir / "pg"

    def start(self) -> str:
        """
        Initialise the data directory when it is new, start the server (or
        adopt one a killed lairchat left running), and return its
        connection string.  Blocking.
        """
        import pgserver
        from pgserver.postgres_server import PostgresServer

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.pgdata.mkdir(exist_ok=True)
        with PostgresServer._lock:
            dead = forget_dead_handles(self.pgdata)
            clear_dead_pid_file(self.pgdata)
        if dead:
            self.log.warn("the embedded database was held by processes that are gone ({pids}); "
                          "this server takes it over and stops it on shutdown", pids=dead)
        self._server = pgserver.get_server(self.pgdata, cleanup_mode="stop")
        return self._server.get_uri()

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, while started."""
        if self._server is None:
            return None
        return self._server.get_pid()

    def running(self) -> bool:
        """
        Whether the server this started is running.  Cheap (one look at
        C{/proc}); C{True} when it was never started or was stopped.
        """
        if self._server is None:
            return True
        process = self._server.get_postmaster_info().process
        try:
            return process is not None and process.is_running() and process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def restart(self) -> str:
        """
        Start the server again after it died; return its connection
        string.  Blocking.

        @raise Exception: it would not start (the reason is in its log).
        """
        from pgserver.postgres_server import PostgresServer

        with PostgresServer._lock:
            clear_dead_pid_file(self.pgdata)
            self._server.ensure_postgres_running()
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (its data stays). Blocking."""
        if self._server is not None:
            server, self._server = self._server, None
            try:
                server.cleanup()
            except Exception as error:
                # psutil.NoSuchProcess: it died on its own (killed) meanwhile
                if type(error).__name__ != "NoSuchProcess":
                    raise


RESTART_ATTEMPTS = 8
"""How many times in a row the watchdog tries to start a dead database before it gives up."""

RESTART_BACKOFF = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
"""Seconds between two failed attempts to start it (the last repeats)."""


class EmbeddedWatchdog(Service):
    """
    Watches the embedded Postgres every C{interval} seconds; when it is
    gone, logs it at error level and starts it again in a thread, with
    backoff between failed attempts, at most L{RESTART_ATTEMPTS} in a row.
    The pool's connections reconnect by themselves once it is back.

    @ivar restarts: how many times it was started again.
    @ivar failures: how many attempts to start it failed.
    """

    name = "embedded-watchdog"
    log = Logger()

    def __init__(self, database: Any, clock: Any, interval: float = 1.0,
                 in_thread: Any = deferToThread, attempts: int = RESTART_ATTEMPTS,
                 backoff: tuple = RESTART_BACKOFF) -> None:
        self.database = database
        self.clock = clock
        self.interval = interval
        self.in_thread = in_thread
        self.attempts = attempts
        self.backoff = backoff
        self.restarts = 0
        self.failures = 0
        self.gave_up = False
        self._loop: LoopingCall | None = None
        self._restarting: Deferred | None = None
        self._pause: tuple[Any, Deferred] | None = None

    def startService(self) -> None:
        """Start watching."""
        super().startService()
        self._loop = LoopingCall(self.check)
        self._loop.clock = self.clock
        self._loop.start(self.interval, now=False)

    def check(self) -> Deferred | None:
        """One look; a dead database is started again (the loop waits for that)."""
        if self.gave_up or self._restarting is not None or self.database.running():
            return None
        self.log.error("the embedded database (Postgres in {path}) is gone; starting it again",
                       path=str(self.database.pgdata))
        self._restarting = Deferred.fromCoroutine(self._restart())
        return self._restarting

    async def _restart(self) -> None:
        """Start the database again, with backoff between failed attempts; never raises."""
        try:
            for attempt in range(1, self.attempts + 1):
                if not self.running:
                    return
                try:
                    await self.in_thread(self.database.restart)
                except Exception as error:
                    self.failures += 1
                    pause = self.backoff[min(attempt - 1, len(self.backoff) - 1)]
                    self.log.error(
                        "the embedded database did not start (attempt {attempt} of {attempts}): {error}; "
                        "next attempt in {pause} s",
                        attempt=attempt, attempts=self.attempts, error=str(error).strip() or repr(error),
                        pause=pause)
                    if attempt < self.attempts:
                        waited: Deferred = Deferred()
                        self._pause = (self.clock.callLater(pause, waited.callback, None), waited)
                        await waited
                        self._pause = None
                    continue
                self.restarts += 1
                self.log.warn("the embedded database is running again (restart {count})", count=self.restarts)
                return
            self.gave_up = True
            self.log.critical("the embedded database would not start after {attempts} attempts; "
                              "requests get 1212 until lairchat is restarted", attempts=self.attempts)
        finally:
            self._restarting = None

    def stopService(self) -> Deferred:
        """Stop watching; the Deferred fires once a restart under way ended."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._pause is not None:
            # cut the backoff short: the loop sees the service stopped and ends
            call, waited = self._pause
            self._pause = None
            if call.active():
                call.cancel()
                waited.callback(None)
        restarting = self._restarting
        if restarting is None:
            return succeed(None)
        done: Deferred = Deferred()
        restarting.addBoth(lambda result: (done.callback(None), result)[1])
        return done
