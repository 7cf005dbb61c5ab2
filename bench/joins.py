"""
Benchmark of many clients joining one room; prints figures, asserts nothing.

It starts an embedded Postgres in a temporary directory and the real server
as C{--nodes} (default 1) C{twistd -n lairchat --no-rate-limit}
subprocesses on loopback ports, all on that database.  C{--clients}
accounts (default 5,000) and one session each are written with SQL (no
argon2: a password hash no password matches, and a token stored as its
SHA-256 digest, as the server stores it), plus a room owned by one more
account that never connects.  Every client connects to a node (client i
to node i mod N) and logs in with C{RESUME:<token>}; then, timed, every
client sends C{JOIN_ROOM:<room>}, at most C{--concurrency} of them
unanswered at once (default: all at once).  Every member already in the
room receives C{USER_JOINED} for each later join, so the deliveries grow
with the square of the clients: N(N-1)/2 in all, and the client that
joined k-th (from 0) receives N-1-k of them.

It prints the join time (first JOIN sent to last OK), joins/s, the JOIN
latency, the USER_JOINED deliveries received (and whether each client
received exactly as many as it should have), the time until the last one
arrived, and the CPU time of the servers (all nodes) and of Postgres.

    .venv/bin/python bench/joins.py [--clients 5000] [--nodes 1] [--concurrency N]
"""

import argparse
import asyncio
import re
import signal
import time
from collections import Counter

from harness import Environment, SharedReadBuffer, load, machine, percentile, print_problems, raise_fd_limit

ROOM = "joinroom"
OWNER = "joinowner"
PREFIX = "j"
JOINER = re.compile(rb"USER_JOINED:" + ROOM.encode() + rb":" + PREFIX.encode() + rb"(\d+)\r?\n")
SENTINEL = f"MESSAGE:{ROOM}:".encode()


class JoinClient(SharedReadBuffer):
    """
    One connection, lean enough for thousands in one process: it counts
    C{USER_JOINED} lines in bulk and parses only the labelled replies;
    when verifying, it keeps the chunks that hold C{USER_JOINED} lines and
    reads whose they are only after the joins (L{check}).
    """

    def __init__(self, totals: dict, clients: int | None) -> None:
        self.totals = totals
        self.transport: asyncio.Transport | None = None
        self.tail = b""
        self.pending: dict[bytes, asyncio.Future] = {}
        self.next_label = 0
        self.joined = 0
        self.duplicates = 0
        # whose USER_JOINED this client received (by client number), when verifying
        self.seen = bytearray(clients) if clients else None
        self.kept: list[bytes] = []
        self.sentinel = asyncio.get_running_loop().create_future()
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n")
        if cut < 0:
            self.tail = data
            return
        self.tail = data[cut + 1:]
        complete = data[: cut + 1]
        count = complete.count(b"USER_JOINED:")
        if count:
            self.joined += count
            self.totals["joined"] += count
            self.totals["last"] = time.monotonic_ns()
            if self.seen is not None:
                # read by check(), once the joins are done: the clients
                # share the CPUs with the server they measure
                self.kept.append(complete)
        presence = complete.count(b"PRESENCE:")
        if presence:
            self.totals["presence"] += presence
        if SENTINEL in complete and not self.sentinel.done():
            self.sentinel.set_result(None)
        if b"@label=" in complete:
            for line in complete.split(b"\n"):
                if line.startswith(b"@label="):
                    label, _, rest = line[len(b"@label="):].partition(b" ")
                    if rest.startswith((b"OK:", b"ERROR:")):
                        future = self.pending.pop(label, None)
                        if future is not None and not future.done():
                            future.set_result(rest.decode("utf-8", "replace").rstrip("\r"))

    def check(self) -> None:
        """Note whose C{USER_JOINED} the chunks kept so far hold (and any heard twice); drop the chunks."""
        seen = self.seen
        for chunk in self.kept:
            for number in JOINER.findall(chunk):
                i = int(number)
                if seen[i]:
                    self.duplicates += 1
                else:
                    seen[i] = 1
        self.kept.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.totals["lost"] += 1
        if not self.sentinel.done():
            self.sentinel.set_result(None)
        for future in self.pending.values():
            if not future.done():
                future.set_result("ERROR:connection lost")
        self.pending.clear()

    def send(self, line: str) -> asyncio.Future:
        """Send a labelled request; a future of its final reply line."""
        self.next_label += 1
        label = f"j{self.next_label}".encode()
        future = asyncio.get_running_loop().create_future()
        self.pending[label] = future
        if self.lost:
            future.set_result("ERROR:connection lost")
        else:
            self.transport.write(b"@label=" + label + b" " + line.encode("utf-8") + b"\n")
        return future


async def run(args: argparse.Namespace, environment: Environment) -> dict:
    """Seed, connect and resume, join, wait for every delivery; the figures."""
    environment.start_server()
    await environment.wait_for_server()
    names = [f"{PREFIX}{i}" for i in range(args.clients)]
    seeding = time.monotonic()
    tokens = environment.seed_sessions(names)
    environment.seed_sessions([OWNER])
    environment.sql(
        "WITH r AS (INSERT INTO rooms (name, owner_id) SELECT %s, id FROM users WHERE username = %s RETURNING id) "
        "INSERT INTO room_members (room_id, user_id, role) SELECT r.id, u.id, 'owner' FROM r, users u "
        "WHERE u.username = %s",
        (ROOM, OWNER, OWNER),
    )
    seed_seconds = time.monotonic() - seeding

    loop = asyncio.get_running_loop()
    totals = {"joined": 0, "last": 0, "lost": 0, "presence": 0}
    ports = environment.ports
    connecting = asyncio.Semaphore(args.connect_concurrency)
    resume_errors: list[str] = []

    async def connect(i: int) -> JoinClient:
        async with connecting:
            _, client = await loop.create_connection(
                lambda: JoinClient(totals, args.clients if args.verify else None), "127.0.0.1", ports[i % len(ports)]
            )
            reply = await client.send(f"RESUME:{tokens[i]}")
            if not reply.startswith("OK:RESUME:"):
                resume_errors.append(reply)
            return client

    logging_in = time.monotonic()
    clients = await asyncio.gather(*(connect(i) for i in range(args.clients)))
    login_seconds = time.monotonic() - logging_in
    if resume_errors:
        raise RuntimeError(f"{len(resume_errors)} RESUMEs failed, e.g. {resume_errors[0]}")
    await asyncio.sleep(1.0)
    stray = totals["joined"]
    presence_before = totals["presence"]
    cluster_before = environment.cluster_state()

    concurrency = args.concurrency or args.clients
    window = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    errors: Counter = Counter()
    state = {"last_ok": 0}

    async def join(client: JoinClient) -> None:
        async with window:
            sent = time.monotonic_ns()
            reply = await client.send(f"JOIN_ROOM:{ROOM}")
            now = time.monotonic_ns()
            if reply.startswith("OK:"):
                latencies.append((now - sent) / 1e6)
                state["last_ok"] = now
            else:
                errors[reply] += 1

    expected = args.clients * (args.clients - 1) // 2
    load_before = load()
    cpu_before = environment.server_cpu_seconds()
    postgres_before = environment.postgres_cpu_seconds()
    own_before = time.process_time()
    started = time.monotonic_ns()
    await asyncio.gather(*(join(client) for client in clients))
    joins_done = time.monotonic_ns()
    # A sentinel: a message to the room after every join.  Every node hands
    # events on in order and every connection is a stream, so once a client
    # has the message it has every USER_JOINED meant for it.  Its sender
    # gets no MESSAGE; its OK comes after its node handed the message on.
    sentinel = await clients[0].send(f"SEND_MESSAGE:{ROOM}:every join is done")
    if not sentinel.startswith("OK:"):
        raise RuntimeError(f"the sentinel message was refused: {sentinel}")
    clients[0].sentinel.cancel()
    waiting = [client.sentinel for client in clients[1:] if not client.sentinel.done()]
    seen, quiet_since = totals["joined"], time.monotonic()
    while waiting and time.monotonic() - quiet_since < args.patience:
        await asyncio.wait(waiting, timeout=0.2)
        waiting = [future for future in waiting if not future.done()]
        if totals["joined"] != seen:
            seen, quiet_since = totals["joined"], time.monotonic()
    waited_out = len(waiting)
    deliveries_done = time.monotonic_ns()
    cpu_used = environment.server_cpu_seconds() - cpu_before
    postgres_used = environment.postgres_cpu_seconds() - postgres_before
    own_used = time.process_time() - own_before
    load_after = load()
    await asyncio.sleep(1.0)
    cluster_after = environment.cluster_state()
    presence_seen = totals["presence"] - presence_before
    lost_seen = totals["lost"]
    problems = environment.log_problems()
    members = environment.sql(
        "SELECT count(*) FROM room_members m JOIN rooms r ON r.id = m.room_id WHERE r.name = %s", (ROOM,)
    )[0][0]
    counts = sorted(client.joined for client in clients)
    # The k-th client to become a member (from 0) must hear of the N-1-k later ones at least.
    short = sum(1 for k, n in enumerate(counts) if n < k)
    pairs = {"one": 0, "both": 0, "neither": 0, "self": 0, "duplicates": 0}
    if args.verify:
        for client in clients:
            client.check()
        # Of two clients, the one that became a member first must hear of the other's join:
        # one of each pair is expected to have the other's USER_JOINED.
        seen = [client.seen for client in clients]
        for a in range(args.clients):
            row = seen[a]
            pairs["self"] += row[a]
            for b in range(a + 1, args.clients):
                heard = row[b] + seen[b][a]
                if heard == 1:
                    pairs["one"] += 1
                elif heard == 2:
                    pairs["both"] += 1
                else:
                    pairs["neither"] += 1
        pairs["duplicates"] = sum(client.duplicates for client in clients)
    aftermath = await linger(args, environment, clients, totals)
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    return {
        "aftermath": aftermath,
        "seed_seconds": seed_seconds,
        "login_seconds": login_seconds,
        "joined_ok": len(latencies),
        "errors": errors,
        "latencies": latencies,
        "join_seconds": ((state["last_ok"] or joins_done) - started) / 1e9,
        "all_replies_seconds": (joins_done - started) / 1e9,
        "deliveries": totals["joined"] - stray,
        "stray": stray,
        "expected": expected,
        "last_delivery_seconds": (max(totals["last"], started) - started) / 1e9,
        "phase_seconds": (deliveries_done - started) / 1e9,
        "waited_out": waited_out,
        "short_counts": short,
        "most": counts[-1] if counts else 0,
        "pairs": pairs,
        "lost": lost_seen,
        "members": members,
        "cpu": cpu_used,
        "postgres_cpu": postgres_used,
        "client_cpu": own_used,
        "load_before": load_before,
        "load_after": load_after,
        "concurrency": concurrency,
        "problems": problems,
        "presence": presence_seen,
        "cluster_before": cluster_before,
        "cluster_after": cluster_after,
    }


async def linger(args: argparse.Namespace, environment: Environment, clients: list, totals: dict) -> dict | None:
    """
    What the joins leave behind: with C{--stall-node}, stop the last node
    (SIGSTOP, as a paused or overloaded process would stall) for that long
    and let it go on; then, for C{--linger} seconds, send one message a
    second to the room, from a client of each node in turn, and note the
    slow or refused ones, the PRESENCE lines and the cluster's state.
    """
    if not args.linger and not args.stall_node:
        return None
    presence_before = totals["presence"]
    if args.stall_node:
        stalled = environment.servers[-1]
        stalled.send_signal(signal.SIGSTOP)
        await asyncio.sleep(args.stall_node)
        stalled.send_signal(signal.SIGCONT)
    probes: list[tuple[float, int, float, str]] = []
    started = time.monotonic()
    n = 0
    while time.monotonic() - started < args.linger:
        index = n % min(len(clients), len(environment.ports))
        sent = time.monotonic()
        reply = await clients[index].send(f"SEND_MESSAGE:{ROOM}:probe {n}")
        took = time.monotonic() - sent
        probes.append((sent - started, index % len(environment.ports), took, reply))
        n += 1
        await asyncio.sleep(max(0.0, 1.0 - took))
    return {
        "probes": probes,
        "presence": totals["presence"] - presence_before,
        "lost": totals["lost"],
        "cluster": environment.cluster_state(),
        "problems": environment.log_problems(),
    }


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=5000, help="connections that join the room (default 5000)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="server processes on the one database; clients spread round-robin (default 1)")
    parser.add_argument("--concurrency", type=int, default=0,
                        help="JOIN_ROOM requests unanswered at once (default: all clients join at once)")
    parser.add_argument("--pool-size", type=int, default=4, help="each node's database connections (default 4)")
    parser.add_argument("--connect-concurrency", type=int, default=32,
                        help="connections opened and logged in at once before the timed phase (default 32)")
    parser.add_argument("--patience", type=float, default=60.0,
                        help="give up waiting for deliveries after this many seconds without one (default 60)")
    parser.add_argument("--stall-node", type=float, default=0.0, metavar="SECONDS",
                        help="after the joins, stop the last node (SIGSTOP) for this long, then let it go on "
                             "(needs --nodes 2 or more)")
    parser.add_argument("--linger", type=float, default=0.0, metavar="SECONDS",
                        help="after the joins (and the stall), stay connected this long, sending one message a "
                             "second to the room from each node in turn, and report the slow or refused ones")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy the servers' logs into DIR at the end (they go with the temporary directory)")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="only count the USER_JOINED lines; do not check who received whose "
                             "(the check costs the clients a few seconds of CPU for 5,000 clients)")
    parser.add_argument("--max-output-buffer", type=int, default=0,
                        help="passed to the servers (bytes queued for a client before it is cut off; "
                             "default: the server's own)")
    args = parser.parse_args()
    if args.stall_node and args.nodes < 2:
        parser.error("--stall-node needs --nodes 2 or more")
    limit = raise_fd_limit(args.clients + 1024)
    if limit < args.clients + 64:
        parser.error(f"the open-files limit is {limit}: too low for {args.clients} clients")
    extra = ("--max-output-buffer", str(args.max_output_buffer)) if args.max_output_buffer else ()
    with Environment(args.pool_size, nodes=args.nodes, extra_args=extra, keep_logs=args.keep_logs) as environment:
        figures = asyncio.run(run(args, environment))
    f = figures
    n = args.clients
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {f['load_before']} at the first JOIN, {f['load_after']} at the end")
    print(f"setup: {n} clients over {args.nodes} node(s), server pool {args.pool_size} per node, "
          f"{f['concurrency']} JOIN_ROOM unanswered at most; accounts and sessions seeded with SQL in "
          f"{f['seed_seconds']:.1f} s, {n} connections resumed in {f['login_seconds']:.1f} s")
    print(f"joins: {f['joined_ok']} OK in {f['join_seconds']:.2f} s (first JOIN sent to last OK) = "
          f"{f['joined_ok'] / f['join_seconds']:.0f} joins/s; room members now: {f['members']} "
          f"(the owner, who never connected, included)")
    if f["errors"]:
        print(f"JOIN errors: {sum(f['errors'].values())}: " +
              "; ".join(f"{count} x {reply}" for reply, count in f["errors"].most_common(5)))
    print(f"JOIN latency: p50 {percentile(f['latencies'], 0.5):.0f} ms, p99 {percentile(f['latencies'], 0.99):.0f} ms, "
          f"max {max(f['latencies'], default=0):.0f} ms")
    per_second = f["deliveries"] / f["last_delivery_seconds"] if f["last_delivery_seconds"] else 0.0
    print(f"USER_JOINED received: {f['deliveries']} (N(N-1)/2 = {f['expected']} if each member heard only of "
          f"the joins after its own; N(N-1) = {2 * f['expected']} at most), the last "
          f"{f['last_delivery_seconds']:.2f} s after the first JOIN = {per_second:.0f} deliveries/s"
          + (f"; {f['waited_out']} client(s) never got the closing message (gave up after {args.patience:g} s "
             "without a delivery)" if f["waited_out"] else ""))
    print(f"per client: at most {f['most']} (N-1 = {n - 1}); {f['short_counts']} client(s) received fewer than "
          f"the joins after theirs can account for; {f['lost']} connection(s) lost"
          + (f"; {f['stray']} USER_JOINED before the timed phase" if f["stray"] else ""))
    if args.verify:
        p = f["pairs"]
        print(f"who heard of whom, over the {f['expected']} pairs of clients: {p['one']} pairs one heard of the "
              f"other, {p['both']} both heard of each other (the later one's membership came before the earlier "
              f"one's USER_JOINED), {p['neither']} neither (lost); {p['duplicates']} duplicated lines, "
              f"{p['self']} clients told of their own join")
    before, after = f["cluster_before"], f["cluster_after"]
    print(f"cluster: {f['presence']} PRESENCE lines received during the joins (none expected: nobody came or "
          f"went); nodes registered {before['nodes']} before, {after['nodes']} after (of {args.nodes}); "
          f"users online (table online) {before['online']} before, {after['online']} after (of {n} connected)")
    per_delivery = f["cpu"] / f["deliveries"] * 1e6 if f["deliveries"] else 0.0
    print(f"server CPU (user+system, all {args.nodes} node(s), first JOIN to last delivery, "
          f"{f['phase_seconds']:.2f} s): {f['cpu']:.1f} s = {per_delivery:.1f} us per delivery; "
          f"Postgres: {f['postgres_cpu']:.1f} s")
    print(f"the benchmark's own clients used {f['client_cpu']:.1f} s CPU (they share the machine)")
    after = f["aftermath"]
    if after is not None:
        probes = after["probes"]
        slow = [p for p in probes if p[2] > 1.0 or not p[3].startswith("OK:")]
        stall = f"the last node stopped for {args.stall_node:g} s, then " if args.stall_node else ""
        print(f"afterwards: {stall}{len(probes)} messages over {args.linger:g} s, one a second: "
              f"{len(slow)} took over 1 s or were refused; {after['presence']} PRESENCE lines received; "
              f"{after['lost']} connection(s) lost; nodes registered {after['cluster']['nodes']}, "
              f"users online {after['cluster']['online']}")
        for at, node, took, reply in slow[:20]:
            print(f"  at +{at:.0f} s via node {node}: {took:.1f} s, {reply[:90]}")
        f["problems"] = after["problems"]
    print_problems(f["problems"])


if __name__ == "__main__":
    main()
