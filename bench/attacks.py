"""
Hardening soak: replays the attacks of issue 8 against a real server with
every defence on, and prints what held.  Not a test: it asserts nothing,
but it says, per attack, HELD or FAILED and why.

It starts an embedded Postgres owned by the server itself (C{twistd -n
lairchat --data-dir ...}, no C{--dsn}, so that killing that Postgres
exercises the server's watchdog) in a temporary directory, with flood
control, per-address limits and intrusion detection on (no
C{--no-rate-limit}, no C{--exempt-network}), C{--admin root}, Prometheus
metrics on a loopback port, and shorter waits where the defaults would
make the run too long: C{--login-timeout 15} (default 120) and
C{--max-output-buffer 65536} (default 1 MiB).  Every other limit is the
server's default.

Each attack comes from its own loopback address (127.0.0.N: any N works on
Linux) while a bystander, from another address, does what a normal user
does and is timed:

 1. password guessing: 20 parallel connections from one address guess an
    existing account's password; then the owner logs in from her own
    address and resumes her session; the audit log tells them apart;
 2. connection flood: one address opens thousands of idle connections;
 3. hashing flood: 200 connections from 10 addresses each send a
    C{REGISTER} (an argon2 hash, 64 MiB, each) while the bystander logs in;
 4. request flood: a paste of 40 lines, then a bot that keeps 64 lines in
    flight (slowed), then dumps thousands at once (cut off with C{1110});
 5. a silent client (never logs in: the login timeout) and a frozen one
    (stops reading while its room is flooded: the output-buffer cut-off);
 6. intrusion detection: the guessing address and a malformed-line storm
    get blocked; an admin lists the blocks and lifts one;
 7. database kill: SIGKILL to the embedded postmaster; a logged-in client
    sends once a second until its message is stored again.

    .venv/bin/python bench/attacks.py [--guessers 20] [--connections 3000] [--hash-flood 200]
"""

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field

from harness import Client, Environment, free_port, load, machine, raise_fd_limit, route_reply

ADMIN = "root"
PASSWORD = "soak pass 1"
LOGIN_TIMEOUT = 15.0
"""--login-timeout for the run: short, but longer than the hashing flood's REGISTERs wait for a hash."""
MAX_OUTPUT_BUFFER = 65536
PATIENCE = 5.0
"""Seconds a bystander may wait for a greeting or a login before an attack counts as FAILED."""

# who comes from where (the server sees each as its own client address)
ADMIN_ADDRESS = "127.0.0.2"
BYSTANDER_ADDRESS = "127.0.0.3"
OWNER_ADDRESS = "127.0.0.4"
GUESSER_ADDRESS = "127.0.0.10"
FLOODER_ADDRESS = "127.0.0.11"
PASTER_ADDRESS = "127.0.0.12"
BOT_ADDRESS = "127.0.0.13"
SILENT_ADDRESS = "127.0.0.14"
FROZEN_ADDRESS = "127.0.0.15"
ROOM_FLOODER_ADDRESS = "127.0.0.16"
MALFORMED_ADDRESS = "127.0.0.17"
WATCHER_ADDRESS = "127.0.0.18"
HASH_FLOOD_BASE = 20  # 127.0.0.20 and up


@dataclass
class Verdict:
    """What one attack showed: HELD or FAILED, its key figure, and the reasons it failed."""

    attack: str
    key: str = ""
    failures: list[str] = field(default_factory=list)

    def check(self, holds: bool, reason: str) -> None:
        """Note C{reason} as a failure unless C{holds}."""
        if not holds:
            self.failures.append(reason)

    @property
    def verdict(self) -> str:
        """HELD when nothing failed."""
        return "FAILED" if self.failures else "HELD"

    def report(self) -> None:
        """Print the verdict line (and why, when it failed)."""
        print(f"  => {self.verdict}" + ("" if not self.failures else ": " + "; ".join(self.failures)))


def code(line: str) -> str:
    """An answer's kind: C{OK}, the error code with its NAME (C{1110:RATE_LIMITED}), or the line's start."""
    if line.startswith("OK:"):
        return "OK"
    if line.startswith("ERROR:"):
        return ":".join(line.split(":")[1:3])
    return line[:20] or "(nothing)"


def counts(counter: Counter) -> str:
    """A tally as C{a x 3, b x 1}, most first."""
    return ", ".join(f"{key} x {n}" for key, n in counter.most_common()) or "none"


def rss_mb(pid: int) -> float:
    """A process's resident set size now (VmRSS), in MiB."""
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """The highest VmRSS of a process, sampled every 50 ms while running (C{async with})."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self.task: asyncio.Task | None = None

    async def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb(self.pid))
            await asyncio.sleep(0.05)

    async def __aenter__(self) -> "RssSampler":
        self.peak = rss_mb(self.pid)
        self.task = asyncio.get_running_loop().create_task(self._sample())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.task.cancel()
        self.peak = max(self.peak, rss_mb(self.pid))


class Metrics:
    """The server's Prometheus metrics, scraped over HTTP."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/metrics"

    def _scrape(self) -> dict[str, float]:
        text = urllib.request.urlopen(self.url, timeout=10).read().decode()
        values = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                values[name] = float(value)
        return values

    async def scrape(self) -> dict[str, float]:
        """Every sample, by its name and labels as written (C{name{a="b"}})."""
        return await asyncio.to_thread(self._scrape)


def metric(values: dict[str, float], name: str, **labels: str) -> float:
    """The sum of the samples of C{name} whose labels include C{labels}."""
    total = 0.0
    for key, value in values.items():
        base, _, rest = key.partition("{")
        if base == name and all(f'{k}="{v}"' in rest for k, v in labels.items()):
            total += value
    return total


class Line(Client):
    """
    One client connection from a chosen loopback address (the harness's
    L{Client} for what they share, such as C{ok}): labelled
    requests answered by futures, everything else kept as timestamped
    events; C{closed} fires when the server closes it.
    """

    labels = 0

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.greeting: list[str] = []
        self.pending: dict[str, tuple[asyncio.Future, list[str]]] = {}
        self.events: list[tuple[float, str]] = []
        self.closed = asyncio.get_running_loop().create_future()
        self.task: asyncio.Task | None = None

    @classmethod
    async def open(cls, port: int, source: str, receive_buffer: int = 0) -> "Line":
        """
        Connect from C{source} and read the greeting (two lines), or the
        one line a refused connection gets (then C{refused} is true).
        With C{receive_buffer}, the socket's receive buffer is that small.
        """
        sock = socket.socket()
        if receive_buffer:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 22)
        client = cls(reader, writer)
        first = (await asyncio.wait_for(reader.readline(), 15)).decode("utf-8", "replace").rstrip("\r\n")
        client.greeting.append(first)
        if first.startswith("WELCOME:"):
            client.greeting.append((await reader.readline()).decode().rstrip("\r\n"))
        client.task = asyncio.get_running_loop().create_task(client._read())
        return client

    @property
    def refused(self) -> bool:
        """Whether the server refused the connection instead of greeting it."""
        return not self.greeting[0].startswith("WELCOME:")

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.readline()
                if not data:
                    break
                line = data.decode("utf-8", "replace").rstrip("\r\n")
                if not route_reply(self.pending, line):
                    self.events.append((time.monotonic(), line))
        except (ConnectionError, OSError):
            pass
        finally:
            for future, lines in self.pending.values():
                if not future.done():
                    future.set_result(lines + ["(connection closed)"])
            self.pending.clear()
            if not self.closed.done():
                self.closed.set_result(time.monotonic())

    def send(self, line: str) -> asyncio.Future:
        """Send one labelled request; a future of its reply lines (the final OK or ERROR last)."""
        Line.labels += 1
        label = f"s{Line.labels}"
        future = asyncio.get_running_loop().create_future()
        if self.closed.done():
            future.set_result(["(connection closed)"])
            return future
        self.pending[label] = (future, [])
        self.writer.write(f"@label={label} {line}\n".encode("utf-8"))
        return future

    def send_many(self, lines: list[str]) -> list[asyncio.Future]:
        """Send many labelled requests in one write (as a paste or a bot would); their futures."""
        futures = []
        data = []
        for line in lines:
            Line.labels += 1
            label = f"s{Line.labels}"
            future = asyncio.get_running_loop().create_future()
            self.pending[label] = (future, [])
            futures.append(future)
            data.append(f"@label={label} {line}\n")
        self.writer.write("".join(data).encode("utf-8"))
        return futures

    async def request(self, line: str, timeout: float = 60.0) -> list[str]:
        """Send a request and wait for its reply lines."""
        return await asyncio.wait_for(self.send(line), timeout)

    def close(self) -> None:
        """Close the connection."""
        self.writer.close()


async def user(port: int, source: str, name: str, register: bool = False) -> tuple[Line, str]:
    """A connection from C{source} logged in (or registered) as C{name}; and its session token."""
    client = await Line.open(port, source)
    if client.refused:
        raise RuntimeError(f"{source} was refused: {client.greeting[0]}")
    reply = await client.ok(f"{'REGISTER' if register else 'LOGIN'}:{name}:{PASSWORD}")
    return client, reply[-1].split(":")[3]


async def timed_login(port: int, source: str, name: str) -> tuple[float | None, float | None, str]:
    """
    Connect from C{source} and log in as C{name}: seconds to the WELCOME
    line and to the login's answer (None when it did not come), and that answer.
    """
    started = time.monotonic()
    try:
        client = await Line.open(port, source)
    except (OSError, asyncio.TimeoutError) as error:
        return None, None, f"could not connect: {error!r}"
    welcome = time.monotonic() - started
    if client.refused:
        client.close()
        return None, None, client.greeting[0]
    reply = await client.request(f"LOGIN:{name}:{PASSWORD}")
    took = time.monotonic() - started
    client.close()
    return welcome, took, reply[-1]


def closed_by(client: Line) -> str:
    """Why the server closed a connection with a request unanswered: the last unlabelled ERROR it sent."""
    errors = [line for _, line in client.events if line.startswith("ERROR:")]
    return f"unanswered, closed after {code(errors[-1])}" if errors else "unanswered, closed"


def log_tail(environment: Environment, offset: int = 0) -> str:
    """The server's log from byte C{offset} on."""
    with open(environment.log_path(0), "rb") as log:
        log.seek(offset)
        return log.read().decode("utf-8", "replace")


# 1. Password guessing

async def guessing(args: argparse.Namespace, env: Environment, metrics: Metrics, admin: Line) -> Verdict:
    """
    C{--guessers} connections from one address guess alice's password
    (C{--guesses} each, one after another, all connections at once); then
    alice logs in from her own address and resumes her session on a new
    connection; the audit log must name the guesser's address on the
    failures and hers on her success.
    """
    v = Verdict("1. password guessing")
    port = env.port
    owner, _ = await user(port, OWNER_ADDRESS, "alice", register=True)
    owner.close()
    before = await metrics.scrape()
    answers: Counter = Counter()

    async def guesser(i: int) -> None:
        try:
            client = await Line.open(port, GUESSER_ADDRESS)
        except (OSError, asyncio.TimeoutError):
            answers["connect failed"] += 1
            return
        if client.refused:
            answers[f"refused: {code(client.greeting[0])}"] += 1
            return
        for j in range(args.guesses):
            reply = await client.request(f"LOGIN:alice:wrong guess {i} {j}")
            answered = reply[-1].startswith(("OK:", "ERROR:"))
            answers[code(reply[-1]) if answered else closed_by(client)] += 1
            if client.closed.done():
                break
        client.close()

    started = time.monotonic()
    await asyncio.gather(*(guesser(i) for i in range(args.guessers)))
    took = time.monotonic() - started
    await asyncio.sleep(2.0)  # checks still running when their connection was closed
    after = await metrics.scrape()
    checked = metric(after, "lairchat_suspicious_logins_total", reason="failed") - \
        metric(before, "lairchat_suspicious_logins_total", reason="failed")
    throttled = sum(metric(after, "lairchat_suspicious_logins_total", reason=r)
                    - metric(before, "lairchat_suspicious_logins_total", reason=r)
                    for r in ("throttled:account", "throttled:address"))
    print(f"  {args.guessers} connections from {GUESSER_ADDRESS}, {args.guesses} wrong guesses each "
          f"({args.guessers * args.guesses} in all), in {took:.1f} s; answers: {counts(answers)}")
    print(f"  real password checks that failed (lairchat_suspicious_logins_total{{reason=\"failed\"}}): "
          f"{checked:.0f}; refused by the throttle before any check: {throttled:.0f} "
          f"(the address-level count is not visible on the wire: a 1005 may or may not follow a check; "
          f"the metric counts them)")
    v.check(checked <= 5, f"{checked:.0f} real password checks got through (at most 5 allowed)")
    v.check(answers["1004:INVALID_CREDENTIALS"] <= 5, "more than five 1004 answers")

    started = time.monotonic()
    welcome, took_login, answer = await timed_login(port, OWNER_ADDRESS, "alice")
    print(f"  the owner from {OWNER_ADDRESS} with the right password: {answer[:60]} in {took_login or 0:.2f} s")
    v.check(answer.startswith("OK:LOGIN:"), f"the owner's login was answered {answer}")
    token = answer.split(":")[3] if answer.startswith("OK:LOGIN:") else "0" * 64
    again = await Line.open(port, OWNER_ADDRESS)
    resumed = (await again.request(f"RESUME:{token}"))[-1]
    again.close()
    print(f"  RESUME with her session token on a new connection: {resumed}")
    v.check(resumed.startswith("OK:RESUME:alice"), f"RESUME was answered {resumed}")

    audit = [line for line in (await admin.ok("AUDIT_LOG:500"))[:-1] if ":alice:" in line]
    failed = [a for a in audit if ":login:" in a and ":failed:" in a]
    refused = [a for a in audit if ":login:" in a and ":refused:" in a]
    succeeded = [a for a in audit if ":login:" in a and ":ok:" in a]
    print(f"  AUDIT_LOG (admin), logins of alice: {len(failed)} failed, {len(refused)} refused (summaries), "
          f"{len(succeeded)} ok; e.g.:")
    for line in (failed[:2] + refused[:2] + succeeded[:1]):
        print(f"    {line}")
    v.check(bool(failed) and all(GUESSER_ADDRESS in a for a in failed),
            "the failed logins do not all name the guesser's address")
    v.check(any(OWNER_ADDRESS in a for a in succeeded), "the owner's successful login does not name her address")
    v.key = f"{checked:.0f} real checks of {args.guessers * args.guesses} guesses; owner logged in"
    return v


# 2. Connection flood

class FirstLine(asyncio.Protocol):
    """A bare connection that keeps the first line it is sent and notes when it is closed."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.first = loop.create_future()
        self.closed = loop.create_future()
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if b"\n" in self.buffer and not self.first.done():
            self.first.set_result(self.buffer.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.first.done():
            self.first.set_result("")
        if not self.closed.done():
            self.closed.set_result(time.monotonic())


async def connection_flood(args: argparse.Namespace, env: Environment, metrics: Metrics) -> Verdict:
    """
    C{--connections} idle connections from one address, C{--connect-concurrency}
    being opened at once, never logging in; a bystander from another
    address connects and logs in meanwhile.
    """
    v = Verdict("2. connection flood")
    loop = asyncio.get_running_loop()
    rss_before = rss_mb(env.server.pid)
    gate = asyncio.Semaphore(args.connect_concurrency)
    first_lines: Counter = Counter()
    probes: list[FirstLine] = []

    async def connect() -> None:
        async with gate:
            try:
                _, probe = await asyncio.wait_for(
                    loop.create_connection(FirstLine, "127.0.0.1", env.port, local_addr=(FLOODER_ADDRESS, 0)), 15)
                first = await asyncio.wait_for(probe.first, 15)
            except (OSError, asyncio.TimeoutError) as error:
                first_lines[f"no line within 15 s ({type(error).__name__})"] += 1
                return
            probes.append(probe)
            first_lines["WELCOME" if first.startswith("WELCOME:") else code(first) if first else "closed, no line"] += 1

    started = time.monotonic()
    flood = asyncio.gather(*(connect() for _ in range(args.connections)))
    await asyncio.sleep(0.5)
    welcome, logged_in, answer = await timed_login(env.port, BYSTANDER_ADDRESS, "bystander")
    await flood
    took = time.monotonic() - started
    accepted = [p for p in probes if p.first.result().startswith("WELCOME:")]
    open_now = sum(1 for p in accepted if not p.closed.done())
    why_closed = Counter(code(p.buffer.decode("utf-8", "replace").rstrip("\r\n").rsplit("\n", 1)[-1].rstrip("\r"))
                         for p in accepted if p.closed.done())
    rss_flood = rss_mb(env.server.pid)
    await asyncio.sleep(LOGIN_TIMEOUT + 2)
    open_later = sum(1 for p in accepted if not p.closed.done())
    values = await metrics.scrape()
    for p in probes:
        if p.transport is not None:
            p.transport.close()
    print(f"  {args.connections} connections from {FLOODER_ADDRESS} ({args.connect_concurrency} being opened at once) "
          f"in {took:.1f} s; first line read: {counts(first_lines)}")
    print(f"  accepted connections still open when the flood ended: {open_now} of {len(accepted)} "
          f"(the last line of the closed ones: {counts(why_closed)}); {LOGIN_TIMEOUT + 2:g} s later: {open_later}")
    print(f"  server counters: refused {counts(Counter({k: int(metric(values, 'lairchat_connections_refused_total', reason=k)) for k in ('total', 'per_address', 'rate')}))}; "
          f"timed out (login) {metric(values, 'lairchat_connections_timed_out_total', reason='login'):.0f}; "
          f"blocked addresses now {metric(values, 'lairchat_blocked_addresses'):.0f}")
    print(f"  bystander from {BYSTANDER_ADDRESS} during the flood: WELCOME after "
          f"{'%.3f s' % welcome if welcome is not None else 'never'}, answer to LOGIN after "
          f"{'%.3f s' % logged_in if logged_in is not None else 'never'}: {answer[:40]}")
    print(f"  server RSS: {rss_before:.0f} MiB before, {rss_flood:.0f} MiB at the end of the flood")
    v.check(answer.startswith("OK:LOGIN:") and logged_in is not None and logged_in <= PATIENCE,
            f"the bystander's login: {answer[:60]} after {logged_in} s")
    v.check(len(accepted) <= 32, f"{len(accepted)} connections from one address accepted (limit 32)")
    v.check(open_later == 0, f"{open_later} idle connections still open after the login timeout")
    v.check(rss_flood - rss_before < 100, f"RSS grew by {rss_flood - rss_before:.0f} MiB")
    v.key = (f"{len(accepted)} of {args.connections} accepted; bystander LOGIN in "
             f"{'%.2f s' % logged_in if logged_in is not None else 'never'}")
    return v


# 3. Hashing flood

async def hashing_flood(args: argparse.Namespace, env: Environment, metrics: Metrics) -> Verdict:
    """
    C{--hash-flood} connections spread over C{--hash-addresses} addresses
    (so that the per-address connection limits let them in), each sending
    one C{REGISTER} at the same moment; then the bystander's C{LOGIN} from
    another address is timed against the flood.
    """
    v = Verdict("3. hashing flood")
    per = -(-args.hash_flood // args.hash_addresses)
    sources = [f"127.0.0.{HASH_FLOOD_BASE + i // per}" for i in range(args.hash_flood)]
    gate = asyncio.Semaphore(50)

    async def connect(source: str) -> Line | str:
        async with gate:
            try:
                client = await Line.open(env.port, source)
            except (OSError, asyncio.TimeoutError) as error:
                return f"no connection ({type(error).__name__})"
            return code(client.greeting[0]) if client.refused else client

    opened = await asyncio.gather(*(connect(s) for s in sources))
    clients = [c for c in opened if isinstance(c, Line)]
    refused = Counter(c for c in opened if isinstance(c, str))
    bystander = await Line.open(env.port, BYSTANDER_ADDRESS)
    before = await metrics.scrape()
    rss_before = rss_mb(env.server.pid)
    async with RssSampler(env.server.pid) as rss:
        started = time.monotonic()
        finished: list[float] = []  # when each REGISTER that was stored was answered

        async def register(i: int, client: Line) -> str:
            reply = await client.request(f"REGISTER:flood{i}:{PASSWORD}", timeout=300)
            if reply[-1].startswith("OK:"):
                finished.append(time.monotonic())
            if client.closed.done() and not reply[-1].startswith(("OK:", "ERROR:")):
                return closed_by(client)
            return code(reply[-1]) + (" (registrations)" if "registrations" in reply[-1] else
                                      " (hashing queue)" if "waiting to be checked" in reply[-1] else "")

        flood = asyncio.gather(*(register(i, c) for i, c in enumerate(clients)))
        await asyncio.sleep(0)  # every REGISTER is written before the bystander's LOGIN
        login_sent = time.monotonic()
        reply = await bystander.request(f"LOGIN:bystander:{PASSWORD}", timeout=300)
        login_done = time.monotonic()
        login_took = login_done - login_sent
        answers = Counter(await flood)
        flood_took = (max(finished) if finished else time.monotonic()) - started
    after = await metrics.scrape()
    hashes = metric(after, "lairchat_hash_wait_seconds_count") - metric(before, "lairchat_hash_wait_seconds_count")
    waited = metric(after, "lairchat_hash_wait_seconds_sum") - metric(before, "lairchat_hash_wait_seconds_sum")
    queue_refused = metric(after, "lairchat_hash_refused_total") - metric(before, "lairchat_hash_refused_total")
    bystander.close()
    for client in clients:
        client.close()
    print(f"  {args.hash_flood} connections from {args.hash_addresses} addresses "
          f"({sources[0]}-{sources[-1]}, {per} each): {len(clients)} admitted"
          + (f", refused: {counts(refused)}" if refused else ""))
    print(f"  their REGISTERs, all sent at once: {counts(answers)}; the last stored after {flood_took:.2f} s")
    print(f"  (at most 5 REGISTERs per address per hour may create an account, the others read 1110; an "
          f"address's REGISTERs past its auth budget, 10 at once then one per 2.5 s, are delayed, not refused, and "
          f"the hashes wait for a slot: those not answered within the shortened --login-timeout "
          f"{LOGIN_TIMEOUT:g} s read 1303 and are closed, as a silent client would)")
    print(f"  password hashes run meanwhile (lairchat_hash_wait_seconds_count): {hashes:.0f} "
          f"(the bystander's included), mean wait for a slot {waited / hashes if hashes else 0:.2f} s; "
          f"refused for a full queue: {queue_refused:.0f}")
    later = sum(1 for t in finished if t > login_done)
    print(f"  bystander's LOGIN from {BYSTANDER_ADDRESS}, sent right after the flood: {code(reply[-1])} "
          f"in {login_took:.2f} s (the flood's last stored REGISTER: {flood_took:.2f} s); {later} of the flood's "
          f"{len(finished)} stored REGISTERs were answered after it (in a first-come queue: none)")
    print(f"  server RSS: {rss_before:.0f} MiB before, peak {rss.peak:.0f} MiB during the flood "
          f"(at most 4 hashes of 64 MiB at once)")
    v.check(reply[-1].startswith("OK:LOGIN:"), f"the bystander's LOGIN was answered {reply[-1]}")
    v.check(later >= len(finished) / 2,
            f"the bystander's LOGIN waited behind {len(finished) - later} of {len(finished)} REGISTERs")
    v.check(login_took <= 10, f"the bystander's LOGIN took {login_took:.1f} s (15 s before the fair queue)")
    v.check(rss.peak - rss_before <= 4 * 64 + 100, f"RSS grew by {rss.peak - rss_before:.0f} MiB")
    v.key = (f"bystander LOGIN {login_took:.2f} s, ahead of {later} of {len(finished)} REGISTERs; "
             f"peak RSS {rss.peak:.0f} MiB")
    return v


# 4. Request flood

async def history(client: Line, room: str) -> list[str]:
    """Every HISTORY line of a room, newest page first (GET_HISTORY gives at most 200 at a time)."""
    lines: list[str] = []
    before = ""
    while True:
        page = (await client.ok(f"GET_HISTORY:{room}:200{before}"))[:-1]
        lines.extend(page)
        if len(page) < 200:
            return lines
        before = ":" + page[0].split(":")[2]


def bots_messages(client: Line) -> int:
    """How many of the bot's room messages a client has received."""
    return sum(1 for _, line in client.events
               if line.startswith("MESSAGE:floodroom:") and line.split(":")[3] == "bot")


async def request_flood(args: argparse.Namespace, env: Environment, metrics: Metrics,
                        bystander: Line) -> Verdict:
    """
    In one room: a paste of 40 lines (all answered OK, in order); then a
    bot that keeps 64 lines in flight for C{--bot-seconds} (slowed to its
    budget, never refused); then the bot writes C{--bot-lines} lines at
    once (cut off with C{1110} past the backlog).  The bystander in the
    room sends a message every half second meanwhile and counts the bot's
    messages it receives.
    """
    v = Verdict("4. request flood")
    paster, _ = await user(env.port, PASTER_ADDRESS, "paster", register=True)
    bot, _ = await user(env.port, BOT_ADDRESS, "bot", register=True)
    await paster.ok("CREATE_ROOM:floodroom")
    await bot.ok("JOIN_ROOM:floodroom")
    await bystander.ok("JOIN_ROOM:floodroom")

    # the paste: 40 lines in one write
    started = time.monotonic()
    order: list[int] = []

    def answered(i: int, future: asyncio.Future) -> None:
        order.append(i)

    futures = []
    for i in range(40):
        future = paster.send(f"SEND_MESSAGE:floodroom:pasted line {i}")
        future.add_done_callback(lambda f, i=i: answered(i, f))
        futures.append(future)
    replies = [r[-1] for r in await asyncio.gather(*futures)]
    paste_took = time.monotonic() - started
    paste = Counter(code(r) for r in replies)
    print(f"  paste of 40 lines from {PASTER_ADDRESS}: {counts(paste)} in {paste_took:.2f} s, "
          f"answered {'in order' if order == sorted(order) else 'OUT OF ORDER'}")
    v.check(paste["OK"] == 40, f"the paste got {counts(paste)}")
    v.check(order == sorted(order), "the paste was answered out of order")

    # the bystander: a message every half second while the bot floods
    latencies: list[float] = []
    mine: Counter = Counter()
    stop = asyncio.Event()

    async def bystanding() -> None:
        n = 0
        while not stop.is_set():
            sent = time.monotonic()
            reply = await bystander.request(f"SEND_MESSAGE:floodroom:bystander {n}")
            latencies.append(time.monotonic() - sent)
            mine[code(reply[-1])] += 1
            n += 1
            await asyncio.sleep(0.5)

    seen_before = bots_messages(bystander)
    watching = asyncio.get_running_loop().create_task(bystanding())

    # the bot, phase A: as fast as it is answered (64 lines in flight)
    window = asyncio.Semaphore(64)
    bot_ok = 0
    slowed: Counter = Counter()
    started = time.monotonic()

    async def one(n: int) -> None:
        nonlocal bot_ok
        reply = await bot.send(f"SEND_MESSAGE:floodroom:bot {n}")
        window.release()
        slowed[code(reply[-1])] += 1
        bot_ok += reply[-1].startswith("OK:")

    tasks = []
    n = 0
    while time.monotonic() - started < args.bot_seconds:
        await window.acquire()
        tasks.append(asyncio.get_running_loop().create_task(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    phase_a = time.monotonic() - started
    rate = slowed["OK"] / phase_a
    print(f"  bot from {BOT_ADDRESS}, 64 lines in flight for {args.bot_seconds:g} s: {counts(slowed)} = "
          f"{rate:.1f} answers/s (its message budget: a burst of 30, then 10/s per connection)")
    v.check(set(slowed) == {"OK"}, f"the slowed bot got {counts(slowed)}")
    v.check(rate <= 10 + 30 / phase_a + 1, f"the bot was answered at {rate:.1f}/s, over its budget")

    # phase B: thousands of lines in one write
    if bot.closed.done():
        raise RuntimeError(f"the bot's connection was closed before its dump; it had read {bot.events[-3:]}")
    started = time.monotonic()
    dumped = bot.send_many([f"SEND_MESSAGE:floodroom:dump {i}" for i in range(args.bot_lines)])
    await asyncio.wait_for(bot.closed, 120)
    cut = time.monotonic() - started
    dump = Counter()
    last = ""
    for future in dumped:
        reply = future.result()[-1]
        dump[code(reply) if not reply.startswith("(") else "never answered"] += 1
        if reply.startswith("ERROR:"):
            last = reply
    bot_ok += dump["OK"]
    stop.set()
    await watching
    await asyncio.sleep(1.0)  # the last deliveries
    seen = bots_messages(bystander) - seen_before
    stored = sum(1 for line in await history(bystander, "floodroom") if line.split(":")[3] == "bot")
    print(f"  then {args.bot_lines} lines in one write: {counts(dump)}; connection closed after {cut:.2f} s")
    print(f"  its last answer: {last}")
    print(f"  bystander from {BYSTANDER_ADDRESS} in the room meanwhile: {counts(mine)} for its own messages, "
          f"latency max {max(latencies) * 1000:.0f} ms (median {sorted(latencies)[len(latencies) // 2] * 1000:.0f} ms); "
          f"received {seen} of the bot's messages; the bot got {bot_ok} OK, the room's history holds {stored} of its")
    v.check("1110:RATE_LIMITED" in dump and "flooding" in last, f"the dump was not cut off with 1110: {counts(dump)}")
    v.check(mine.keys() == {"OK"}, f"the bystander's messages got {counts(mine)}")
    v.check(max(latencies) < 1.0, f"a bystander message took {max(latencies):.1f} s")
    v.check(seen == bot_ok == stored, f"the bot got {bot_ok} OK, {stored} stored, the bystander received {seen}")
    paster.close()
    v.key = f"paste 40/40 OK; bot slowed to {rate:.1f}/s, dump cut off with 1110 after {dump['OK']} OK"
    return v


# 5. Silent and frozen clients

async def silent_and_frozen(args: argparse.Namespace, env: Environment, metrics: Metrics) -> Verdict:
    """
    A connection that never logs in is closed after the login timeout
    with an ERROR line; a logged-in client that stops reading while its
    room is flooded is cut off past C{--max-output-buffer}, shown offline,
    while the others in the room keep receiving.
    """
    v = Verdict("5. silent and frozen clients")
    started = time.monotonic()
    silent = await Line.open(env.port, SILENT_ADDRESS)
    silent_took = await asyncio.wait_for(silent.closed, LOGIN_TIMEOUT + 15) - started
    lines = [line for _, line in silent.events]
    print(f"  silent client from {SILENT_ADDRESS} (never logs in): closed after {silent_took:.2f} s "
          f"(--login-timeout {LOGIN_TIMEOUT:g}); its last line: {lines[-1] if lines else '(none)'}")
    v.check(bool(lines) and lines[-1].startswith("ERROR:1303:TIMEOUT"), f"the silent client read {lines}")
    v.check(silent_took < LOGIN_TIMEOUT + 2, f"closed only after {silent_took:.1f} s")

    flooder, _ = await user(env.port, ROOM_FLOODER_ADDRESS, "flooder", register=True)
    watcher, _ = await user(env.port, WATCHER_ADDRESS, "watcher", register=True)
    frozen = await Line.open(env.port, FROZEN_ADDRESS, receive_buffer=4096)
    await frozen.ok(f"REGISTER:frozen:{PASSWORD}")
    await flooder.ok("CREATE_ROOM:frozenroom")
    await watcher.ok("JOIN_ROOM:frozenroom")
    await frozen.ok("JOIN_ROOM:frozenroom")
    online = (await watcher.ok("REQUEST_USER_LIST"))[:-1]
    frozen.writer.transport.pause_reading()  # reads nothing more: the kernel buffers fill, then the server's
    log_offset = env.log_path(0).stat().st_size
    text = "\u20ac" * 3990  # 11,970 bytes of UTF-8 (a message holds at most 4000 characters)
    window = asyncio.Semaphore(8)
    sent_ok = 0
    flooded: Counter = Counter()
    gone_after = None
    started = time.monotonic()

    async def one(n: int) -> None:
        nonlocal sent_ok
        reply = await flooder.send(f"SEND_MESSAGE:frozenroom:{n} {text}")
        window.release()
        flooded[code(reply[-1])] += 1
        sent_ok += reply[-1].startswith("OK:")
        if gone_after is None:
            state["before_cut"] = sent_ok

    async def watch() -> None:
        nonlocal gone_after
        while time.monotonic() - started < 60:
            users = (await watcher.request("REQUEST_USER_LIST"))[:-1]
            if "USER:frozen" not in users:
                gone_after = time.monotonic() - started
                return
            await asyncio.sleep(0.25)

    state = {"before_cut": 0}
    watching = asyncio.get_running_loop().create_task(watch())
    tasks = []
    n = 0
    while not watching.done():
        try:
            await asyncio.wait_for(window.acquire(), 0.5)
        except asyncio.TimeoutError:
            continue
        tasks.append(asyncio.get_running_loop().create_task(one(n)))
        n += 1
    await asyncio.gather(*tasks)
    await asyncio.sleep(1.0)
    received = sum(1 for _, line in watcher.events if line.startswith("MESSAGE:frozenroom:"))
    frozen.writer.transport.resume_reading()
    await asyncio.wait_for(frozen.closed, 15)
    frozen_got = sum(1 for _, line in frozen.events if line.startswith("MESSAGE:frozenroom:"))
    cut_line = [line for line in log_tail(env, log_offset).splitlines() if "stopped reading" in line]
    print(f"  frozen client from {FROZEN_ADDRESS} (receive buffer 4 KiB, stops reading in frozenroom; "
          f"--max-output-buffer {MAX_OUTPUT_BUFFER}): online before ({'USER:frozen' in online}); "
          f"the flooder from {ROOM_FLOODER_ADDRESS} (8 in flight) got {counts(flooded)} for messages of "
          f"11,970 bytes; {state['before_cut']} of them ({state['before_cut'] * 11970 / 1e6:.1f} MB) before the "
          f"frozen client was seen offline")
    print(f"  it was shown offline (REQUEST_USER_LIST) {'%.1f s' % gone_after if gone_after else 'NEVER (60 s)'} "
          f"after the flood began; it had read {frozen_got} of them; the server logged: "
          f"{cut_line[0].split(']', 1)[-1].strip() if cut_line else '(nothing)'}")
    print(f"  the watcher in the same room from {WATCHER_ADDRESS} received {received} of {sent_ok}")
    print(f"  (the cut-off counts only what the server holds beyond the transport's 64 KiB; the kernel's send "
          f"buffer, which autotunes up to net.ipv4.tcp_wmem's maximum, held most of the rest, as documented)")
    v.check(flooded.keys() == {"OK"}, f"the flooder got {counts(flooded)}")
    v.check(gone_after is not None, "the frozen client was still shown online after 60 s")
    v.check(bool(cut_line), "no output-buffer cut-off in the server log")
    v.check(received == sent_ok, f"the watcher received {received} of {sent_ok}")
    print("  a vanished peer (host gone: TCP keepalive, TCP_USER_TIMEOUT) is NOT exercised: loopback cannot "
          "lose packets without network namespaces, and reading the keepalive options back on the client's "
          "own socket says nothing about the server's")
    for client in (flooder, watcher, frozen):
        client.close()
    v.key = (f"silent closed at {silent_took:.1f} s; frozen offline after "
             f"{'%.1f s' % gone_after if gone_after else 'never'}; vanished peer not exercised")
    return v


# 6. Intrusion detection

async def intrusion(args: argparse.Namespace, env: Environment, metrics: Metrics, admin: Line) -> Verdict:
    """
    The guessing address (attack 1) is refused with C{1401}; a storm of
    malformed lines gets another address blocked; the admin lists the
    blocks, lifts the second, and that address is let in again.
    """
    v = Verdict("6. intrusion detection")
    again = await Line.open(env.port, GUESSER_ADDRESS)
    again.close()
    print(f"  the guesser {GUESSER_ADDRESS} reconnects: {again.greeting[0][:100]}")
    v.check(again.greeting[0].startswith("ERROR:1401:"), f"the guesser was let in again: {again.greeting[0]}")

    storm = await Line.open(env.port, MALFORMED_ADDRESS)
    sent = 0
    for _ in range(args.malformed):
        if storm.closed.done():
            break
        storm.writer.write(b"\xff\xfe not utf-8\n")
        await storm.writer.drain()
        sent += 1
        await asyncio.sleep(0.02)
    await asyncio.wait_for(storm.closed, 15)
    storm_lines = Counter(code(line.split(" ", 1)[1] if line.startswith("@label=") else line)
                          for _, line in storm.events)
    reconnect = await Line.open(env.port, MALFORMED_ADDRESS)
    reconnect.close()
    print(f"  {sent} malformed lines (invalid UTF-8) from {MALFORMED_ADDRESS} before it was closed: "
          f"answers {counts(storm_lines)}; reconnecting: {reconnect.greeting[0][:90]}")
    v.check(storm_lines["1401:SECURITY_VIOLATION"] == 1, "the storm was not answered 1401")
    v.check(reconnect.greeting[0].startswith("ERROR:1401:"), "the storm's address was let in again")

    blocks = (await admin.ok("LIST_BLOCKS"))[:-1]
    print(f"  LIST_BLOCKS (admin from {ADMIN_ADDRESS}): {len(blocks)} blocks")
    for line in blocks:
        print(f"    {line}")
    v.check(any(line.endswith(":" + GUESSER_ADDRESS) for line in blocks), "the guesser is not in LIST_BLOCKS")
    v.check(any(line.endswith(":" + MALFORMED_ADDRESS) for line in blocks), "the storm is not in LIST_BLOCKS")
    lifted = (await admin.request(f"UNBLOCK_ADDRESS:{MALFORMED_ADDRESS}"))[-1]
    back = await Line.open(env.port, MALFORMED_ADDRESS)
    back.close()
    audit = [line for line in (await admin.ok("AUDIT_LOG:500"))[:-1]
             if f":{MALFORMED_ADDRESS}:" in line and (":block:" in line or ":unblock:" in line)]
    print(f"  UNBLOCK_ADDRESS:{MALFORMED_ADDRESS}: {lifted}; reconnecting: {back.greeting[0][:60]}")
    print(f"  audit lines for it: {len(audit)}")
    for line in audit:
        print(f"    {line}")
    v.check(lifted.startswith("OK:UNBLOCK_ADDRESS"), f"UNBLOCK_ADDRESS was answered {lifted}")
    v.check(back.greeting[0].startswith("WELCOME:"), f"after the unblock: {back.greeting[0]}")
    v.check(len(audit) >= 2, "the block and the unblock are not both audited")
    v.key = f"{len(blocks)} addresses blocked; storm blocked after {sent} lines; unblock works"
    return v


# 7. Database kill

async def database_kill(args: argparse.Namespace, env: Environment, metrics: Metrics, client: Line) -> Verdict:
    """
    SIGKILL the embedded postmaster; a logged-in client sends a message
    once a second until it is stored again.  The server log must have
    the watchdog's error line and no traceback.
    """
    v = Verdict("7. database kill")
    pid = int((env.pgdata / "postmaster.pid").read_text().split()[0])
    log_offset = env.log_path(0).stat().st_size
    before = await metrics.scrape()
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    answers: Counter = Counter()
    recovered = None
    n = 0
    while time.monotonic() - killed < args.db_patience:
        sent = time.monotonic()
        reply = (await client.request(f"SEND_MESSAGE:floodroom:after the kill {n}", timeout=60))[-1]
        answers[code(reply)] += 1
        if reply.startswith("OK:"):
            recovered = time.monotonic() - killed
            break
        n += 1
        await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - sent)))
    await asyncio.sleep(1.0)
    after = await metrics.scrape()
    log = log_tail(env, log_offset)
    watchdog = [line for line in log.splitlines() if "embedded database" in line]
    print(f"  SIGKILL to the embedded postmaster (pid {pid}); one SEND_MESSAGE a second from {BYSTANDER_ADDRESS}: "
          f"{counts(answers)}; "
          + (f"stored again {recovered:.1f} s after the kill" if recovered else f"NOT stored within {args.db_patience:g} s"))
    print(f"  embedded-database restarts (metric): "
          f"{metric(after, 'lairchat_embedded_database_restarts_total') - metric(before, 'lairchat_embedded_database_restarts_total'):.0f}; "
          f"the server log since the kill:")
    for line in watchdog[:6]:
        print(f"    {line[:160]}")
    tracebacks = log.count("Traceback") + log.count("Unhandled Error")
    print(f"  'Traceback' or 'Unhandled Error' in the log since the kill: {tracebacks}")
    v.check(recovered is not None, f"no message stored within {args.db_patience:g} s")
    v.check(any("is gone" in line for line in watchdog), "no watchdog error line in the log")
    v.check(tracebacks == 0, f"{tracebacks} tracebacks in the log")
    v.key = (f"recovered in {recovered:.1f} s, {answers['1212:DATABASE_UNAVAILABLE']} x 1212 meanwhile"
             if recovered else "not recovered")
    return v


async def run(args: argparse.Namespace, env: Environment, metrics_port: int) -> list[Verdict]:
    """Start the server, set up the admin and the bystander, run every attack in turn."""
    env.start_server()
    await env.wait_for_server()
    metrics = Metrics(metrics_port)
    admin, _ = await user(env.port, ADMIN_ADDRESS, ADMIN, register=True)
    bystander, _ = await user(env.port, BYSTANDER_ADDRESS, "bystander", register=True)
    whoami = (await admin.ok("WHOAMI"))[-1]
    print(f"server pid {env.server.pid}, port {env.port}, RSS {rss_mb(env.server.pid):.0f} MiB; "
          f"admin {whoami}; load average {load()}")
    verdicts = []
    for number, (title, attack, extra) in enumerate((
        ("1. Password guessing", guessing, (admin,)),
        ("2. Connection flood", connection_flood, ()),
        ("3. Hashing flood", hashing_flood, ()),
        ("4. Request flood", request_flood, (bystander,)),
        ("5. Silent and frozen clients", silent_and_frozen, ()),
        ("6. Intrusion detection", intrusion, (admin,)),
        ("7. Database kill", database_kill, (bystander,)),
    ), start=1):
        if args.only and number not in args.only:
            continue
        print(f"\n{title}")
        started = time.monotonic()
        try:
            verdict = await attack(args, env, metrics, *extra)
        except Exception as error:  # an attack that broke is a failure to report, not a crash
            verdict = Verdict(title.lower(), key="the attack did not run to its end")
            verdict.failures.append(f"{type(error).__name__}: {error}")
        verdict.report()
        print(f"  ({time.monotonic() - started:.1f} s; load average {load()})")
        verdicts.append(verdict)
    admin.close()
    bystander.close()
    return verdicts


def main() -> None:
    """Parse the options, run every attack, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--guessers", type=int, default=20, help="parallel guessing connections (default 20)")
    parser.add_argument("--guesses", type=int, default=3, help="wrong guesses per guessing connection (default 3)")
    parser.add_argument("--connections", type=int, default=3000,
                        help="idle connections the connection flood opens from one address (default 3000)")
    parser.add_argument("--connect-concurrency", type=int, default=200,
                        help="connections of the flood being opened at once (default 200)")
    parser.add_argument("--hash-flood", type=int, default=200, help="REGISTERs of the hashing flood (default 200)")
    parser.add_argument("--hash-addresses", type=int, default=10,
                        help="addresses the hashing flood comes from, 127.0.0.20 on (default 10)")
    parser.add_argument("--bot-seconds", type=float, default=10.0,
                        help="how long the bot keeps 64 lines in flight before its dump (default 10)")
    parser.add_argument("--bot-lines", type=int, default=3000, help="lines the bot dumps in one write (default 3000)")
    parser.add_argument("--malformed", type=int, default=40,
                        help="malformed lines the storm sends at most (default 40)")
    parser.add_argument("--db-patience", type=float, default=120.0,
                        help="seconds to wait for the database to come back after the kill (default 120)")
    parser.add_argument("--only", type=int, nargs="+", metavar="N",
                        help="run only these attacks (numbers 1-7; later ones may rely on earlier ones, "
                             "e.g. 6 looks for the block attack 1 causes)")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the server's log into DIR at the end")
    args = parser.parse_args()
    raise_fd_limit(args.connections + 1024)
    metrics_port = free_port()
    server_args = ("--admin", ADMIN, "--login-timeout", str(LOGIN_TIMEOUT),
                   "--max-output-buffer", str(MAX_OUTPUT_BUFFER),
                   "--metrics", f"tcp:{metrics_port}:interface=127.0.0.1")
    print(f"machine: {machine()}")
    print("server: twistd -n lairchat --data-dir <tmp> (embedded Postgres, supervised by the server) "
          + " ".join(server_args[:-2]) + " --metrics <loopback>; every other limit at its default, "
          "no --no-rate-limit, no --exempt-network")
    print(f"shortened for the run: --login-timeout {LOGIN_TIMEOUT:g} (default 120), "
          f"--max-output-buffer {MAX_OUTPUT_BUFFER} (default 1048576)")
    started = time.monotonic()
    with Environment(defended=True, embedded=True, extra_args=server_args, keep_logs=args.keep_logs) as env:
        verdicts = asyncio.run(run(args, env, metrics_port))
        log = env.log_path(0).read_text(errors="replace")
        warnings = [line for line in log.splitlines() if "Traceback" in line or "Unhandled Error" in line]
    print(f"\nSummary ({time.monotonic() - started:.0f} s in all)")
    width = max(len(v.attack) for v in verdicts)
    print(f"  {'attack'.ljust(width)}  verdict  key figure")
    for v in verdicts:
        print(f"  {v.attack.ljust(width)}  {v.verdict.ljust(7)}  {v.key}")
    print(f"  server log over the whole run: {len(warnings)} 'Traceback' / 'Unhandled Error' line(s)")
    for line in warnings[:10]:
        print(f"    {line[:160]}")
    failed = [v for v in verdicts if v.failures]
    print(f"  {len(verdicts) - len(failed)} of {len(verdicts)} held" +
          ("" if not failed else "; FAILED: " + ", ".join(v.attack for v in failed)))
    sys.exit(1 if failed or warnings else 0)


if __name__ == "__main__":
    main()
