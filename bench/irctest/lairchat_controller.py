"""
An irctest controller for lairchat's IRC front end.

irctest loads it by module name (C{--controller lairchat_controller}, with
this directory on C{PYTHONPATH}; see C{run.sh}).  Like irctest's ngIRCd
controller it starts a fresh server per test::

    twistd -n lairchat --irc-port tcp:PORT --irc-guests --exempt-network 127.0.0.1
        --server-name My.Little.Server --dsn <a fresh database>

on one Postgres started once for the run (C{run.sh} passes its DSN in
C{LAIRCHAT_IRCTEST_DSN}); each test gets a database of its own
(C{createdb}), so no state leaks between tests.  C{registerUser} creates
or updates an account with C{lairchat-admin set-password --any-name
--any-password}.  Only what lairchat implements is declared (see
C{docs/irc.md}): an undeclared capability turns a test into a skip.

Environment (set by C{run.sh}):

  - C{LAIRCHAT_IRCTEST_DSN}: the run's Postgres (a connection URI).
  - C{LAIRCHAT_IRCTEST_BIN}: the bin directory of a venv with lairchat
    installed (C{twistd}, C{lairchat-admin}).
  - C{LAIRCHAT_IRCTEST_PGBIN}: the directory holding Postgres's C{createdb}.
"""

import itertools
import os
import subprocess
import urllib.parse
from typing import Optional, Type

from irctest.basecontrollers import BaseServerController, DirectoryBasedController
from irctest.runner import NotImplementedByController
from irctest.specifications import Capabilities, OptionalBehaviors

_databases = itertools.count(1)
"""Numbers the databases this process creates."""


def _env(name: str) -> str:
    """A required environment variable."""
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(f"{name} is not set: run bench/irctest/run.sh")
    return value


def database_dsn(base: str, name: str) -> str:
    """C{base} (a postgresql:// URI) pointing at database C{name} instead."""
    parts = urllib.parse.urlsplit(base)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


class LairchatController(BaseServerController, DirectoryBasedController):
    """Starts C{twistd -n lairchat} with an IRC port, per test, on a fresh database."""

    software_name = "lairchat"
    supported_sasl_mechanisms = {"PLAIN"}
    supports_sts = False
    _port_wait_interval = 0.05

    capabilities = frozenset(
        (
            Capabilities.ACCOUNT_NOTIFY,
            Capabilities.ACCOUNT_TAG,
            Capabilities.AWAY_NOTIFY,
            Capabilities.BATCH,
            Capabilities.ECHO_MESSAGE,
            Capabilities.EXTENDED_JOIN,
            Capabilities.LABELED_RESPONSE,
            Capabilities.MESSAGE_REDACTION,
            Capabilities.MESSAGE_TAGS,
            Capabilities.MULTI_PREFIX,
            Capabilities.READ_MARKER,
            Capabilities.SERVER_TIME,
        )
    )

    optional_behaviors = frozenset(
        (
            OptionalBehaviors.CAP_REQ_MINUS,
            OptionalBehaviors.MULTI_JOIN,
        )
    )

    isupport = {
        "CASEMAPPING": "ascii",
        "PREFIX": "(oh)@%",
        "UTF8ONLY": None,
    }

    dsn: Optional[str] = None

    def run(
        self,
        hostname: str,
        port: int,
        *,
        password: Optional[str],
        ssl: bool,
        run_services: bool,
        faketime: Optional[str],
        websocket_hostname: Optional[str] = None,
        websocket_port: Optional[int] = None,
    ) -> None:
        """Make a database, then start lairchat on C{hostname}:C{port}."""
        if websocket_hostname is not None or websocket_port is not None:
            raise NotImplementedByController("Websocket")
        if ssl:
            raise NotImplementedByController("TLS")
        if password is not None:
            raise NotImplementedByController("server password")
        assert self.proc is None
        self.port = port
        self.hostname = hostname
        self.create_config()
        assert self.directory
        base = _env("LAIRCHAT_IRCTEST_DSN")
        name = f"irctest_{os.getpid()}_{next(_databases)}"
        createdb = os.path.join(_env("LAIRCHAT_IRCTEST_PGBIN"), "createdb")
        subprocess.run([createdb, f"--maintenance-db={base}", name], check=True)
        self.dsn = database_dsn(base, name)
        twistd = os.path.join(_env("LAIRCHAT_IRCTEST_BIN"), "twistd")
        # LAIRCHAT_IRCTEST_LOGS=DIR keeps each test's server log there (by database name)
        logs = os.environ.get("LAIRCHAT_IRCTEST_LOGS")
        logfile = os.path.join(logs, f"{name}.log") if logs else self.directory / "lairchat.log"
        self.proc = self.execute(
            [
                twistd, "-n", "--pidfile=", f"--logfile={logfile}",
                "lairchat",
                "--port", "tcp:0:interface=127.0.0.1",
                "--irc-port", f"tcp:{port}:interface={hostname}",
                "--irc-guests",
                "--exempt-network", "127.0.0.1",
                "--server-name", "My.Little.Server",
                "--dsn", self.dsn,
            ],
            cwd=self.directory,
        )

    def wait_for_services(self) -> None:
        """Accounts are lairchat's own (no services package): nothing to wait for."""

    def registerUser(self, case, username: str, password: Optional[str] = None) -> None:  # type: ignore
        """Create or update the account C{username} with C{lairchat-admin}."""
        if password is None:
            raise NotImplementedByController("account without a password")
        assert self.dsn
        admin = os.path.join(_env("LAIRCHAT_IRCTEST_BIN"), "lairchat-admin")
        subprocess.run(
            [admin, "--dsn", self.dsn, "set-password", username, "--any-name", "--any-password",
             "--password-stdin"],
            input=password.encode("utf-8") + b"\n", check=True, stdout=subprocess.DEVNULL,
        )


def get_irctest_controller_class() -> Type[LairchatController]:
    """The controller class irctest's C{--controller} loads."""
    return LairchatController
