"""
Tests for L{lairchat.irc.service}, the service nick that runs line-protocol
commands for IRC clients, without a network or a database: an
L{IRCProtocol} on a L{StringTransport} (L{tests.test_irc_protocol.IRCConnection})
with the real command plugins.  What needs rooms and invitations is tested
end to end in L{tests.test_irc_service_e2e}.
"""

from twisted.trial.unittest import SynchronousTestCase as TestCase

from lairchat.command import Command, Reply
from lairchat.irc.message import Message, parse
from lairchat.irc.service import REFUSED, SERVICE_NICK, is_service, service_rate_class
from lairchat.plugins import load_commands
from lairchat.ratelimit import DEFAULT_RATES
from tests.test_irc_protocol import PASSWORD, SERVER, IRCConnection

SOURCE = f"{SERVICE_NICK}!{SERVICE_NICK}@{SERVER}"
"""The source of the service's notices."""


class Goodbye(Command):
    """A command whose reply closes the connection, as a plugin's may."""

    name = "GOODBYE"
    syntax = "GOODBYE"
    summary = "Answer and close"

    async def run(self, context, parsed):
        """Answer, then close."""
        return Reply.ok("bye", close=True)


def service_connection(log_in: bool = True, **settings) -> IRCConnection:
    """A registered IRC connection (logged in as alice unless told not to) on the real commands."""
    connection = IRCConnection(**settings)
    connection.server.registry.update(load_commands())
    if log_in:
        connection.account("alice")
        connection.send("PASS :alice:" + PASSWORD)
    connection.send("NICK alice")
    connection.send("USER a 0 * :A")
    connection.lines()
    return connection


def notices(connection: IRCConnection, text: str) -> list[str]:
    """Send C{text} to the service; the text of each notice it answers (every line must be one)."""
    answers = [parse(line) for line in connection.request(f"PRIVMSG {SERVICE_NICK} :{text}")]
    for answer in answers:
        assert (answer.command, answer.source, answer.params[0]) == ("NOTICE", SOURCE, "alice"), answer
    return [answer.params[1] for answer in answers]


class ServiceRequestTests(TestCase):
    """Line-protocol requests through the service."""

    def test_command_answered_in_notices(self):
        """A request's reply comes back line by line as notices from the service."""
        connection = service_connection()
        self.assertEqual(notices(connection, "WHOAMI"), ["OK:WHOAMI:alice:user"])
        self.assertEqual(notices(connection, "ping:hello"), ["OK:PING:hello"])

    def test_case_insensitive_nick(self):
        """The service answers to its nick in any ASCII case."""
        connection = service_connection()
        [answer] = connection.request(f"PRIVMSG {SERVICE_NICK.upper()} :WHOAMI")
        self.assertEqual(parse(answer).params[1], "OK:WHOAMI:alice:user")
        self.assertFalse(is_service("lair|serv\u0130"))

    def test_label(self):
        """A labelled request is answered under its label, as on the line protocol."""
        connection = service_connection()
        self.assertEqual(notices(connection, "@label=w1 WHOAMI"), ["@label=w1 OK:WHOAMI:alice:user"])

    def test_line_protocol_errors(self):
        """The line protocol's refusals come back as its ERROR lines."""
        connection = service_connection()
        self.assertEqual(notices(connection, "WHOAMI:extra"),
                         ["ERROR:1112:INVALID_FORMAT:too many arguments; usage: WHOAMI"])
        [line] = notices(connection, "PING:a\x07b")
        self.assertTrue(line.startswith("ERROR:1114:INVALID_CHARACTERS:"), line)

    def test_help(self):
        """
        HELP says what the service does, then lists every command it runs
        (none it refuses), and ends with OK:HELP; it needs no login.
        """
        connection = service_connection(log_in=False)
        lines = notices(connection, "HELP")
        self.assertIn(SERVICE_NICK, lines[0])
        listed = [line.split(":")[1] for line in lines if line.startswith("HELP:")]
        expected = sorted({c.name for c in load_commands().values()} - set(REFUSED))
        self.assertEqual(listed, expected)
        self.assertEqual(lines[-1], f"OK:HELP:{len(expected)}")
        self.assertEqual(notices(connection, "show_help"), lines)

    def test_refused_commands(self):
        """
        Logging in and out and closing are not the service's: each is
        refused with 1603 and a pointer to IRC's way; the connection stays
        as it was.
        """
        connection = service_connection()
        for request in ("LOGIN:alice:" + PASSWORD, "REGISTER:bob:secret123x", "RESUME:" + "0" * 64, "LOGOUT",
                        "QUIT", "quit:bye"):
            [line] = notices(connection, request)
            self.assertTrue(line.startswith("ERROR:1603:UNKNOWN_COMMAND:"), line)
            self.assertIn("not available", line)
        self.assertFalse(connection.transport.disconnecting)
        self.assertEqual(connection.protocol.user.username, "alice")
        self.assertEqual(notices(connection, "WHOAMI"), ["OK:WHOAMI:alice:user"])

    def test_no_command_is_no_message(self):
        """Text that names no command is refused, not sent to the current room as the line protocol would."""
        connection = service_connection()
        connection.protocol.current_room = "lounge"
        [line] = notices(connection, "hello everyone")
        self.assertTrue(line.startswith("ERROR:1603:UNKNOWN_COMMAND:hello everyone is no command"), line)

    def test_login_needed(self):
        """A command that needs a login is refused to a client without one, saying how IRC logs in."""
        connection = service_connection(log_in=False)
        self.assertEqual(notices(connection, "WHOAMI"),
                         ["ERROR:1001:AUTH_REQUIRED:log in first (SASL PLAIN or PASS <account>:<password>)"])

    def test_notice_to_service_ignored(self):
        """A NOTICE to the service gets no answer (IRC never answers a notice); nor does a CTCP request."""
        connection = service_connection()
        self.assertEqual(connection.request(f"NOTICE {SERVICE_NICK} :WHOAMI"), [])
        self.assertEqual(connection.request(f"PRIVMSG {SERVICE_NICK} :\x01VERSION\x01"), [])

    def test_closing_reply(self):
        """A command whose reply closes a line connection closes the IRC one, after an ERROR."""
        connection = service_connection()
        connection.server.registry["GOODBYE"] = Goodbye()
        lines = [parse(line) for line in connection.request(f"PRIVMSG {SERVICE_NICK} :GOODBYE")]
        self.assertEqual([(m.command, m.params[-1]) for m in lines][0], ("NOTICE", "OK:GOODBYE:bye"))
        self.assertEqual(lines[1].command, "ERROR")
        self.assertTrue(connection.transport.disconnecting)


class ServiceNickTests(TestCase):
    """The service's nick: nobody else's, and known to WHOIS and WHO."""

    def test_guests_cannot_take_it(self):
        """With guests the nick is in use (433), in any case; without, it is no nick one may ask for (432)."""
        guests = IRCConnection(irc_guests=True)
        self.assertEqual(parse(guests.request(f"NICK {SERVICE_NICK}")[0]).command, "433")
        self.assertEqual(parse(guests.request("NICK LAIR|serv")[0]).command, "433")
        self.assertIsNone(guests.protocol.nick)
        accounts_only = IRCConnection()
        self.assertEqual(parse(accounts_only.request(f"NICK {SERVICE_NICK}")[0]).command, "432")

    def test_guest_cannot_rename_to_it(self):
        """A guest changing nick cannot take the service's."""
        connection = IRCConnection(irc_guests=True)
        connection.protocol.guest = True
        connection.account("alice")
        connection.send("PASS :alice:" + PASSWORD)
        connection.send("NICK alice")
        connection.send("USER a 0 * :A")
        connection.lines()
        self.assertEqual(parse(connection.request(f"NICK {SERVICE_NICK}")[0]).command, "433")

    def test_whois(self):
        """WHOIS of the service: who it is (311, 312) and the end (318)."""
        connection = service_connection()
        replies = [parse(line) for line in connection.request(f"WHOIS {SERVICE_NICK}")]
        self.assertEqual([m.command for m in replies], ["311", "312", "318"])
        self.assertEqual(replies[0].params[1:4], (SERVICE_NICK, SERVICE_NICK, SERVER))
        self.assertIn("HELP", replies[0].params[-1])

    def test_who(self):
        """WHO of the service: one 352, then 315."""
        connection = service_connection()
        replies = [parse(line) for line in connection.request(f"WHO {SERVICE_NICK}")]
        self.assertEqual([m.command for m in replies], ["352", "315"])
        self.assertEqual(replies[0].params[1:7], ("*", SERVICE_NICK, SERVER, SERVER, SERVICE_NICK, "H"))


class ServiceFloodTests(TestCase):
    """A request through the service draws on its line command's flood budget."""

    def test_rate_class_of_the_line_command(self):
        """The budget of a PRIVMSG to the service is the line command's; other messages have none here."""
        connection = service_connection()
        server = connection.server

        def budget(*params: str) -> str | None:
            return service_rate_class(server, Message("PRIVMSG", params))

        self.assertEqual(budget(SERVICE_NICK, "LOGIN:alice:x"), "auth")
        self.assertEqual(budget(SERVICE_NICK, "@label=a invite_user:bob:hall"), "invite")
        self.assertEqual(budget(SERVICE_NICK, "SEND_MESSAGE:hall:hi"), "message")
        self.assertEqual(budget(SERVICE_NICK, "HELP"), "free")
        self.assertEqual(budget(SERVICE_NICK, "WHOAMI"), "default")
        self.assertEqual(budget(SERVICE_NICK, "bad\x07"), "message")
        self.assertIsNone(budget("bob", "LOGIN:alice:x"))
        self.assertIsNone(service_rate_class(server, Message("NOTICE", (SERVICE_NICK, "LOGIN:a:b"))))

    def test_auth_budget_delays(self):
        """
        Requests of an auth command through the service wait once the auth
        budget is spent, as LOGIN on the line protocol would; free ones do not.
        """
        connection = service_connection(rate_limits=True)
        burst = DEFAULT_RATES["auth"].burst
        connection.send("".join(f"PRIVMSG {SERVICE_NICK} :CHANGE_PASSWORD:x:y\r\n" for _ in range(burst + 3)))
        self.assertEqual(len(connection.lines()), burst - 1)  # the login's PASS drew one
        connection.send("".join(f"PRIVMSG {SERVICE_NICK} :PING:{i}\r\n" for i in range(100)))
        self.assertEqual(connection.lines(), [])
        connection.clock.advance(30)
        answers = [parse(line).params[1] for line in connection.lines()]
        self.assertEqual(len(answers), 4 + 100)
        self.assertEqual(answers[4:], [f"OK:PING:{i}" for i in range(100)])

    def test_free_budget(self):
        """A hundred PINGs through the service (a free command) are all answered at once."""
        connection = service_connection(rate_limits=True)
        connection.send("".join(f"PRIVMSG {SERVICE_NICK} :PING:{i}\r\n" for i in range(100)))
        self.assertEqual(len(connection.lines()), 100)
