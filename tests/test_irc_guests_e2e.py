"""
End-to-end tests of IRC guests (C{--irc-guests}): an IRC client that
registers with plain C{NICK}/C{USER} chats as an ephemeral guest, over the
real server on real TCP ports and the real database.
"""

import base64
from typing import Any

from twisted.trial.unittest import TestCase

from lairchat.irc.protocol import IRCFactory
from tests.support import start_server
from tests.test_irc_e2e import PASSWORD, account, irc_client


async def guest(testcase: TestCase, server: Any, nick: str) -> Any:
    """An IRC client registered as guest C{nick}; asserts the welcome."""
    client = await irc_client(testcase, server.irc_port)
    client.send(f"NICK {nick}")
    client.send(f"USER {nick} 0 * :{nick}")
    welcome = await client.until("376")
    testcase.assertEqual((welcome[0].command, welcome[0].params[0]), ("001", nick))
    return client


def connection_of(server: Any, nick: str) -> Any:
    """The server's IRC connection whose nick is C{nick}."""
    [factory] = [f for f in server.server.front_ends if isinstance(f, IRCFactory)]
    [found] = [c for c in factory.connections if c.nick == nick]
    return found


class GuestTests(TestCase):
    """Guests join public rooms and chat; their nick is no account's; they go with their connection."""

    timeout = 60

    async def test_guest_chats_with_line_user(self):
        """A guest (an IRC nick with C{-}) joins a line user's room and they talk both ways."""
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bar = await guest(self, server, "bar-1a2b3c4d5e")
        bar.send("JOIN #lounge")
        joined = await bar.until("366")
        [names] = [m for m in joined if m.command == "353"]
        self.assertEqual(sorted(names.params[-1].split()), ["@alice", "bar-1a2b3c4d5e"])
        self.assertEqual(await alice.event("USER_JOINED:"), "USER_JOINED:lounge:bar-1a2b3c4d5e")
        bar.send("PRIVMSG #lounge :hi from a guest")
        event = await alice.event("MESSAGE:")
        self.assertTrue(event.endswith(":hi from a guest"), event)
        await alice.ok("SEND_MESSAGE:lounge:welcome")
        said = await bar.expect("PRIVMSG")
        self.assertEqual((said.source.split("!")[0], said.params), ("alice", ("#lounge", "welcome")))

    async def test_nick_collision(self):
        """A nick that is an account's, or a connected guest's, is 433; another NICK then registers."""
        server = await start_server(self, irc=True, irc_guests=True)
        await account(server, "alice")
        await guest(self, server, "foo")
        for taken in ("alice", "FOO"):
            client = await irc_client(self, server.irc_port)
            client.send(f"NICK {taken}")
            client.send("USER x 0 * :x")
            refused = await client.next()
            self.assertEqual((refused.command, refused.params[1]), ("433", taken))
            client.send("NICK other" + taken.lower())
            welcome = await client.until("376")
            self.assertEqual((welcome[0].command, welcome[0].params[0]), ("001", "other" + taken.lower()))

    async def test_quit_and_nick_shown_once(self):
        """
        Another IRC member sees a guest's new nick as one C{NICK}, and its
        leaving as one C{QUIT} with the client's reason, however many rooms
        they share (no C{PART}); a line user still reads C{USER_LEFT} per room.
        """
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bar = await guest(self, server, "bar")
        qux = await guest(self, server, "qux")
        for client in (bar, qux):
            client.send("JOIN #lounge,#den")
            await client.until("366")
            await client.until("366")
        self.assertEqual((await bar.expect("JOIN")).source.split("!")[0], "qux")
        qux.send("NICK quux")
        renamed = await qux.expect("NICK")
        self.assertEqual((renamed.source.split("!")[0], renamed.params), ("qux", ("quux",)))
        await alice.ok("SEND_MESSAGE:lounge:after the nick")
        seen = await bar.until("PRIVMSG")
        nicks = [(m.source.split("!")[0], m.params) for m in seen if m.command == "NICK"]
        self.assertEqual(nicks, [("qux", ("quux",))])

        qux.send("QUIT :qux out")
        await qux.expect("ERROR")
        # told in the QUIT's turn: before anything bar asks next is answered
        seen = await bar.sync()
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in seen],
                         [("QUIT", "quux", ("Quit: qux out",))])
        await qux.closed
        self.assertEqual(await alice.event("USER_LEFT:"), "USER_LEFT:lounge:quux")
        await alice.ok("SEND_MESSAGE:lounge:after the quit")
        seen = await bar.until("PRIVMSG")
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in seen],
                         [("PRIVMSG", "alice", ("#lounge", "after the quit"))])

    async def test_guest_cannot_log_in_on_the_line_protocol(self):
        """A guest has no password: C{LOGIN} as it fails like an unknown user."""
        server = await start_server(self, irc=True, irc_guests=True)
        await guest(self, server, "visitor")
        line = await server.connect()
        reply = await line.request("LOGIN:visitor:anything at all")
        self.assertTrue(reply[-1].startswith("ERROR:"), reply)

    async def test_guest_gone_with_its_connection(self):
        """
        When a guest's connection closes its row goes, a room it leaves
        empty goes too (the next joiner founds it afresh), and its nick is
        free again; a room with others in it stays.
        """
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bar = await guest(self, server, "bar")
        bar.send("JOIN #lounge")
        bar.send("JOIN #empty")
        await bar.until("366")
        await bar.until("366")
        bar.send("PRIVMSG #lounge :remember me")
        await alice.event("MESSAGE:")
        gone = connection_of(server, "bar").guest_gone
        bar.send("QUIT")
        await bar.closed
        await gone
        store = server.server.store
        self.assertIsNone(await store.users.by_name("bar"))
        self.assertIsNone(await store.rooms.by_name("empty"))
        self.assertIsNotNone(await store.rooms.by_name("lounge"))
        self.assertEqual(await alice.event("USER_LEFT:"), "USER_LEFT:lounge:bar")
        again = await guest(self, server, "bar")
        again.send("JOIN #empty")
        joined = await again.until("366")
        [names] = [m for m in joined if m.command == "353"]
        self.assertEqual(names.params[-1], "@bar")

    async def test_without_guests_a_notice(self):
        """Without C{--irc-guests} nothing changes: a notice says how to log in, and JOIN needs an account."""
        server = await start_server(self, irc=True)
        client = await irc_client(self, server.irc_port)
        client.send("NICK visitor")
        client.send("USER x 0 * :x")
        await client.until("376")
        notice = await client.expect("NOTICE")
        self.assertIn("not logged in", notice.params[-1])
        client.send("JOIN #lounge")
        refused = await client.expect("FAIL")
        self.assertEqual(refused.params[:2], ("JOIN", "ACCOUNT_REQUIRED"))

    async def test_without_guests_nicks_not_shared(self):
        """
        Without C{--irc-guests}, two connections with no account cannot
        hold one nick (C{433}, registration waits for another C{NICK}), nor
        change to one held; a nick a connection gave up is free again.
        """
        server = await start_server(self, irc=True)
        first = await irc_client(self, server.irc_port)
        first.send("NICK visitor")
        first.send("USER x 0 * :x")
        await first.until("376")
        second = await irc_client(self, server.irc_port)
        second.send("NICK VISITOR")
        second.send("USER y 0 * :y")
        refused = await second.next()
        self.assertEqual((refused.command, refused.params[1]), ("433", "VISITOR"))
        second.send("NICK caller")
        welcome = await second.until("376")
        self.assertEqual((welcome[0].command, welcome[0].params[0]), ("001", "caller"))
        await second.expect("NOTICE")
        second.send("NICK visitor")
        [refused] = await second.sync()
        self.assertEqual((refused.command, refused.params[1]), ("433", "visitor"))
        first.send("NICK moved")
        await first.expect("NICK")
        second.send("NICK visitor")
        [renamed] = await second.sync()
        self.assertEqual((renamed.command, renamed.params), ("NICK", ("visitor",)))

    async def test_guest_logs_in_with_sasl(self):
        """A guest that authenticates with SASL after registering becomes the account; the guest row goes."""
        server = await start_server(self, irc=True, irc_guests=True)
        await account(server, "bob")
        client = await irc_client(self, server.irc_port)
        client.send("CAP LS 302")
        client.send("NICK visitor")
        client.send("USER x 0 * :x")
        client.send("CAP REQ :sasl")
        client.send("CAP END")
        await client.until("376")
        gone = connection_of(server, "visitor")
        client.send("AUTHENTICATE PLAIN")
        await client.expect("AUTHENTICATE")
        payload = base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode()
        client.send(f"AUTHENTICATE {payload}")
        logged_in = await client.until("NICK")
        self.assertEqual([m.command for m in logged_in], ["900", "903", "NICK"])
        self.assertEqual(logged_in[0].params[:3], ("visitor", "visitor!visitor@" + server.server.config.server_name,
                                                   "bob"))
        self.assertEqual(logged_in[-1].params, ("bob",))
        self.assertFalse(gone.guest)
        self.assertIsNone(await server.server.store.users.by_name("visitor"))
