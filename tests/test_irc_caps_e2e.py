"""
End-to-end tests of the IRCv3 capabilities that change what IRC clients
read of each other (C{away-notify} and away shared across nodes,
C{message-tags} client tags and C{TAGMSG}, reactions, C{REDACT},
C{account-tag}, C{extended-join}, C{account-notify}) and of role prefixes:
the real server on real TCP over the real database, IRC clients
(L{tests.test_irc_e2e.IRCClient}) beside line-protocol clients.
"""

import base64

from twisted.trial.unittest import TestCase

from tests.support import start_nodes, start_server
from tests.test_irc_commands_e2e import joined, replies
from tests.test_irc_e2e import PASSWORD, account, irc_client
from tests.test_irc_guests_e2e import guest


async def irc_user(testcase: TestCase, server, nick: str, caps: str = "message-tags server-time"):
    """An IRC client logged in to a fresh account C{nick}, with C{caps}."""
    await account(server, nick)
    client = await irc_client(testcase, server.irc_port)
    await client.login(nick, caps=caps)
    return client


class AwayTests(TestCase):
    """AWAY is the domain's: every node shows it, and away-notify clients hear of it."""

    timeout = 60

    async def test_away_across_nodes(self):
        """
        A user away on one node is away on the other: C{AWAY} to clients
        with away-notify there, C{G} in WHO, C{301} in WHOIS and to a
        PRIVMSG; coming back is C{AWAY} alone.  The line protocol shows
        nothing of it.
        """
        first, second = await start_nodes(self, 2, irc=True)
        alice = await second.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bob = await irc_user(self, first, "bob")
        carol = await irc_user(self, second, "carol", "away-notify")
        dave = await irc_user(self, second, "dave")
        for client in (bob, carol, dave):
            await joined(client, "#lounge")

        bob.send("AWAY :out for lunch")
        self.assertIn("306", [m.command for m in await bob.sync()])
        told = await carol.expect("AWAY")
        self.assertEqual((told.source.split("!")[0], told.params), ("bob", ("out for lunch",)))
        carol.send("WHO #lounge")
        flags = {r[4]: r[5] for r in replies(await carol.sync(), "352")}
        self.assertEqual(flags, {"alice": "H@", "bob": "G", "carol": "H", "dave": "H"})
        carol.send("WHOIS bob")
        self.assertEqual(replies(await carol.sync(), "301"), [("bob", "out for lunch")])
        carol.send("PRIVMSG bob :there?")
        self.assertEqual(replies(await carol.sync(), "301"), [("bob", "out for lunch")])
        # dave has no away-notify: nothing but the room's traffic
        bob.send("PRIVMSG #lounge :back soon")
        self.assertEqual([m.command for m in await dave.until("PRIVMSG")], ["PRIVMSG"])
        # the line protocol's wire has nothing for it: before the message, only the joins
        self.assertTrue((await alice.event("MESSAGE:")).endswith(":back soon"))
        self.assertEqual({seen.split(":")[0] for seen in alice.events}, {"USER_JOINED"})

        bob.send("AWAY")
        self.assertIn("305", [m.command for m in await bob.sync()])
        back = await carol.expect("AWAY")
        self.assertEqual((back.source.split("!")[0], back.params), ("bob", ()))
        carol.send("WHO bob")
        self.assertEqual(replies(await carol.sync(), "352")[0][5], "H")

    async def test_away_on_join_and_gone_offline(self):
        """
        Someone away who joins is followed by their C{AWAY} for
        away-notify clients (not for themselves); once offline everywhere
        they are away no more.
        """
        server = await start_server(self, irc=True)
        carol = await irc_user(self, server, "carol", "away-notify")
        await joined(carol, "#lounge")
        bob = await irc_user(self, server, "bob")
        bob.send("AWAY :busy")
        await bob.sync()
        bob.send("JOIN #lounge")
        self.assertNotIn("AWAY", [m.command for m in await bob.until("366")])
        self.assertEqual((await carol.expect("JOIN")).source.split("!")[0], "bob")
        self.assertEqual((await carol.expect("AWAY")).params, ("busy",))

        bob.transport.loseConnection()
        await bob.closed
        again = await irc_client(self, server.irc_port)
        await again.login("bob")
        carol.send("WHOIS bob")
        self.assertEqual(replies(await carol.sync(), "301"), [])


class TagTests(TestCase):
    """Client-only tags, TAGMSG, reactions and REDACT."""

    timeout = 60

    async def test_client_tags_and_tagmsg(self):
        """
        Client-only tags of a PRIVMSG reach clients with message-tags
        (server tags a client sends do not); a TAGMSG reaches only those,
        with one msgid for the echo and the relay.
        """
        server = await start_server(self, irc=True)
        alice = await irc_user(self, server, "alice", "message-tags echo-message")
        bob = await irc_user(self, server, "bob", "message-tags")
        carol = await irc_user(self, server, "carol", "server-time")
        for client in (alice, bob, carol):
            await joined(client, "#test")

        alice.send("@+baz=bat;fizz=buzz PRIVMSG #test :hi")
        echo = await alice.expect("PRIVMSG")
        relayed = await bob.expect("PRIVMSG")
        plain = await carol.expect("PRIVMSG")
        self.assertEqual((relayed.tags["+baz"], relayed.tags["msgid"]), ("bat", echo.tags["msgid"]))
        self.assertNotIn("fizz", relayed.tags)
        self.assertNotIn("+baz", plain.tags)

        alice.send(r"@+buzz=fizz\:buzz;cat=dog TAGMSG #test")
        echo = await alice.expect("TAGMSG")
        relayed = await bob.expect("TAGMSG")
        self.assertEqual(relayed.params, ("#test",))
        self.assertEqual(relayed.tags["+buzz"], "fizz;buzz")
        self.assertNotIn("cat", relayed.tags)
        self.assertEqual(echo.tags["msgid"], relayed.tags["msgid"])
        self.assertEqual(await carol.sync(), [])

        alice.send("@+typing=active TAGMSG bob")
        direct = await bob.expect("TAGMSG")
        self.assertEqual((direct.source.split("!")[0], direct.params, direct.tags["+typing"]),
                         ("alice", ("bob",), "active"))

    async def test_reply_tag_makes_a_reply(self):
        """A PRIVMSG with +draft/reply naming a message of the channel is a reply in its thread."""
        server = await start_server(self, irc=True)
        line = await server.user("dave", PASSWORD)
        await line.ok("CREATE_ROOM:test")
        alice = await irc_user(self, server, "alice")
        await joined(alice, "#test")
        await line.ok("SEND_MESSAGE:test:root")
        msgid = (await alice.expect("PRIVMSG")).tags["msgid"]
        alice.send(f"@+draft/reply={msgid} PRIVMSG #test :answer")
        event = await line.event("REPLY:")
        self.assertTrue(event.startswith(f"REPLY:test:") and f":{msgid}:alice:" in event, event)

    async def test_reply_tag_in_a_direct_conversation(self):
        """
        A direct PRIVMSG with +draft/reply naming a message of that
        conversation is a reply there, between guests too: the sender's
        echo carries the tag, a recipient without message-tags reads none.
        """
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await guest(self, server, "alice")
        alice.send("CAP REQ :message-tags echo-message")
        await alice.expect("CAP")
        bob = await guest(self, server, "bob")
        bob.send("PRIVMSG alice :hey")
        msgid = (await alice.expect("PRIVMSG")).tags["msgid"]
        alice.send(f"@+draft/reply={msgid} PRIVMSG bob :hey yourself")
        echo = await alice.expect("PRIVMSG")
        self.assertEqual((echo.params, echo.tags["+draft/reply"]), (("bob", "hey yourself"), msgid))
        received = await bob.expect("PRIVMSG")
        self.assertEqual((received.params, received.tags), (("bob", "hey yourself"), {}))

    async def test_react_and_redact(self):
        """
        A TAGMSG with +draft/react and +draft/reply is a lairchat
        reaction; REDACT deletes.  Clients with the capabilities read
        TAGMSG and REDACT, the others a NOTICE, line users their events.
        """
        server = await start_server(self, irc=True)
        line = await server.user("dave", PASSWORD)
        await line.ok("CREATE_ROOM:test")
        alice = await irc_user(self, server, "alice", "message-tags echo-message draft/message-redaction")
        bob = await irc_user(self, server, "bob", "message-tags draft/message-redaction")
        carol = await irc_user(self, server, "carol", "")
        for client in (alice, bob, carol):
            await joined(client, "#test")
        alice.send("PRIVMSG #test :hello")
        msgid = (await alice.expect("PRIVMSG")).tags["msgid"]
        await line.event("MESSAGE:")

        bob.send(f"@+draft/react=👍;+draft/reply={msgid} TAGMSG #test")
        reaction = await alice.expect("TAGMSG")
        self.assertEqual((reaction.source.split("!")[0], reaction.tags["+draft/react"], reaction.tags["+draft/reply"]),
                         ("bob", "👍", msgid))
        self.assertEqual((await carol.expect("NOTICE")).params[-1], f"bob reacted 👍 to message {msgid}")
        self.assertEqual(await line.event("REACTION_ADDED:"), f"REACTION_ADDED:test:{msgid}:bob:👍")

        carol.send(f"REDACT #test {msgid}")
        [fail] = await carol.sync()
        self.assertEqual(fail.params[:4], ("REDACT", "REDACT_FORBIDDEN", "#test", msgid))
        alice.send(f"REDACT #test {msgid} :oops")
        self.assertEqual((await alice.expect("REDACT")).params, ("#test", msgid, "oops"))
        self.assertEqual((await bob.expect("REDACT")).params, ("#test", msgid, "oops"))
        self.assertEqual((await carol.expect("NOTICE")).params[-1], f"alice deleted message {msgid}")
        self.assertEqual(await line.event("MESSAGE_DELETED:"), f"MESSAGE_DELETED:test:{msgid}:alice")

        alice.send(f"REDACT #test {msgid}")
        [fail] = await alice.sync()
        self.assertEqual(fail.params[:4], ("REDACT", "UNKNOWN_MSGID", "#test", msgid))
        alice.send("REDACT #nowhere 1")
        [fail] = await alice.sync()
        self.assertEqual(fail.params[:3], ("REDACT", "INVALID_TARGET", "#nowhere"))


class AccountTests(TestCase):
    """account-tag, extended-join and account-notify, with accounts and guests."""

    timeout = 60

    async def test_account_tag_and_extended_join(self):
        """
        An account's JOIN names its account and real name, a guest's
        C{*}; an account's messages carry C{account}, a guest's none.
        """
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await irc_user(self, server, "alice", "account-tag extended-join")
        alice.send("JOIN #xyz")
        own = await alice.expect("JOIN")
        self.assertEqual(own.params, ("#xyz", "alice", "alice"))
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        bob.send("CAP LS 302")
        bob.send("NICK bob")
        bob.send("USER b 0 * :Bob Real")
        bob.send("CAP REQ :sasl")
        bob.send("AUTHENTICATE PLAIN")
        bob.send("AUTHENTICATE " + base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode())
        bob.send("CAP END")
        await bob.until("376")
        await joined(bob, "#xyz")
        self.assertEqual((await alice.expect("JOIN")).params, ("#xyz", "bob", "Bob Real"))
        bob.send("PRIVMSG #xyz :hi")
        self.assertEqual((await alice.expect("PRIVMSG")).tags, {"account": "bob"})

        visitor = await guest(self, server, "visitor")
        await joined(visitor, "#xyz")
        self.assertEqual((await alice.expect("JOIN")).params, ("#xyz", "*", "visitor"))
        visitor.send("PRIVMSG #xyz :hello")
        self.assertEqual((await alice.expect("PRIVMSG")).tags, {})
        # WHOIS says who is logged in, and a guest is not
        alice.send("WHOIS visitor")
        self.assertEqual(replies(await alice.sync(), "330"), [])
        alice.send("WHOIS bob")
        self.assertEqual(replies(await alice.sync(), "330"), [("bob", "bob", "is logged in as")])

    async def test_account_notify(self):
        """A guest that logs in with SASL is an ACCOUNT line to account-notify clients in its channels."""
        server = await start_server(self, irc=True, irc_guests=True)
        alice = await irc_user(self, server, "alice", "account-notify")
        await joined(alice, "#xyz")
        await account(server, "bob")
        visitor = await guest(self, server, "visitor")
        await joined(visitor, "#xyz")
        await alice.expect("JOIN")
        visitor.send("CAP REQ :sasl")
        await visitor.expect("CAP")
        visitor.send("AUTHENTICATE PLAIN")
        await visitor.expect("AUTHENTICATE")
        visitor.send("AUTHENTICATE " + base64.b64encode(f"\0bob\0{PASSWORD}".encode()).decode())
        await visitor.expect("903")
        logged = await alice.expect("ACCOUNT")
        self.assertEqual((logged.source.split("!")[0], logged.params), ("visitor", ("bob",)))
        self.assertEqual((await alice.expect("PART")).source.split("!")[0], "visitor")


class RoleTests(TestCase):
    """Room roles as IRC prefixes and modes."""

    timeout = 60

    async def test_roles_as_modes(self):
        """
        A room's creator is C{@}, a joiner has no prefix; a role set on the
        line protocol is a MODE and a NOTICE naming the role.
        """
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bob = await irc_user(self, server, "bob", "multi-prefix")
        carol = await irc_user(self, server, "carol", "")
        await joined(carol, "#lounge")
        bob.send("JOIN #lounge")
        [names] = [m for m in await bob.until("366") if m.command == "353"]
        self.assertEqual(sorted(names.params[-1].split()), ["@alice", "bob", "carol"])

        await alice.ok("SET_ROLE:lounge:carol:moderator")
        mode = await bob.expect("MODE")
        self.assertEqual((mode.source.split("!")[0], mode.params), ("alice", ("#lounge", "+h", "carol")))
        self.assertEqual((await bob.expect("NOTICE")).params, ("#lounge", "alice made carol moderator of #lounge"))
        await alice.ok("SET_ROLE:lounge:carol:admin")
        self.assertEqual((await bob.expect("MODE")).params, ("#lounge", "-h+o", "carol", "carol"))
        self.assertEqual((await bob.expect("NOTICE")).params, ("#lounge", "alice made carol admin of #lounge"))
        await alice.ok("SET_ROLE:lounge:bob:guest")
        self.assertEqual((await bob.expect("NOTICE")).params, ("#lounge", "alice made bob guest of #lounge"))
        bob.send("WHO #lounge")
        flags = {r[4]: r[5] for r in replies(await bob.sync(), "352")}
        self.assertEqual(flags, {"alice": "H@", "bob": "H", "carol": "H@"})
        bob.send("WHOIS carol")
        self.assertEqual(replies(await bob.sync(), "319"), [("carol", "@#lounge")])

    async def test_userhost_in_names(self):
        """With userhost-in-names, 353 names each member by the mask its lines come from."""
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        bob = await irc_user(self, server, "bob", "userhost-in-names")
        bob.send("JOIN #lounge")
        [names] = [m for m in await bob.until("366") if m.command == "353"]
        server_name = server.server.config.server_name
        self.assertEqual(sorted(names.params[-1].split()),
                         [f"@alice!alice@{server_name}", f"bob!bob@{server_name}"])
