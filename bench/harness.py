"""
What the message benchmarks share: an embedded Postgres in a temporary
directory, the real server as a C{twistd -n lairchat --no-rate-limit}
subprocess on a loopback port, accounts seeded with SQL (one password hash
for all, so setting up does not cost N argon2 hashes), an asyncio line
client that pipelines labelled requests, and percentiles.

Not a test: nothing here asserts; the scripts print figures.
"""

import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
from argon2 import PasswordHasher, profiles  # noqa: E402

from lairchat.embedded import EmbeddedPostgres  # noqa: E402

PASSWORD = "bench pass 1"


def percentile(values: list[float], fraction: float) -> float:
    """The C{fraction} percentile (nearest rank) of C{values}; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1))
    return ordered[rank]


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set size (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak_rss(pid: int) -> bool:
    """
    Start measuring a process's peak RSS afresh (so that the logins' argon2
    hashes, 64 MiB each, do not count); whether the kernel allowed it.
    """
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """The CPU count, memory and CPU model of this machine."""
    memory = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) // 1024
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return f"{os.cpu_count()} CPUs ({model}), {memory} MiB RAM, Python {sys.version.split()[0]}"


class Environment:
    """
    A temporary directory holding an embedded Postgres and the server's log;
    the server subprocess.  Use as a context manager: everything is stopped
    and removed on exit.
    """

    def __init__(self, pool_size: int = 4) -> None:
        self.pool_size = pool_size
        self.directory = Path(tempfile.mkdtemp(prefix="lairchat-bench-"))
        self.postgres = EmbeddedPostgres(self.directory / "db")
        self.dsn = ""
        self.port = 0
        self.server: subprocess.Popen | None = None

    def __enter__(self) -> "Environment":
        self.dsn = self.postgres.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_server()
        self.postgres.stop()
        shutil.rmtree(self.directory, ignore_errors=True)

    def start_server(self) -> None:
        """Start C{twistd -n lairchat} on a free loopback port, running the code of this tree."""
        self.port = free_port()
        twistd = Path(sys.executable).parent / "twistd"
        environment = dict(os.environ, PYTHONPATH=str(REPO))
        self.server = subprocess.Popen(
            [str(twistd if twistd.exists() else shutil.which("twistd")), "-n", "--pidfile=",
             f"--logfile={self.directory / 'server.log'}", "lairchat", "--dsn", self.dsn,
             "--port", f"tcp:{self.port}:interface=127.0.0.1", "--no-rate-limit",
             "--pool-size", str(self.pool_size)],
            cwd=self.directory, env=environment, stdin=subprocess.DEVNULL,
        )

    async def wait_for_server(self, seconds: float = 60.0) -> None:
        """Wait until the server answers with its greeting."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                raise RuntimeError(f"the server exited while starting; see {self.directory / 'server.log'}")
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                line = await reader.readline()
                writer.close()
                if line.startswith(b"WELCOME:"):
                    return
            except OSError:
                pass
            await asyncio.sleep(0.1)
        raise RuntimeError("the server did not start in time")

    def stop_server(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 20 s)."""
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(20)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def seed_users(self, names: list[str]) -> None:
        """Accounts with these names, all with the password L{PASSWORD}."""
        password_hash = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY).hash(PASSWORD)
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.executemany("INSERT INTO users (username, password_hash) VALUES (%s, %s)",
                               [(name, password_hash) for name in names])
        connection.close()

    def sql(self, statement: str, params: object = None, autocommit: bool = False) -> list[tuple]:
        """Run one statement on a connection of its own; its rows, if any."""
        connection = psycopg2.connect(self.dsn)
        connection.autocommit = autocommit
        try:
            with connection.cursor() as cursor:
                cursor.execute(statement, params)
                rows = cursor.fetchall() if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()


class Client:
    """
    One connection: labelled requests with any number in flight, each
    answered by a future; event lines go to L{on_event}.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: dict[str, tuple[asyncio.Future, list[str]]] = {}
        self.next_label = 0
        self.on_event = lambda line, now: None
        self.reading: asyncio.Task | None = None

    @classmethod
    async def login(cls, port: int, username: str) -> "Client":
        """A connection, logged in as C{username}."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        await reader.readline()
        await reader.readline()
        client = cls(reader, writer)
        client.reading = asyncio.get_running_loop().create_task(client._read())
        reply = await client.request(f"LOGIN:{username}:{PASSWORD}")
        if not reply[-1].startswith("OK:LOGIN:"):
            raise RuntimeError(f"login of {username} failed: {reply}")
        return client

    async def _read(self) -> None:
        """Route each line to its request, or to L{on_event}."""
        while True:
            data = await self.reader.readline()
            if not data:
                return
            now = time.monotonic_ns()
            line = data.decode("utf-8").rstrip("\r\n")
            if line.startswith("@label="):
                label, _, rest = line[len("@label="):].partition(" ")
                future, lines = self.pending[label]
                lines.append(rest)
                if rest.startswith(("OK:", "ERROR:")):
                    del self.pending[label]
                    future.set_result(lines)
            else:
                self.on_event(line, now)

    def send(self, line: str) -> asyncio.Future:
        """Send a request; a future of its reply lines."""
        self.next_label += 1
        label = f"b{self.next_label}"
        future = asyncio.get_running_loop().create_future()
        self.pending[label] = (future, [])
        self.writer.write(f"@label={label} {line}\n".encode("utf-8"))
        return future

    async def request(self, line: str) -> list[str]:
        """Send a request and wait for its reply lines."""
        return await self.send(line)

    async def ok(self, line: str) -> list[str]:
        """L{request}, failing unless it succeeded."""
        reply = await self.request(line)
        if not reply[-1].startswith("OK:"):
            raise RuntimeError(f"{line!r} answered {reply}")
        return reply

    def close(self) -> None:
        """Close the connection."""
        if self.reading is not None:
            self.reading.cancel()
        self.writer.close()
