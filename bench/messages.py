"""
Benchmark of room messaging; prints figures, asserts nothing.

It starts an embedded Postgres in a temporary directory and the real server
as a C{twistd -n lairchat --no-rate-limit} subprocess on a loopback port,
logs in C{--clients} connections (default 50), all members of one room,
and lets C{--senders} of them (default 10) each send C{--messages}
messages with SEND_MESSAGE, at most C{--window} unanswered at a time per
sender.  Every message is stored before its OK; every other member's
connection receives it as a MESSAGE event.  Each text carries its send
time, so the receiving client measures the delivery latency.

It prints accepted messages/s (OK lines), deliveries/s (MESSAGE events
received), delivery latency p50/p99, the OK latency, the server's CPU time
and its peak RSS (VmHWM of the twistd process; Postgres runs apart).

    .venv/bin/python bench/messages.py [--clients 50] [--senders 10] [--messages 200]
"""

import argparse
import asyncio
import time

from harness import Client, Environment, cpu_seconds, machine, peak_rss_mb, percentile, reset_peak_rss

ROOM = "benchroom"


async def run(args: argparse.Namespace, environment: Environment) -> dict:
    """Connect, send, wait for every delivery; the figures."""
    environment.start_server()
    await environment.wait_for_server()
    names = [f"bench{i}" for i in range(args.clients)]
    environment.seed_users(names)
    environment.sql(
        "WITH r AS (INSERT INTO rooms (name, owner_id) SELECT %s, id FROM users WHERE username = %s RETURNING id) "
        "INSERT INTO room_members (room_id, user_id, role) "
        "SELECT r.id, u.id, CASE WHEN u.username = %s THEN 'owner' ELSE 'member' END FROM r, users u",
        (ROOM, names[0], names[0]),
    )

    logins = asyncio.Semaphore(8)

    async def login(name: str) -> Client:
        async with logins:
            return await Client.login(environment.port, name)

    clients = await asyncio.gather(*(login(name) for name in names))
    latencies: list[float] = []
    state = {"deliveries": 0, "last": 0}
    prefix = f"MESSAGE:{ROOM}:"

    def on_event(line: str, now: int) -> None:
        if line.startswith(prefix):
            text = line.split(":", 5)[5]
            latencies.append((now - int(text.split(" ", 1)[0])) / 1e6)
            state["deliveries"] += 1
            state["last"] = now

    for client in clients:
        client.on_event = on_event

    acks: list[float] = []
    accepted = [0]

    async def sender(client: Client, name: str) -> None:
        window = asyncio.Semaphore(args.window)

        async def one(n: int) -> None:
            async with window:
                sent = time.monotonic_ns()
                reply = await client.send(f"SEND_MESSAGE:{ROOM}:{sent} message {n} from {name}")
                if reply[-1].startswith("OK:"):
                    accepted[0] += 1
                    acks.append((time.monotonic_ns() - sent) / 1e6)

        await asyncio.gather(*(one(n) for n in range(args.messages)))

    login_rss = peak_rss_mb(environment.server.pid)
    reset = reset_peak_rss(environment.server.pid)
    cpu_before = cpu_seconds(environment.server.pid)
    own_before = time.process_time()
    started = time.monotonic_ns()
    await asyncio.gather(*(sender(clients[i], names[i]) for i in range(args.senders)))
    send_done = time.monotonic_ns()
    expected = accepted[0] * (args.clients - 1)
    deadline = time.monotonic() + 60
    while state["deliveries"] < expected and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    cpu_used = cpu_seconds(environment.server.pid) - cpu_before
    own_used = time.process_time() - own_before
    stored = environment.sql(
        "SELECT count(*) FROM messages m JOIN rooms r ON r.id = m.room_id WHERE r.name = %s", (ROOM,)
    )[0][0]
    for client in clients:
        client.close()
    send_seconds = (send_done - started) / 1e9
    delivery_seconds = (max(state["last"], send_done) - started) / 1e9
    return {
        "accepted": accepted[0],
        "stored": stored,
        "send_seconds": send_seconds,
        "deliveries": state["deliveries"],
        "expected": expected,
        "delivery_seconds": delivery_seconds,
        "latencies": latencies,
        "acks": acks,
        "cpu": cpu_used,
        "client_cpu": own_used,
        "rss": peak_rss_mb(environment.server.pid),
        "login_rss": login_rss,
        "rss_reset": reset,
    }


def main() -> None:
    """Parse the options, run, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=50, help="connections in the room (default 50)")
    parser.add_argument("--senders", type=int, default=10, help="how many of them send (default 10)")
    parser.add_argument("--messages", type=int, default=200, help="messages per sender (default 200)")
    parser.add_argument("--window", type=int, default=1, help="unanswered requests per sender (default 1)")
    parser.add_argument("--pool-size", type=int, default=4, help="the server's database connections (default 4)")
    args = parser.parse_args()
    with Environment(args.pool_size) as environment:
        figures = asyncio.run(run(args, environment))
    print(f"machine: {machine()}")
    print(f"setup: {args.clients} clients in one room, {args.senders} sending {args.messages} messages each, "
          f"window {args.window}, server pool {args.pool_size}")
    print(f"accepted: {figures['accepted']} messages in {figures['send_seconds']:.2f} s = "
          f"{figures['accepted'] / figures['send_seconds']:.0f} messages/s (stored: {figures['stored']})")
    print(f"OK latency: p50 {percentile(figures['acks'], 0.5):.1f} ms, p99 {percentile(figures['acks'], 0.99):.1f} ms")
    print(f"delivered: {figures['deliveries']} of {figures['expected']} events in {figures['delivery_seconds']:.2f} s = "
          f"{figures['deliveries'] / figures['delivery_seconds']:.0f} deliveries/s")
    print(f"delivery latency (send to MESSAGE received): p50 {percentile(figures['latencies'], 0.5):.1f} ms, "
          f"p99 {percentile(figures['latencies'], 0.99):.1f} ms, max {max(figures['latencies'], default=0):.1f} ms")
    during = "during the messages" if figures["rss_reset"] else "since start (could not reset the peak)"
    print(f"server: {figures['cpu']:.1f} s CPU during the run; peak RSS {figures['rss']:.1f} MiB {during}, "
          f"{figures['login_rss']:.1f} MiB at the end of the logins (argon2 takes 64 MiB per concurrent login)")
    print(f"the benchmark's own clients used {figures['client_cpu']:.1f} s CPU (they share the machine)")


if __name__ == "__main__":
    main()
