"""
End-to-end tests of the IRC commands about users and channels (C{WHO},
C{WHOIS}, C{AWAY}, C{LIST}, C{KICK}, C{MODE}, C{INVITE}, C{OPER}): the
real server on real TCP over the real database, IRC clients
(L{tests.test_irc_e2e.IRCClient}) and line-protocol clients together.
"""

from twisted.trial.unittest import TestCase

from tests.support import start_server
from tests.test_irc_e2e import PASSWORD, account, irc_client


async def irc_user(testcase: TestCase, server, nick: str):
    """An IRC client logged in to a fresh account C{nick}."""
    await account(server, nick)
    client = await irc_client(testcase, server.irc_port)
    await client.login(nick)
    return client


async def joined(client, target: str) -> None:
    """Join a channel and read up to the end of its names."""
    client.send(f"JOIN {target}")
    await client.until("366")


def replies(found: list, command: str) -> list[tuple]:
    """The parameters (without the target nick) of each reply with C{command}."""
    return [m.params[1:] for m in found if m.command == command]


class WhoTests(TestCase):
    """WHO, WHOIS and AWAY."""

    timeout = 60

    async def test_who_whois_away(self):
        """
        WHO lists a channel's members with their prefixes, here or gone;
        WHOIS tells a user's channels and account; AWAY marks gone, and a
        PRIVMSG to an away user is answered 301.
        """
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await account(server, "dave")
        bob = await irc_user(self, server, "bob")
        carol = await irc_user(self, server, "carol")
        await joined(bob, "#lounge")
        server_name = server.server.config.server_name

        carol.send("WHO #lounge")
        found = await carol.sync()
        self.assertEqual(sorted(replies(found, "352")), [
            ("#lounge", "alice", server_name, server_name, "alice", "H@", "0 alice"),
            ("#lounge", "bob", server_name, server_name, "bob", "H", "0 bob"),
        ])
        self.assertEqual(found[-1].command, "315")

        bob.send("AWAY :out for lunch")
        self.assertEqual([m.command for m in await bob.sync()], ["306"])
        carol.send("WHO bob")
        found = await carol.sync()
        self.assertEqual(replies(found, "352"), [("*", "bob", server_name, server_name, "bob", "G", "0 bob")])
        carol.send("PRIVMSG bob :are you there?")
        self.assertEqual(replies(await carol.sync(), "301"), [("bob", "out for lunch")])
        self.assertEqual((await bob.expect("PRIVMSG")).params, ("bob", "are you there?"))

        carol.send("WHOIS bob")
        found = await carol.sync()
        self.assertEqual([m.command for m in found], ["311", "312", "301", "319", "330", "318"])
        self.assertEqual(replies(found, "311"), [("bob", "bob", server_name, "*", "bob")])
        self.assertEqual(replies(found, "319"), [("bob", "#lounge")])
        self.assertEqual(replies(found, "330"), [("bob", "bob", "is logged in as")])

        bob.send("AWAY")
        self.assertEqual([m.command for m in await bob.sync()], ["305"])
        carol.send("WHO bob")
        self.assertEqual(replies(await carol.sync(), "352")[0][5], "H")
        carol.send("PRIVMSG bob :back?")
        self.assertEqual(await carol.sync(), [])

        # an offline account is a nick too, shown as gone
        carol.send("WHOIS dave")
        found = await carol.sync()
        self.assertEqual([m.command for m in found], ["311", "312", "301", "330", "318"])
        carol.send("WHO dave")
        self.assertEqual(replies(await carol.sync(), "352")[0][5], "G")
        carol.send("WHOIS nobody")
        self.assertEqual([m.command for m in await carol.sync()], ["401", "318"])
        carol.send("WHO #nowhere")
        self.assertEqual([m.command for m in await carol.sync()], ["315"])

    async def test_whois_hides_private_rooms(self):
        """WHOIS lists only the rooms the asker can see."""
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:secret:private")
        await alice.ok("CREATE_ROOM:lounge")
        bob = await irc_user(self, server, "bob")
        bob.send("WHOIS alice")
        self.assertEqual(replies(await bob.sync(), "319"), [("alice", "@#lounge")])

    async def test_user_names_and_masks(self):
        """
        WHO and WHOIS show the user name and real name of a user's C{USER}
        (the nick for a user with no IRC connection here); a mask lists
        only the client and those who share a room with it.
        """
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await account(server, "bob")
        bob = await irc_client(self, server.irc_port)
        bob.send(f"PASS :bob:{PASSWORD}")
        bob.send("NICK bob")
        bob.send("USER bobby 0 * :Bob the Builder")
        await bob.until("376")
        await joined(bob, "#lounge")
        carol = await irc_user(self, server, "carol")
        await irc_user(self, server, "bobcat")
        server_name = server.server.config.server_name

        carol.send("WHOIS bob")
        self.assertEqual(replies(await carol.sync(), "311"), [("bob", "bobby", server_name, "*", "Bob the Builder")])
        carol.send("WHO bob")
        self.assertEqual(replies(await carol.sync(), "352"),
                         [("*", "bobby", server_name, server_name, "bob", "H", "0 Bob the Builder")])
        carol.send("WHO bob*")
        self.assertEqual([m.command for m in await carol.sync()], ["315"])
        await joined(carol, "#lounge")
        carol.send("WHO BOB*")
        found = await carol.sync()
        self.assertEqual(replies(found, "352"),
                         [("*", "bobby", server_name, server_name, "bob", "H", "0 Bob the Builder")])
        self.assertEqual(replies(found, "315"), [("BOB*", "End of /WHO list")])
        carol.send("WHO *")
        self.assertEqual([r[4] for r in replies(await carol.sync(), "352")], ["alice", "bob", "carol"])
        carol.send("WHO a?ice")
        self.assertEqual(replies(await carol.sync(), "352"),
                         [("*", "alice", server_name, server_name, "alice", "H", "0 alice")])


class UserhostTests(TestCase):
    """USERHOST."""

    timeout = 60

    async def test_userhost(self):
        """USERHOST names users as nick=+user@host (- when away or offline) and leaves unknown nicks out."""
        server = await start_server(self, irc=True)
        server_name = server.server.config.server_name
        alice = await irc_user(self, server, "alice")
        await irc_user(self, server, "bob")
        await account(server, "carol")
        for _ in range(50):  # carol's QUIT is noted offline as her connection closes, a moment after its OK
            alice.send("USERHOST carol")
            if replies(await alice.sync(), "302") == [(f"carol=-carol@{server_name}",)]:
                break
        alice.send("USERHOST bob carol nobody")
        self.assertEqual(replies(await alice.sync(), "302"), [(f"bob=+bob@{server_name} carol=-carol@{server_name}",)])
        alice.send("AWAY :lunch")
        await alice.sync()
        alice.send("USERHOST alice")
        self.assertEqual(replies(await alice.sync(), "302"), [(f"alice=-alice@{server_name}",)])
        alice.send("USERHOST")
        self.assertEqual([m.command for m in await alice.sync()], ["461"])


class ListTests(TestCase):
    """LIST."""

    timeout = 60

    async def test_list(self):
        """LIST shows the visible rooms with member counts and topics; names filter it."""
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        await alice.ok("SET_TOPIC:lounge:come in")
        await alice.ok("CREATE_ROOM:secret:private")
        await alice.ok("CREATE_ROOM:yard")
        bob = await irc_user(self, server, "bob")
        await joined(bob, "#lounge")
        bob.send("LIST")
        found = await bob.sync()
        self.assertEqual([m.command for m in found], ["321", "322", "322", "323"])
        self.assertEqual(replies(found, "322"), [("#lounge", "2", "come in"), ("#yard", "1", "")])
        bob.send("LIST #yard,#secret")
        self.assertEqual(replies(await bob.sync(), "322"), [("#yard", "1", "")])


class ModerationTests(TestCase):
    """KICK and MODE +b/-b."""

    timeout = 60

    async def test_kick(self):
        """KICK puts a member out (everyone reads KICK); a lower role cannot kick (482)."""
        server = await start_server(self, irc=True)
        bob = await irc_user(self, server, "bob")
        carol = await irc_user(self, server, "carol")
        dave = await server.user("dave", PASSWORD)
        await joined(bob, "#den")
        await joined(carol, "#den")
        await dave.ok("JOIN_ROOM:den")
        bob.send("KICK #den carol :too loud")
        kicked = await bob.expect("KICK")
        self.assertEqual((kicked.source.split("!")[0], kicked.params), ("bob", ("#den", "carol", "too loud")))
        self.assertEqual((await carol.expect("KICK")).params, ("#den", "carol", "too loud"))
        self.assertEqual(await dave.event("USER_KICKED:"), "USER_KICKED:den:carol:bob:too loud")
        await joined(carol, "#den")
        for line, numeric in [("KICK #den bob", "482"), ("KICK #nowhere bob", "403"), ("KICK #den", "461")]:
            carol.send(line)
            [reply] = await carol.sync()
            self.assertEqual(reply.command, numeric, line)
        bob.send("KICK #den nobody")
        self.assertEqual((await bob.sync())[-1].command, "441")
        bob.send("PART #den")
        await bob.expect("PART")
        carol.send("KICK #den dave")
        self.assertEqual((await carol.sync())[-1].command, "482")

    async def test_bans(self):
        """
        MODE +b bans an account (the banned member reads MODE and KICK and
        cannot join: 474), MODE b lists the bans, MODE -b lifts one.
        """
        server = await start_server(self, irc=True)
        bob = await irc_user(self, server, "bob")
        carol = await irc_user(self, server, "carol")
        await joined(bob, "#den")
        await joined(carol, "#den")
        bob.send("MODE #den")
        self.assertEqual(replies(await bob.sync(), "324"), [("#den", "+nt")])
        bob.send("MODE #den +b carol")
        banned = await bob.expect("MODE")
        self.assertEqual(banned.params, ("#den", "+b", "carol!*@*"))
        self.assertEqual((await carol.expect("MODE")).params, ("#den", "+b", "carol!*@*"))
        self.assertEqual((await carol.expect("KICK")).params[:2], ("#den", "carol"))
        bob.send("MODE #den b")
        found = await bob.sync()
        self.assertEqual([m.params[1:4] for m in found if m.command == "367"], [("#den", "carol!*@*", "bob")])
        self.assertEqual(found[-1].command, "368")
        carol.send("JOIN #den")
        self.assertEqual([m.command for m in await carol.sync()], ["474"])
        bob.send("MODE #den -b carol!*@*")
        self.assertEqual((await bob.expect("MODE")).params, ("#den", "-b", "carol!*@*"))
        bob.send("MODE #den +b")
        self.assertEqual([m.command for m in await bob.sync()], ["368"])
        await joined(carol, "#den")
        for line, numeric in [("MODE #den +b bob", "482"), ("MODE #den +x", "472"), ("MODE #nowhere", "403"),
                              ("MODE #den +b *!*@host", "FAIL")]:
            carol.send(line)
            [reply] = await carol.sync()
            self.assertEqual(reply.command, numeric, line)

    async def test_role_modes(self):
        """
        C{MODE #room +o/-o/+h/-h nick} sets roles through the domain: C{+o}
        admin, C{+h} moderator, C{-o}/C{-h} member when the nick holds that
        mode; everyone reads the role change (the client in its reply, line
        users C{ROLE_CHANGED}); a change that changes nothing says nothing;
        several modes in one line are done in turn; the domain's refusals
        are 482, 441, 401.
        """
        server = await start_server(self, irc=True)
        bob = await irc_user(self, server, "bob")
        carol = await irc_user(self, server, "carol")
        dave = await irc_user(self, server, "dave")
        await account(server, "frank")
        for client in (bob, carol, dave):
            await joined(client, "#den")
        erin = await server.user("erin", PASSWORD)
        await erin.ok("JOIN_ROOM:den")
        for client in (bob, carol, dave):
            await client.sync()

        def said(found: list) -> list:
            return [(m.command, m.source.split("!")[0], m.params) for m in found]

        bob.send("MODE #den +h carol")
        self.assertEqual(said(await bob.sync()),
                         [("MODE", "bob", ("#den", "+h", "carol")),
                          ("NOTICE", server.server.config.server_name,
                           ("#den", "bob made carol moderator of #den"))])
        self.assertEqual((await carol.expect("MODE")).params, ("#den", "+h", "carol"))
        self.assertEqual(await erin.event("ROLE_CHANGED:"), "ROLE_CHANGED:den:carol:moderator:bob")
        await carol.sync()
        # a moderator sets no roles
        carol.send("MODE #den +h dave")
        self.assertEqual([m.command for m in await carol.sync()], ["482"])
        bob.send("MODE #den +o carol")
        self.assertEqual([(m.command, m.params) for m in await bob.sync()][0],
                         ("MODE", ("#den", "-h+o", "carol", "carol")))
        self.assertEqual(await erin.event("ROLE_CHANGED:"), "ROLE_CHANGED:den:carol:admin:bob")
        # nothing to change: a mode held, one below it, one not held
        for line in ("MODE #den +o carol", "MODE #den +h carol", "MODE #den -h carol", "MODE #den -o dave"):
            bob.send(line)
            self.assertEqual(await bob.sync(), [], line)
        # an admin cannot take the owner's mode
        await carol.sync()
        carol.send("MODE #den -o bob")
        self.assertEqual([m.command for m in await carol.sync()], ["482"])
        bob.send("MODE #den -o carol")
        self.assertEqual([(m.command, m.params) for m in await bob.sync()][0], ("MODE", ("#den", "-o", "carol")))
        self.assertEqual(await erin.event("ROLE_CHANGED:"), "ROLE_CHANGED:den:carol:member:bob")
        bob.send("MODE #den +hh carol dave")
        self.assertEqual([(m.command, m.params) for m in await bob.sync() if m.command == "MODE"],
                         [("MODE", ("#den", "+h", "carol")), ("MODE", ("#den", "+h", "dave"))])
        bob.send("MODE #den -h+o dave dave")
        self.assertEqual([(m.command, m.params) for m in await bob.sync() if m.command == "MODE"],
                         [("MODE", ("#den", "-h", "dave")), ("MODE", ("#den", "+o", "dave"))])
        await carol.sync()
        carol.send("NAMES #den")
        [names] = replies(await carol.sync(), "353")
        self.assertEqual(sorted(names[-1].split()), ["%carol", "@bob", "@dave", "erin"])
        for line, numeric in [("MODE #den +o nobody", "401"), ("MODE #den +o frank", "441"),
                              ("MODE #den -h frank", "441"), ("MODE #den +o", "461")]:
            bob.send(line)
            self.assertEqual([m.command for m in await bob.sync()], [numeric], line)

    async def test_fixed_modes(self):
        """
        The modes C{324} shows are lairchat's rules: setting one again says
        nothing, taking it off is refused (C{FAIL MODE FIXED_MODE}), and the
        topic stays the moderators' (C{482} for a member).
        """
        server = await start_server(self, irc=True)
        bob = await irc_user(self, server, "bob")
        carol = await irc_user(self, server, "carol")
        await joined(bob, "#den")
        await joined(carol, "#den")
        self.assertEqual((await bob.expect("JOIN")).source.split("!")[0], "carol")
        bob.send("MODE #den +t")
        self.assertEqual(await bob.sync(), [])
        bob.send("MODE #den -t")
        [refused] = await bob.sync()
        self.assertEqual((refused.command, refused.params[:4]), ("FAIL", ("MODE", "FIXED_MODE", "#den", "t")))
        bob.send("MODE #den +i")
        self.assertEqual([m.command for m in await bob.sync()], ["472"])
        carol.send("TOPIC #den :mine")
        self.assertEqual([m.command for m in await carol.sync()], ["482"])


class PartTests(TestCase):
    """PART with a reason."""

    timeout = 60

    async def test_part_reason(self):
        """
        A PART's reason reaches the other IRC members and the client's own
        PART; line users read USER_LEFT as always.
        """
        server = await start_server(self, irc=True)
        line = await server.user("dave", PASSWORD)
        await line.ok("CREATE_ROOM:lounge")
        alice = await irc_user(self, server, "alice")
        bob = await irc_user(self, server, "bob")
        await joined(alice, "#lounge")
        await joined(bob, "#lounge")
        await alice.expect("JOIN")
        bob.send("PART #lounge :bye everyone")
        own = await bob.expect("PART")
        self.assertEqual(own.params, ("#lounge", "bye everyone"))
        seen = await alice.expect("PART")
        self.assertEqual((seen.source.split("!")[0], seen.params), ("bob", ("#lounge", "bye everyone")))
        self.assertEqual(await line.event("USER_LEFT:lounge:bob"), "USER_LEFT:lounge:bob")


class InviteTests(TestCase):
    """INVITE, and JOIN as the answer."""

    timeout = 60

    async def test_invite_and_join(self):
        """
        INVITE makes a lairchat invitation (341); the invitee reads INVITE
        and joins the private room by JOIN, which accepts it.
        """
        server = await start_server(self, irc=True)
        owner = await server.user("alice", PASSWORD)
        await owner.ok("CREATE_ROOM:secret:private")
        await owner.ok("QUIT")
        alice = await irc_client(self, server.irc_port)
        await alice.login("alice")
        carol = await irc_user(self, server, "carol")
        carol.send("JOIN #secret")
        self.assertEqual([m.command for m in await carol.sync()], ["473"])
        alice.send("INVITE carol #secret")
        self.assertEqual(replies(await alice.sync(), "341"), [("carol", "#secret")])
        invite = await carol.expect("INVITE")
        self.assertEqual((invite.source.split("!")[0], invite.params), ("alice", ("carol", "#secret")))
        await joined(carol, "#secret")
        self.assertEqual((await alice.expect("JOIN")).source.split("!")[0], "carol")
        for line, numeric in [("INVITE carol #secret", "443"), ("INVITE nobody #secret", "401"),
                              ("INVITE carol #nowhere", "403"), ("INVITE carol", "461")]:
            alice.send(line)
            [reply] = await alice.sync()
            self.assertEqual(reply.command, numeric, line)


class OperTests(TestCase):
    """OPER for server admins."""

    timeout = 60

    async def test_oper(self):
        """A server admin's own name and password make an operator (381); others get 491 or 464."""
        server = await start_server(self, irc=True, admins=("root_user",))
        root = await irc_user(self, server, "root_user")
        bob = await irc_user(self, server, "bob")
        for line, numeric in [("OPER root_user wrong", "464"), ("OPER bob " + PASSWORD.replace(" ", ""), "464"),
                              ("OPER root_user", "461")]:
            root.send(line)
            [reply] = await root.sync()
            self.assertEqual(reply.command, numeric, line)
        root.send(f"OPER root_user :{PASSWORD}")
        self.assertEqual([m.command for m in await root.sync()], ["381"])
        root.send("MODE root_user")
        self.assertEqual(replies(await root.sync(), "221"), [("+o",)])
        bob.send("WHOIS root_user")
        self.assertIn("313", [m.command for m in await bob.sync()])
        bob.send(f"OPER bob :{PASSWORD}")
        self.assertEqual([m.command for m in await bob.sync()], ["491"])
