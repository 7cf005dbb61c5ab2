"""
End-to-end test with an IRC client library, as an IRC bot would use one:
Twisted's own C{twisted.words.protocols.irc.IRCClient} logs in with
C{PASS <account>:<password>} on one node, joins a room, and talks with a
line-protocol user on another node over real TCP and the real database.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase
from twisted.words.protocols import irc

from tests.support import start_nodes
from tests.test_irc_e2e import PASSWORD

BOT_PASSWORD = "bot-secret-9"
"""The bot's password: the library sends C{PASS} without a trailing parameter, so no spaces."""


class EchoBot(irc.IRCClient):
    """
    A bot: joins C{#lounge} once signed on, answers every message there
    with C{heard: <text>}, and fires its Deferreds as things happen.
    """

    nickname = "echobot"
    password = f"echobot:{BOT_PASSWORD}"

    def __init__(self) -> None:
        self.joined_room: Deferred = Deferred()
        self.heard: list[tuple[str, str, str]] = []
        self.heard_one: Deferred = Deferred()

    def signedOn(self) -> None:
        """Logged in: join the room."""
        self.join("lounge")

    def joined(self, channel: str) -> None:
        """The server confirmed the join."""
        self.joined_room.callback(channel)

    def privmsg(self, user: str, channel: str, message: str) -> None:
        """Keep the message and answer it in the channel."""
        self.heard.append((user.split("!")[0], channel, message))
        self.msg(channel, f"heard: {message}")
        if not self.heard_one.called:
            self.heard_one.callback(None)


class LibraryClientTests(TestCase):
    """twisted.words' IRC client and a line user, on two nodes."""

    timeout = 60

    async def test_bot_across_nodes(self):
        """
        The bot joins a room a line user made on the other node, reads the
        user's message and answers; the user reads the answer as a
        MESSAGE event and finds it in the room's history.
        """
        first, second = await start_nodes(self, 2, irc=True)
        alice = await second.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await (await first.user("echobot", BOT_PASSWORD)).ok("QUIT")
        bot = EchoBot()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", first.irc_port), bot)
        self.addCleanup(lambda: bot.transport.loseConnection())
        self.assertEqual(await bot.joined_room, "#lounge")
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:lounge:echobot")

        await alice.ok("SEND_MESSAGE:lounge:ping the bot")
        await bot.heard_one
        self.assertEqual(bot.heard, [("alice", "#lounge", "ping the bot")])
        answer = await alice.event("MESSAGE:lounge:")
        self.assertEqual(answer.split(":", 5)[3::2], ["echobot", "heard: ping the bot"])
        history = await alice.ok("GET_HISTORY:lounge:10")
        last = history[-2].split(":", 7)  # HISTORY:<room>:<id>:<sender>:<ts>:<parent>:<edited>:<text>
        self.assertEqual((last[0], last[3], last[7]), ("HISTORY", "echobot", "heard: ping the bot"))
