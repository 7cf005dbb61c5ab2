"""
Benchmark of room messaging; prints figures, asserts nothing.

It starts an embedded Postgres in a temporary directory and the real server
as C{--nodes} (default 1) C{twistd -n lairchat --no-rate-limit}
subprocesses on loopback ports, all on that database, and logs in
C{--clients} connections (default 50), all members of one room, spread
round-robin over the nodes (client i on node i mod N).  C{--senders} of
them (default 10, the first ones, so also spread round-robin) each send
C{--messages} messages with SEND_MESSAGE, at most C{--window} unanswered at
a time per sender.  Every message is stored before its OK; every other
member's connection receives it as a MESSAGE event, on whichever node
(or as a C{PRIVMSG}: C{--irc-receivers K} makes the last K members,
none of them senders, IRC clients logged in with C{PASS}).
Each text carries its send time, so the receiving client measures the
delivery latency.  With C{--rate R} the senders keep to a schedule
instead (R messages/s in all, each sender's messages evenly spaced, at
most C{--window} unanswered per sender), and each text carries its
scheduled time: latency under a given load, with a late send counted
against the server.  The clients' garbage collector is off while they
measure, and they note the messages they got in a byte array, not a set:
a full collection stopped every client at once for about 0.15 s, and 50
sets growing at the same message for about 0.1 s.  A line-protocol
client counts the MESSAGE lines of each chunk it reads (a chunk of only
such lines, by far the most, by counting line starts; any other with one
regular expression over the bytes that takes them out) and keeps the
chunk with its arrival time; it measures and checks them once every one
has come (the clients share the CPUs with the server).  Every
connection reads into one buffer that lives on (L{harness.Lines}).

Since the clients share the machine, what they measure includes their
own delays: a send made late, a read made late.  So each line-protocol
read also carries the kernel's receive time (Linux's C{SO_TIMESTAMPNS}:
L{harness.stamp_arrivals}), and each sender notes when it wrote each
message: the server's share of a delivery runs from that write to the
kernel's receipt for the member, and the member's reading from there to
the read.  A read that takes several of the server's writes carries the
last one's time, so the share is an upper bound for the earlier ones.

It prints accepted messages/s (OK lines), deliveries/s (MESSAGE events
received; any duplicated, missing, or received before an earlier message
of the same sender), delivery latency p50/p99/p99.9 and max (and the
server's share of it, where reads are stamped), the OK latency, the servers' CPU time
(all nodes) and CPU time per delivery, the first node's peak RSS (VmHWM;
Postgres runs apart), and the database's commits per message:
C{pg_stat_database.xact_commit} over the sending phase (every transaction,
the nodes' heartbeats and polls included; Postgres reports a backend's
counts late, so the reading after the phase waits for them, and that wait
is counted too), and exact counts of the transactions that wrote and of
the distinct message timestamps (one per group-committed batch).  From
the nodes' own metrics (each runs with C{--metrics}) it prints the message
batches of the sending phase: their mean size, how long the oldest item
of each waited for the batch before it, and the round trip of each write.

    .venv/bin/python bench/messages.py [--clients 50] [--senders 10] [--messages 200] [--window 1] [--rate 0] [--nodes 1] [--irc-receivers 0]
"""

import argparse
import asyncio
import gc
import re
import time

from harness import (STATS_SETTLE, Client, Environment, IRCClient, batch_summary, load, machine, peak_rss_mb,
                     percentile, print_problems, reset_peak_rss)

ROOM = "benchroom"
NAME = "bench"
"""What the members' names start with (then their number)."""


async def run(args: argparse.Namespace, environment: Environment) -> dict:
    """Connect, send, wait for every delivery; the figures."""
    environment.start_server()
    await environment.wait_for_server()
    names = [f"{NAME}{i}" for i in range(args.clients)]
    environment.seed_users(names)
    environment.sql(
        "WITH r AS (INSERT INTO rooms (name, owner_id) SELECT %s, id FROM users WHERE username = %s RETURNING id) "
        "INSERT INTO room_members (room_id, user_id, role) "
        "SELECT r.id, u.id, CASE WHEN u.username = %s THEN 'owner' ELSE 'member' END FROM r, users u",
        (ROOM, names[0], names[0]),
    )

    logins = asyncio.Semaphore(8)
    ports = environment.ports

    first_irc = args.clients - args.irc_receivers

    async def login(i: int) -> Client | IRCClient:
        async with logins:
            if i >= first_irc:
                return await IRCClient.login(environment.irc_ports[i % len(ports)], names[i])
            return await Client.login(ports[i % len(ports)], names[i])

    clients = await asyncio.gather(*(login(i) for i in range(args.clients)))
    latencies: list[float] = []
    # the server's share of each delivery (its sender wrote it -> the kernel
    # received it for the member) and the member's part (received -> read)
    server_share: list[int] = []
    reading: list[int] = []
    # when each message was written (slot as in receiver's seen), monotonic ns
    written = [0] * (args.senders * args.messages)
    state = {"arrived": 0, "unique": 0, "last": 0, "unreadable": 0, "out_of_order": 0}
    prefix = f"MESSAGE:{ROOM}:"
    # MESSAGE:<room>:<id>:<sender>:<ts>:<sent> message <n> from bench<i>
    message_event = re.compile(
        rb"^" + re.escape(prefix.encode()) + rb"[^:\r\n]*:[^:\r\n]*:[^:\r\n]*:(\d+) message (\d+) from "
        + re.escape(NAME.encode()) + rb"(\d+)\r?$", re.M)
    irc_marker = f" PRIVMSG #{ROOM} :"

    presence = [0]

    senders = args.senders
    measured = latencies.append

    prefix_bytes = prefix.encode()
    # a MESSAGE line of the room, whatever its text, with its line break
    line_start = b"\r\n" + prefix_bytes
    room_line = re.compile(rb"^" + re.escape(prefix_bytes) + rb"[^\r\n]*(?:\r\n|\Z)", re.M)
    measures = []

    def receiver(seen: bytearray):
        """
        A client's handlers of what it receives: MESSAGE events measured
        (and checked for duplicates: C{seen} has a byte per message,
        message n of sender i at n * senders + i; and for order: each
        sender's messages must come in the order it sent them, which is
        their commit order), PRESENCE counted.

        A line-protocol client counts the MESSAGE lines of each chunk
        (L{Lines.on_chunk}: by counting line starts when the chunk holds
        nothing else, else taking them out with one regular expression)
        and only counts them as they come: it keeps the chunk, with the time it came, and
        reads the lines out of it after the sending (C{measure}), so that
        the clients, which share the machine with what they measure, do
        as little as they can while it works.  An IRC client gets its
        PRIVMSG lines one at a time and measures them at once.
        """

        newest = [-1] * senders
        kept: list[tuple[int, int, bytes, int]] = []

        def one(sent: bytes | str, n: bytes | str, sender: bytes | str, now: int, arrived: int = 0) -> None:
            """
            Measure message C{n} of sender number C{sender}, sent (or due)
            at C{sent}, read at C{now}, received by the kernel at
            C{arrived} (0: unknown).
            """
            measured(now - int(sent))  # ns; in ms at the end
            n, sender = int(n), int(sender)
            if arrived:
                server_share.append(arrived - written[n * senders + sender])
                reading.append(now - arrived)
            if n < newest[sender]:
                state["out_of_order"] += 1
            else:
                newest[sender] = n
            slot = n * senders + sender
            if not seen[slot]:
                seen[slot] = 1
                state["unique"] += 1
            if now > state["last"]:
                state["last"] = now

        def on_chunk(chunk: bytes, now: int, arrived: int) -> bytes:
            """Keep a chunk's MESSAGE lines to measure later, counted; the lines that are not MESSAGE lines."""
            taken = chunk.count(line_start) + chunk.startswith(prefix_bytes)
            if taken == chunk.count(b"\r\n") + 1:
                rest = b""  # only MESSAGE lines (by far the most chunks): none to take out
            else:
                rest, taken = room_line.subn(b"", chunk)
            if taken:
                kept.append((now, arrived, chunk, taken))
                state["arrived"] += taken
                state["last"] = now
            return rest[:-2] if rest.endswith(b"\r\n") else rest

        def measure() -> None:
            """Measure the MESSAGE lines of the chunks kept so far, in the order they came."""
            for now, arrived, chunk, taken in kept:
                found = message_event.findall(chunk)
                state["unreadable"] += taken - len(found)
                for sent, n, sender in found:
                    one(sent, n, sender, now, arrived)
            kept.clear()

        def on_event(line: str, now: int) -> None:
            """A line that L{on_chunk} did not take: an IRC PRIVMSG, a PRESENCE, anything else."""
            if irc_marker in line:
                sent, _, n, _, name = line.partition(irc_marker)[2].split(" ")
                state["arrived"] += 1
                one(sent, n, name[len(NAME):], now)
            elif line.startswith("PRESENCE:"):
                presence[0] += 1

        return on_chunk, on_event, measure

    for client in clients:
        on_chunk, client.on_event, measure = receiver(bytearray(args.senders * args.messages))
        measures.append(measure)
        if isinstance(client, Client):
            client.on_chunk = on_chunk
            client.stamp_arrivals()

    def measure_all() -> None:
        """Measure what every client kept."""
        for measure in measures:
            measure()

    acks: list[float] = []
    accepted = [0]
    peak_in_flight = [0, 0]  # now, highest

    lateness: list[float] = []

    def answered(reply: list[str], sent: int) -> None:
        """Count an answer to a message sent at C{sent}."""
        peak_in_flight[0] -= 1
        if reply[-1].startswith("OK:"):
            accepted[0] += 1
            acks.append((time.monotonic_ns() - sent) / 1e6)

    async def sender(client: Client, name: str, index: int) -> None:
        """Send every message as soon as the window allows (a closed loop; C{index} is for L{paced_sender})."""
        window = asyncio.Semaphore(args.window)

        async def one(n: int) -> None:
            async with window:
                sent = written[n * senders + index] = time.monotonic_ns()
                peak_in_flight[0] += 1
                peak_in_flight[1] = max(peak_in_flight)
                answered(await client.send(f"SEND_MESSAGE:{ROOM}:{sent} message {n} from {name}"), sent)

        await asyncio.gather(*(one(n) for n in range(args.messages)))

    async def paced_sender(client: Client, name: str, index: int) -> None:
        """
        Send message n when it is due, its slot of a schedule of C{--rate}
        messages/s over every sender, and count its latencies from then: a
        send delayed (by a full window, or the clients' own delay) counts
        against the server, as it would for a client that keeps to its pace.
        """
        window = asyncio.Semaphore(args.window)
        replies = []
        for n in range(args.messages):
            due = started + (n * args.senders + index) * 1_000_000_000 // args.rate
            delay = due - time.monotonic_ns()
            if delay > 0:
                await asyncio.sleep(delay / 1e9)
            await window.acquire()
            lateness.append((time.monotonic_ns() - due) / 1e6)
            peak_in_flight[0] += 1
            peak_in_flight[1] = max(peak_in_flight)
            written[n * senders + index] = time.monotonic_ns()
            reply = client.send(f"SEND_MESSAGE:{ROOM}:{due} message {n} from {name}")
            reply.add_done_callback(lambda future, due=due: (window.release(), answered(future.result(), due)))
            replies.append(reply)
        await asyncio.gather(*replies)

    login_rss = peak_rss_mb(environment.server.pid)
    # Let the logins' transaction counts reach pg_stat_database before the baseline.
    await asyncio.sleep(args.settle)
    reset = reset_peak_rss(environment.server.pid)
    cluster_before = environment.cluster_state()
    presence[0] = 0
    commits_before = environment.commits()
    xid_before = environment.next_xid()
    batches_before = environment.batch_figures("messages")
    cpu_before = environment.server_cpu_seconds()
    postgres_before = environment.postgres_cpu_seconds()
    own_before = time.process_time()
    load_before = load()
    # No garbage collection in the clients while they measure: a full one
    # stopped every client at once for about 0.15 s (their heap is large),
    # which would show as latency.
    gc.collect()
    gc.disable()
    try:
        started = time.monotonic_ns()
        send = paced_sender if args.rate else sender
        await asyncio.gather(*(send(clients[i], names[i], i) for i in range(args.senders)))
        send_done = time.monotonic_ns()
        expected = accepted[0] * (args.clients - 1)
        deadline = time.monotonic() + 60
        while state["arrived"] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cpu_used = environment.server_cpu_seconds() - cpu_before
        postgres_used = environment.postgres_cpu_seconds() - postgres_before
        own_used = time.process_time() - own_before
        xid_used = environment.next_xid() - xid_before
        phase_end = time.monotonic_ns()
        batches_after = environment.batch_figures("messages")
        # Every MESSAGE line came (or the time is up): now read them.
        measure_all()
        while state["unique"] < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            measure_all()
    finally:
        gc.enable()
    load_after = load()
    # The nodes' last transaction counts reach pg_stat_database within STATS_SETTLE s.
    await asyncio.sleep(args.settle)
    commits_after = environment.commits()
    commits_window = (time.monotonic_ns() - started) / 1e9
    cluster_after = environment.cluster_state()
    presence_seen = presence[0]
    stored, batches = environment.sql(
        "SELECT count(*), count(DISTINCT m.created_at) FROM messages m JOIN rooms r ON r.id = m.room_id "
        "WHERE r.name = %s", (ROOM,)
    )[0]
    # Idle background: the same nodes, nothing sent, over the same kind of window.
    idle_rate = None
    if args.idle:
        idle_before = environment.commits()
        await asyncio.sleep(args.idle)
        idle_rate = (environment.commits() - idle_before) / args.idle
    for client in clients:
        client.close()
    send_seconds = (send_done - started) / 1e9
    delivery_seconds = (max(state["last"], send_done) - started) / 1e9
    return {
        "accepted": accepted[0],
        "stored": stored,
        "batches": batches,
        "send_seconds": send_seconds,
        "deliveries": len(latencies),
        "duplicates": len(latencies) - state["unique"],
        "missing": expected - state["unique"],
        "unreadable": state["unreadable"],
        "out_of_order": state["out_of_order"],
        "expected": expected,
        "delivery_seconds": delivery_seconds,
        "phase_seconds": (phase_end - started) / 1e9,
        "latencies": [latency / 1e6 for latency in latencies],
        "server_share": [share / 1e6 for share in server_share],
        "reading": [read / 1e6 for read in reading],
        "acks": acks,
        "lateness": lateness,
        "cpu": cpu_used,
        "batch_summary": batch_summary(batches_before, batches_after),
        "postgres_cpu": postgres_used,
        "client_cpu": own_used,
        "rss": peak_rss_mb(environment.server.pid),
        "login_rss": login_rss,
        "rss_reset": reset,
        "commits": commits_after - commits_before,
        "commits_window": commits_window,
        "idle_rate": idle_rate,
        "xids": xid_used,
        "peak_in_flight": peak_in_flight[1],
        "load_before": load_before,
        "load_after": load_after,
        "problems": environment.log_problems(),
        "presence": presence_seen,
        "cluster_before": cluster_before,
        "cluster_after": cluster_after,
    }


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="connections in the room (default 50)")
    parser.add_argument("--senders", type=int, default=10, help="how many of them send (default 10)")
    parser.add_argument("--messages", type=int, default=200, help="messages per sender (default 200)")
    parser.add_argument("--window", type=int, default=1, help="unanswered requests per sender (default 1)")
    parser.add_argument("--rate", type=int, default=0,
                        help="offer this many messages/s in all, on a fixed schedule spread evenly over the "
                             "senders, instead of each sending as soon as its window allows; latencies then count "
                             "from each message's scheduled time (default 0: as fast as the window allows)")
    parser.add_argument("--nodes", type=int, default=1,
                        help="server processes on the one database; clients and senders spread round-robin (default 1)")
    parser.add_argument("--irc-receivers", type=int, default=0,
                        help="how many of the members that do not send connect over IRC instead (PASS login, "
                             "PRIVMSG events; the last ones, spread round-robin like the rest; default 0)")
    parser.add_argument("--pool-size", type=int, default=4,
                        help="each node's database connections (default 4)")
    parser.add_argument("--settle", type=float, default=STATS_SETTLE,
                        help="seconds to wait, before the baseline and after the sending, for Postgres to report "
                             f"every backend's transaction counts (default {STATS_SETTLE:g})")
    parser.add_argument("--keep-logs", metavar="DIR",
                        help="copy the servers' logs into DIR at the end (they go with the temporary directory)")
    parser.add_argument("--idle", type=float, default=10.0,
                        help="seconds of idle nodes after the run, to measure their background commits/s "
                             "(default 10; 0 skips it)")
    args = parser.parse_args()
    if args.senders > args.clients:
        parser.error("--senders cannot exceed --clients")
    if not 0 <= args.irc_receivers <= args.clients - args.senders:
        parser.error("--irc-receivers must be between 0 and --clients minus --senders")
    with Environment(args.pool_size, nodes=args.nodes, keep_logs=args.keep_logs,
                     irc=args.irc_receivers > 0) as environment:
        figures = asyncio.run(run(args, environment))
    f = figures
    print(f"machine: {machine()}")
    print(f"load average (1, 5, 15 min): {f['load_before']} at the start of the sending, "
          f"{f['load_after']} at its end")
    irc = f" ({args.irc_receivers} of the receivers over IRC)" if args.irc_receivers else ""
    print(f"setup: {args.clients} clients{irc} in one room over {args.nodes} node(s), {args.senders} sending "
          f"{args.messages} messages each, window {args.window} (at most {f['peak_in_flight']} requests were "
          f"unanswered at once), server pool {args.pool_size} per node")
    if args.rate:
        print(f"paced: {args.rate} messages/s offered in all; sends late by p50 "
              f"{percentile(f['lateness'], 0.5):.1f} ms, p99 {percentile(f['lateness'], 0.99):.1f} ms "
              f"(the clients' own delay or a full window; counted in the latencies)")
    print(f"accepted: {f['accepted']} messages in {f['send_seconds']:.2f} s = "
          f"{f['accepted'] / f['send_seconds']:.0f} messages/s (stored: {f['stored']})")
    since = " (from the scheduled time)" if args.rate else ""
    print(f"OK latency{since}: p50 {percentile(f['acks'], 0.5):.1f} ms, p99 {percentile(f['acks'], 0.99):.1f} ms")
    print(f"delivered: {f['deliveries']} of {f['expected']} events in {f['delivery_seconds']:.2f} s = "
          f"{f['deliveries'] / f['delivery_seconds']:.0f} deliveries/s "
          f"({f['duplicates']} duplicated, {f['missing']} missing after waiting up to 60 s, "
          f"{f['out_of_order']} before an earlier one of their sender, "
          f"{f['unreadable']} MESSAGE lines not of the benchmark)")
    print(f"delivery latency (send to MESSAGE or PRIVMSG received): p50 {percentile(f['latencies'], 0.5):.1f} ms, "
          f"p99 {percentile(f['latencies'], 0.99):.1f} ms, p99.9 {percentile(f['latencies'], 0.999):.1f} ms, "
          f"max {max(f['latencies'], default=0):.1f} ms")
    if f["server_share"]:
        share, reading = f["server_share"], f["reading"]
        print(f"  the server's share (its sender wrote it to the socket -> the kernel received it for the member; "
              f"{len(share)} deliveries): p50 {percentile(share, 0.5):.1f} ms, p99 {percentile(share, 0.99):.1f} ms, "
              f"p99.9 {percentile(share, 0.999):.1f} ms, max {max(share):.1f} ms; the member's reading after that: "
              f"p50 {percentile(reading, 0.5):.2f} ms, p99 {percentile(reading, 0.99):.2f} ms")
    per_delivery = f["cpu"] / f["deliveries"] * 1e6 if f["deliveries"] else 0.0
    print(f"server CPU (user+system, all {args.nodes} node(s), first send to last delivery, "
          f"{f['phase_seconds']:.2f} s): {f['cpu']:.2f} s = {per_delivery:.1f} us per delivery; "
          f"Postgres: {f['postgres_cpu']:.2f} s")
    during = "during the messages" if f["rss_reset"] else "since start (could not reset the peak)"
    print(f"first node: peak RSS {f['rss']:.1f} MiB {during}, "
          f"{f['login_rss']:.1f} MiB at the end of the logins (argon2 takes 64 MiB per concurrent login)")
    accepted = f["accepted"] or 1
    idle = ""
    if f["idle_rate"] is not None:
        background = f["idle_rate"] * f["commits_window"]
        idle = (f"; the idle nodes commit {f['idle_rate']:.1f}/s, ~{background:.0f} over that window, "
                f"so ~{max(0.0, f['commits'] - background) / accepted:.3f} per message without them")
    print(f"commits: {f['commits']} (pg_stat_database.xact_commit, every transaction of every backend, "
          f"the nodes' heartbeats and polls included, over {f['commits_window']:.1f} s: the sending phase "
          f"and {args.settle:g} s for Postgres to report the counts) = {f['commits'] / accepted:.3f} per message"
          f"{idle}")
    print(f"write transactions (transaction ids taken over the sending phase, heartbeats included): "
          f"{f['xids']} = {f['xids'] / accepted:.3f} per message; message batches (distinct created_at): "
          f"{f['batches']} = {f['stored'] / max(1, f['batches']):.2f} messages per batch")
    print(f"message batches (the nodes' metrics, lairchat_batch_*): {f['batch_summary']}")
    before, after = f["cluster_before"], f["cluster_after"]
    print(f"cluster: {f['presence']} PRESENCE lines received while sending (none expected); nodes registered "
          f"{before['nodes']} before, {after['nodes']} after (of {args.nodes}); users online {before['online']} "
          f"before, {after['online']} after (of {args.clients} connected)")
    print(f"the benchmark's own clients used {f['client_cpu']:.1f} s CPU (they share the machine)")
    print_problems(f["problems"])


if __name__ == "__main__":
    main()
