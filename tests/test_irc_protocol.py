"""
Tests for L{lairchat.irc.protocol} and L{lairchat.irc.commands} without a
network or a database: an L{IRCProtocol} on a L{StringTransport}, a
L{Clock}, and the store double of L{tests.test_protocol} (accounts only;
what needs rooms is tested end to end in L{tests.test_irc_e2e}).
"""

import base64
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.test.proto_helpers import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from lairchat import events
from lairchat.context import Config, ServerContext
from lairchat.irc.message import parse
from lairchat.irc.protocol import IRCFactory, IRCProtocol
from lairchat.protocol import ChatFactory, RefusedConnection
from tests.test_protocol import PASSWORD, FakePasswords, FakeStore, TransportConnection

SERVER = "irc.test"


class FakeRooms:
    """The rooms part of the store double: nobody is in any room."""

    def summaries(self, user_id: int, everything: bool = False) -> Any:
        """No rooms."""
        return succeed([])


class IRCConnection(TransportConnection):
    """One L{IRCProtocol} on a L{StringTransport} (see L{TransportConnection}); lines it is sent end with CR LF."""

    line_ending = b"\r\n"

    def __init__(self, **settings: Any) -> None:
        settings.setdefault("rate_limits", False)
        self.clock = Clock()
        self.store = FakeStore()
        self.store.rooms = FakeRooms()
        self.server = ServerContext(config=Config(server_name=SERVER, **settings), store=self.store,
                                    clock=self.clock, passwords=FakePasswords())
        self.attach(IRCFactory(self.server))

    def commands(self, line: str) -> list[tuple]:
        """Send a line; the command and parameters of each line written for it."""
        return [(m.command, *m.params) for m in map(parse, self.request(line))]

    def account(self, name: str = "alice") -> None:
        """Create an account in the store double."""
        self.store.users.create(name, "hash:" + PASSWORD)


def plain(account: str, password: str, authorization: str = "") -> str:
    """A SASL PLAIN payload, base64."""
    return base64.b64encode(f"{authorization}\0{account}\0{password}".encode()).decode()


class RegistrationTests(SynchronousTestCase):
    """CAP, NICK, USER, PASS and SASL up to the welcome."""

    def test_silent_until_registered(self):
        """An IRC server greets nobody; NICK and USER bring the welcome and a login notice."""
        connection = IRCConnection()
        self.assertEqual(connection.lines(), [])
        self.assertEqual(connection.request("NICK alice"), [])
        replies = connection.commands("USER alice 0 * :Alice")
        self.assertEqual([r[0] for r in replies], ["001", "002", "003", "004", "005", "375", "372", "376", "NOTICE"])
        self.assertEqual(replies[0][1], "alice")
        isupport = replies[4]
        for token in ("CHANTYPES=#", "PREFIX=(oh)@%", "CASEMAPPING=ascii", "NICKLEN=20", f"NETWORK={SERVER}"):
            self.assertIn(token, isupport)
        self.assertIn("not logged in", replies[-1][-1])
        self.assertEqual(connection.request(":x JOIN #room") and connection.commands("JOIN #room"),
                         [("FAIL", "JOIN", "ACCOUNT_REQUIRED", "log in first (SASL PLAIN or PASS <account>:<password>)")])

    def test_cap_negotiation_holds_registration(self):
        """CAP LS 302 holds the welcome back until CAP END; REQ is all or nothing."""
        connection = IRCConnection()
        [ls] = connection.commands("CAP LS 302")
        self.assertEqual(ls[:3], ("CAP", "*", "LS"))
        self.assertEqual(set(ls[3].split()), {"account-notify", "account-tag", "away-notify", "batch", "cap-notify",
                                              "draft/chathistory", "draft/message-redaction", "draft/read-marker",
                                              "echo-message", "extended-join", "labeled-response", "message-tags",
                                              "multi-prefix", "sasl=PLAIN", "server-time", "userhost-in-names"})
        connection.request("NICK alice")
        self.assertEqual(connection.request("USER alice 0 * :Alice"), [])
        self.assertEqual(connection.commands("CAP REQ :echo-message bogus"), [("CAP", "alice", "NAK", "echo-message bogus")])
        self.assertEqual(connection.commands("CAP REQ :echo-message server-time"),
                         [("CAP", "alice", "ACK", "echo-message server-time")])
        self.assertEqual(connection.commands("CAP LIST"),
                         [("CAP", "alice", "LIST", "cap-notify echo-message server-time")])
        self.assertEqual(connection.commands("CAP END")[0][0], "001")

    def test_sasl_plain(self):
        """AUTHENTICATE PLAIN logs in to an existing account: 900 and 903, then the welcome."""
        connection = IRCConnection()
        connection.account("alice")
        connection.request("CAP LS 302")
        connection.request("CAP REQ sasl")
        connection.request("NICK alice")
        connection.request("USER alice 0 * :Alice")
        self.assertEqual(connection.commands("AUTHENTICATE PLAIN"), [("AUTHENTICATE", "+")])
        replies = connection.commands("AUTHENTICATE " + plain("alice", PASSWORD))
        self.assertEqual([r[0] for r in replies], ["900", "903"])
        self.assertEqual(replies[0][3], "alice")
        self.assertEqual(connection.protocol.user.username, "alice")
        welcome = connection.commands("CAP END")
        self.assertEqual(welcome[0][:2], ("001", "alice"))
        self.assertNotIn("NOTICE", [r[0] for r in welcome])

    def test_sasl_before_nick(self):
        """
        A client that logs in with SASL before it sends NICK registers with
        whatever nick it sends then: the welcome addresses the account.
        """
        connection = IRCConnection()
        connection.account("alice")
        connection.request("CAP LS 302")
        connection.request("CAP REQ sasl")
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE " + plain("alice", PASSWORD))],
                         ["900", "903"])
        connection.request("USER f 0 * :Alice")
        self.assertEqual(connection.request("NICK other"), [])
        welcome = connection.commands("CAP END")
        self.assertEqual(welcome[0][:2], ("001", "alice"))
        self.assertEqual(connection.commands("NICK other")[0][:3], ("FAIL", "NICK", "CANNOT_CHANGE_NICK"))

    def test_sasl_chunked(self):
        """
        A payload of 400 bytes or more comes in 400-byte chunks, a full last
        one followed by C{+}: nothing is answered until the payload is whole.
        (A password has at most 128 characters, so such a payload is refused
        once whole.)
        """
        connection = IRCConnection()
        connection.account("alice")
        long_payload = plain("alice", "x" * 293)
        self.assertEqual(len(long_payload), 400)
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual(connection.request("AUTHENTICATE " + long_payload), [])
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE +")], ["904"])
        longer = plain("alice", "y" * 400)
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual(connection.request("AUTHENTICATE " + longer[:400]), [])
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE " + longer[400:])], ["904"])
        connection.request("AUTHENTICATE PLAIN")
        payload = plain("alice", PASSWORD)
        self.assertEqual(connection.commands("AUTHENTICATE " + payload)[-1][0], "903")

    def test_sasl_failures(self):
        """A wrong password is 904, an abort 906, a bad mechanism 908 and 904, a long chunk 905."""
        connection = IRCConnection()
        connection.account("alice")
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE " + plain("alice", "wrong"))], ["904"])
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE EXTERNAL")], ["908", "904"])
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE *")], ["906"])
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE " + "A" * 401)], ["905"])
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE !!notbase64")], ["904"])
        connection.request("AUTHENTICATE PLAIN")
        self.assertEqual([r[0] for r in connection.commands("AUTHENTICATE " + plain("alice", PASSWORD, "bob"))],
                         ["904"])
        self.assertIsNone(connection.protocol.user)

    def test_pass(self):
        """PASS <account>:<password> logs in at registration; the nick becomes the account's name."""
        connection = IRCConnection()
        connection.account("alice")
        connection.request("PASS :alice:" + PASSWORD)
        connection.request("NICK someone")
        replies = connection.commands("USER x 0 * :X")
        self.assertEqual(replies[0][:2], ("001", "alice"))
        self.assertEqual(connection.protocol.user.username, "alice")

    def test_wrong_pass_closes(self):
        """A wrong PASS is 464, then ERROR and the close."""
        connection = IRCConnection()
        connection.account("alice")
        connection.request("PASS wrong")
        connection.request("NICK alice")
        replies = connection.commands("USER x 0 * :X")
        self.assertEqual([r[0] for r in replies], ["464", "ERROR"])
        self.assertTrue(connection.transport.disconnecting)

    def test_before_registration(self):
        """Commands that need registration are 451; unknown ones 421; a bad nick 432; USER short 461."""
        connection = IRCConnection()
        self.assertEqual(connection.commands("PRIVMSG #a :hi")[0][:2], ("451", "*"))
        self.assertEqual(connection.commands("FOO")[0][:3], ("421", "*", "FOO"))
        self.assertEqual(connection.commands("NICK 9lives")[0][0], "432")
        self.assertEqual(connection.commands("USER a")[0][:3], ("461", "*", "USER"))
        self.assertEqual(connection.commands("PING :tok"), [("PONG", SERVER, "tok")])


class ConnectionTests(SynchronousTestCase):
    """Framing, limits, order and the shared connection rules."""

    def registered(self) -> IRCConnection:
        """A connection past its welcome, not logged in."""
        connection = IRCConnection()
        connection.request("NICK alice")
        connection.request("USER alice 0 * :Alice")
        return connection

    def test_ping_order(self):
        """Requests in one packet are answered in order."""
        connection = self.registered()
        connection.send(b"PING a\r\nPING b\nFOO\r\nPING c\r\nNO_SUCH\r\n")
        self.assertEqual([(m.command, *m.params[-1:]) for m in map(parse, connection.lines())],
                         [("PONG", "a"), ("PONG", "b"), ("421", "Unknown command"), ("PONG", "c"),
                          ("421", "Unknown command")])

    def test_input_too_long(self):
        """A line over 512 bytes is 417 and the connection stays; so is one over the framing limit."""
        connection = self.registered()
        self.assertEqual(connection.commands("PRIVMSG #a :" + "x" * 600)[0][0], "417")
        connection.send(b"PING " + b"y" * 20000)
        connection.send(b"y" * 100 + b"\r\nPING after\r\n")
        self.assertEqual([m.command for m in map(parse, connection.lines())], ["417", "PONG"])
        self.assertFalse(connection.transport.disconnecting)

    def test_tags_have_their_own_limit(self):
        """Client tags up to 4094 bytes do not count against the 512."""
        connection = self.registered()
        self.assertEqual(connection.commands("@+a=" + "v" * 4000 + " PING :t"), [("PONG", SERVER, "t")])

    def test_invalid_utf8(self):
        """Bad UTF-8 is a FAIL, no traceback, the connection stays."""
        connection = self.registered()
        connection.send(b"PRIVMSG #a :\xff\xfe\r\n")
        [fail] = [parse(line) for line in connection.lines()]
        self.assertEqual(fail.command, "FAIL")
        self.assertEqual(fail.params[1], "INVALID_UTF8")
        self.assertEqual(connection.commands("PING x"), [("PONG", SERVER, "x")])

    def test_malformed_dropped(self):
        """A line that is no IRC message is dropped, and the next answered."""
        connection = self.registered()
        self.assertEqual(connection.request(":onlyasource"), [])
        self.assertEqual(connection.request("@ PING"), [])
        self.assertEqual(connection.commands("PING x"), [("PONG", SERVER, "x")])

    def test_quit(self):
        """QUIT: ERROR, then the close."""
        connection = self.registered()
        self.assertEqual(connection.commands("QUIT :bye")[0][0], "ERROR")
        self.assertTrue(connection.transport.disconnecting)

    def test_login_timeout(self):
        """A connection not logged in within the login timeout reads ERROR and is closed."""
        connection = self.registered()
        connection.clock.advance(120)
        [line] = connection.lines()
        self.assertTrue(line.startswith("ERROR :Closing link: no login"), line)
        self.assertTrue(connection.transport.disconnecting)

    def test_gate_shared_with_line_front_end(self):
        """The line front end and the IRC one count their connections against one gate."""
        connection = IRCConnection(max_connections=2)
        line_factory = ChatFactory(connection.server)
        self.assertIs(line_factory.gate, connection.factory.gate)
        line_factory.buildProtocol(None).makeConnection(StringTransport())
        refused = connection.factory.buildProtocol(None)
        self.assertIsInstance(refused, RefusedConnection)
        transport = StringTransport()
        refused.makeConnection(transport)
        self.assertTrue(transport.value().startswith(b"ERROR :Closing link: the server is full"))
        self.assertEqual(connection.server.connection_states()["anonymous"], 2)

    def test_flood_delays(self):
        """Messages over the budget wait (fakelag) rather than being refused."""
        connection = IRCConnection(rate_limits=True)
        connection.account("alice")
        connection.send("PASS :alice:" + PASSWORD)
        connection.send("NICK alice")
        connection.send("USER a 0 * :A")
        connection.lines()
        connection.send(b"".join(b"PING %d\r\n" % i for i in range(80)))
        first = connection.lines()
        self.assertLess(len(first), 80)
        connection.clock.advance(10)
        self.assertEqual(len(first) + len(connection.lines()), 80)


class LabeledResponseTests(SynchronousTestCase):
    """A request's label comes back on its reply, whatever the command."""

    def labeling(self, *caps: str) -> IRCConnection:
        """A registered connection (not logged in) with C{labeled-response} and C{caps}."""
        connection = IRCConnection()
        connection.request("CAP REQ :" + " ".join(("labeled-response", *caps)))
        connection.request("NICK alice")
        connection.request("USER alice 0 * :Alice")
        connection.request("CAP END")
        return connection

    def test_one_line(self):
        """A one-line reply carries the label itself, an error reply too."""
        connection = self.labeling("batch")
        self.assertEqual(connection.request("@label=abc PING x"), [f"@label=abc :{SERVER} PONG {SERVER} x"])
        [unknown] = connection.request("@label=d\\:e NOPE")
        self.assertTrue(unknown.startswith("@label=d\\:e "))
        self.assertEqual((parse(unknown).command, parse(unknown).tags), ("421", {"label": "d;e"}))

    def test_no_reply_is_ack(self):
        """A request with no reply is answered with a labeled ACK."""
        connection = self.labeling("batch")
        self.assertEqual(connection.request("@label=1 PONG x"), [f"@label=1 :{SERVER} ACK"])

    def test_several_lines_batch(self):
        """A longer reply is one labeled-response batch; each of its lines carries the batch tag."""
        connection = self.labeling("batch")
        lines = [parse(line) for line in connection.request("@label=L1 CAP LS 302")
                 + connection.request("@label=L2 AUTHENTICATE FOO")]
        self.assertEqual(lines[0].tags, {"label": "L1"})
        self.assertEqual(lines[1].command, "BATCH")
        ref = lines[1].params[0][1:]
        self.assertEqual((lines[1].params, lines[1].tags), ((f"+{ref}", "labeled-response"), {"label": "L2"}))
        self.assertEqual([(m.command, m.tags) for m in lines[2:]],
                         [("908", {"batch": ref}), ("904", {"batch": ref}), ("BATCH", {})])
        self.assertEqual(lines[-1].params, (f"-{ref}",))
        again = parse(connection.request("@label=L3 AUTHENTICATE FOO")[0])
        self.assertNotEqual(again.params[0], f"+{ref}")

    def test_without_batch(self):
        """Without batch, the label is on the first line of a longer reply only."""
        connection = self.labeling()
        lines = [parse(line) for line in connection.request("@label=x AUTHENTICATE FOO")]
        self.assertEqual([(m.command, m.tags) for m in lines], [("908", {"label": "x"}), ("904", {})])

    def test_label_ignored_without_cap(self):
        """A client that did not enable labeled-response reads no label."""
        connection = ConnectionTests().registered()
        self.assertEqual(connection.request("@label=abc PING x"), [f":{SERVER} PONG {SERVER} x"])
        self.assertEqual(connection.request("@label=abc PONG x"), [])


class EventTests(SynchronousTestCase):
    """Events the hub hands an IRC connection."""

    def logged_in(self, *caps: str) -> IRCConnection:
        """A registered connection logged in as alice with C{caps}."""
        connection = IRCConnection()
        connection.account("alice")
        connection.send("PASS :alice:" + PASSWORD)
        if caps:
            connection.send("CAP REQ :" + " ".join(caps))
            connection.send("CAP END")
        connection.send("NICK alice")
        connection.send("USER a 0 * :A")
        connection.lines()
        return connection

    def test_message_rendering(self):
        """A room message is a PRIVMSG to the channel, with msgid and time tags for those who asked."""
        room = events.RoomRef(7, "lounge")
        event = events.MessageSent(room, 42, 2, "bob", 1_700_000_000_123, "hi there")
        plain_connection = self.logged_in()
        self.assertTrue(plain_connection.protocol.receive(event, False, {}))
        self.assertEqual(plain_connection.lines(), [f":bob!bob@{SERVER} PRIVMSG #lounge :hi there"])
        tagged = self.logged_in("message-tags", "server-time")
        tagged.protocol.receive(event, False, {})
        self.assertEqual(tagged.lines(),
                         [f"@msgid=42;time=2023-11-14T22:13:20.123Z :bob!bob@{SERVER} PRIVMSG #lounge :hi there"])

    def test_echo_message(self):
        """The origin sees its own message only with echo-message."""
        event = events.MessageSent(events.RoomRef(7, "lounge"), 42, 1, "alice", 1, "mine")
        without = self.logged_in()
        self.assertFalse(without.protocol.receive(event, True, {}))
        echoing = self.logged_in("echo-message")
        self.assertTrue(echoing.protocol.receive(event, True, {}))
        self.assertEqual(echoing.lines(), [f":alice!alice@{SERVER} PRIVMSG #lounge :mine"])

    def test_echo_in_labeled_reply(self):
        """An echo that comes while a labeled request is answered is part of its reply, labeled."""
        event = events.MessageSent(events.RoomRef(7, "lounge"), 42, 1, "alice", 1, "mine")
        connection = self.logged_in("echo-message", "labeled-response", "batch")
        connection.protocol.collect_echoes()
        self.assertTrue(connection.protocol.receive(event, True, {}))
        self.assertEqual(connection.lines(), [])
        self.assertEqual(connection.protocol.stop_collecting_echoes(),
                         [parse(f":alice!alice@{SERVER} PRIVMSG #lounge :mine")])
        self.assertTrue(connection.protocol.receive(event, True, {}))
        self.assertEqual(connection.lines(), [f":alice!alice@{SERVER} PRIVMSG #lounge :mine"])

    def test_direct_message(self):
        """A direct message is a PRIVMSG to the recipient's nick."""
        connection = self.logged_in()
        connection.protocol.caught_up()
        connection.server.receipts.note = lambda *a: None
        event = events.DirectMessageSent(9, 43, 2, "bob", 1, "alice", 1, "psst")
        self.assertTrue(connection.protocol.receive(event, False, {}))
        self.assertEqual(connection.lines(), [f":bob!bob@{SERVER} PRIVMSG alice :psst"])
