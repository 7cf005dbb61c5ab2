"""
Benchmark of the invitation system; prints figures, asserts nothing.

It starts an embedded Postgres in a temporary directory and the real server
as a C{twistd -n lairchat --no-rate-limit} subprocess on a loopback port,
then measures:

  1. INVITE_USER throughput over the protocol: C{--inviters} connections,
     each inviting C{--recipients} users to its own room, with up to
     C{--window} requests in flight per connection;
  2. ACCEPT_INVITATION throughput: every recipient logs in (getting its
     pending invitations as events) and accepts each by id, with the same
     window; each acceptance also sends USER_JOINED to the room's online
     members, which the benchmark's connections are;
  3. the sweep: C{--sweep-rows} due invitations bulk-loaded with SQL, then
     one run of L{lairchat.sweeper.sweep} (the function the server's
     sweeper runs) timed, and a second run with nothing due.

Everything stays on loopback and in the temporary directory, removed at the
end; the whole run is cut off after C{--deadline} seconds.

    .venv/bin/python bench/invitations.py
"""

import argparse
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
from twisted.internet import defer, reactor, task  # noqa: E402
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol  # noqa: E402
from twisted.protocols.basic import LineOnlyReceiver  # noqa: E402

from lairchat.context import Config, ServerContext  # noqa: E402
from lairchat.embedded import EmbeddedPostgres  # noqa: E402
from lairchat.hub import Hub  # noqa: E402
from lairchat.store import Database, Store  # noqa: E402
from lairchat.sweeper import sweep  # noqa: E402

PASSWORD = "bench pass 1"


class BenchClient(LineOnlyReceiver):
    """A pipelining client: labelled requests, a Deferred per reply; events are counted and dropped."""

    delimiter = b"\n"
    MAX_LENGTH = 10_000_000

    def __init__(self) -> None:
        self._pending: dict[str, tuple[defer.Deferred, list[str]]] = {}
        self._next = 0
        self.events = 0
        self.greeted = defer.Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Route a reply line to its request; count anything else."""
        text = line.rstrip(b"\r").decode("utf-8")
        if text.startswith("WELCOME:") and not self.greeted.called:
            self.greeted.callback(None)
            return
        if not text.startswith("@label="):
            self.events += 1
            return
        label, _, rest = text[len("@label="):].partition(" ")
        deferred, lines = self._pending[label]
        lines.append(rest)
        if rest.startswith(("OK:", "ERROR:")):
            del self._pending[label]
            deferred.callback(lines)

    def request(self, line: str) -> defer.Deferred:
        """Send one request; a Deferred of its reply lines."""
        self._next += 1
        label = f"b{self._next}"
        deferred: defer.Deferred = defer.Deferred()
        self._pending[label] = (deferred, [])
        self.transport.write(f"@label={label} {line}\n".encode("utf-8"))
        return deferred


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def connect(port: int, username: str) -> BenchClient:
    """A connection logged in as C{username}."""
    client = BenchClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    await client.greeted
    reply = await client.request(f"LOGIN:{username}:{PASSWORD}")
    if not reply[-1].startswith("OK:LOGIN:"):
        raise RuntimeError(f"login of {username} failed: {reply}")
    return client


async def pipelined(client: BenchClient, lines: list[str], window: int) -> list[list[str]]:
    """Send C{lines} with at most C{window} in flight; the replies in order."""
    semaphore = defer.DeferredSemaphore(window)
    return await defer.gatherResults([semaphore.run(client.request, line) for line in lines])


def seed(dsn: str, inviters: int, recipients: int) -> None:
    """Accounts (one password hash for all), one room per inviter, owned by it."""
    password_hash = PasswordHasher.from_parameters(profiles.RFC_9106_LOW_MEMORY).hash(PASSWORD)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (username, password_hash) SELECT 'inviter' || g, %s "
                       "FROM generate_series(0, %s) g", (password_hash, inviters - 1))
        cursor.execute("INSERT INTO users (username, password_hash) SELECT 'recipient' || g, %s "
                       "FROM generate_series(0, %s) g", (password_hash, recipients - 1))
        cursor.execute("INSERT INTO rooms (name, owner_id) SELECT 'benchroom' || g, u.id "
                       "FROM generate_series(0, %s) g JOIN users u ON u.username = 'inviter' || g", (inviters - 1,))
        cursor.execute("INSERT INTO room_members (room_id, user_id, role) "
                       "SELECT id, owner_id, 'owner' FROM rooms WHERE name LIKE 'benchroom%%'")
    connection.close()


def load_due(dsn: str, rows: int) -> None:
    """C{rows} pending invitations that expired a day ago, with their first trail entries."""
    per_room = 1000
    rooms = -(-rows // per_room)
    with psycopg2.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("INSERT INTO users (username, password_hash) SELECT 'sweepuser' || g, 'x' "
                       "FROM generate_series(0, %s) g", (per_room - 1,))
        cursor.execute("INSERT INTO rooms (name, owner_id) SELECT 'sweeproom' || g, "
                       "(SELECT id FROM users WHERE username = 'inviter0') FROM generate_series(0, %s) g",
                       (rooms - 1,))
        cursor.execute(
            "INSERT INTO invitations (sender_id, recipient_id, room_id, role, created_at, expires_at) "
            "SELECT r.owner_id, u.id, r.id, 'member', now() - interval '8 days', now() - interval '1 day' "
            "FROM rooms r CROSS JOIN users u "
            "WHERE r.name LIKE 'sweeproom%%' AND u.username LIKE 'sweepuser%%' LIMIT %s",
            (rows,),
        )
        cursor.execute(
            "INSERT INTO invitation_events (invitation_id, ts, status, actor_id, note) "
            "SELECT id, created_at, 'pending', sender_id, 'sent' FROM invitations WHERE status = 'pending'"
        )
    connection.close()
    connection = psycopg2.connect(dsn)
    connection.autocommit = True
    connection.cursor().execute("VACUUM ANALYZE invitations")
    connection.cursor().execute("VACUUM ANALYZE invitation_events")
    connection.close()


def wait_for_port(port: int, server: subprocess.Popen, seconds: float) -> None:
    """Wait until the server listens (or fail if it died or took too long)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited while starting; see its log")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not start in time")


async def protocol_phase(args: argparse.Namespace, port: int) -> dict:
    """INVITE_USER then ACCEPT_INVITATION over the protocol."""
    figures = {}
    inviters = await defer.gatherResults(
        [defer.Deferred.fromCoroutine(connect(port, f"inviter{i}")) for i in range(args.inviters)]
    )
    started = time.perf_counter()
    replies = await defer.gatherResults([
        defer.Deferred.fromCoroutine(pipelined(
            client, [f"INVITE_USER:recipient{j}:benchroom{i}" for j in range(args.recipients)], args.window
        ))
        for i, client in enumerate(inviters)
    ])
    elapsed = time.perf_counter() - started
    ok = [r[-1] for per_inviter in replies for r in per_inviter if r[-1].startswith("OK:")]
    figures["invites"] = len(ok)
    figures["invite_seconds"] = elapsed
    ids: dict[str, list[int]] = {}
    for line in ok:
        fields = line.split(":")
        ids.setdefault(fields[3], []).append(int(fields[2]))

    semaphore = defer.DeferredSemaphore(16)
    recipients = await defer.gatherResults([
        semaphore.run(lambda name=f"recipient{j}": defer.Deferred.fromCoroutine(connect(port, name)))
        for j in range(args.recipients)
    ])
    started = time.perf_counter()
    replies = await defer.gatherResults([
        defer.Deferred.fromCoroutine(pipelined(
            client, [f"ACCEPT_INVITATION:{number}" for number in ids.get(f"recipient{j}", [])], args.window
        ))
        for j, client in enumerate(recipients)
    ])
    elapsed = time.perf_counter() - started
    figures["accepts"] = sum(1 for per_user in replies for r in per_user if r[-1].startswith("OK:"))
    figures["accept_seconds"] = elapsed
    figures["events"] = sum(c.events for c in (*inviters, *recipients))
    for client in (*inviters, *recipients):
        client.transport.loseConnection()
    return figures


async def sweep_phase(args: argparse.Namespace, dsn: str) -> dict:
    """Bulk-load due invitations and time one sweep over them."""
    await task.deferLater(reactor, 0, load_due, dsn, args.sweep_rows)
    db = Database(dsn, size=1, statement_timeout_ms=600_000)
    await db.start()
    try:
        server = ServerContext(config=Config(), store=Store(db), clock=reactor, passwords=None, hub=Hub())
        started = time.perf_counter()
        report = await sweep(server, int(time.time() * 1000))
        first = time.perf_counter() - started
        started = time.perf_counter()
        again = await sweep(server, int(time.time() * 1000))
        second = time.perf_counter() - started
    finally:
        db.close()
    return {"swept": report.expired, "sweep_seconds": first, "idle_sweep_seconds": second,
            "idle_expired": again.expired}


def main() -> int:
    """Run the benchmark; print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inviters", type=int, default=10)
    parser.add_argument("--recipients", type=int, default=200)
    parser.add_argument("--window", type=int, default=16, help="requests in flight per connection")
    parser.add_argument("--sweep-rows", type=int, default=100_000)
    parser.add_argument("--deadline", type=float, default=600, help="give up after this many seconds")
    args = parser.parse_args()

    directory = Path(tempfile.mkdtemp(prefix="lairchat-bench-"))
    postgres = EmbeddedPostgres(directory / "data")
    server = None
    outcome: dict = {}
    try:
        dsn = postgres.start()
        port = free_port()
        twistd = Path(sys.executable).with_name("twistd")
        log = open(directory / "server.log", "w")
        server = subprocess.Popen(
            [str(twistd), "-n", "--pidfile=", "--logfile=-", "lairchat", "--dsn", dsn,
             "--port", f"tcp:{port}:interface=127.0.0.1", "--no-rate-limit", "--exempt-network", "127.0.0.1",
             "--sweep-interval", "3600"],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )
        wait_for_port(port, server, 60)
        seed(dsn, args.inviters, args.recipients)

        async def run() -> None:
            outcome.update(await protocol_phase(args, port))
            server.send_signal(signal.SIGTERM)
            outcome.update(await sweep_phase(args, dsn))

        def finished(result):
            if reactor.running:
                reactor.stop()
            return result

        d = defer.Deferred.fromCoroutine(run())
        d.addErrback(lambda f: outcome.setdefault("error", f.getTraceback()))
        d.addBoth(finished)
        reactor.callLater(args.deadline, lambda: (outcome.setdefault("error", "deadline passed"), finished(None)))
        reactor.run()
    finally:
        if server is not None and server.poll() is None:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        postgres.stop()
        shutil.rmtree(directory, ignore_errors=True)

    if "error" in outcome:
        print(outcome["error"], file=sys.stderr)
        return 1
    print(f"INVITE_USER:        {outcome['invites']} in {outcome['invite_seconds']:.2f} s = "
          f"{outcome['invites'] / outcome['invite_seconds']:.0f}/s "
          f"({args.inviters} connections, {args.window} in flight each)")
    print(f"ACCEPT_INVITATION:  {outcome['accepts']} in {outcome['accept_seconds']:.2f} s = "
          f"{outcome['accepts'] / outcome['accept_seconds']:.0f}/s "
          f"({args.recipients} connections; {outcome['events']} events received in all)")
    print(f"sweep:              {outcome['swept']} due invitations expired in {outcome['sweep_seconds']:.2f} s; "
          f"a run with nothing due: {outcome['idle_sweep_seconds'] * 1000:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
