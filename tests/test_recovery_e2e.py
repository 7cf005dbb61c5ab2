"""
The database goes away and comes back: requests fail cleanly with 1212
while it is gone, and the server recovers by itself.
"""

import tempfile

from attrs import evolve
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from lairchat.embedded import EmbeddedPostgres
from lairchat.tap import LairchatService
from tests.support import TEST_CONFIG, LineClient


class DatabaseRecoveryTests(TestCase):
    """A server whose own embedded Postgres is stopped and restarted."""

    timeout = 120

    async def test_database_outage(self):
        """
        While the database is down a request gets 1212 and the connection
        stays; once it is back, the same connection logs in.
        """
        directory = tempfile.mkdtemp(prefix="lairchat-recovery-")
        database = EmbeddedPostgres(directory)
        dsn = await deferToThread(database.start)
        self.addCleanup(lambda: deferToThread(database.stop))
        service = LairchatService(
            evolve(TEST_CONFIG), ["tcp:0:interface=127.0.0.1"], dsn=dsn, pool_size=2,
            stop_reactor_on_failure=False,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        port = service.ports[0].getHost().port

        from tests.support import RunningServer

        running = RunningServer(self)
        running.service, running.port = service, port
        client = await running.user("alice")
        await client.close()
        client = await running.connect()

        await deferToThread(database.stop)
        reply = await client.request("LOGIN:alice:correct horse 9")
        self.assertEqual(
            reply,
            ["ERROR:1212:DATABASE_UNAVAILABLE:the database is unavailable, try again later; nothing was changed"],
        )
        self.assertEqual(await client.request("PING"), ["OK:PING"])

        await deferToThread(database.start)
        for attempt in range(60):
            reply = await client.request("LOGIN:alice:correct horse 9")
            if reply[-1].startswith("OK:LOGIN:alice:"):
                break
            self.assertTrue(reply[-1].startswith("ERROR:1212:"), reply)
            await deferLater(reactor, 0.5, lambda: None)
        self.assertTrue(reply[-1].startswith("OK:LOGIN:alice:"), reply)
        self.assertEqual(await client.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
