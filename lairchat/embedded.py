# -*- test-case-name: tests.test_tap -*-
"""
The embedded Postgres: a real server from the C{pgserver} wheel, run in a
data directory, for a lairchat started with no C{--dsn}.

Starting and stopping block (initdb, pg_ctl), so callers run them in a
thread, never on the reactor.
"""

from pathlib import Path
from typing import Any


class EmbeddedPostgres:
    """
    A Postgres server in C{data_dir}, started on demand and stopped on
    L{stop}.  It listens on a Unix socket only, never on the network.
    """

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        self._server: Any = None

    def start(self) -> str:
        """
        Initialise the data directory when it is new, start the server, and
        return its connection string.  Blocking.
        """
        import pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._server = pgserver.get_server(self.data_dir / "pg", cleanup_mode="stop")
        return self._server.get_uri()

    def stop(self) -> None:
        """Stop the server (its data stays). Blocking."""
        if self._server is not None:
            server, self._server = self._server, None
            server.cleanup()
