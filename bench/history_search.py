"""
Benchmark of history and search in a big room; prints figures, asserts
nothing.

It starts an embedded Postgres in a temporary directory and the real server
as a C{twistd -n lairchat --no-rate-limit} subprocess on a loopback port,
bulk-loads C{--rows} messages (default 1,000,000) into one room with COPY
(the room and search indexes are dropped for the load and rebuilt by
applying the schema again, as at every start), then measures over the
protocol, one request at a time, the latency p50/p99 of:

  - GET_HISTORY of the newest page (50, and 200 messages);
  - GET_HISTORY pages far back in the room (a random before_id);
  - SEARCH_MESSAGES for a rare word (100 messages), a medium one (10,000),
    the most common word of the vocabulary, and a two-word phrase.

The texts are 6-17 words drawn from a vocabulary of 5,000 made-up words
with a Zipf distribution, so word frequencies look like a real language's.
It also prints the query plans (EXPLAIN ANALYZE) of the history page and
of a search, to show which indexes they use.

    .venv/bin/python bench/history_search.py [--rows 1000000]
"""

import argparse
import asyncio
import io
import itertools
import random
import time
from datetime import datetime, timedelta, timezone

import psycopg2
from harness import Client, Environment, machine, percentile

from lairchat.store import schema_text

ROOM = "bigroom"
RARE, MEDIUM = "needle", "haystack"
RARE_COUNT, MEDIUM_COUNT = 100, 10_000


def vocabulary(size: int) -> list[str]:
    """C{size} distinct made-up words, the same every run."""
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi", "ze", "po", "da", "fe", "gu", "ha", "ji", "bo"]
    words = []
    for length in (2, 3, 4):
        for combination in itertools.product(syllables, repeat=length):
            words.append("".join(combination))
            if len(words) == size:
                return words
    return words


def load(environment: Environment, room_id: int, sender_id: int, rows: int) -> float:
    """COPY C{rows} messages into the room; the seconds it took, indexes rebuilt included."""
    started = time.perf_counter()
    words = vocabulary(5000)
    weights = list(itertools.accumulate(1 / (rank + 1) ** 1.07 for rank in range(len(words))))
    chooser = random.Random(1)
    rare = set(chooser.sample(range(rows), RARE_COUNT))
    medium = set(chooser.sample(range(rows), MEDIUM_COUNT))
    begin = datetime.now(timezone.utc) - timedelta(seconds=2 * rows)
    connection = psycopg2.connect(environment.dsn)
    try:
        with connection.cursor() as cursor:
            for index in ("messages_room_id", "messages_search", "messages_parent"):
                cursor.execute(f"DROP INDEX IF EXISTS {index}")
            connection.commit()
            chunk = 100_000
            for first in range(0, rows, chunk):
                buffer = io.StringIO()
                for i in range(first, min(rows, first + chunk)):
                    text = chooser.choices(words, cum_weights=weights, k=chooser.randint(6, 17))
                    if i in rare:
                        text[chooser.randrange(len(text))] = RARE
                    if i in medium:
                        text[chooser.randrange(len(text))] = MEDIUM
                    moment = (begin + timedelta(seconds=2 * i)).isoformat()
                    buffer.write(f"{room_id}\t{sender_id}\t{' '.join(text)}\t{moment}\n")
                buffer.seek(0)
                cursor.copy_expert("COPY messages (room_id, sender_id, body, created_at) FROM STDIN", buffer)
                connection.commit()
            cursor.execute("SET maintenance_work_mem = '512MB'")
            cursor.execute(schema_text())
            connection.commit()
    finally:
        connection.close()
    environment.sql("VACUUM ANALYZE messages", autocommit=True)
    return time.perf_counter() - started


async def timed(client: Client, requests: list[str], budget: float) -> tuple[list[float], int]:
    """Send the requests one at a time (until C{budget} seconds ran out); latencies in ms, lines of the last."""
    latencies = []
    lines = 0
    deadline = time.monotonic() + budget
    for request in requests:
        started = time.monotonic_ns()
        reply = await client.ok(request)
        latencies.append((time.monotonic_ns() - started) / 1e6)
        lines = len(reply) - 1
        if time.monotonic() > deadline:
            break
    return latencies, lines


def plan(environment: Environment, statement: str, params: tuple) -> list[str]:
    """The EXPLAIN ANALYZE lines of a statement."""
    return [r[0] for r in environment.sql("EXPLAIN (ANALYZE, COSTS OFF) " + statement, params)]


async def run(args: argparse.Namespace, environment: Environment) -> None:
    """Load, measure, print."""
    environment.start_server()
    await environment.wait_for_server()
    environment.seed_users(["reader", "outsider"])
    room_id, reader_id = environment.sql(
        "WITH r AS (INSERT INTO rooms (name, owner_id) SELECT %s, id FROM users WHERE username = 'reader' "
        "RETURNING id, owner_id) "
        "INSERT INTO room_members (room_id, user_id, role) SELECT id, owner_id, 'owner' FROM r "
        "RETURNING room_id, user_id",
        (ROOM,),
    )[0]
    print(f"machine: {machine()}")
    seconds = await asyncio.get_running_loop().run_in_executor(None, load, environment, room_id, reader_id, args.rows)
    count, first_id, last_id = environment.sql(
        "SELECT count(*), min(id), max(id) FROM messages WHERE room_id = %s", (room_id,)
    )[0]
    size = environment.sql("SELECT pg_size_pretty(pg_total_relation_size('messages'))")[0][0]
    print(f"loaded {count} messages into {ROOM} in {seconds:.1f} s (indexes rebuilt included); table and indexes {size}")
    common = environment.sql(
        "SELECT word, ndoc FROM ts_stat('SELECT search FROM messages') ORDER BY ndoc DESC LIMIT 2"
    )
    phrase = f'"{common[0][0]} {common[1][0]}"'

    client = await Client.login(environment.port, "reader")
    await client.ok(f"GET_HISTORY:{ROOM}:1")
    chooser = random.Random(2)
    figures = []
    for title, requests, budget in [
        ("GET_HISTORY newest 50", [f"GET_HISTORY:{ROOM}"] * 300, 30),
        ("GET_HISTORY newest 200", [f"GET_HISTORY:{ROOM}:200"] * 200, 30),
        ("GET_HISTORY 50 before a random id", [f"GET_HISTORY:{ROOM}:50:{chooser.randint(first_id + 50, last_id)}"
                                               for _ in range(300)], 30),
        (f"SEARCH_MESSAGES rare word ({RARE_COUNT} matches)", [f"SEARCH_MESSAGES:{RARE}"] * 100, 30),
        (f"SEARCH_MESSAGES medium word ({MEDIUM_COUNT} matches)", [f"SEARCH_MESSAGES:{MEDIUM}"] * 50, 30),
        (f"SEARCH_MESSAGES most common word ({common[0][1]} matches)", [f"SEARCH_MESSAGES:{common[0][0]}"] * 20, 45),
        (f"SEARCH_MESSAGES phrase {phrase}", [f"SEARCH_MESSAGES:{phrase}"] * 20, 45),
    ]:
        latencies, lines = await timed(client, requests, budget)
        figures.append((title, latencies, lines))
        print(f"{title}: n={len(latencies)} p50 {percentile(latencies, 0.5):.1f} ms, "
              f"p99 {percentile(latencies, 0.99):.1f} ms ({lines} lines each)")
    client.close()

    print("\nplan of a history page (GET_HISTORY):")
    for line in plan(environment,
                     "SELECT m.id FROM messages m WHERE m.room_id = %s AND m.deleted_at IS NULL AND m.id < %s "
                     "ORDER BY m.id DESC LIMIT 50", (room_id, last_id // 2)):
        print("   ", line)
    print("plan of the membership check:")
    for line in plan(environment, "SELECT role FROM room_members WHERE room_id = %s AND user_id = %s",
                     (room_id, reader_id)):
        print("   ", line)
    print(f"plan of a search (SEARCH_MESSAGES:{MEDIUM}, scoped to the reader's rooms):")
    for line in plan(environment,
                     "SELECT m.id, ts_rank(m.search, q) AS rank FROM messages m, websearch_to_tsquery('simple', %s) q "
                     "WHERE m.search @@ q AND m.deleted_at IS NULL "
                     "AND m.room_id IN (SELECT room_id FROM room_members WHERE user_id = %s) "
                     "ORDER BY rank DESC, m.id DESC LIMIT 20", (MEDIUM, reader_id)):
        print("   ", line)


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages to load (default 1,000,000)")
    args = parser.parse_args()
    with Environment() as environment:
        asyncio.run(run(args, environment))


if __name__ == "__main__":
    main()
