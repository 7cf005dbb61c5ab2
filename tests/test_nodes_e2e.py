"""
End-to-end tests of several nodes on one database: two or three
lairchat services (and, once, a real C{twistd lairchat} process) over one
Postgres, real clients on real TCP ports.  A client must not be able to
tell which node it is connected to: every event reaches every connection
it is for, on whatever node, exactly once and in the order the database
committed it; presence, sessions and server roles hold across nodes; and
a node that dies takes its users offline on the others.

They never assert on timing: they wait for events with bounded timeouts.
"""

import itertools
import os
import re
import sys
from collections import Counter
from pathlib import Path

from psycopg2.extensions import make_dsn
from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from lairchat.node import HEARTBEAT_SHARE
from lairchat.store import Database
from tests.support import (
    NODE_TIMEOUT,
    TEST_CONFIG,
    TIMEOUT,
    LineClient,
    RunningServer,
    fresh_database,
    start_nodes,
    test_dsn,
)

_databases = itertools.count(1)
"""Numbers for the databases tests make."""

REPOSITORY = Path(__file__).resolve().parents[1]
"""The source tree (a C{twistd} subprocess runs its code)."""

PASSWORD = "correct horse 9"
"""Every test user's password."""

_labels = itertools.count(1)
"""Labels of pipelined requests (see L{burst})."""


def coroutine(awaitable) -> Deferred:
    """A coroutine as a Deferred (for L{gatherResults})."""
    return Deferred.fromCoroutine(awaitable)


async def login(node: RunningServer, name: str, password: str = PASSWORD) -> LineClient:
    """A new connection to C{node}, logged in as the existing user C{name}."""
    client = await node.connect()
    reply = await client.request(f"LOGIN:{name}:{password}")
    assert reply[-1].startswith(f"OK:LOGIN:{name}:"), reply
    return client


async def burst(client: LineClient, room: str, texts: list[str]) -> dict[str, int]:
    """
    Send one C{SEND_MESSAGE} per text back to back, without waiting for
    the replies, then read every reply (events met meanwhile are kept).

    @return: the message id of each text, from its C{OK}.
    """
    pending = {}
    for text in texts:
        prefix = f"@label=p{next(_labels)} "
        client.send(f"{prefix}SEND_MESSAGE:{room}:{text}")
        pending[prefix] = text
    ids = {}
    while pending:
        line = await client.line()
        for prefix, text in list(pending.items()):
            if line.startswith(prefix):
                reply = line[len(prefix):]
                assert reply.startswith(f"OK:SEND_MESSAGE:{room}:"), (text, reply)
                ids[text] = int(reply.split(":")[3])
                del pending[prefix]
                break
        else:
            client.events.append(line)
    return ids


async def room_messages(client: LineClient, room: str, count: int, timeout: float = TIMEOUT) -> list[tuple]:
    """The next C{count} C{MESSAGE} events of C{room}, as C{(id, sender, text)}, in arrival order."""
    found = []
    for _ in range(count):
        line = await client.event(f"MESSAGE:{room}:", timeout)
        _, _, number, sender, _, text = line.split(":", 5)
        found.append((int(number), sender, text))
    return found


async def recreate_hall(test: TestCase, alice: LineClient, bob: LineClient, joiner: LineClient) -> None:
    """
    alice creates hall and writes in it, then leaves it (so it is deleted);
    bob creates it again, and alice joins the new one on C{joiner} (one of
    her connections), which bob hears of.
    """
    await alice.ok("CREATE_ROOM:hall")
    await alice.ok("SEND_MESSAGE:hall:the first hall")
    await alice.ok("LEAVE_ROOM:hall")
    await bob.ok("CREATE_ROOM:hall")
    await joiner.ok("JOIN_ROOM:hall")
    test.assertEqual(await bob.event("USER_JOINED:"), "USER_JOINED:hall:alice")


def said(line: str) -> list[str]:
    """The sender and the text of a C{MESSAGE} event line."""
    _, _, _, sender, _, text = line.split(":", 5)
    return [sender, text]


async def wait_closed(client: LineClient, timeout: float = TIMEOUT) -> None:
    """Wait (at most C{timeout} seconds) until the server closed C{client}."""
    if client.is_closed:
        return
    done: Deferred = Deferred()
    client.closed.addBoth(lambda result: (None if done.called else done.callback(None), result)[1])
    done.addTimeout(timeout, reactor)
    await done


LISTENING = re.compile(r"lairchat listening on IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")
"""The line of a node's log that says which port it listens on."""


async def one_row(sql: str, params=None) -> tuple:
    """The first row of C{sql} on the test database, on a connection of its own."""
    db = Database(test_dsn(), 1)
    await db.start()
    try:
        rows = await db.fetchall(sql, params)
    finally:
        db.close()
    return rows[0] if rows else ()


class _Collect(ProcessProtocol):
    """Keeps a subprocess's output; C{ended} fires when it has exited and was reaped."""

    def __init__(self) -> None:
        self.output = b""
        self.ended: Deferred = Deferred()
        self.running = True

    def outReceived(self, data: bytes) -> None:
        """Keep the output."""
        self.output += data

    errReceived = outReceived

    def processEnded(self, reason) -> None:
        """The process exited and was reaped."""
        self.running = False
        self.ended.callback(None)


class TwistdNode:
    """
    A node that is a real C{twistd -n lairchat} subprocess on the test
    database (running this tree's code), so that it can be killed.
    """

    def __init__(self, testcase: TestCase, node_timeout: float = NODE_TIMEOUT) -> None:
        self.testcase = testcase
        self.node_timeout = node_timeout
        self.port = 0  # the port it binds (it asks for any free one): read from its log
        self.directory = Path(testcase.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.protocol = _Collect()
        self.transport = None

    def log(self) -> str:
        """The end of the subprocess's log and output (for failure messages)."""
        path = self.directory / "node.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return (text[-4000:] + self.protocol.output.decode(errors="replace")[-2000:]).strip()

    async def start(self, seconds: float = 60.0) -> "TwistdNode":
        """Start the subprocess and wait until it greets a client; it is killed and reaped at cleanup."""
        twistd = Path(sys.executable).parent / "twistd"
        environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
        arguments = [
            str(twistd), "-n", "--pidfile=", f"--logfile={self.directory / 'node.log'}", "lairchat",
            "--dsn", test_dsn(), "--port", "tcp:0:interface=127.0.0.1", "--no-rate-limit",
            "--pool-size", "2", "--node-timeout", str(self.node_timeout),
        ]
        self.transport = reactor.spawnProcess(
            self.protocol, arguments[0], arguments, env=environment, path=str(self.directory))
        self.testcase.addCleanup(self.kill)
        for _ in range(int(seconds / 0.2)):
            if not self.protocol.running:
                raise AssertionError(f"twistd lairchat exited while starting:\n{self.log()}")
            if not self.port:
                # a port chosen here and bound there later could be taken
                # meanwhile (then the test would talk to whatever took it)
                path = self.directory / "node.log"
                found = LISTENING.search(path.read_text(errors="replace")) if path.exists() else None
                if found is None:
                    await deferLater(reactor, 0.2, lambda: None)
                    continue
                self.port = int(found.group(1))
            try:
                client = await self.connect()
            except ConnectionRefusedError:
                await deferLater(reactor, 0.2, lambda: None)
                continue
            await client.close()
            return self
        raise AssertionError(f"twistd lairchat did not start in {seconds} s:\n{self.log()}")

    async def connect(self) -> LineClient:
        """A new client connection, past the greeting."""
        running = RunningServer(self.testcase)
        running.port = self.port
        return await running.connect()

    async def kill(self) -> None:
        """SIGKILL the subprocess (if it still runs) and wait until it was reaped."""
        if self.protocol.running:
            try:
                self.transport.signalProcess("KILL")
            except Exception:
                pass
        ended: Deferred = Deferred()
        self.protocol.ended.addBoth(lambda result: (None if ended.called else ended.callback(None), result)[1])
        ended.addTimeout(30, reactor)
        await ended


class RoomTrafficTests(TestCase):
    """Room events across nodes."""

    timeout = 60

    async def test_messages_once_in_order_on_three_nodes(self):
        """
        Messages sent quickly by clients on nodes A and B reach every member
        on A, B and C (and the senders' other connections) exactly once,
        each sender's in the order sent, every node in the same order; the
        sending connection gets only its OKs.
        """
        a, b, c = await start_nodes(self, 3)
        alice = await a.user("alice")
        alice_c = await login(c, "alice")
        bob = await b.user("bob")
        carol = await c.user("carol")
        dave = await a.user("dave")
        await alice.ok("CREATE_ROOM:hall")
        for name, client in (("bob", bob), ("carol", carol), ("dave", dave)):
            await client.ok("JOIN_ROOM:hall")
            self.assertEqual(await alice.event("USER_JOINED:"), f"USER_JOINED:hall:{name}")
            self.assertEqual(await alice_c.event("USER_JOINED:"), f"USER_JOINED:hall:{name}")

        count = 15
        texts = {"alice": [f"from alice {i}" for i in range(count)], "bob": [f"from bob {i}" for i in range(count)]}
        sent_ids = await gatherResults([
            coroutine(burst(alice, "hall", texts["alice"])), coroutine(burst(bob, "hall", texts["bob"])),
        ])
        ids = {"alice": sent_ids[0], "bob": sent_ids[1]}
        self.assertEqual(len(set(ids["alice"].values()) | set(ids["bob"].values())), 2 * count)

        receivers = {
            "alice on A": (alice, ["bob"]),
            "alice on C": (alice_c, ["alice", "bob"]),
            "bob on B": (bob, ["alice"]),
            "carol on C": (carol, ["alice", "bob"]),
            "dave on A": (dave, ["alice", "bob"]),
        }
        seen = {}
        for who, (client, senders) in receivers.items():
            got = await room_messages(client, "hall", count * len(senders))
            await client.no_event("MESSAGE:")
            for sender in ("alice", "bob"):
                mine = [(number, text) for number, name, text in got if name == sender]
                if sender in senders:
                    self.assertEqual([text for _, text in mine], texts[sender], f"{who}: {sender}'s messages")
                    self.assertEqual([number for number, _ in mine], [ids[sender][t] for t in texts[sender]], who)
                else:
                    self.assertEqual(mine, [], f"{who} got their own messages back")
            seen[who] = [number for number, _, _ in got]
        everything = seen["carol on C"]
        self.assertEqual(seen["alice on C"], everything)
        self.assertEqual(seen["dave on A"], everything)
        for who, sender in (("alice on A", "bob"), ("bob on B", "alice")):
            self.assertEqual(seen[who], [n for n in everything if n in ids[sender].values()], who)

    async def test_membership_topic_and_kick_across_nodes(self):
        """
        USER_JOINED, TOPIC_CHANGED, USER_LEFT and USER_KICKED reach the
        members on the other node; bob, kicked by alice on A while he is
        connected on B (and on A), stops hearing the room on both.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        bob_a = await login(a, "bob")
        carol = await a.user("carol")
        dave = await b.user("dave")
        await alice.ok("CREATE_ROOM:hall")

        await bob.ok("JOIN_ROOM:hall")
        for client in (alice, bob_a):
            self.assertEqual(await client.event("USER_JOINED:"), "USER_JOINED:hall:bob")
        await carol.ok("JOIN_ROOM:hall")
        for client in (alice, bob, bob_a):
            self.assertEqual(await client.event("USER_JOINED:"), "USER_JOINED:hall:carol")
        await dave.ok("JOIN_ROOM:hall")
        for client in (alice, bob, bob_a, carol):
            self.assertEqual(await client.event("USER_JOINED:"), "USER_JOINED:hall:dave")

        self.assertEqual(await alice.request("SET_TOPIC:hall:tea: at five"), ["OK:SET_TOPIC:hall"])
        for client in (bob, bob_a, carol, dave):
            self.assertEqual(await client.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:hall:alice:tea: at five")
        await alice.no_event("TOPIC_CHANGED:")

        self.assertEqual(await carol.request("LEAVE_ROOM:hall"), ["OK:LEAVE_ROOM:hall"])
        for client in (alice, bob, bob_a, dave):
            self.assertEqual(await client.event("USER_LEFT:"), "USER_LEFT:hall:carol")

        self.assertEqual(await alice.request("KICK_USER:hall:bob:be nice"), ["OK:KICK_USER:hall:bob"])
        for client in (bob, bob_a, dave):
            self.assertEqual(await client.event("USER_KICKED:"), "USER_KICKED:hall:bob:alice:be nice")
        self.assertEqual((await bob.request("hello?"))[0].split(":")[:3], ["ERROR", "1111", "NO_CURRENT_ROOM"])

        await alice.ok("SEND_MESSAGE:hall:bob is gone")
        await alice.ok("SET_TOPIC:hall:members only")
        self.assertEqual(said(await dave.event("MESSAGE:")), ["alice", "bob is gone"])
        self.assertEqual(await dave.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:hall:alice:members only")
        for client in (bob, bob_a, carol):
            await client.no_event("MESSAGE:")
            await client.no_event("TOPIC_CHANGED:")
        self.assertEqual(
            sorted((await dave.request("ROOM_MEMBERS:hall"))[:-1]),
            ["MEMBER:hall:alice:owner:online", "MEMBER:hall:dave:member:online"],
        )


    async def test_room_recreated_on_other_node(self):
        """
        A room deleted (its last member left) on A and created again under
        the same name on B: messages sent to that name from A (which knew
        the old room) reach the new room, on both nodes.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await recreate_hall(self, alice, bob, alice)
        await alice.ok("SEND_MESSAGE:hall:the second hall")
        self.assertEqual(said(await bob.event("MESSAGE:")), ["alice", "the second hall"])
        await bob.ok("SEND_MESSAGE:hall:welcome")
        self.assertEqual(said(await alice.event("MESSAGE:")), ["bob", "welcome"])
        history = await bob.request("GET_HISTORY:hall")
        self.assertEqual([line.split(":", 7)[7] for line in history[:-1]], ["the second hall", "welcome"])

    async def test_pipelined_messages_to_a_recreated_room_keep_their_order(self):
        """
        A room known to A by name is deleted and created again on B (its
        sender joins it there, so A's memory of the name is stale); twenty
        messages sent from A without waiting all reach the new room, stored
        and shown in the order sent, each answered in order.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        alice_on_b = await b.connect()
        await alice_on_b.ok(f"LOGIN:alice:{PASSWORD}")
        bob = await b.user("bob")
        await recreate_hall(self, alice, bob, alice_on_b)
        count = 20
        alice.transport.write("".join(f"@label=m{i} SEND_MESSAGE:hall:burst {i}\n"
                                      for i in range(count)).encode("utf-8"))
        replies = []
        while len(replies) < count:
            line = await alice.line()
            label, _, rest = line[len("@label="):].partition(" ")
            if line.startswith("@label=") and rest.startswith(("OK:", "ERROR:")):
                replies.append((label, rest))
        self.assertEqual([label for label, _ in replies], [f"m{i}" for i in range(count)])
        self.assertEqual([rest.split(":")[:3] for _, rest in replies], [["OK", "SEND_MESSAGE", "hall"]] * count)
        ids = [int(rest.split(":")[3]) for _, rest in replies]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual([said(await bob.event("MESSAGE:")) for _ in range(count)],
                         [["alice", f"burst {i}"] for i in range(count)])
        history = await bob.request(f"GET_HISTORY:hall:{count + 5}")
        self.assertEqual([line.split(":", 7)[7] for line in history[:-1]], [f"burst {i}" for i in range(count)])


class DirectMessageTests(TestCase):
    """DMs between users on different nodes, live and offline."""

    timeout = 60

    async def test_live_once_then_offline_at_next_login_on_either_node(self):
        """
        bob online on B gets alice's DM from A once, and not again when he
        logs in anew; a DM sent while he is offline everywhere comes at his
        next login, on B and then on A, once.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")

        [ok] = await alice.request("DM:bob:hello from A")
        _, _, _, number, ts = ok.split(":")
        self.assertEqual(await bob.event("PRIVATE_MESSAGE:"), f"PRIVATE_MESSAGE:alice:bob:{number}:{ts}:hello from A")
        await bob.no_event("PRIVATE_MESSAGE:")
        await alice.no_event("PRIVATE_MESSAGE:")
        bob_again = await login(a, "bob")
        await bob_again.no_event("PRIVATE_MESSAGE:")
        await bob.no_event("PRIVATE_MESSAGE:")

        await bob.close()
        await bob_again.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")

        for turn, node in enumerate((b, a)):
            [ok] = await alice.request(f"DM:bob:while you were away {turn}")
            _, _, _, number, ts = ok.split(":")
            client = await login(node, "bob")
            self.assertEqual(await client.event("PRIVATE_MESSAGE:"),
                             f"PRIVATE_MESSAGE:alice:bob:{number}:{ts}:while you were away {turn}")
            await client.no_event("PRIVATE_MESSAGE:")
            self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:online")
            await client.close()
            self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")

        for node in (a, b):
            client = await login(node, "bob")
            await client.no_event("PRIVATE_MESSAGE:")
            await client.close()


    async def test_dms_racing_a_login_neither_lost_nor_repeated(self):
        """
        alice on A sends DMs one after another while bob, offline, logs in
        on B or on A: every DM sent from just before his login until just
        after it reaches his new connection exactly once, as an offline
        delivery or live.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("DM:bob:hello")
        await bob.event("PRIVATE_MESSAGE:")
        await bob.close()
        self.assertEqual(await alice.event("PRESENCE:bob:"), "PRESENCE:bob:offline")
        notes = itertools.count()

        async def dm() -> int:
            """One DM from alice to bob; its id."""
            [ok] = await alice.request(f"DM:bob:note {next(notes)}")
            return int(ok.split(":")[3])

        wrong = []
        for turn in range(6):
            node = (b, a)[turn % 2]
            sent = [await dm() for _ in range(3)]
            logged_in: list = []

            async def keep_sending() -> None:
                """DMs until bob's login has been answered."""
                while not logged_in:
                    sent.append(await dm())

            sending = coroutine(keep_sending())
            client = await login(node, "bob")
            logged_in.append(client)
            await sending
            sent += [await dm() for _ in range(3)]
            received = []
            while sent[-1] not in received:
                received.append(int((await client.event("PRIVATE_MESSAGE:alice:bob:")).split(":")[3]))
            await deferLater(reactor, 0.3, lambda: None)
            await client.request("PING")
            received += [int(line.split(":")[3]) for line in client.events if line.startswith("PRIVATE_MESSAGE:")]
            lost = sorted(set(sent) - set(received))
            repeated = sorted(number for number, times in Counter(received).items() if times > 1)
            if lost or repeated or set(received) - set(sent):
                wrong.append(f"login {turn} on node {'BA'[turn % 2]}: sent {sent[0]}..{sent[-1]}, "
                             f"lost {lost}, repeated {repeated}, received in order {received}")
            await client.close()
            self.assertEqual(await alice.event("PRESENCE:bob:offline"), "PRESENCE:bob:offline")
        self.assertEqual(wrong, [])


class PresenceTests(TestCase):
    """Who is online, across nodes."""

    timeout = 60

    async def test_presence_across_nodes(self):
        """
        REQUEST_USER_LIST and ROOM_MEMBERS on A count a user connected only
        on B; PRESENCE reaches the co-member on the other node; a user on
        both nodes goes offline only with their last connection, whichever
        node it is on.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        for client in (alice, bob):
            self.assertEqual(await client.request("REQUEST_USER_LIST"),
                             ["USER:alice", "USER:bob", "OK:REQUEST_USER_LIST:2"])
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:hall:bob")
        members = await alice.request("ROOM_MEMBERS:hall")
        self.assertEqual(members[-1], "OK:ROOM_MEMBERS:2")
        self.assertEqual(sorted(members[:-1]), ["MEMBER:hall:alice:owner:online", "MEMBER:hall:bob:member:online"])

        # bob on B and on A; the connection on A (alice's node) closes first.
        bob_a = await login(a, "bob")
        await bob_a.close()
        await alice.no_event("PRESENCE:")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "USER:bob", "OK:REQUEST_USER_LIST:2"])
        await bob.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "OK:REQUEST_USER_LIST:1"])
        self.assertIn("MEMBER:hall:bob:member:offline", await alice.request("ROOM_MEMBERS:hall"))

        # Back on B: online; then on A too; the connection on B closes first.
        bob = await login(b, "bob")
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:online")
        self.assertIn("MEMBER:hall:bob:member:online", await alice.request("ROOM_MEMBERS:hall"))
        bob_a = await login(a, "bob")
        await alice.no_event("PRESENCE:")
        await bob.close()
        await alice.no_event("PRESENCE:")
        self.assertIn("MEMBER:hall:bob:member:online", await alice.request("ROOM_MEMBERS:hall"))
        await bob_a.close()
        self.assertEqual(await alice.event("PRESENCE:"), "PRESENCE:bob:offline")
        await alice.no_event("PRESENCE:")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "OK:REQUEST_USER_LIST:1"])

        # alice's own presence reaches bob on the other node.
        bob = await login(b, "bob")
        await alice.close()
        self.assertEqual(await bob.event("PRESENCE:"), "PRESENCE:alice:offline")
        alice = await login(a, "alice")
        self.assertEqual(await bob.event("PRESENCE:"), "PRESENCE:alice:online")
        await bob.no_event("PRESENCE:")


class InvitationTests(TestCase):
    """Invitations between users on different nodes."""

    timeout = 60

    async def test_invite_accept_decline_revoke(self):
        """
        An invitation from A reaches B; its acceptance on B reaches the
        sender and the room on A, and bob then hears the room on B; a
        decline and a revocation cross the nodes too.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        alice_b = await login(b, "alice")
        bob = await b.user("bob")
        carol = await b.user("carol")
        dave = await b.user("dave")
        await alice.ok("CREATE_ROOM:den:private")

        [ok] = await alice.request("INVITE_USER:bob:den:come in")
        _, _, number, _, _, expires = ok.split(":")
        self.assertEqual(ok, f"OK:INVITE_USER:{number}:bob:den:{expires}")
        self.assertEqual(await bob.event("INVITATION_RECEIVED:"),
                         f"INVITATION_RECEIVED:{number}:alice:den:member:{expires}:come in")
        self.assertEqual(await bob.request("ACCEPT_INVITATION:LATEST"), [f"OK:ACCEPT_INVITATION:{number}:den"])
        for client in (alice, alice_b):
            self.assertEqual(await client.event("INVITATION_ACCEPTED:"), f"INVITATION_ACCEPTED:{number}:bob:den")
            self.assertEqual(await client.event("USER_JOINED:"), "USER_JOINED:den:bob")
        await alice.ok("SEND_MESSAGE:den:welcome")
        self.assertEqual(said(await bob.event("MESSAGE:")), ["alice", "welcome"])

        [ok] = await alice.request("INVITE_USER:carol:den")
        number = ok.split(":")[2]
        await carol.event("INVITATION_RECEIVED:")
        self.assertEqual(await carol.request("DECLINE_INVITATION:den:busy"), [f"OK:DECLINE_INVITATION:{number}:den"])
        for client in (alice, alice_b):
            self.assertEqual(await client.event("INVITATION_DECLINED:"), f"INVITATION_DECLINED:{number}:carol:den")

        [ok] = await alice.request("INVITE_USER:dave:den")
        number = ok.split(":")[2]
        await dave.event("INVITATION_RECEIVED:")
        self.assertEqual(await alice.request(f"REVOKE_INVITATION:{number}"), [f"OK:REVOKE_INVITATION:{number}"])
        self.assertEqual(await dave.event("INVITATION_REVOKED:"), f"INVITATION_REVOKED:{number}:den:alice")
        for client in (alice, alice_b, bob, carol, dave):
            await client.no_event("INVITATION_")

    async def test_expiry_announced_on_both_nodes_once(self):
        """
        With a two-second lifetime and both nodes sweeping, the expiry of an
        invitation from alice on A to bob on B reaches each of them once
        (and bob is reminded at most once).
        """
        a, b = await start_nodes(self, 2, invite_ttl=2, sweep_interval=0.5)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("CREATE_ROOM:den:private")
        [ok] = await alice.request("INVITE_USER:bob:den")
        number = ok.split(":")[2]
        self.assertTrue((await bob.event("INVITATION_RECEIVED:")).startswith(f"INVITATION_RECEIVED:{number}:alice:den:"))
        self.assertEqual(await alice.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:den")
        self.assertEqual(await bob.event("INVITATION_EXPIRED:"), f"INVITATION_EXPIRED:{number}:den")
        await alice.no_event("INVITATION_EXPIRED:", wait=1.0)
        await bob.no_event("INVITATION_EXPIRED:")
        reminders = [line for line in bob.events if line.startswith("INVITATION_REMINDER:")]
        self.assertLessEqual(len(reminders), 1, reminders)
        self.assertEqual(await bob.request(f"ACCEPT_INVITATION:{number}"),
                         ["ERROR:1502:GONE:this invitation has expired"])


class AdministrationTests(TestCase):
    """Server administration on one node acting on connections on another."""

    timeout = 60

    async def nodes(self):
        """Nodes A and B; root (a server admin) on A, bob on B and on A."""
        a, b = await start_nodes(self, 2, admins=("root",))
        root = await a.user("root")
        bob = await b.user("bob")
        bob_a = await login(a, "bob")
        return a, b, root, bob, bob_a

    async def test_set_user_role(self):
        """
        SET_USER_ROLE on A gives bob's connection on B the new role (seen
        by WHOAMI once B has read a DM root sent after it).
        """
        a, b, root, bob, bob_a = await self.nodes()
        self.assertEqual(await bob.request("WHOAMI"), ["OK:WHOAMI:bob:user"])
        self.assertEqual(await root.request("SET_USER_ROLE:bob:admin"), ["OK:SET_USER_ROLE:bob:admin"])
        await root.ok("DM:bob:you are an admin now")
        await bob.event("PRIVATE_MESSAGE:root:bob:")
        self.assertEqual(await bob.request("WHOAMI"), ["OK:WHOAMI:bob:admin"])
        self.assertEqual(await bob_a.request("WHOAMI"), ["OK:WHOAMI:bob:admin"])
        self.assertEqual((await bob.request("SERVER_STATS"))[-1], "OK:SERVER_STATS")

    async def test_change_password_logs_out_other_node(self):
        """
        CHANGE_PASSWORD on A logs out bob's connection on B (a
        SYSTEM_MESSAGE, then WHOAMI is 1001); the connection on A stays.
        """
        a, b, root, bob, bob_a = await self.nodes()
        self.assertEqual(await bob_a.request(f"CHANGE_PASSWORD:{PASSWORD}:battery staple 10"),
                         ["OK:CHANGE_PASSWORD"])
        self.assertEqual(await bob.event("SYSTEM_MESSAGE:"), "SYSTEM_MESSAGE:your password was changed; log in again")
        self.assertTrue((await bob.request("WHOAMI"))[0].startswith("ERROR:1001:"))
        self.assertEqual(await bob_a.request("WHOAMI"), ["OK:WHOAMI:bob:user"])
        await bob_a.no_event("SYSTEM_MESSAGE:")
        self.assertTrue((await bob.request(f"LOGIN:bob:{PASSWORD}"))[0].startswith("ERROR:1004:"))
        self.assertTrue((await bob.request("LOGIN:bob:battery staple 10"))[-1].startswith("OK:LOGIN:bob:"))

    async def test_suspend_closes_connections_on_other_node(self):
        """
        SUSPEND_USER on A: bob's connection on B gets the SYSTEM_MESSAGE
        and is closed (so is the one on A); he cannot log in on B.
        """
        a, b, root, bob, bob_a = await self.nodes()
        self.assertEqual(await root.request("SUSPEND_USER:bob:spam"), ["OK:SUSPEND_USER:bob"])
        for client in (bob, bob_a):
            self.assertEqual(await client.event("SYSTEM_MESSAGE:"), "SYSTEM_MESSAGE:your account was suspended: spam")
            await wait_closed(client)
        again = await b.connect()
        self.assertEqual(await again.request(f"LOGIN:bob:{PASSWORD}"),
                         ["ERROR:1404:ACCESS_DENIED:this account is suspended"])
        self.assertEqual(await root.request("REQUEST_USER_LIST"), ["USER:root", "OK:REQUEST_USER_LIST:1"])


class NodeFailureTests(TestCase):
    """Nodes that die, listeners that drop, nodes that start together."""

    timeout = 90

    async def test_killed_node(self):
        """
        A C{twistd} node killed with SIGKILL: within the survivors'
        node_timeout (plus a margin) zed, connected only there, is
        announced offline once on both surviving nodes and leaves the user
        list, while yan, connected there and on B, stays online; the
        survivors go on talking, and zed can come back on a surviving node.
        """
        a, b = await start_nodes(self, 2)
        doomed = await TwistdNode(self).start()
        alice = await a.user("alice")
        carol = await b.user("carol")
        zed = await doomed.connect()
        self.assertTrue((await zed.request(f"REGISTER:zed:{PASSWORD}"))[-1].startswith("OK:REGISTER:zed:"))
        yan = await doomed.connect()
        self.assertTrue((await yan.request(f"REGISTER:yan:{PASSWORD}"))[-1].startswith("OK:REGISTER:yan:"))
        yan_b = await login(b, "yan")
        await alice.ok("CREATE_ROOM:hall")
        for name, client in (("carol", carol), ("zed", zed), ("yan", yan)):
            await client.ok("JOIN_ROOM:hall")
            self.assertEqual(await alice.event("USER_JOINED:"), f"USER_JOINED:hall:{name}")
        await alice.ok("SEND_MESSAGE:hall:hello zed")
        for client in (zed, yan, yan_b, carol):
            self.assertEqual(said(await client.event("MESSAGE:")), ["alice", "hello zed"])
        self.assertEqual(await alice.request("REQUEST_USER_LIST"),
                         ["USER:alice", "USER:carol", "USER:yan", "USER:zed", "OK:REQUEST_USER_LIST:4"])

        # a server process freezes its startup heap (a test's service does
        # not), and served all of the above after that
        self.assertIn("objects of the started server left out of garbage collection",
                      (doomed.directory / "node.log").read_text(errors="replace"))

        await doomed.kill()
        bound = NODE_TIMEOUT + 10
        for client in (alice, carol):
            self.assertEqual(await client.event("PRESENCE:zed:", timeout=bound), "PRESENCE:zed:offline")
        await alice.no_event("PRESENCE:", wait=1.0)
        await carol.no_event("PRESENCE:")
        for client in (alice, carol):
            self.assertEqual(await client.request("REQUEST_USER_LIST"),
                             ["USER:alice", "USER:carol", "USER:yan", "OK:REQUEST_USER_LIST:3"])
        members = await alice.request("ROOM_MEMBERS:hall")
        self.assertIn("MEMBER:hall:zed:member:offline", members)
        self.assertIn("MEMBER:hall:yan:member:online", members)
        self.assertEqual(await one_row("SELECT count(*) FROM nodes"), (2,))

        await alice.ok("SEND_MESSAGE:hall:zed is gone")
        for client in (carol, yan_b):
            self.assertEqual(said(await client.event("MESSAGE:")), ["alice", "zed is gone"])
        await carol.ok("DM:alice:still here")
        self.assertTrue((await alice.event("PRIVATE_MESSAGE:")).endswith(":still here"))
        zed = await login(a, "zed")
        for client in (alice, carol):
            self.assertEqual(await client.event("PRESENCE:"), "PRESENCE:zed:online")
        await alice.ok("SEND_MESSAGE:hall:welcome back")
        self.assertEqual(said(await zed.event("MESSAGE:")), ["alice", "welcome back"])

    async def test_node_stopped(self):
        """
        A node stopped in the ordinary way closes its connections and
        leaves the nodes table; its users are announced offline on the
        other node at once (no node_timeout to wait for).
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        await alice.event("USER_JOINED:hall:bob")
        await b.stop()
        await wait_closed(bob)
        self.assertEqual(await alice.event("PRESENCE:bob:"), "PRESENCE:bob:offline")
        await alice.no_event("PRESENCE:")
        self.assertEqual(await one_row("SELECT count(*) FROM nodes"), (1,))
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "OK:REQUEST_USER_LIST:1"])

    async def test_node_taken_for_dead_comes_back(self):
        """
        A node that stalls (its heartbeat stops for longer than the
        node_timeout) has its users announced offline by the others; at its
        next heartbeat it registers again and announces them online; they
        kept hearing the room.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        await alice.event("USER_JOINED:hall:bob")
        heartbeat = b.service._node._heartbeat
        heartbeat.stop()
        bound = NODE_TIMEOUT + 10
        self.assertEqual(await alice.event("PRESENCE:bob:", timeout=bound), "PRESENCE:bob:offline")
        self.assertEqual(await one_row("SELECT count(*) FROM nodes WHERE id = %s", (b.server.node,)), (0,))
        await alice.ok("SEND_MESSAGE:hall:are you there?")
        self.assertEqual(said(await bob.event("MESSAGE:")), ["alice", "are you there?"])
        heartbeat.start(NODE_TIMEOUT / HEARTBEAT_SHARE, now=True)
        self.assertEqual(await alice.event("PRESENCE:bob:", timeout=bound), "PRESENCE:bob:online")
        await alice.no_event("PRESENCE:")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "USER:bob", "OK:REQUEST_USER_LIST:2"])
        self.assertEqual(await one_row("SELECT count(*) FROM nodes"), (2,))
        await alice.ok("SEND_MESSAGE:hall:still there?")
        self.assertEqual(said(await bob.event("MESSAGE:")), ["alice", "still there?"])
        await bob.close()
        self.assertEqual(await alice.event("PRESENCE:bob:"), "PRESENCE:bob:offline")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"), ["USER:alice", "OK:REQUEST_USER_LIST:1"])

    async def test_listener_restarted(self):
        """
        Node B's LISTEN connection is terminated while alice on A keeps
        sending: bob on B gets every message once and in order, and B
        listens again.
        """
        a, b = await start_nodes(self, 2)
        alice = await a.user("alice")
        bob = await b.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        await alice.event("USER_JOINED:hall:bob")
        listener = b.service._node._listener._connection._connection.get_backend_pid()
        listening = await one_row("SELECT array_agg(pid ORDER BY pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%'")
        self.assertIn(listener, listening[0])

        texts = [f"number {i}" for i in range(40)]

        async def send() -> list[int]:
            """alice sends each text, one request after the other."""
            ids = []
            for text in texts:
                [ok] = await alice.request(f"SEND_MESSAGE:hall:{text}")
                ids.append(int(ok.split(":")[3]))
            return ids

        sending = coroutine(send())
        got = await room_messages(bob, "hall", 5)
        self.assertEqual(await one_row("SELECT pg_terminate_backend(%s)", (listener,)), (True,))
        got += await room_messages(bob, "hall", len(texts) - 5)
        ids = await sending
        await bob.no_event("MESSAGE:")
        self.assertEqual(got, [(number, "alice", text) for number, text in zip(ids, texts)])

        for _ in range(100):
            renewed = await one_row(
                "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'LISTEN%%' AND pid <> %s", (listener,))
            if renewed == (len(listening[0]),):
                break
            await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual(renewed, (len(listening[0]),), "node B does not listen again")
        await alice.ok("SEND_MESSAGE:hall:after the restart")
        self.assertEqual(said(await bob.event("MESSAGE:")), ["alice", "after the restart"])

    async def test_three_nodes_started_at_once_on_an_empty_database(self):
        """
        Three nodes started together on a database with no schema yet:
        the schema is applied once, under its lock, and all three serve.
        """
        name = f"lairchat_empty_{os.getpid()}_{next(_databases)}"
        admin = Database(test_dsn(), 1)
        await admin.start()
        self.addCleanup(admin.close)
        await admin.execute(f"CREATE DATABASE {name}")
        self.addCleanup(lambda: coroutine(admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
        dsn = make_dsn(test_dsn(), dbname=name)
        nodes = await gatherResults([coroutine(RunningServer(self, TEST_CONFIG, NODE_TIMEOUT, dsn).start())
                                     for _ in range(3)])
        empty = Database(dsn, 1)
        await empty.start()
        self.addCleanup(empty.close)
        self.assertEqual(await empty.fetchall("SELECT version FROM schema_version"), [(1,)])
        self.assertEqual(await empty.fetchall("SELECT count(*) FROM nodes"), [(3,)])
        clients = [await node.user(name) for node, name in zip(nodes, ["ann", "ben", "cat"])]
        for client in clients:
            self.assertEqual(await client.request("REQUEST_USER_LIST"),
                             ["USER:ann", "USER:ben", "USER:cat", "OK:REQUEST_USER_LIST:3"])

    async def test_three_nodes_started_at_once(self):
        """
        Three nodes started together on one database each register, and
        users on each of them see one another and talk.
        """
        await fresh_database(self)
        nodes = await gatherResults([coroutine(RunningServer(self, TEST_CONFIG, NODE_TIMEOUT).start())
                                     for _ in range(3)])
        self.assertEqual(len({node.server.node for node in nodes}), 3)
        self.assertEqual(await one_row("SELECT count(*) FROM nodes"), (3,))
        names = ["ann", "ben", "cat"]
        clients = [await node.user(name) for node, name in zip(nodes, names)]
        for client in clients:
            self.assertEqual(await client.request("REQUEST_USER_LIST"),
                             ["USER:ann", "USER:ben", "USER:cat", "OK:REQUEST_USER_LIST:3"])
        await clients[0].ok("CREATE_ROOM:hall")
        for client in clients[1:]:
            await client.ok("JOIN_ROOM:hall")
        for name in names[1:]:
            await clients[0].event(f"USER_JOINED:hall:{name}")
        for sender, name in zip(clients, names):
            await sender.ok(f"SEND_MESSAGE:hall:hi from {name}")
            for receiver in clients:
                if receiver is not sender:
                    self.assertEqual(said(await receiver.event("MESSAGE:")), [name, f"hi from {name}"])
        for client in clients:
            await client.no_event("MESSAGE:")
