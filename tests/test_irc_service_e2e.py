"""
End-to-end tests of the service nick (L{lairchat.irc.service}): the real
server on real TCP over the real database, an IRC client
(L{tests.test_irc_e2e.IRCClient}) running line-protocol commands through
the service, beside a line-protocol client.
"""

from twisted.trial.unittest import TestCase

from lairchat.irc.service import SERVICE_NICK
from tests.support import start_server
from tests.test_irc_commands_e2e import irc_user, joined
from tests.test_irc_e2e import PASSWORD


async def ask(client, line: str) -> tuple[list[str], list]:
    """
    Send a line-protocol request to the service; the text of each of its
    notices, and the other messages the client read meanwhile (events).
    """
    client.send(f"PRIVMSG {SERVICE_NICK} :{line}")
    found = await client.sync()
    notices = [m for m in found if m.command == "NOTICE" and m.source.startswith(SERVICE_NICK + "!")]
    for notice in notices:
        assert notice.params[0] == client.nick, notice
    return [m.params[1] for m in notices], [m for m in found if m not in notices]


class ServiceTests(TestCase):
    """An IRC client using the service."""

    timeout = 60

    async def test_search_invitations_and_errors(self):
        """
        Searching, listing one's invitations and a refused request, each
        answered as the line protocol answers it, line by line in notices;
        accepting an invitation through the service shows the IRC client
        its JOIN as an event, and the inviter hears of it.
        """
        server = await start_server(self, irc=True)
        alice = await server.user("alice", PASSWORD)
        await alice.ok("CREATE_ROOM:lounge")
        sent = await alice.ok("SEND_MESSAGE:lounge:hello from the line side")
        message_id = sent[-1].split(":")[3]
        await alice.ok("CREATE_ROOM:den:private")
        bob = await irc_user(self, server, "bob")
        bob.nick = "bob"
        await joined(bob, "#lounge")
        invited = await alice.ok("INVITE_USER:bob:den:come in")
        invitation_id = invited[-1].split(":")[2]
        self.assertEqual((await bob.expect("INVITE")).params, ("bob", "#den"))

        lines, _ = await ask(bob, "SEARCH_MESSAGES:hello")
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(f"SEARCH_RESULT:lounge:{message_id}:alice:"), lines)
        self.assertTrue(lines[0].endswith(":hello from the line side"), lines)
        self.assertEqual(lines[1], "OK:SEARCH_MESSAGES:1")

        lines, _ = await ask(bob, "@label=inv LIST_INVITATIONS")
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(f"@label=inv INVITATION:{invitation_id}:alice:bob:den:pending:member:"),
                        lines)
        self.assertTrue(lines[0].endswith(":come in"), lines)
        self.assertEqual(lines[1], "@label=inv OK:LIST_INVITATIONS:1")

        lines, _ = await ask(bob, "ROOM_INFO:nowhere")
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("ERROR:1501:NOT_FOUND:"), lines)
        lines, _ = await ask(bob, "LOGOUT")
        self.assertTrue(lines[0].startswith("ERROR:1603:UNKNOWN_COMMAND:"), lines)

        lines, seen = await ask(bob, f"ACCEPT_INVITATION:{invitation_id}")
        self.assertEqual(lines, [f"OK:ACCEPT_INVITATION:{invitation_id}:den"])
        self.assertEqual([(m.command, m.params, m.source.split("!")[0]) for m in seen], [("JOIN", ("#den",), "bob")])
        self.assertEqual(await alice.event("INVITATION_ACCEPTED:"), f"INVITATION_ACCEPTED:{invitation_id}:bob:den")
        # the room accepted through the service is its current room: history of it by a bare limit
        await alice.ok("SEND_MESSAGE:den:psst")
        await bob.expect("PRIVMSG")
        lines, _ = await ask(bob, "GET_HISTORY:5")
        self.assertEqual(lines[-1], "OK:GET_HISTORY:den:1")
        self.assertTrue(lines[0].startswith("HISTORY:den:") and lines[0].endswith(":psst"), lines)

    async def test_events_and_admin(self):
        """
        A command run through the service causes the events it causes on the
        line protocol, shown to everyone the IRC way, the asker included: a
        role change is a MODE, a message the asker's own PRIVMSG; an admin
        command answers as it does for a line admin.
        """
        server = await start_server(self, irc=True, admins=("alice",))
        carol = await server.user("carol", PASSWORD)
        alice = await irc_user(self, server, "alice")
        alice.nick = "alice"
        await joined(alice, "#hall")
        await carol.ok("JOIN_ROOM:hall")
        await alice.expect("JOIN")

        lines, seen = await ask(alice, "SET_ROLE:hall:carol:moderator")
        self.assertEqual(lines, ["OK:SET_ROLE:hall:carol:moderator"])
        self.assertEqual([(m.command, m.params) for m in seen],
                         [("MODE", ("#hall", "+h", "carol")), ("NOTICE", ("#hall", "alice made carol moderator of #hall"))])
        self.assertEqual(await carol.event("ROLE_CHANGED:"), "ROLE_CHANGED:hall:carol:moderator:alice")

        lines, seen = await ask(alice, "SEND_MESSAGE:hall:from the service")
        ok, command, room, message_id, ts = lines[0].split(":")
        self.assertEqual((ok, command, room), ("OK", "SEND_MESSAGE", "hall"))
        self.assertEqual([(m.command, m.params, m.tags.get("msgid")) for m in seen],
                         [("PRIVMSG", ("#hall", "from the service"), message_id)])
        self.assertEqual(await carol.event("MESSAGE:"), f"MESSAGE:hall:{message_id}:alice:{ts}:from the service")

        lines, _ = await ask(alice, "SERVER_STATS")
        self.assertEqual(lines[-1], "OK:SERVER_STATS")
        self.assertIn("STAT:users:2", lines)
        dave = await irc_user(self, server, "dave")
        dave.nick = "dave"
        lines, _ = await ask(dave, "SERVER_STATS")
        self.assertEqual(len(lines), 1, lines)
        self.assertTrue(lines[0].startswith("ERROR:1002:PERMISSION_DENIED:"), lines)
