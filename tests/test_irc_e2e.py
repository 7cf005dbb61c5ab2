"""
End-to-end tests of the IRC front end: the real server on real TCP ports
over the real database, an IRC client (L{IRCClient}, a small line
receiver) and a line-protocol client (L{tests.support.LineClient}) in the
same room, on one node and on two.
"""

import base64
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.protocols.basic import LineOnlyReceiver
from twisted.trial.unittest import TestCase

from lairchat.irc.message import Message, parse, serialize
from tests.support import TIMEOUT, start_nodes, start_server

PASSWORD = "correct horse 9"


class IRCClient(LineOnlyReceiver):
    """
    A test IRC client: sends messages, reads parsed ones; messages passed
    over while waiting for another are kept for later.
    """

    delimiter = b"\n"
    MAX_LENGTH = 1_000_000

    def __init__(self) -> None:
        self._messages: DeferredQueue = DeferredQueue()
        self.kept: list[Message] = []
        self.closed: Deferred = Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Queue a parsed message."""
        self._messages.put(parse(line.rstrip(b"\r").decode("utf-8")))

    def connectionLost(self, reason: Any = None) -> None:
        """Note the close."""
        self.closed.callback(None)

    def send(self, line: str) -> None:
        """Send one line."""
        self.transport.write(line.encode("utf-8") + b"\r\n")

    async def next(self, timeout: float = TIMEOUT) -> Message:
        """The next message off the wire."""
        d = self._messages.get()
        d.addTimeout(timeout, reactor)
        return await d

    async def expect(self, command: str, timeout: float = TIMEOUT) -> Message:
        """The next message with C{command} (kept ones first); others are kept."""
        for index, seen in enumerate(self.kept):
            if seen.command == command:
                return self.kept.pop(index)
        while True:
            received = await self.next(timeout)
            if received.command == command:
                return received
            self.kept.append(received)

    async def until(self, command: str) -> list[Message]:
        """Every message up to and including the next with C{command}, off the wire."""
        found = []
        while True:
            received = await self.next()
            found.append(received)
            if received.command == command:
                return found

    async def sync(self, token: str = "sync") -> list[Message]:
        """PING and read up to its PONG: everything the server sent before it."""
        self.send(f"PING {token}")
        found = await self.until("PONG")
        return found[:-1]

    async def login(self, nick: str, password: str = PASSWORD, caps: str = "message-tags server-time") -> list:
        """Register with SASL PLAIN (and C{caps}); the messages up to the end of the MOTD."""
        self.send("CAP LS 302")
        self.send(f"NICK {nick}")
        self.send(f"USER {nick} 0 * :{nick}")
        await self.expect("CAP")
        self.send(f"CAP REQ :sasl {caps}".rstrip())
        ack = await self.expect("CAP")
        assert ack.params[1] == "ACK", ack
        self.send("AUTHENTICATE PLAIN")
        await self.expect("AUTHENTICATE")
        payload = base64.b64encode(f"\0{nick}\0{password}".encode()).decode()
        self.send(f"AUTHENTICATE {payload}")
        done = await self.expect("903")
        assert done.command == "903", done
        self.send("CAP END")
        return await self.until("376")


async def irc_client(testcase: TestCase, port: int) -> IRCClient:
    """A connected L{IRCClient}, closed when the test ends."""
    client = IRCClient()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)

    def close() -> Deferred:
        if not client.closed.called:
            client.transport.loseConnection()
        return client.closed

    testcase.addCleanup(close)
    return client


async def account(server: Any, name: str) -> None:
    """Make an account through the line protocol, then log that connection out."""
    client = await server.user(name, PASSWORD)
    await client.ok("QUIT")


class SameRoomTests(TestCase):
    """An IRC user and a telnet user in one room, on one node."""

    timeout = 60

    async def test_chat_both_ways(self):
        """
        A room made on the line protocol is a channel: the IRC user joins
        (names with role prefixes), and messages go both ways, with msgid
        and time tags for the IRC client.
        """
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        welcome = await bob.login("bob")
        self.assertEqual(welcome[0].command, "001")
        self.assertEqual(welcome[0].params[0], "bob")
        bob.send("JOIN #lounge")
        joined = await bob.until("366")
        self.assertEqual((joined[0].command, joined[0].params[0], joined[0].source.split("!")[0]),
                         ("JOIN", "#lounge", "bob"))
        [names] = [m for m in joined if m.command == "353"]
        self.assertEqual(sorted(names.params[-1].split()), ["@alice", "bob"])
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:lounge:bob")

        await alice.ok("SEND_MESSAGE:lounge:hello from telnet")
        said = await bob.expect("PRIVMSG")
        self.assertEqual((said.source.split("!")[0], said.params), ("alice", ("#lounge", "hello from telnet")))
        self.assertTrue(said.tags["msgid"].isdigit())
        self.assertTrue(said.tags["time"].endswith("Z"))

        bob.send("PRIVMSG #lounge :hello from IRC")
        event = await alice.event("MESSAGE:")
        self.assertTrue(event.startswith("MESSAGE:lounge:"), event)
        self.assertTrue(event.endswith(":hello from IRC"), event)
        # without echo-message bob is not sent his own message
        self.assertEqual([m for m in await bob.sync() if m.command == "PRIVMSG"], [])

    async def test_direct_messages(self):
        """A private PRIVMSG is a direct message, both ways; an action is stored as /me."""
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        await bob.login("bob", caps="")
        bob.send("PRIVMSG alice :psst")
        event = await alice.event("PRIVATE_MESSAGE:")
        self.assertTrue(event.startswith("PRIVATE_MESSAGE:bob:alice:") and event.endswith(":psst"), event)
        await alice.ok("DM:bob:hi bob")
        said = await bob.expect("PRIVMSG")
        self.assertEqual((said.source.split("!")[0], said.params), ("alice", ("bob", "hi bob")))
        bob.send("PRIVMSG alice :\x01ACTION waves\x01")
        event = await alice.event("PRIVATE_MESSAGE:")
        self.assertTrue(event.endswith(":/me waves"), event)

    async def test_offline_direct_messages_and_rooms_at_login(self):
        """At login an IRC client is joined to its rooms and handed the direct messages it missed."""
        server = await start_server(self, irc=True)
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        await bob.login("bob")
        bob.send("JOIN #lounge")
        await bob.until("366")
        bob.send("QUIT")
        await bob.closed
        alice = await server.user("alice", PASSWORD)
        await alice.ok("DM:bob:while you were out")
        again = await irc_client(self, server.irc_port)
        await again.login("bob")
        joined = await again.expect("JOIN")
        self.assertEqual(joined.params, ("#lounge",))
        said = await again.expect("PRIVMSG")
        self.assertEqual(said.params, ("bob", "while you were out"))

    async def test_echo_message(self):
        """With echo-message the sender gets its own message back, with its msgid."""
        server = await start_server(self, irc=True)
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        await bob.login("bob", caps="echo-message message-tags")
        bob.send("JOIN #lounge")
        await bob.until("366")
        bob.send("PRIVMSG #lounge :echo me")
        echoed = await bob.expect("PRIVMSG")
        self.assertEqual(echoed.params, ("#lounge", "echo me"))
        self.assertIn("msgid", echoed.tags)

    async def test_topic_part_and_refusals(self):
        """TOPIC and PART reach the telnet user; bad targets get their numerics."""
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:secret:private")
        await alice.ok("CREATE_ROOM:other")
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        await bob.login("bob")
        bob.send("JOIN #lounge")
        await bob.until("366")
        await alice.ok("JOIN_ROOM:lounge")
        bob.send("TOPIC #lounge :all about lounging")
        topic = await bob.expect("TOPIC")
        self.assertEqual(topic.params, ("#lounge", "all about lounging"))
        self.assertEqual(await alice.event("TOPIC_CHANGED:"), "TOPIC_CHANGED:lounge:bob:all about lounging")
        bob.send("TOPIC #lounge")
        self.assertEqual((await bob.expect("332")).params[1:], ("#lounge", "all about lounging"))
        refusals = [
            ("PRIVMSG #nowhere :x", "403"), ("PRIVMSG nobody :x", "401"), ("PRIVMSG #lounge :", "412"),
            ("PRIVMSG", "411"), ("JOIN #secret", "473"), ("PART #other", "442"),
            ("PART #secret", "403"), ("TOPIC #other :mine now", "442"), ("BOGUS", "421"),
            ("JOIN", "461"),
        ]
        for line, numeric in refusals:
            bob.send(line)
            [reply] = await bob.sync()
            self.assertEqual(reply.command, numeric, line)
        bob.send("PART #lounge :bye")
        parted = await bob.expect("PART")
        self.assertEqual(parted.params[0], "#lounge")
        self.assertEqual(await alice.event("USER_LEFT:"), "USER_LEFT:lounge:bob")

    async def test_no_credentials(self):
        """Without credentials a client registers, reads how to log in, and cannot join."""
        server = await start_server(self, irc=True)
        client = await irc_client(self, server.irc_port)
        client.send("NICK carol")
        client.send("USER carol 0 * :Carol")
        welcome = await client.until("NOTICE")
        self.assertEqual(welcome[0].command, "001")
        self.assertIn("SASL", welcome[-1].params[-1])
        client.send("JOIN #lounge")
        [refusal] = await client.sync()
        self.assertEqual(refusal.params[:2], ("JOIN", "ACCOUNT_REQUIRED"))

    async def test_sasl_before_nick(self):
        """
        A client that logs in with SASL before it sends C{NICK} and C{USER}
        (irssi does, after C{CAP END}) registers when they come, as the account.
        """
        server = await start_server(self, irc=True)
        await account(server, "bob")
        client = await irc_client(self, server.irc_port)
        client.send("CAP LS 302")
        client.send("CAP REQ :sasl")
        client.send("AUTHENTICATE PLAIN")
        await client.expect("AUTHENTICATE")
        client.send("AUTHENTICATE " + base64.b64encode(f"bob\0bob\0{PASSWORD}".encode()).decode())
        await client.expect("903")
        client.send("CAP END")
        client.send("NICK bob")
        client.send("USER root root 127.0.0.1 :root")
        welcome = await client.until("376")
        self.assertEqual((welcome[0].command, welcome[0].params[0]), ("001", "bob"))

    async def test_user_needs_a_realname(self):
        """C{USER} with an empty real name (or user name) is C{461}; a full one then registers."""
        server = await start_server(self, irc=True)
        client = await irc_client(self, server.irc_port)
        client.send("NICK carol")
        for line in ("USER carol 0 * :", "USER  0 * :Carol"):
            client.send(line)
            [refusal] = await client.sync()
            self.assertEqual((refusal.command, refusal.params[1]), ("461", "USER"), line)
        client.send("USER carol 0 * :Carol")
        welcome = await client.until("376")
        self.assertEqual(welcome[0].command, "001")

    async def test_pass_login(self):
        """PASS <account>:<password> logs in at registration."""
        server = await start_server(self, irc=True)
        await account(server, "bob")
        client = await irc_client(self, server.irc_port)
        client.send(f"PASS :bob:{PASSWORD}")
        client.send("NICK bob")
        client.send("USER bob 0 * :Bob")
        welcome = await client.until("376")
        self.assertEqual(welcome[0].params[0], "bob")
        self.assertNotIn("NOTICE", [m.command for m in welcome])


class TwoNodeTests(TestCase):
    """The IRC user on one node, the telnet user on another."""

    timeout = 60

    async def test_chat_across_nodes(self):
        """Messages, joins and direct messages cross nodes both ways."""
        first, second = await start_nodes(self, 2, irc=True)
        alice = await second.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await account(first, "bob")
        bob = await irc_client(self, first.irc_port)
        await bob.login("bob")
        bob.send("JOIN #lounge")
        await bob.until("366")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:lounge:bob")
        await alice.ok("SEND_MESSAGE:lounge:from the second node")
        said = await bob.expect("PRIVMSG")
        self.assertEqual(said.params, ("#lounge", "from the second node"))
        bob.send("PRIVMSG #lounge :from the first node")
        event = await alice.event("MESSAGE:")
        self.assertTrue(event.endswith(":bob:" + event.split(":bob:")[-1]) and event.endswith("from the first node"),
                        event)
        bob.send("PRIVMSG alice :across")
        event = await alice.event("PRIVATE_MESSAGE:")
        self.assertTrue(event.endswith(":across"), event)

    async def test_notices_across_nodes(self):
        """
        A C{NOTICE} is a message marked as a notice: IRC members on any node
        (and the sender, with echo-message) read a C{NOTICE}, a line user
        the message event a C{PRIVMSG} gives; a C{NOTICE} to a nick is a
        direct message read as a C{NOTICE}.
        """
        first, second = await start_nodes(self, 2, irc=True)
        alice = await second.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await account(first, "bob")
        await account(second, "carol")
        bob = await irc_client(self, first.irc_port)
        await bob.login("bob", caps="echo-message")
        carol = await irc_client(self, second.irc_port)
        await carol.login("carol", caps="")
        for client in (bob, carol):
            client.send("JOIN #lounge")
            await client.until("366")
        bob.send("PRIVMSG #lounge :a message")
        said = await alice.event("MESSAGE:")
        bob.send("NOTICE #lounge :a notice")
        echoed = await bob.until("NOTICE")
        self.assertEqual([(m.command, m.params) for m in echoed if m.command in ("PRIVMSG", "NOTICE")],
                         [("PRIVMSG", ("#lounge", "a message")), ("NOTICE", ("#lounge", "a notice"))])
        noticed = await alice.event("MESSAGE:")
        # the line a message gets: MESSAGE:<room>:<id>:<sender>:<ts>:<text>
        for line, text in ((said, "a message"), (noticed, "a notice")):
            self.assertEqual(line.split(":", 5)[:2] + line.split(":", 5)[3:4] + line.split(":", 5)[5:],
                             ["MESSAGE", "lounge", "bob", text])
        seen = await carol.until("NOTICE")
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in seen if m.source.startswith("bob")],
                         [("PRIVMSG", "bob", ("#lounge", "a message")), ("NOTICE", "bob", ("#lounge", "a notice"))])
        bob.send("NOTICE carol :just you")
        direct = await carol.expect("NOTICE")
        self.assertEqual((direct.source.split("!")[0], direct.params), ("bob", ("carol", "just you")))
        rows = await first.server.store.db.fetchall(
            "SELECT body, notice FROM messages WHERE sender_id IS NOT NULL ORDER BY id")
        self.assertEqual([tuple(r) for r in rows], [("a message", False), ("a notice", True), ("just you", True)])


__all__ = ["IRCClient", "irc_client", "serialize"]
