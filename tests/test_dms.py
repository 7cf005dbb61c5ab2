"""
Tests for direct messages: L{lairchat.store.conversations} against the real
database, and DM, DM_HISTORY, LIST_CONVERSATIONS, the offline delivery at
login, and every message operation on direct messages, end to end over TCP.
"""

from twisted.internet.defer import Deferred, gatherResults
from twisted.trial.unittest import TestCase

from lairchat.errors import NotFound
from lairchat.models import Party
from lairchat.store.conversations import direct_key
from tests.support import fresh_store, start_server
from tests.test_messages import make_users


def party(user):
    """A user as a party of a conversation."""
    return Party(user.id, user.username)


def fields(line, count):
    """The first C{count} colon-separated fields of a line (the rest is text)."""
    return line.split(":", count)[:count]


class ConversationStoreTests(TestCase):
    """L{lairchat.store.conversations.ConversationStore}."""

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice, self.bob, self.carol = await make_users(self.store, "alice", "bob", "carol")

    def test_direct_key(self):
        """The key is the same whichever way round, lower id first."""
        self.assertEqual(direct_key(7, 3), "3:7")
        self.assertEqual(direct_key(3, 7), "3:7")

    async def test_open_once(self):
        """The first use creates a two-member room; later uses find it, from either side."""
        self.assertIsNone(await self.store.conversations.between(self.alice.id, self.bob.id))
        room = await self.store.conversations.open(party(self.alice), party(self.bob))
        self.assertEqual((room.kind, room.name, room.privacy), ("direct", None, "private"))
        self.assertEqual(await self.store.conversations.open(party(self.bob), party(self.alice)), room)
        self.assertEqual(await self.store.conversations.between(self.bob.id, self.alice.id), room)
        parties = await self.store.conversations.parties(room.id)
        self.assertEqual([p.username for p in parties], ["alice", "bob"])
        self.assertIsNone(await self.store.rooms.by_name(str(room.id)))

    async def test_open_concurrently(self):
        """Both parties starting the conversation at once get one room."""
        rooms = await gatherResults([
            Deferred.fromCoroutine(self.store.conversations.open(*pair))
            for pair in [(party(self.alice), party(self.bob)), (party(self.bob), party(self.alice))] * 3
        ])
        self.assertEqual(len({r.id for r in rooms}), 1)
        count = await self.store.db.fetchone("SELECT count(*) FROM rooms WHERE kind = 'direct'")
        self.assertEqual(count[0], 1)

    async def test_open_with_a_deleted_user(self):
        """
        A party deleted after it was looked up (a guest whose connection
        closed) is NotFound, and no conversation is left behind.
        """
        await self.store.db.execute("DELETE FROM users WHERE id = %s", (self.bob.id,))
        with self.assertRaises(NotFound):
            await self.store.conversations.open(party(self.alice), party(self.bob))
        count = await self.store.db.fetchone("SELECT count(*) FROM rooms WHERE kind = 'direct'")
        self.assertEqual(count[0], 0)

    async def test_list_for(self):
        """Each conversation with the other party, the last time and the unread count; newest first."""
        with_bob = await self.store.conversations.open(party(self.alice), party(self.bob))
        with_carol = await self.store.conversations.open(party(self.alice), party(self.carol))
        await self.store.messages.post(with_bob.id, self.bob.id, "one")
        await self.store.messages.post(with_bob.id, self.bob.id, "two")
        await self.store.messages.post(with_bob.id, self.alice.id, "mine")
        last = await self.store.messages.post(with_carol.id, self.carol.id, "hey")
        listed = await self.store.conversations.list_for(self.alice.id)
        self.assertEqual([(c.other.username, c.unread) for c in listed], [("carol", 1), ("bob", 2)])
        self.assertEqual(listed[0].last_ms, last.created_ms)
        self.assertEqual([(c.other.username, c.unread) for c in await self.store.conversations.list_for(self.bob.id)],
                         [("alice", 1)])

    async def test_take_undelivered(self):
        """The other party's undelivered messages, once; one's own never."""
        room = await self.store.conversations.open(party(self.alice), party(self.bob))
        first = await self.store.messages.post(room.id, self.alice.id, "one")
        await self.store.messages.post(room.id, self.bob.id, "from bob")
        second = await self.store.messages.post(room.id, self.alice.id, "two")
        messages, left_out = await self.store.conversations.take_undelivered(self.bob.id, 10)
        self.assertEqual(([m.id for m in messages], left_out), ([first.id, second.id], 0))
        self.assertEqual(await self.store.conversations.take_undelivered(self.bob.id, 10), ([], 0))
        third = await self.store.messages.post(room.id, self.alice.id, "three")
        await self.store.conversations.mark_delivered(room.id, self.bob.id, third.id)
        self.assertEqual(await self.store.conversations.take_undelivered(self.bob.id, 10), ([], 0))

    async def test_take_undelivered_newest_first_when_too_many(self):
        """Over the limit: the newest, oldest first, and how many were left out; none again later."""
        room = await self.store.conversations.open(party(self.alice), party(self.bob))
        other = await self.store.conversations.open(party(self.carol), party(self.bob))
        sent = [(await self.store.messages.post(room.id, self.alice.id, f"m{i}")).id for i in range(4)]
        sent.append((await self.store.messages.post(other.id, self.carol.id, "from carol")).id)
        messages, left_out = await self.store.conversations.take_undelivered(self.bob.id, 2)
        self.assertEqual(([m.id for m in messages], left_out), (sent[3:], 3))
        self.assertEqual(await self.store.conversations.take_undelivered(self.bob.id, 2), ([], 0))


class DirectMessageEndToEndTests(TestCase):
    """DM, DM_HISTORY, LIST_CONVERSATIONS and offline delivery over TCP."""

    async def test_dm_online(self):
        """The recipient's connections and the sender's other ones get PRIVATE_MESSAGE; nobody else."""
        server = await start_server(self)
        alice = await server.user("alice")
        alice2 = await server.connect()
        await alice2.ok("LOGIN:alice:correct horse 9")
        bob = await server.user("bob")
        bob2 = await server.connect()
        await bob2.ok("LOGIN:bob:correct horse 9")
        carol = await server.user("carol")
        reply = await alice.request("DM:BOB:hi: there")
        self.assertEqual(len(reply), 1)
        ok, command, name, message_id, ts = reply[0].split(":")
        self.assertEqual((ok, command, name), ("OK", "DM", "bob"))
        expected = f"PRIVATE_MESSAGE:alice:bob:{message_id}:{ts}:hi: there"
        self.assertEqual(await bob.event("PRIVATE_MESSAGE"), expected)
        self.assertEqual(await bob2.event("PRIVATE_MESSAGE"), expected)
        self.assertEqual(await alice2.event("PRIVATE_MESSAGE"), expected)
        await alice.no_event("PRIVATE_MESSAGE")
        await carol.no_event("PRIVATE_MESSAGE")
        await bob.close()
        await bob2.close()
        again = await server.connect()
        await again.ok("LOGIN:bob:correct horse 9")
        await again.no_event("PRIVATE_MESSAGE")

    async def test_dm_refusals(self):
        """An unknown user, oneself, bad text: refused, nothing stored."""
        server = await start_server(self)
        alice = await server.user("alice")
        self.assertEqual(await alice.request("DM:nobody:hi"), ["ERROR:1501:NOT_FOUND:no user named nobody"])
        self.assertEqual(await alice.request("DM:Alice:hi"),
                         ["ERROR:1111:INVALID_INPUT:you cannot have a direct conversation with yourself"])
        self.assertEqual(fields((await alice.request("DM:bob:"))[0], 3), ["ERROR", "1113", "INVALID_LENGTH"])
        self.assertEqual(fields((await alice.request("DM:bob"))[0], 3), ["ERROR", "1112", "INVALID_FORMAT"])
        self.assertEqual(fields((await alice.request("DM:b!b:hi"))[0], 3), ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(await alice.request("LIST_CONVERSATIONS"), ["OK:LIST_CONVERSATIONS:0"])
        anonymous = await server.connect()
        self.assertEqual(fields((await anonymous.request("DM:alice:hi"))[0], 3), ["ERROR", "1001", "AUTH_REQUIRED"])

    async def test_offline_delivery_unread_history_conversations(self):
        """
        An offline recipient gets the messages at login, once, and finds them
        in UNREAD, DM_HISTORY and LIST_CONVERSATIONS until they mark them read.
        """
        server = await start_server(self)
        bob = await server.user("bob")
        await bob.ok("LOGOUT")
        alice = await server.user("alice")
        first = (await alice.ok("DM:bob:are you there?"))[0].split(":")
        second = (await alice.ok("DM:bob:second: with colon"))[0].split(":")
        gone = (await alice.ok("DM:bob:never mind"))[0].split(":")
        await alice.ok(f"DELETE_MESSAGE:{gone[3]}")
        client = await server.connect()
        self.assertTrue((await client.request("LOGIN:bob:correct horse 9"))[0].startswith("OK:LOGIN:bob:"))
        self.assertEqual(await client.event("PRIVATE_MESSAGE"),
                         f"PRIVATE_MESSAGE:alice:bob:{first[3]}:{first[4]}:are you there?")
        self.assertEqual(await client.event("PRIVATE_MESSAGE"),
                         f"PRIVATE_MESSAGE:alice:bob:{second[3]}:{second[4]}:second: with colon")
        await client.no_event("PRIVATE_MESSAGE")
        self.assertEqual(await client.request("UNREAD"), ["UNREAD:@alice:2", "OK:UNREAD:1"])
        self.assertEqual(await client.request("LIST_CONVERSATIONS"),
                         [f"CONVERSATION:alice:{second[4]}:2", "OK:LIST_CONVERSATIONS:1"])
        self.assertEqual(await client.request("DM_HISTORY:alice"), [
            f"HISTORY:@alice:{first[3]}:alice:{first[4]}:0:0:are you there?",
            f"HISTORY:@alice:{second[3]}:alice:{second[4]}:0:0:second: with colon",
            "OK:DM_HISTORY:alice:2",
        ])
        self.assertEqual(await client.request(f"DM_HISTORY:alice:1:{second[3]}"), [
            f"HISTORY:@alice:{first[3]}:alice:{first[4]}:0:0:are you there?",
            "OK:DM_HISTORY:alice:1",
        ])
        self.assertEqual(await alice.request("DM_HISTORY:bob:1"), [
            f"HISTORY:@bob:{second[3]}:alice:{second[4]}:0:0:second: with colon",
            "OK:DM_HISTORY:bob:1",
        ])
        self.assertEqual(await client.request(f"MARK_READ:@alice:{second[3]}"), [f"OK:MARK_READ:@alice:{second[3]}"])
        self.assertEqual(await client.request("UNREAD"), ["OK:UNREAD:0"])
        await client.ok("LOGOUT")
        await client.ok("LOGIN:bob:correct horse 9")
        await client.no_event("PRIVATE_MESSAGE")

    async def test_reply_while_away_is_delivered_at_login(self):
        """A reply in a conversation made while the other party was away comes at login too."""
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        first = (await bob.ok("DM:alice:a question"))[0].split(":")[3]
        await alice.event("PRIVATE_MESSAGE")
        await bob.ok("LOGOUT")
        reply = (await alice.ok(f"REPLY_MESSAGE:{first}:an answer"))[0].split(":")
        await bob.ok("LOGIN:bob:correct horse 9")
        self.assertEqual(await bob.event("PRIVATE_MESSAGE"),
                         f"PRIVATE_MESSAGE:alice:bob:{reply[3]}:{reply[4]}:an answer")
        await bob.no_event("PRIVATE_MESSAGE")

    async def test_offline_delivery_at_resume(self):
        """RESUME delivers what waited, like LOGIN."""
        server = await start_server(self)
        bob = await server.connect()
        token = (await bob.request("REGISTER:bob:correct horse 9"))[0].split(":")[3]
        await bob.close()
        alice = await server.user("alice")
        sent = (await alice.ok("DM:bob:welcome back"))[0].split(":")
        bob = await server.connect()
        self.assertEqual(await bob.request(f"RESUME:{token}"), ["OK:RESUME:bob"])
        self.assertEqual(await bob.event("PRIVATE_MESSAGE"),
                         f"PRIVATE_MESSAGE:alice:bob:{sent[3]}:{sent[4]}:welcome back")

    async def test_dm_history_refusals(self):
        """Unknown user, oneself, bad limits; no conversation yet is empty."""
        server = await start_server(self)
        alice = await server.user("alice")
        await server.user("bob")
        self.assertEqual(await alice.request("DM_HISTORY:bob"), ["OK:DM_HISTORY:bob:0"])
        self.assertEqual(await alice.request("DM_HISTORY:nobody"), ["ERROR:1501:NOT_FOUND:no user named nobody"])
        self.assertEqual(fields((await alice.request("DM_HISTORY:alice"))[0], 3), ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(fields((await alice.request("GET_HISTORY:@alice"))[0], 3), ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(await alice.request("GET_HISTORY:@nobody"), ["ERROR:1501:NOT_FOUND:no user named nobody"])
        self.assertEqual(await alice.request("GET_HISTORY:@bob"), ["ERROR:1501:NOT_FOUND:no conversation with bob"])
        self.assertEqual(fields((await alice.request("DM_HISTORY:bob:201"))[0], 3), ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(fields((await alice.request("DM_HISTORY:bob:5:x"))[0], 3), ["ERROR", "1112", "INVALID_FORMAT"])

    async def test_conversation_is_named_per_viewer(self):
        """Everything about a DM names the other party: @bob for alice, @alice for bob."""
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        sent = (await alice.ok("DM:bob:hello bob"))[0].split(":")
        await bob.event("PRIVATE_MESSAGE")
        message_id = sent[3]
        reply = await bob.request(f"REPLY_MESSAGE:{message_id}:hello alice")
        self.assertEqual(fields(reply[0], 3), ["OK", "REPLY_MESSAGE", "@alice"])
        reply_id, reply_ts = reply[0].split(":")[3:5]
        self.assertEqual(await alice.event("REPLY"), f"REPLY:@bob:{reply_id}:{message_id}:bob:{reply_ts}:hello alice")
        await alice.ok(f"EDIT_MESSAGE:{message_id}:hello, bob")
        edited = await bob.event("MESSAGE_EDITED")
        self.assertEqual(fields(edited, 4), ["MESSAGE_EDITED", "@alice", message_id, "alice"])
        self.assertTrue(edited.endswith(":hello, bob"))
        await bob.ok(f"REACT_MESSAGE:{message_id}:👍")
        self.assertEqual(await alice.event("REACTION_ADDED"), f"REACTION_ADDED:@bob:{message_id}:bob:👍")
        self.assertEqual(await alice.request(f"GET_REACTIONS:{message_id}"),
                         [f"REACTION:{message_id}:👍:1:bob", f"OK:GET_REACTIONS:{message_id}:1"])
        await bob.ok(f"UNREACT_MESSAGE:{message_id}:👍")
        self.assertEqual(await alice.event("REACTION_REMOVED"), f"REACTION_REMOVED:@bob:{message_id}:bob:👍")
        thread = await alice.request(f"GET_THREAD:{reply_id}")
        self.assertEqual([fields(line, 3) for line in thread[:-1]],
                         [["HISTORY", "@bob", message_id], ["HISTORY", "@bob", reply_id]])
        self.assertEqual(thread[-1], f"OK:GET_THREAD:{message_id}:2")
        self.assertEqual(fields((await bob.request("SEARCH_MESSAGES:hello"))[0], 3),
                         ["SEARCH_RESULT", "@alice", reply_id])
        self.assertEqual(fields((await alice.request("GET_HISTORY:@bob"))[0], 2), ["HISTORY", "@bob"])
        self.assertEqual(await alice.request(f"MARK_READ:@bob:{reply_id}"), [f"OK:MARK_READ:@bob:{reply_id}"])
        self.assertEqual(await bob.request(f"DELETE_MESSAGE:{message_id}"),
                         ["ERROR:1002:PERMISSION_DENIED:only the author or a moderator can delete this message"])
        await bob.ok(f"DELETE_MESSAGE:{reply_id}")
        self.assertEqual(await alice.event("MESSAGE_DELETED"), f"MESSAGE_DELETED:@bob:{reply_id}:bob")
        self.assertEqual(await alice.request("SEARCH_MESSAGES:alice"), ["OK:SEARCH_MESSAGES:0"])

    async def test_outsider_cannot_touch_a_conversation(self):
        """A third user cannot see, react to, reply to or search someone else's DM: it is not found."""
        server = await start_server(self)
        alice = await server.user("alice")
        await server.user("bob")
        carol = await server.user("carol")
        message_id = (await alice.ok("DM:bob:private words"))[0].split(":")[3]
        missing = f"ERROR:1501:NOT_FOUND:no message {message_id}"
        for request in (f"GET_THREAD:{message_id}", f"GET_REACTIONS:{message_id}", f"REACT_MESSAGE:{message_id}:x",
                        f"REPLY_MESSAGE:{message_id}:me too", f"EDIT_MESSAGE:{message_id}:mine",
                        f"DELETE_MESSAGE:{message_id}"):
            self.assertEqual(await carol.request(request), [missing], request)
        self.assertEqual(await carol.request("SEARCH_MESSAGES:private"), ["OK:SEARCH_MESSAGES:0"])
        self.assertEqual(await carol.request("GET_HISTORY:@alice"), ["ERROR:1501:NOT_FOUND:no conversation with alice"])
        self.assertEqual(await carol.request("MARK_READ:@bob:1"), ["ERROR:1501:NOT_FOUND:no conversation with bob"])

    async def test_send_message_to_a_user(self):
        """SEND_MESSAGE:@<user> is a direct message."""
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        reply = await alice.request("SEND_MESSAGE:@bob:psst")
        ok, command, name, message_id, ts = reply[0].split(":")
        self.assertEqual((ok, command, name), ("OK", "SEND_MESSAGE", "@bob"))
        self.assertEqual(await bob.event("PRIVATE_MESSAGE"), f"PRIVATE_MESSAGE:alice:bob:{message_id}:{ts}:psst")
