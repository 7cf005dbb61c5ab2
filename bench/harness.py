"""
What the message benchmarks share: an embedded Postgres in a temporary
directory, the real server as one or more C{twistd -n lairchat
--no-rate-limit --exempt-network 127.0.0.1} subprocesses ("nodes", all on that database) on loopback
ports, accounts seeded with SQL (one password hash for all, so setting up
does not cost N argon2 hashes) and sessions seeded with SQL (so clients
log in with C{RESUME} and no argon2 at all), an asyncio line client that
pipelines labelled requests, CPU and database counters, and percentiles.

Not a test: nothing here asserts; the scripts print figures.
"""

import asyncio
import hashlib
import math
import os
import resource
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import psycopg2  # noqa: E402
from argon2 import PasswordHasher, profiles  # noqa: E402

from lairchat.embedded import EmbeddedPostgres  # noqa: E402

PASSWORD = "bench pass 1"


def batch_summary(before: dict[str, float], after: dict[str, float]) -> str:
    """
    The group-committed writes between two L{Environment.batch_figures}:
    how many, their mean size, the mean wait of their oldest item, and
    their round trip's mean and p50 and p99 (as the histogram's
    buckets bound them: at most that long).
    """
    count = after.get("count", 0.0) - before.get("count", 0.0)
    if not count:
        return "none"
    mean = {key: (after.get(key, 0.0) - before.get(key, 0.0)) / count for key in ("size", "wait", "seconds")}

    def bound(fraction: float) -> str:
        """The smallest bucket bound that holds C{fraction} of the writes."""
        for key in sorted((k for k in after if k.startswith("le ")), key=lambda k: float(k[3:])):
            if after[key] - before.get(key, 0.0) >= fraction * count:
                return f"{float(key[3:]) * 1000:g} ms" if key != "le +Inf" else "over the last bucket"
        return "?"

    return (f"{count:.0f}, {mean['size']:.1f} items each; oldest item waited {mean['wait'] * 1000:.2f} ms on average; "
            f"round trip {mean['seconds'] * 1000:.2f} ms on average, p50 <= {bound(0.5)}, p99 <= {bound(0.99)}")


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


def raise_fd_limit(wanted: int | None = None) -> int:
    """
    Raise this process's soft limit on open files to C{wanted} (default:
    the hard limit), or as far as the hard limit allows; the new limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if wanted is None else wanted
    if hard != resource.RLIM_INFINITY:
        target = min(target, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        return target
    return soft


def load() -> str:
    """The machine's load averages (1, 5, 15 minutes), as C{uptime} shows them."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
    A temporary directory holding an embedded Postgres and the servers'
    logs; the server subprocesses (C{nodes} of them, each with its own port,
    all on the one database).  Use as a context manager: everything is
    stopped and removed on exit.

    By default the servers run with C{--no-rate-limit --exempt-network
    127.0.0.1}, as throughput benchmarks need; C{defended=True} leaves
    every defence on (flood control, per-address limits, intrusion
    detection), for the attack soak script.  With C{embedded=True} the
    server starts and supervises the embedded Postgres itself (C{--data-dir}
    instead of C{--dsn}, so that killing that Postgres exercises the
    server's watchdog); the script then has no C{dsn} of its own, and
    L{sql} and the seeding helpers are not available.  With C{irc=True}
    every node also listens for IRC (C{--irc-port}) on a port of its own.

    @ivar servers: the twistd processes, one per node.
    @ivar ports: their ports, in the same order.
    @ivar server: the first node's process (what a one-node benchmark uses).
    @ivar port: the first node's port.
    @ivar irc_ports: the nodes' IRC ports, in the same order (with C{irc}).
    """

    def __init__(self, pool_size: int = 4, nodes: int = 1, extra_args: tuple[str, ...] = (),
                 keep_logs: str | None = None, defended: bool = False, embedded: bool = False,
                 irc: bool = False) -> None:
        self.pool_size = pool_size
        self.irc = irc
        self.nodes = nodes
        self.extra_args = tuple(extra_args)
        self.defended = defended
        self.embedded = embedded
        self.keep_logs = Path(keep_logs) if keep_logs else None
        self.directory = Path(tempfile.mkdtemp(prefix="lairchat-bench-"))
        self.postgres = EmbeddedPostgres(self.directory / "db")
        self.dsn = ""
        self.servers: list[subprocess.Popen] = []
        self.ports: list[int] = []
        self.irc_ports: list[int] = []
        self.metrics_ports: list[int] = []

    @property
    def server(self) -> subprocess.Popen | None:
        """The first node's process."""
        return self.servers[0] if self.servers else None

    @property
    def port(self) -> int:
        """The first node's port."""
        return self.ports[0] if self.ports else 0

    @property
    def server_pids(self) -> list[int]:
        """The process ids of every node."""
        return [server.pid for server in self.servers]

    def log_path(self, node: int) -> Path:
        """Where node C{node} logs (the first one in C{server.log})."""
        return self.directory / ("server.log" if node == 0 else f"server{node}.log")

    @property
    def pgdata(self) -> Path:
        """Postgres's own data directory (its C{postmaster.pid} names the postmaster)."""
        return self.directory / "db" / "pg"

    def __enter__(self) -> "Environment":
        if not self.embedded:
            self.dsn = self.postgres.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_server()
        if self.embedded and (self.pgdata / "postmaster.pid").exists():
            # the server was killed before it could stop its Postgres: adopt that one and stop it
            try:
                self.postgres.start()
            except Exception as error:  # noqa: BLE001 - cleaning up; say so and go on
                print(f"could not stop the embedded Postgres left in {self.pgdata}: {error}", file=sys.stderr)
        self.postgres.stop()
        if self.keep_logs is not None:
            self.keep_logs.mkdir(parents=True, exist_ok=True)
            for log in self.directory.glob("server*.log"):
                shutil.copy(log, self.keep_logs / log.name)
        shutil.rmtree(self.directory, ignore_errors=True)

    def start_server(self) -> None:
        """
        Start C{twistd -n lairchat} once per node, each on a free loopback
        port, running the code of this tree, with the open-files limit
        raised to its hard limit (so that thousands of clients fit); with
        C{--no-rate-limit --exempt-network 127.0.0.1} unless C{defended}.
        """
        twistd = Path(sys.executable).parent / "twistd"
        environment = dict(os.environ, PYTHONPATH=str(REPO))
        database = ("--data-dir", str(self.directory / "db")) if self.embedded else ("--dsn", self.dsn)
        undefended = () if self.defended else ("--no-rate-limit", "--exempt-network", "127.0.0.1")
        profile = os.environ.get("LAIRCHAT_BENCH_PROFILE")
        for node in range(self.nodes):
            profiling = (f"--profile={profile}.{node}", "--profiler=cprofile", "--savestats") if profile else ()
            port = free_port()
            self.ports.append(port)
            self.metrics_ports.append(free_port())
            irc: tuple[str, ...] = ()
            if self.irc:
                self.irc_ports.append(free_port())
                irc = ("--irc-port", f"tcp:{self.irc_ports[-1]}:interface=127.0.0.1")
            self.servers.append(subprocess.Popen(
                [str(twistd if twistd.exists() else shutil.which("twistd")), "-n", "--pidfile=", *profiling,
                 f"--logfile={self.log_path(node)}", "lairchat", *database,
                 "--port", f"tcp:{port}:interface=127.0.0.1", *irc, *undefended,
                 "--metrics", f"tcp:{self.metrics_ports[-1]}:interface=127.0.0.1",
                 "--pool-size", str(self.pool_size), *self.extra_args],
                cwd=self.directory, env=environment, stdin=subprocess.DEVNULL,
                preexec_fn=raise_fd_limit,
            ))

    async def wait_for_server(self, seconds: float = 60.0) -> None:
        """Wait until every node answers with its greeting."""
        deadline = time.monotonic() + seconds
        for node, (server, port) in enumerate(zip(self.servers, self.ports)):
            while True:
                if server.poll() is not None:
                    raise RuntimeError(f"node {node} exited while starting; see {self.log_path(node)}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"node {node} did not start in time")
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    line = await reader.readline()
                    writer.close()
                    if line.startswith(b"WELCOME:"):
                        break
                except OSError:
                    pass
                await asyncio.sleep(0.1)

    def stop_server(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 20 s)."""
        for server in self.servers:
            if server.poll() is None:
                server.send_signal(signal.SIGTERM)
        for server in self.servers:
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        self.servers = []
        self.ports = []
        self.irc_ports = []
        self.metrics_ports = []

    def batch_figures(self, kind: str) -> dict[str, float]:
        """
        What every node's metrics say of its group-committed writes of
        C{kind} (C{messages}, C{joins}), summed over the nodes: C{count},
        C{size} (items in all), C{wait} and C{seconds} (sums, in seconds),
        and C{le <bound>}: writes whose round trip took at most C{bound}.
        """
        from urllib.request import urlopen

        from prometheus_client.parser import text_string_to_metric_families

        figures: dict[str, float] = {}
        wanted = {"lairchat_batch_size_count": "count", "lairchat_batch_size_sum": "size",
                  "lairchat_batch_wait_seconds_sum": "wait", "lairchat_batch_seconds_sum": "seconds"}
        for port in self.metrics_ports:
            with urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
                text = response.read().decode()
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.labels.get("kind") != kind:
                        continue
                    key = wanted.get(sample.name)
                    if sample.name == "lairchat_batch_seconds_bucket":
                        key = f"le {sample.labels['le']}"
                    if key is not None:
                        figures[key] = figures.get(key, 0.0) + sample.value
        return figures

    def server_cpu_seconds(self) -> float:
        """The CPU time (user and system) every node has used so far, in seconds."""
        return sum(cpu_seconds(pid) for pid in self.server_pids)

    def postgres_cpu_seconds(self) -> float:
        """
        The CPU time (user and system) of the Postgres server and its
        processes alive now, in seconds (a backend that exited no longer
        counts, so compare two readings taken while the same ones live).
        """
        import psutil

        try:
            postmaster = int((self.directory / "db" / "pg" / "postmaster.pid").read_text().split()[0])
            root = psutil.Process(postmaster)
            total = 0.0
            for process in [root, *root.children(recursive=True)]:
                try:
                    times = process.cpu_times()
                    total += times.user + times.system
                except psutil.Error:
                    pass
            return total
        except (OSError, ValueError, psutil.Error):
            return 0.0

    def log_problems(self) -> list[str]:
        """
        The lines of the nodes' logs that look wrong: tracebacks, failures,
        errors, warnings (with the node's number).
        """
        markers = ("Traceback", "Unhandled", "rror", "failed", "WARN", "warn", "Exception", "could not")
        found = []
        for node in range(len(self.servers) or self.nodes):
            path = self.log_path(node)
            if not path.exists():
                continue
            for line in path.read_text(errors="replace").splitlines():
                if any(marker in line for marker in markers):
                    found.append(f"node {node}: {line}")
        return found

    def seed_users(self, names: list[str]) -> None:
        """Accounts with these names, all with the password L{PASSWORD}."""
        password_hash = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY).hash(PASSWORD)
        with psycopg2.connect(self.dsn) as connection, connection.cursor() as cursor:
            cursor.executemany("INSERT INTO users (username, password_hash) VALUES (%s, %s)",
                               [(name, password_hash) for name in names])
        connection.close()

    def seed_sessions(self, names: list[str], ttl_seconds: int = 86400) -> list[str]:
        """
        Accounts with these names (a password hash no password matches)
        and one live session each, written with SQL; the session tokens,
        in the same order, for C{RESUME}.  A token is stored as the
        SHA-256 digest of its UTF-8 text, as L{lairchat.store.sessions}
        stores and looks it up.
        """
        tokens = [secrets.token_hex(32) for _ in names]
        connection = psycopg2.connect(self.dsn)
        try:
            with connection.cursor() as cursor:
                cursor.execute(
                    "WITH u AS ("
                    "  INSERT INTO users (username, password_hash)"
                    "  SELECT unnest(%s::text[]), 'seeded: no password logs in' RETURNING id, username"
                    ") INSERT INTO sessions (token_hash, user_id, expires_at) "
                    "SELECT t.digest, u.id, now() + make_interval(secs => %s) "
                    "FROM unnest(%s::text[], %s::bytea[]) AS t(username, digest) JOIN u USING (username)",
                    (names, ttl_seconds, names,
                     [psycopg2.Binary(hashlib.sha256(token.encode("utf-8")).digest()) for token in tokens]),
                )
            connection.commit()
        finally:
            connection.close()
        return tokens

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

    def cluster_state(self) -> dict:
        """
        What the database says of the nodes: how many are registered (a
        node taken for dead is forgotten until it registers again) and how
        many distinct users are online on any.
        """
        nodes = self.sql("SELECT count(*) FROM nodes", autocommit=True)[0][0]
        online = self.sql("SELECT count(DISTINCT user_id) FROM online", autocommit=True)[0][0]
        return {"nodes": nodes, "online": online}

    def commits(self) -> int:
        """
        C{pg_stat_database.xact_commit} of the database: every transaction
        committed by every backend, as far as the backends have reported
        them (a backend reports its counts at most once a second while
        busy, and within 10 s once idle: see L{STATS_SETTLE}).
        """
        return self.sql(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()", autocommit=True
        )[0][0]

    def next_xid(self) -> int:
        """
        The next transaction id Postgres will hand out: the difference of
        two readings counts the transactions that wrote (or took an id),
        at once and exactly, without assigning one itself.
        """
        return int(self.sql("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", autocommit=True)[0][0])


STATS_SETTLE = 11.0
"""
Seconds to wait for every backend to have reported its transaction counts
to C{pg_stat_database}: a busy backend reports at most once a second, and
an idle one with counts not yet reported does so after 10 s
(C{PGSTAT_IDLE_INTERVAL}).
"""


def route_reply(pending: dict, line: str) -> bool:
    """
    Hand a labelled reply line to the request awaiting it: C{pending} maps
    a label to its future and the lines gathered so far; the final C{OK} or
    C{ERROR} line resolves the future.  Whether the line was a reply.
    """
    if not line.startswith("@label="):
        return False
    label, _, rest = line[len("@label="):].partition(" ")
    future, lines = pending[label]
    lines.append(rest)
    if rest.startswith(("OK:", "ERROR:")):
        del pending[label]
        future.set_result(lines)
    return True


_READ_BUFFER = memoryview(bytearray(256 * 1024))
"""Where every connection's socket reads land (L{SharedReadBuffer})."""

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)
"""
Linux's socket option (and control message type) by which a read says
when the kernel received what it returns (C{CLOCK_REALTIME}, ns); Python
does not name it, and 35 is its value on most architectures (not on
alpha, mips, parisc or sparc, where no read then carries it and nothing
is stamped).
"""

_STAMP_SPACE = socket.CMSG_SPACE(16) if hasattr(socket, "CMSG_SPACE") else 64

_arrival = [0]
"""When the kernel received what the last stamped read returned, as C{time.monotonic_ns}; 0 when unknown."""


class StampedSocket(socket.socket):
    """
    A socket whose reads note when the kernel received what they return
    (L{last_arrival}): for TCP, the time of the last segment the read
    took, so a read of several of the peer's writes carries the last
    one's time.
    """

    __slots__ = ()

    def recv_into(self, buffer, nbytes=0, flags=0):  # noqa: ANN001, ANN201 (socket.recv_into's own signature)
        """L{socket.socket.recv_into}, by C{recvmsg_into}, noting the kernel's receive time."""
        if nbytes:
            buffer = memoryview(buffer)[:nbytes]
        received, ancillary, _, _ = self.recvmsg_into([buffer], _STAMP_SPACE, flags)
        _arrival[0] = 0  # unknown, unless this read says
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                seconds, nanoseconds = struct.unpack("@ll", data[:16])
                # the realtime clock's offset read now: right unless the clock stepped since the data came
                _arrival[0] = seconds * 1_000_000_000 + nanoseconds - (time.time_ns() - time.monotonic_ns())
        return received


def stamp_arrivals(transport: asyncio.BaseTransport) -> bool:
    """
    Make the reads of an asyncio TCP transport note the kernel's receive
    time (L{last_arrival}); whether they do.  It needs Linux and the
    selector event loop's transport, whose socket it swaps for a
    L{StampedSocket} (the transport's own C{_sock}: asyncio has no public
    way to a read's control messages); anywhere else it does nothing.
    """
    sock = getattr(transport, "_sock", None)
    if SO_TIMESTAMPNS is None or type(sock) is not socket.socket:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.__class__ = StampedSocket
    except (OSError, TypeError):
        return False
    return True


def last_arrival() -> int:
    """
    When the kernel received what the read being handed on returned, as
    C{time.monotonic_ns}; 0 when unknown (the read was not stamped).
    Valid while that read is handed on: asyncio hands each read on before
    it makes the next.
    """
    return _arrival[0]


class SharedReadBuffer(asyncio.BufferedProtocol):
    """
    A protocol whose socket reads land in one buffer that every connection
    shares, each read copied out at once and handed to C{data_received}
    as bytes: a buffer that lives on spares the 256 KiB allocation (and
    its shrinking) that a plain protocol's every read costs, a fair share
    of what a benchmark's clients do while they share the machine with
    the server.  One buffer serves all, since asyncio hands each read on
    before it makes the next.
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        """Where the next read goes: the buffer all connections share."""
        return _READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        """A read of C{nbytes} came: hand its bytes to C{data_received}."""
        self.data_received(bytes(_READ_BUFFER[:nbytes]))

    def data_received(self, data: bytes) -> None:
        """What came on the connection."""


class Lines(SharedReadBuffer):
    """
    A connection that reads CR LF lines with as little work per line as
    the clients of a benchmark can get away with (they share the machine
    with the server they measure): each chunk the socket gives is split
    and decoded at once, and its lines all carry the chunk's arrival time.
    The first C{greeting} lines are kept in L{greeting}; the rest go to
    L{line_received}.  After the greeting, L{on_chunk}, when set, sees each
    chunk's complete lines first, with the time it was read and the time
    the kernel received it (L{last_arrival}; 0 unless the connection's
    reads are stamped: L{Lines.stamp_arrivals}), and returns those it did not take (the
    same CR LF separated bytes, or empty when it took them all): only
    those are split and go to L{line_received}.
    """

    greeting_lines = 0

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.on_chunk: Callable[[bytes, int, int], bytes] | None = None
        self.stamped = False
        self.partial = b""
        self.greeting: list[str] = []
        self.greeted = loop.create_future()
        self.lost = loop.create_future()
        if not self.greeting_lines:
            self.greeted.set_result(None)

    @classmethod
    async def open(cls, port: int, **arguments: object) -> "Lines":
        """A connection to C{127.0.0.1:port}, once its greeting has been read."""
        _, connection = await asyncio.get_running_loop().create_connection(
            lambda: cls(**arguments), "127.0.0.1", port)
        await asyncio.wait([connection.greeted, connection.lost], return_when=asyncio.FIRST_COMPLETED)
        if not connection.greeted.done():
            raise RuntimeError(f"the server on port {port} closed the connection before its greeting")
        return connection

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        self.transport = transport  # type: ignore[assignment]

    def stamp_arrivals(self) -> bool:
        """Stamp this connection's reads with the kernel's receive time from now on, where it can (L{stamp_arrivals})."""
        self.stamped = stamp_arrivals(self.transport)
        return self.stamped

    def data_received(self, data: bytes) -> None:
        """Split what came into lines; hand them on with the time they arrived."""
        now = time.monotonic_ns()
        complete, separator, self.partial = (self.partial + data).rpartition(b"\r\n")
        if not separator:
            self.partial = complete
            return
        if self.on_chunk is not None and self.greeted.done():
            # A benchmark that takes the lines it measures from whole chunks
            # (with regular expressions over the bytes, far cheaper than a
            # line at a time); only the lines it left are split.
            complete = self.on_chunk(complete, now, last_arrival() if self.stamped else 0)
            if not complete:
                return
        for line in complete.decode("utf-8").split("\r\n"):
            if len(self.greeting) < self.greeting_lines:
                self.greeting.append(line)
                if len(self.greeting) == self.greeting_lines:
                    self.greeted.set_result(None)
            else:
                self.line_received(line, now)

    def line_received(self, line: str, now: int) -> None:
        """A line after the greeting, and when it arrived (C{time.monotonic_ns})."""

    def connection_lost(self, exc: Exception | None) -> None:
        """Fire L{lost}."""
        if not self.lost.done():
            self.lost.set_result(exc)

    def write_line(self, line: str) -> None:
        """Send one line."""
        self.transport.write(line.encode("utf-8"))

    def close(self) -> None:
        """Close the connection."""
        if self.transport is not None:
            self.transport.close()


class Client(Lines):
    """
    One line-protocol connection: labelled requests with any number in
    flight, each answered by a future; event lines go to L{on_event}.
    """

    greeting_lines = 2

    def __init__(self) -> None:
        super().__init__()
        self.pending: dict[str, tuple[asyncio.Future, list[str]]] = {}
        self.next_label = 0
        self.on_event = lambda line, now: None

    @classmethod
    async def connect(cls, port: int) -> "Client":
        """A connection past its greeting, not logged in."""
        return await cls.open(port)

    @classmethod
    async def resume(cls, port: int, token: str) -> "Client":
        """A connection, logged in with C{RESUME} and a session token."""
        client = await cls.connect(port)
        reply = await client.request(f"RESUME:{token}")
        if not reply[-1].startswith("OK:RESUME:"):
            raise RuntimeError(f"RESUME failed: {reply}")
        return client

    @classmethod
    async def login(cls, port: int, username: str) -> "Client":
        """A connection, logged in as C{username}."""
        client = await cls.connect(port)
        reply = await client.request(f"LOGIN:{username}:{PASSWORD}")
        if not reply[-1].startswith("OK:LOGIN:"):
            raise RuntimeError(f"login of {username} failed: {reply}")
        return client

    def line_received(self, line: str, now: int) -> None:
        """Route each line to its request, or to L{on_event}."""
        if not route_reply(self.pending, line):
            self.on_event(line, now)

    def send(self, line: str) -> asyncio.Future:
        """Send a request; a future of its reply lines."""
        self.next_label += 1
        label = f"b{self.next_label}"
        future = asyncio.get_running_loop().create_future()
        self.pending[label] = (future, [])
        self.write_line(f"@label={label} {line}\n")
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


class IRCClient(Lines):
    """
    One IRC connection logged in with C{PASS <account>:<password>}: every
    line after the welcome (C{001}) goes to L{on_event}, with its arrival
    time; a server C{PING} is answered.
    """

    def __init__(self, username: str) -> None:
        super().__init__()
        self.username = username
        self.welcomed = asyncio.get_running_loop().create_future()
        self.on_event = lambda line, now: None

    @classmethod
    async def login(cls, port: int, username: str) -> "IRCClient":
        """A connection registered and logged in as C{username} (past C{001})."""
        client = await cls.open(port, username=username)
        client.write_line(f"PASS :{username}:{PASSWORD}\r\nNICK {username}\r\nUSER {username} 0 * :{username}\r\n")
        await asyncio.wait([client.welcomed, client.lost], return_when=asyncio.FIRST_COMPLETED)
        if not client.welcomed.done():
            raise RuntimeError(f"IRC login of {username} failed: connection closed")
        client.welcomed.result()
        return client

    def line_received(self, line: str, now: int) -> None:
        """Wait for C{001} (or a refusal); then answer C{PING} and hand on every other line."""
        if not self.welcomed.done():
            words = line.split(" ", 2)
            if words[0] == "ERROR" or (len(words) > 1 and words[1] == "464"):
                self.welcomed.set_exception(RuntimeError(f"IRC login of {self.username} failed: {line}"))
            elif len(words) > 1 and words[1] == "001":
                self.welcomed.set_result(None)
        elif line.startswith("PING "):
            self.write_line(f"PONG {line[5:]}\r\n")
        else:
            self.on_event(line, now)


def print_problems(problems: list[str]) -> None:
    """Print the suspicious lines of the server logs (the first 20), or that there were none."""
    if problems:
        print(f"server logs: {len(problems)} suspicious line(s); the first ones:")
        for line in problems[:20]:
            print(f"  {line}")
    else:
        print("server logs: no errors or warnings")
