"""
End-to-end tests of IRCv3 C{labeled-response}, C{batch},
C{draft/chathistory} and C{draft/read-marker} on the IRC front end: the
real server on real TCP over the real database, IRC clients
(L{tests.test_irc_e2e.IRCClient}) and line-protocol clients together.
"""

from twisted.trial.unittest import TestCase

from lairchat.irc.render import parse_time_tag
from tests.support import start_nodes, start_server
from tests.test_irc_commands_e2e import irc_user, joined
from tests.test_irc_e2e import PASSWORD, account, irc_client

HISTORY_CAPS = "batch labeled-response message-tags server-time echo-message draft/chathistory"


def history_of(found: list) -> list[tuple]:
    """C{(msgid, time, source nick, target, text)} of each PRIVMSG of a C{chathistory} batch, checked."""
    start, *inner, end = found
    assert (start.command, start.params[1]) == ("BATCH", "chathistory"), start
    ref = start.params[0][1:]
    assert (end.command, end.params) == ("BATCH", (f"-{ref}",)), end
    assert all(m.tags.get("batch") == ref for m in inner), inner
    return [(m.tags["msgid"], m.tags["time"], m.source.split("!")[0], *m.params) for m in inner]


class LabeledResponseTests(TestCase):
    """Labels on real replies, echoes included."""

    timeout = 60

    async def test_labels(self):
        """
        A labeled JOIN is one labeled-response batch; a labeled PRIVMSG's
        echo carries the label and the recipient's copy does not; a labeled
        request without a reply is ACKed.
        """
        server = await start_server(self, irc=True)
        await account(server, "alice")
        alice = await irc_client(self, server.irc_port)
        await alice.login("alice", caps="batch labeled-response echo-message")
        bob = await irc_user(self, server, "bob")
        await joined(bob, "#lounge")

        alice.send("@label=j1 JOIN #lounge")
        found = await alice.sync()
        self.assertEqual((found[0].command, found[0].params[1], found[0].tags), ("BATCH", "labeled-response",
                                                                                 {"label": "j1"}))
        ref = found[0].params[0][1:]
        self.assertEqual([m.command for m in found], ["BATCH", "JOIN", "353", "366", "BATCH"])
        self.assertEqual({m.tags.get("batch") for m in found[1:-1]}, {ref})
        self.assertEqual(found[-1].params, (f"-{ref}",))
        await bob.expect("JOIN")

        alice.send("@label=m1 PRIVMSG #lounge :hello")
        [echo] = await alice.sync()
        self.assertEqual((echo.command, echo.params, echo.tags), ("PRIVMSG", ("#lounge", "hello"), {"label": "m1"}))
        received = await bob.expect("PRIVMSG")
        self.assertNotIn("label", received.tags)

        alice.send("@label=d1 PRIVMSG bob :psst")
        [echo] = await alice.sync()
        self.assertEqual((echo.command, echo.params, echo.tags), ("PRIVMSG", ("bob", "psst"), {"label": "d1"}))
        self.assertNotIn("label", (await bob.expect("PRIVMSG")).tags)

        alice.send("@label=p1 PONG x")
        [ack] = await alice.sync()
        self.assertEqual((ack.command, ack.tags), ("ACK", {"label": "p1"}))
        alice.send("@label=e1 PRIVMSG #nowhere :x")
        [refusal] = await alice.sync()
        self.assertEqual((refusal.command, refusal.tags), ("403", {"label": "e1"}))


class ChathistoryTests(TestCase):
    """CHATHISTORY over a channel and a direct conversation."""

    timeout = 90

    async def send_all(self, client, target: str, texts: list[str]) -> list[tuple]:
        """Send messages with echo-message; C{(msgid, time, nick, target, text)} of each echo."""
        sent = []
        for text in texts:
            client.send(f"PRIVMSG {target} :{text}")
            found = await client.sync()
            [echo] = [m for m in found if m.command == "PRIVMSG" and m.params[1] == text]
            client.kept += [m for m in found if m is not echo]
            sent.append((echo.tags["msgid"], echo.tags["time"], echo.source.split("!")[0], *echo.params))
        return sent

    async def history(self, client, line: str) -> list[tuple]:
        """The messages of the chathistory batch C{line} answers."""
        client.send(line)
        return history_of(await client.sync())

    async def test_channel(self):
        """
        Every subcommand and selector over a channel's messages, oldest
        first, with exclusive bounds, a centred AROUND, BETWEEN both ways;
        actions and a line-protocol reply as IRC shows them live.
        """
        server = await start_server(self, irc=True)
        await account(server, "alice")
        alice = await irc_client(self, server.irc_port)
        login = await alice.login("alice", caps=HISTORY_CAPS)
        isupport = " ".join(" ".join(m.params) for m in login if m.command == "005")
        self.assertIn("CHATHISTORY=200", isupport)
        await joined(alice, "#hist")
        carol = await server.user("carol", PASSWORD)
        await carol.ok("JOIN_ROOM:hist")
        sent = await self.send_all(alice, "#hist", [f"message {n}" for n in range(8)] + ["\x01ACTION waves\x01"])
        reply = await carol.ok(f"REPLY_MESSAGE:{sent[2][0]}:a reply")
        reply_id = reply[-1].split(":")[3]
        reply_line = await alice.expect("PRIVMSG")
        self.assertEqual(reply_line.tags["+draft/reply"], sent[2][0])
        sent.append((reply_id, reply_line.tags["time"], "carol", "#hist", "a reply"))
        msgid = [m[0] for m in sent]

        self.assertEqual(await self.history(alice, "CHATHISTORY LATEST #hist * 100"), sent)
        self.assertEqual(await self.history(alice, "CHATHISTORY LATEST #HIST * 3"), sent[-3:])
        self.assertEqual(await self.history(alice, f"CHATHISTORY LATEST #hist msgid={msgid[6]} 100"), sent[7:])
        self.assertEqual(await self.history(alice, f"CHATHISTORY BEFORE #hist msgid={msgid[6]} 2"), sent[4:6])
        self.assertEqual(await self.history(alice, f"CHATHISTORY AFTER #hist msgid={msgid[3]} 2"), sent[4:6])
        self.assertEqual(await self.history(alice, f"CHATHISTORY AROUND #hist msgid={msgid[5]} 1"), sent[5:6])
        self.assertEqual(await self.history(alice, f"CHATHISTORY AROUND #hist msgid={msgid[5]} 3"), sent[4:7])
        self.assertEqual(await self.history(alice, f"CHATHISTORY BETWEEN #hist msgid={msgid[0]} msgid={msgid[-1]} 3"),
                         sent[1:4])
        self.assertEqual(await self.history(alice, f"CHATHISTORY BETWEEN #hist msgid={msgid[-1]} msgid={msgid[0]} 3"),
                         sent[-4:-1])
        self.assertEqual(await self.history(alice, f"CHATHISTORY BETWEEN #hist msgid={msgid[-1]} msgid={msgid[0]} 100"),
                         sent[1:-1])

        # timestamps: bounds at the millisecond a message shows, whatever messages share one
        moment = sent[4][1]
        ms = parse_time_tag(moment)
        later = [m for m in sent if parse_time_tag(m[1]) > ms]
        earlier = [m for m in sent if parse_time_tag(m[1]) < ms]
        self.assertEqual(await self.history(alice, f"CHATHISTORY AFTER #hist timestamp={moment} 100"), later)
        self.assertEqual(await self.history(alice, f"CHATHISTORY LATEST #hist timestamp={moment} 100"), later)
        self.assertEqual(await self.history(alice, f"CHATHISTORY BEFORE #hist timestamp={moment} 100"), earlier)
        self.assertIn(sent[4], await self.history(alice, f"CHATHISTORY AROUND #hist timestamp={moment} 3"))
        self.assertEqual(
            await self.history(alice, f"CHATHISTORY BETWEEN #hist timestamp={sent[-1][1]} msgid={msgid[0]} 100"),
            [m for m in sent if parse_time_tag(sent[0][1]) < parse_time_tag(m[1]) < parse_time_tag(sent[-1][1])])

        # the action is an action again; a deleted message leaves history
        self.assertEqual(sent[8][4], "\x01ACTION waves\x01")
        await carol.ok(f"DELETE_MESSAGE:{reply_id}")
        await alice.expect("NOTICE")
        self.assertEqual(await self.history(alice, "CHATHISTORY LATEST #hist * 1"), sent[8:9])

        alice.send("CHATHISTORY LATEST #nowhere * 10")
        [refusal] = await alice.sync()
        self.assertEqual(refusal.params[:4], ("CHATHISTORY", "INVALID_TARGET", "LATEST", "#nowhere"))
        await carol.ok("CREATE_ROOM:other")
        alice.send("CHATHISTORY LATEST #other * 10")
        [refusal] = await alice.sync()
        self.assertEqual((refusal.command, refusal.params[1]), ("FAIL", "INVALID_TARGET"))
        for bad in ("CHATHISTORY BEFORE #hist msgid=x 10", "CHATHISTORY BEFORE #hist * 10",
                    "CHATHISTORY LATEST #hist * many", "CHATHISTORY SIDEWAYS #hist * 1"):
            alice.send(bad)
            [refusal] = await alice.sync()
            self.assertEqual((refusal.command, refusal.params[:2]), ("FAIL", ("CHATHISTORY", "INVALID_PARAMS")))
        alice.send("CHATHISTORY BEFORE #hist")
        [refusal] = await alice.sync()
        self.assertEqual(refusal.params[:2], ("CHATHISTORY", "NEED_MORE_PARAMS"))

    async def test_direct_and_targets(self):
        """
        A nick's conversation reads as it was shown live, for both parties;
        TARGETS lists channels and nicks by their newest message, least
        recent first, within exclusive bounds.
        """
        server = await start_server(self, irc=True)
        await account(server, "alice")
        await account(server, "bob")
        alice = await irc_client(self, server.irc_port)
        await alice.login("alice", caps=HISTORY_CAPS)
        bob = await irc_client(self, server.irc_port)
        await bob.login("bob", caps=HISTORY_CAPS)
        await joined(alice, "#first")
        first = await self.send_all(alice, "#first", ["in first"])
        to_bob = await self.send_all(alice, "bob", ["hi bob"])
        to_alice = await self.send_all(bob, "alice", ["hi alice"])
        await alice.expect("PRIVMSG")
        conversation = to_bob + to_alice
        self.assertEqual(await self.history(alice, "CHATHISTORY LATEST BOB * 10"), conversation)
        self.assertEqual(await self.history(bob, "CHATHISTORY LATEST alice * 10"), conversation)
        self.assertEqual(await self.history(bob, f"CHATHISTORY BEFORE alice msgid={to_alice[0][0]} 10"), to_bob)
        await account(server, "carol")
        self.assertEqual(await self.history(alice, "CHATHISTORY LATEST carol * 10"), [])
        alice.send("CHATHISTORY LATEST nobody * 10")
        [refusal] = await alice.sync()
        self.assertEqual(refusal.params[:4], ("CHATHISTORY", "INVALID_TARGET", "LATEST", "nobody"))

        everything = "timestamp=2020-01-01T00:00:00.000Z timestamp=2262-01-01T00:00:00.000Z"
        alice.send(f"CHATHISTORY TARGETS {everything} 10")
        found = await alice.sync()
        self.assertEqual((found[0].command, found[0].params[1:]), ("BATCH", ("draft/chathistory-targets",)))
        targets = [m.params[1:] for m in found[1:-1]]
        self.assertEqual(targets, [("#first", first[0][1]), ("bob", to_alice[0][1])])
        alice.send(f"CHATHISTORY TARGETS {everything} 1")
        self.assertEqual([m.params[1] for m in (await alice.sync())[1:-1]], ["#first"])
        alice.send(f"CHATHISTORY TARGETS timestamp={to_alice[0][1]} timestamp=2020-01-01T00:00:00.000Z 10")
        expected = [t for t in targets if parse_time_tag(t[1]) < parse_time_tag(to_alice[0][1])]
        self.assertEqual([m.params[1:] for m in (await alice.sync())[1:-1]], expected)


class ReadMarkerTests(TestCase):
    """MARKREAD over lairchat's read markers."""

    timeout = 60

    async def test_markread(self):
        """
        A marker is set at a time (the newest message at or before it),
        never moves back, reads back as that message's time, comes with a
        JOIN, and goes to the user's other connections when it moves; the
        line protocol's UNREAD sees it.
        """
        server = await start_server(self, irc=True)
        await account(server, "alice")
        alice = await irc_client(self, server.irc_port)
        await alice.login("alice", caps="draft/read-marker message-tags server-time echo-message")
        alice.send("JOIN #room")
        found = await alice.sync()
        self.assertEqual([m.command for m in found], ["JOIN", "353", "MARKREAD", "366"])
        self.assertEqual(found[2].params, ("#room", "*"))
        other = await irc_client(self, server.irc_port)
        await other.login("alice", caps="draft/read-marker")
        await other.sync()
        bob = await server.user("bob", PASSWORD)
        await bob.ok("JOIN_ROOM:room")
        times = []
        for n in range(3):
            await bob.ok(f"SEND_MESSAGE:room:message {n}")
            times.append((await alice.expect("PRIVMSG")).tags["time"])

        alice.send("MARKREAD #room")
        self.assertEqual([m.params for m in await alice.sync()], [("#room", "*")])
        alice.send(f"MARKREAD #room timestamp={times[1]}")
        self.assertEqual([m.params for m in await alice.sync()], [("#room", f"timestamp={times[1]}")])
        self.assertEqual([m.params for m in await other.sync() if m.command == "MARKREAD"],
                         [("#room", f"timestamp={times[1]}")])
        line = await server.connect()
        await line.ok(f"LOGIN:alice:{PASSWORD}")
        self.assertIn("UNREAD:room:1", await line.ok("UNREAD"))

        alice.send("MARKREAD #room timestamp=2001-01-01T00:00:00.000Z")
        self.assertEqual([m.params for m in await alice.sync()], [("#room", f"timestamp={times[1]}")])
        self.assertEqual([m for m in await other.sync() if m.command == "MARKREAD"], [])
        alice.send("MARKREAD #room timestamp=2262-01-01T00:00:00.000Z")
        self.assertEqual([m.params for m in await alice.sync()], [("#room", f"timestamp={times[2]}")])
        alice.send("MARKREAD #room")
        self.assertEqual([m.params for m in await alice.sync()], [("#room", f"timestamp={times[2]}")])
        alice.send("MARKREAD #nosuch")
        self.assertEqual([m.params for m in await alice.sync()], [("#nosuch", "*")])
        alice.send("MARKREAD #room yesterday")
        self.assertEqual([(m.command, m.params[:2]) for m in await alice.sync()],
                         [("FAIL", ("MARKREAD", "INVALID_PARAMS"))])

        # the marker is the membership's: leaving the room ends it
        alice.send("PART #room")
        await alice.sync()
        alice.send("JOIN #room")
        found = await alice.sync()
        self.assertEqual([m.params for m in found if m.command == "MARKREAD"], [("#room", "*")])

    async def test_markread_across_nodes(self):
        """
        A read marker moved anywhere (C{MARK_READ} on the line protocol,
        C{MARKREAD} on another node) reaches every IRC connection of the
        user with C{draft/read-marker}, on every node, as C{MARKREAD} of the
        channel or the nick; the connection that moved it reads its reply
        only, and neither a connection without the capability nor the line
        protocol reads anything.
        """
        first, second = await start_nodes(self, 2, irc=True)
        await account(first, "alice")
        here = await irc_client(self, first.irc_port)
        await here.login("alice", caps="draft/read-marker message-tags server-time")
        there = await irc_client(self, second.irc_port)
        await there.login("alice", caps="draft/read-marker")
        plain = await irc_client(self, second.irc_port)
        await plain.login("alice")
        await joined(here, "#room")
        bob = await second.user("bob", PASSWORD)
        await bob.ok("JOIN_ROOM:room")
        sent = [(await bob.ok(f"SEND_MESSAGE:room:message {n}"))[-1].split(":")[3] for n in range(2)]
        times = [(await here.expect("PRIVMSG")).tags["time"] for _ in sent]
        for client in (here, there, plain):
            await client.sync()
        line = await second.connect()
        await line.ok(f"LOGIN:alice:{PASSWORD}")

        await line.ok(f"MARK_READ:room:{sent[0]}")
        for client in (here, there):
            self.assertEqual((await client.expect("MARKREAD")).params, ("#room", f"timestamp={times[0]}"))
        self.assertEqual([m for m in await plain.sync() if m.command == "MARKREAD"], [])
        await line.no_event()

        here.send(f"MARKREAD #room timestamp={times[1]}")
        self.assertEqual([(m.command, m.params) for m in await here.sync()],
                         [("MARKREAD", ("#room", f"timestamp={times[1]}"))])
        self.assertEqual((await there.expect("MARKREAD")).params, ("#room", f"timestamp={times[1]}"))
        # not moved (an older message): nobody is told
        await line.ok(f"MARK_READ:room:{sent[0]}")
        self.assertEqual([m for m in await there.sync() if m.command == "MARKREAD"], [])

        direct = (await bob.ok("DM:alice:psst"))[-1].split(":")[3]
        dm_time = (await here.expect("PRIVMSG")).tags["time"]
        await line.ok(f"MARK_READ:@bob:{direct}")
        self.assertEqual((await here.expect("MARKREAD")).params, ("bob", f"timestamp={dm_time}"))
        self.assertEqual((await there.expect("MARKREAD")).params, ("bob", f"timestamp={dm_time}"))
        self.assertEqual([m for m in await plain.sync() if m.command == "MARKREAD"], [])
        self.assertEqual([seen for seen in line.events if not seen.startswith("PRIVATE_MESSAGE:")], [])


class NoticeHistoryTests(TestCase):
    """Notices read back as notices."""

    timeout = 60

    async def test_notices_in_history(self):
        """
        C{CHATHISTORY} replays a notice as a C{NOTICE} and a message as a
        C{PRIVMSG}, in a channel and in a conversation; a notice to an
        offline nick is handed over at login as a C{NOTICE}; the line
        protocol's C{GET_HISTORY} shows both as the C{HISTORY} lines of any
        message.
        """
        server = await start_server(self, irc=True)
        await account(server, "alice")
        await account(server, "bob")
        alice = await irc_client(self, server.irc_port)
        await alice.login("alice", caps=HISTORY_CAPS)
        await joined(alice, "#hist")
        alice.send("PRIVMSG #hist :a message")
        alice.send("NOTICE #hist :a notice")
        alice.send("NOTICE bob :while you were out")
        await alice.sync()

        alice.send("CHATHISTORY LATEST #hist * 10")
        found = await alice.sync()
        ids = [m[0] for m in history_of(found)]
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in found[1:-1]],
                         [("PRIVMSG", "alice", ("#hist", "a message")), ("NOTICE", "alice", ("#hist", "a notice"))])

        bob = await irc_client(self, server.irc_port)
        await bob.login("bob", caps=HISTORY_CAPS)
        handed = [m for m in await bob.sync() if m.command in ("PRIVMSG", "NOTICE")]
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in handed],
                         [("NOTICE", "alice", ("bob", "while you were out"))])
        bob.send("CHATHISTORY LATEST alice * 10")
        found = await bob.sync()
        history_of(found)
        self.assertEqual([(m.command, m.source.split("!")[0], m.params) for m in found[1:-1]],
                         [("NOTICE", "alice", ("bob", "while you were out"))])

        line = await server.connect()
        await line.ok(f"LOGIN:alice:{PASSWORD}")
        listed = await line.ok("GET_HISTORY:hist")
        self.assertEqual([entry.split(":", 7)[:4] + entry.split(":", 7)[5:] for entry in listed[:-1]],
                         [["HISTORY", "hist", ids[0], "alice", "0", "0", "a message"],
                          ["HISTORY", "hist", ids[1], "alice", "0", "0", "a notice"]])
        self.assertEqual(listed[-1], "OK:GET_HISTORY:hist:2")
