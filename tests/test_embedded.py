"""
The embedded Postgres: the watchdog that restarts it, and the stale
handles a killed server leaves behind.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.defer import fail, succeed
from twisted.internet.task import Clock, deferLater
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lairchat.embedded import EmbeddedPostgres, EmbeddedWatchdog, forget_dead_handles
from lairchat.tap import LairchatService
from tests.support import TEST_CONFIG, RunningServer


class _Database:
    """An embedded database double: dies on demand, starts as told."""

    pgdata = Path("/nowhere/pg")

    def __init__(self, starts):
        self.alive = True
        self.starts = list(starts)
        self.attempts = 0

    def running(self):
        """Whether it is up."""
        return self.alive

    def restart(self):
        """Start, or fail to, as the next of C{starts} says."""
        self.attempts += 1
        if self.starts.pop(0):
            self.alive = True
            return "dsn"
        raise RuntimeError("could not start")


def _captured(testcase):
    """Every log event from now to the end of the test."""
    events = []
    globalLogPublisher.addObserver(events.append)
    testcase.addCleanup(globalLogPublisher.removeObserver, events.append)
    return events


def _synchronously(f):
    """Run a blocking function at once (instead of in a thread)."""
    try:
        return succeed(f())
    except Exception:
        return fail()


class WatchdogTests(SynchronousTestCase):
    """The watchdog, on a clock, over a database double."""

    def watchdog(self, starts, attempts=8):
        """A running watchdog over a database whose starts succeed or fail as C{starts} says."""
        database = _Database(starts)
        clock = Clock()
        watchdog = EmbeddedWatchdog(database, clock, interval=1.0, in_thread=_synchronously,
                                    attempts=attempts, backoff=(1.0, 2.0))
        watchdog.startService()
        self.addCleanup(watchdog.stopService)
        return database, clock, watchdog

    def test_alive_left_alone(self):
        """A running database is not touched."""
        database, clock, watchdog = self.watchdog([])
        clock.advance(5)
        self.assertEqual((database.attempts, watchdog.restarts), (0, 0))

    def test_dead_restarted_and_logged(self):
        """A dead database is noticed at the next check, logged at error level, started, counted."""
        events = _captured(self)
        database, clock, watchdog = self.watchdog([True])
        database.alive = False
        clock.advance(1)
        self.assertTrue(database.alive)
        self.assertEqual(watchdog.restarts, 1)
        errors = [e for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("is gone", errors[0]["log_format"])

    def test_backoff_between_failures(self):
        """Failed starts are logged each and tried again after the backoff."""
        events = _captured(self)
        database, clock, watchdog = self.watchdog([False, False, True])
        database.alive = False
        clock.advance(1)
        self.assertEqual(database.attempts, 1)
        clock.advance(1)
        self.assertEqual(database.attempts, 2)
        clock.advance(1.5)
        self.assertEqual(database.attempts, 2)
        clock.advance(0.5)
        self.assertEqual((database.attempts, watchdog.restarts, watchdog.failures), (3, 1, 2))
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.error]), 3)

    def test_gives_up(self):
        """After its attempts it stops trying, and says so at critical level."""
        events = _captured(self)
        database, clock, watchdog = self.watchdog([False] * 3, attempts=3)
        database.alive = False
        clock.advance(1)
        clock.advance(1)
        clock.advance(2)
        clock.advance(10)
        self.assertEqual(database.attempts, 3)
        self.assertTrue(watchdog.gave_up)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.critical]), 1)

    def test_stop_cuts_backoff_short(self):
        """Stopping during a backoff pause ends at once, and no attempt follows."""
        database, clock, watchdog = self.watchdog([False, True])
        database.alive = False
        clock.advance(1)
        stopped = watchdog.stopService()
        self.assertTrue(stopped.called)
        clock.advance(10)
        self.assertEqual(database.attempts, 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class StaleHandleTests(SynchronousTestCase):
    """pgserver's list of holders after a holder was killed."""

    def test_dead_holders_forgotten(self):
        """Processes that are gone leave the list; live ones (and this one) stay."""
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        pgdata = Path(tempfile.mkdtemp(prefix="lairchat-handles-"))
        (pgdata / ".handle_pids.json").write_text(json.dumps([gone.pid, os.getpid(), 1]))
        self.assertEqual(forget_dead_handles(pgdata), [gone.pid])
        self.assertEqual(json.loads((pgdata / ".handle_pids.json").read_text()), [os.getpid(), 1])

    def test_no_list(self):
        """A data directory with no list is left alone."""
        self.assertEqual(forget_dead_handles(Path(tempfile.mkdtemp())), [])


def _postmaster_pid(pgdata):
    """The postmaster's process id from its pid file, or None."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _running(pid):
    """Whether a process runs (not a zombie)."""
    from lairchat.embedded import _alive

    return pid is not None and _alive(pid)


class KilledServerTests(TestCase):
    """A lairchat killed with SIGKILL leaves its Postgres running; the next one stops it."""

    timeout = 180

    async def test_orphan_adopted_and_stopped(self):
        """
        A process holding the embedded database is killed; a new holder
        adopts the running Postgres and, on a clean stop, stops it.
        """
        directory = tempfile.mkdtemp(prefix="lairchat-orphan-")
        script = (
            "import sys, time\n"
            "from lairchat.embedded import EmbeddedPostgres\n"
            "EmbeddedPostgres(sys.argv[1]).start()\n"
            "print('ready', flush=True)\n"
            "time.sleep(600)\n"
        )
        child = subprocess.Popen([sys.executable, "-c", script, directory], stdout=subprocess.PIPE)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        line = await deferToThread(child.stdout.readline)
        self.assertEqual(line.strip(), b"ready")
        pgdata = Path(directory) / "pg"
        orphan = _postmaster_pid(pgdata)
        self.assertTrue(_running(orphan))
        child.send_signal(signal.SIGKILL)
        await deferToThread(child.wait)
        self.assertTrue(_running(orphan), "Postgres went with the killed server")

        database = EmbeddedPostgres(directory)
        await deferToThread(database.start)
        self.assertEqual(database.pid, orphan)
        await deferToThread(database.stop)
        for _ in range(100):
            if not _running(orphan):
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(_running(orphan), "the adopted Postgres is still running")


class SupervisedServerTests(TestCase):
    """A server on its own embedded Postgres, which is killed under it."""

    timeout = 180

    async def test_killed_database_restarted(self):
        """
        The embedded Postgres is killed with SIGKILL under a running
        server: the watchdog starts it again, and a later send succeeds on
        the same connection, with no server restart.
        """
        directory = tempfile.mkdtemp(prefix="lairchat-supervised-")
        events = _captured(self)
        service = LairchatService(
            evolve(TEST_CONFIG), ["tcp:0:interface=127.0.0.1"], dsn=None, data_dir=directory, pool_size=2,
            stop_reactor_on_failure=False,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        running = RunningServer(self)
        running.service, running.port = service, service.ports[0].getHost().port
        client = await running.user("alice")
        self.assertEqual((await client.request("CREATE_ROOM:hall"))[-1][:15], "OK:CREATE_ROOM:")
        self.assertTrue((await client.request("SEND_MESSAGE:hall:before"))[-1].startswith("OK:SEND_MESSAGE:"))

        pgdata = Path(directory) / "pg"
        postmaster = _postmaster_pid(pgdata)
        os.kill(postmaster, signal.SIGKILL)

        # A hang guard, not a timing threshold: the watchdog has minutes.  A
        # backend of the killed postmaster may still answer for a moment
        # (it notices its postmaster's death only when idle), so the send
        # that counts is one made once the watchdog has started Postgres
        # again.
        watchdog = service.getServiceNamed("embedded-watchdog")
        for _ in range(600):
            if watchdog.restarts:
                reply = await client.request("SEND_MESSAGE:hall:after")
                if reply[-1].startswith("OK:SEND_MESSAGE:"):
                    break
                self.assertTrue(reply[-1].startswith("ERROR:1212:"), reply)
            await deferLater(reactor, 0.25, lambda: None)
        self.assertTrue(reply[-1].startswith("OK:SEND_MESSAGE:"), reply)
        self.assertNotEqual(_postmaster_pid(pgdata), postmaster)
        self.assertEqual(watchdog.restarts, 1)
        history = await client.request("GET_HISTORY:hall")
        self.assertEqual([line.rsplit(":", 1)[-1] for line in history if line.startswith("HISTORY:")],
                         ["before", "after"])
        from prometheus_client import generate_latest

        scraped = generate_latest(service.server.metrics.registry).decode()
        self.assertIn("lairchat_embedded_database_restarts_total 1.0", scraped)
        self.assertIn("lairchat_database_pool_in_use", scraped)
        from twisted.logger import formatEvent

        self.assertEqual([e for e in events if e.get("log_failure") is not None
                          or "Unhandled Error" in (formatEvent(e) or "")], [], "a traceback in the log")
        self.assertTrue([e for e in events if e["log_level"] == LogLevel.error
                         and "is gone" in (e.get("log_format") or "")])

        await service.stopService()
        for _ in range(100):
            if not _running(_postmaster_pid(pgdata)):
                break
            await deferLater(reactor, 0.1, lambda: None)
        self.assertFalse(_running(_postmaster_pid(pgdata)), "the embedded Postgres outlived the server")
