"""
End-to-end tests of the message commands: the real service on a TCP port,
several real clients, a real Postgres.  Each command's success and refusal
paths, and which connections its events reach: every member's, the
sender's other connections too, never the sender's own, never a
non-member's.

Rooms are set up directly in the database (L{tests.test_messages.make_room})
so that these tests depend only on the message commands.
"""

from twisted.trial.unittest import TestCase

from tests.support import start_server
from tests.test_messages import make_room


def fields(line, count):
    """The first C{count} colon-separated fields of a line (the rest is text)."""
    return line.split(":", count)[:count]


def sent(reply):
    """The id and timestamp of an C{OK:SEND_MESSAGE:<room>:<id>:<ts>} or C{OK:REPLY_MESSAGE:...} line."""
    ok = reply[-1].split(":")
    return ok[3], ok[4]


class RoomTestCase(TestCase):
    """
    A server with alice (owner, on two connections), bob (member), mod
    (moderator) and guest (guest) in the public room C{general}, and carol,
    who is in no room.
    """

    async def setUp(self):
        self.server = await start_server(self)
        self.alice = await self.server.user("alice")
        self.alice2 = await self.server.connect()
        await self.alice2.ok("LOGIN:alice:correct horse 9")
        self.bob = await self.server.user("bob")
        self.mod = await self.server.user("mod")
        self.guest = await self.server.user("guest")
        self.carol = await self.server.user("carol")
        self.store = self.server.server.store
        self.users = {n: await self.store.users.by_name(n) for n in ("alice", "bob", "mod", "guest", "carol")}
        self.room_id = await make_room(self.store, "general", {
            self.users["alice"]: "owner", self.users["bob"]: "member",
            self.users["mod"]: "moderator", self.users["guest"]: "guest",
        })
        self.members = [self.alice, self.alice2, self.bob, self.mod, self.guest]

    async def post(self, client, text, room="general"):
        """Send a message; its id and timestamp."""
        return sent(await client.ok(f"SEND_MESSAGE:{room}:{text}"))

    async def assertEventReaches(self, line, receivers, others=()):
        """Every receiver gets exactly C{line} next among its events; the others get nothing like it."""
        prefix = line.split(":", 1)[0] + ":"
        for client in receivers:
            self.assertEqual(await client.event(prefix), line)
        for client in others:
            await client.no_event(prefix)


class SendMessageTests(RoomTestCase):
    """SEND_MESSAGE and plain lines."""

    async def test_send(self):
        """Every member's connection gets MESSAGE, the sender's other one too; not the sender's own, not carol."""
        reply = await self.alice.request("SEND_MESSAGE:general:hello: everyone")
        self.assertEqual(len(reply), 1)
        message_id, ts = sent(reply)
        self.assertEqual(fields(reply[0], 3), ["OK", "SEND_MESSAGE", "general"])
        await self.assertEventReaches(
            f"MESSAGE:general:{message_id}:alice:{ts}:hello: everyone",
            [self.alice2, self.bob, self.mod, self.guest],
            [self.alice, self.carol],
        )

    async def test_room_name_any_case(self):
        """The room is found whatever the case; the reply names it as it was created."""
        reply = await self.bob.request("SEND_MESSAGE:GENERAL:hi")
        self.assertEqual(fields(reply[0], 3), ["OK", "SEND_MESSAGE", "general"])

    async def test_guest_can_send(self):
        """A guest may send (the permission table says so)."""
        message_id, ts = await self.post(self.guest, "hello from a guest")
        self.assertEqual(await self.bob.event("MESSAGE:"), f"MESSAGE:general:{message_id}:guest:{ts}:hello from a guest")

    async def test_non_member(self):
        """A non-member of a public room: 1404, nothing stored, nobody told."""
        self.assertEqual(await self.carol.request("SEND_MESSAGE:general:let me in"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        await self.bob.no_event("MESSAGE:")
        self.assertEqual(await self.bob.request("GET_HISTORY:general"), ["OK:GET_HISTORY:general:0"])

    async def test_private_room_and_unknown_room(self):
        """A private room one is not in reads exactly like a room that does not exist."""
        await make_room(self.store, "secret", {self.users["bob"]: "owner"}, "private")
        self.assertEqual(await self.carol.request("SEND_MESSAGE:secret:hi"),
                         ["ERROR:1501:NOT_FOUND:no room named secret"])
        self.assertEqual(await self.carol.request("SEND_MESSAGE:nowhere:hi"),
                         ["ERROR:1501:NOT_FOUND:no room named nowhere"])

    async def test_text_rules(self):
        """1-4000 characters, not blank; a bad room name; a missing text."""
        self.assertEqual(fields((await self.alice.request("SEND_MESSAGE:general:"))[0], 3),
                         ["ERROR", "1113", "INVALID_LENGTH"])
        self.assertEqual(fields((await self.alice.request("SEND_MESSAGE:general:   "))[0], 3),
                         ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(fields((await self.alice.request("SEND_MESSAGE:general:" + "x" * 4001))[0], 3),
                         ["ERROR", "1113", "INVALID_LENGTH"])
        self.assertEqual(fields((await self.alice.request("SEND_MESSAGE:9lives:hi"))[0], 3),
                         ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(fields((await self.alice.request("SEND_MESSAGE:general"))[0], 3),
                         ["ERROR", "1112", "INVALID_FORMAT"])
        await self.bob.no_event("MESSAGE:")
        longest = "é" * 4000
        message_id, ts = await self.post(self.alice, longest)
        self.assertEqual(await self.bob.event("MESSAGE:"), f"MESSAGE:general:{message_id}:alice:{ts}:{longest}")

    async def test_plain_line(self):
        """A line that is no command goes to the current room, answered like SEND_MESSAGE."""
        self.assertEqual(await self.alice.request("hello there"),
                         ["ERROR:1111:NO_CURRENT_ROOM:you are in no room: JOIN_ROOM:<room> first"])
        for connection in self.server.server.hub.connections_of(self.users["alice"].id):
            connection.current_room = "general"
        reply = await self.alice.request("@bob look: a plain line")
        self.assertEqual(fields(reply[0], 3), ["OK", "SEND_MESSAGE", "general"])
        message_id, ts = sent(reply)
        await self.assertEventReaches(f"MESSAGE:general:{message_id}:alice:{ts}:@bob look: a plain line",
                                      [self.bob, self.alice2], [self.carol])

    async def test_former_member_hears_nothing(self):
        """Once out of the room, no more events, and no more sending."""
        await self.store.db.execute(
            "DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (self.room_id, self.users["bob"].id)
        )
        message_id, _ = await self.post(self.alice, "bob is gone")
        await self.mod.event("MESSAGE:")
        await self.bob.no_event("MESSAGE:")
        self.assertEqual(await self.bob.request(f"REACT_MESSAGE:{message_id}:x"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])

    async def test_ids_increase(self):
        """Ids grow with every message."""
        first, _ = await self.post(self.alice, "one")
        second, _ = await self.post(self.bob, "two")
        self.assertLess(int(first), int(second))


class ReplyEditDeleteTests(RoomTestCase):
    """REPLY_MESSAGE, EDIT_MESSAGE, DELETE_MESSAGE."""

    async def test_reply(self):
        """REPLY to every member but the sender's connection; a reply to a reply joins the root's thread."""
        root, _ = await self.post(self.alice, "root")
        reply = await self.bob.request(f"REPLY_MESSAGE:{root}:first: reply")
        self.assertEqual(fields(reply[0], 3), ["OK", "REPLY_MESSAGE", "general"])
        first, ts = sent(reply)
        await self.assertEventReaches(f"REPLY:general:{first}:{root}:bob:{ts}:first: reply",
                                      [self.alice, self.alice2, self.mod], [self.bob, self.carol])
        second, ts = sent(await self.mod.ok(f"REPLY_MESSAGE:{first}:to the reply"))
        self.assertEqual(await self.bob.event("REPLY:"), f"REPLY:general:{second}:{root}:mod:{ts}:to the reply")
        thread = await self.carol.request(f"GET_THREAD:{first}")
        self.assertEqual(thread, ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        thread = await self.guest.request(f"GET_THREAD:{second}")
        self.assertEqual([fields(line, 6) for line in thread[:-1]], [
            ["HISTORY", "general", root, "alice", fields(thread[0], 5)[4], "0"],
            ["HISTORY", "general", first, "bob", fields(thread[1], 5)[4], root],
            ["HISTORY", "general", second, "mod", ts, root],
        ])
        self.assertEqual(thread[-1], f"OK:GET_THREAD:{root}:3")

    async def test_reply_refusals(self):
        """No such parent, a deleted one, a non-member: refused, nobody told."""
        root, _ = await self.post(self.alice, "root")
        self.assertEqual(await self.bob.request("REPLY_MESSAGE:999999:hi"), ["ERROR:1501:NOT_FOUND:no message 999999"])
        self.assertEqual(await self.carol.request(f"REPLY_MESSAGE:{root}:hi"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        await self.alice.ok(f"DELETE_MESSAGE:{root}")
        self.assertEqual(await self.bob.request(f"REPLY_MESSAGE:{root}:hi"), [f"ERROR:1501:NOT_FOUND:no message {root}"])
        self.assertEqual(fields((await self.bob.request("REPLY_MESSAGE:abc:hi"))[0], 3), ["ERROR", "1112", "INVALID_FORMAT"])
        await self.alice.no_event("REPLY:")

    async def test_edit(self):
        """The author edits: MESSAGE_EDITED to the others; history shows the new text, edited."""
        message_id, _ = await self.post(self.bob, "helo")
        self.assertEqual(await self.bob.request(f"EDIT_MESSAGE:{message_id}:hello: fixed"),
                         [f"OK:EDIT_MESSAGE:{message_id}"])
        event = await self.alice.event("MESSAGE_EDITED:")
        self.assertEqual(fields(event, 4), ["MESSAGE_EDITED", "general", message_id, "bob"])
        self.assertTrue(event.endswith(":hello: fixed"))
        self.assertEqual(await self.alice2.event("MESSAGE_EDITED:"), event)
        await self.carol.no_event("MESSAGE_EDITED:")
        history = await self.alice.request("GET_HISTORY:general")
        self.assertEqual(fields(history[0], 7)[5:] + [history[0].rsplit(":", 1)[1]], ["0", "1", " fixed"])

    async def test_edit_refusals(self):
        """Not the author (even the owner), a deleted or unknown message, a non-member."""
        message_id, _ = await self.post(self.bob, "mine")
        self.assertEqual(await self.alice.request(f"EDIT_MESSAGE:{message_id}:yours"),
                         ["ERROR:1002:PERMISSION_DENIED:only the author can edit a message"])
        self.assertEqual(await self.carol.request(f"EDIT_MESSAGE:{message_id}:x"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        self.assertEqual(await self.bob.request("EDIT_MESSAGE:424242:x"), ["ERROR:1501:NOT_FOUND:no message 424242"])
        self.assertEqual(fields((await self.bob.request(f"EDIT_MESSAGE:{message_id}:"))[0], 3),
                         ["ERROR", "1113", "INVALID_LENGTH"])
        await self.bob.ok(f"DELETE_MESSAGE:{message_id}")
        self.assertEqual(await self.bob.request(f"EDIT_MESSAGE:{message_id}:back"),
                         [f"ERROR:1501:NOT_FOUND:no message {message_id}"])
        await self.mod.no_event("MESSAGE_EDITED:")

    async def test_delete_own(self):
        """The author deletes: MESSAGE_DELETED to the others; it leaves history, thread and search."""
        keep, _ = await self.post(self.alice, "keep this zebra")
        gone, _ = await self.post(self.bob, "remove this zebra")
        self.assertEqual(await self.bob.request(f"DELETE_MESSAGE:{gone}"), [f"OK:DELETE_MESSAGE:{gone}"])
        await self.assertEventReaches(f"MESSAGE_DELETED:general:{gone}:bob",
                                      [self.alice, self.alice2, self.mod, self.guest], [self.bob, self.carol])
        history = await self.alice.request("GET_HISTORY:general")
        self.assertEqual([fields(line, 3)[2] for line in history[:-1]], [keep])
        self.assertEqual([fields(line, 3)[2] for line in (await self.alice.request("SEARCH_MESSAGES:zebra"))[:-1]],
                         [keep])
        self.assertEqual(await self.alice.request(f"GET_THREAD:{gone}"), [f"ERROR:1501:NOT_FOUND:no message {gone}"])
        self.assertEqual(await self.bob.request(f"DELETE_MESSAGE:{gone}"), [f"ERROR:1501:NOT_FOUND:no message {gone}"])

    async def test_delete_by_role(self):
        """A moderator deletes anyone's message; a member or guest cannot delete another's."""
        message_id, _ = await self.post(self.alice, "spam")
        for client in (self.bob, self.guest):
            self.assertEqual(await client.request(f"DELETE_MESSAGE:{message_id}"),
                             ["ERROR:1002:PERMISSION_DENIED:only the author or a moderator can delete this message"])
        self.assertEqual(await self.carol.request(f"DELETE_MESSAGE:{message_id}"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        self.assertEqual(await self.mod.request(f"DELETE_MESSAGE:{message_id}"), [f"OK:DELETE_MESSAGE:{message_id}"])
        self.assertEqual(await self.alice.event("MESSAGE_DELETED:"), f"MESSAGE_DELETED:general:{message_id}:mod")


class ReactionTests(RoomTestCase):
    """REACT_MESSAGE, UNREACT_MESSAGE, GET_REACTIONS."""

    async def test_react_and_unreact(self):
        """Events to the other members; GET_REACTIONS groups by emoji."""
        message_id, _ = await self.post(self.alice, "vote")
        self.assertEqual(await self.bob.request(f"REACT_MESSAGE:{message_id}:👍"), [f"OK:REACT_MESSAGE:{message_id}:👍"])
        await self.assertEventReaches(f"REACTION_ADDED:general:{message_id}:bob:👍",
                                      [self.alice, self.alice2, self.mod, self.guest], [self.bob, self.carol])
        await self.guest.ok(f"REACT_MESSAGE:{message_id}:👍")
        await self.alice.ok(f"REACT_MESSAGE:{message_id}:tada")
        self.assertEqual(await self.mod.request(f"GET_REACTIONS:{message_id}"), [
            f"REACTION:{message_id}:👍:2:bob,guest",
            f"REACTION:{message_id}:tada:1:alice",
            f"OK:GET_REACTIONS:{message_id}:2",
        ])
        self.assertEqual(await self.bob.request(f"UNREACT_MESSAGE:{message_id}:👍"),
                         [f"OK:UNREACT_MESSAGE:{message_id}:👍"])
        await self.assertEventReaches(f"REACTION_REMOVED:general:{message_id}:bob:👍",
                                      [self.alice, self.alice2, self.mod], [self.carol])
        self.assertEqual((await self.mod.request(f"GET_REACTIONS:{message_id}"))[0],
                         f"REACTION:{message_id}:👍:1:guest")

    async def test_refusals(self):
        """Twice the same, taking back what is not there, bad emoji, non-member, deleted message."""
        message_id, _ = await self.post(self.alice, "vote")
        await self.bob.ok(f"REACT_MESSAGE:{message_id}:ok")
        self.assertEqual(await self.bob.request(f"REACT_MESSAGE:{message_id}:ok"),
                         [f"ERROR:1211:CONFLICT:you already reacted to message {message_id} with ok"])
        self.assertEqual(await self.bob.request(f"UNREACT_MESSAGE:{message_id}:nope"),
                         [f"ERROR:1501:NOT_FOUND:you have not reacted to message {message_id} with nope"])
        self.assertEqual(fields((await self.bob.request(f"REACT_MESSAGE:{message_id}:two words"))[0], 3),
                         ["ERROR", "1111", "INVALID_INPUT"])
        self.assertEqual(fields((await self.bob.request(f"REACT_MESSAGE:{message_id}:" + "x" * 33))[0], 3),
                         ["ERROR", "1113", "INVALID_LENGTH"])
        self.assertEqual(await self.carol.request(f"REACT_MESSAGE:{message_id}:ok"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        self.assertEqual(await self.carol.request(f"GET_REACTIONS:{message_id}"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        await self.alice.ok(f"DELETE_MESSAGE:{message_id}")
        self.assertEqual(await self.bob.request(f"REACT_MESSAGE:{message_id}:new"),
                         [f"ERROR:1501:NOT_FOUND:no message {message_id}"])
        self.assertEqual(await self.bob.request(f"GET_REACTIONS:{message_id}"),
                         [f"ERROR:1501:NOT_FOUND:no message {message_id}"])

    async def test_private_room_message_is_not_found(self):
        """A message of a private room reads as no message at all to an outsider."""
        await make_room(self.store, "secret", {self.users["bob"]: "owner"}, "private")
        message_id, _ = await self.post(self.bob, "hush", "secret")
        for request in (f"REACT_MESSAGE:{message_id}:x", f"GET_REACTIONS:{message_id}", f"GET_THREAD:{message_id}"):
            self.assertEqual(await self.carol.request(request), [f"ERROR:1501:NOT_FOUND:no message {message_id}"])


class HistoryTests(RoomTestCase):
    """GET_HISTORY in both forms, GET_THREAD."""

    async def test_history_and_paging(self):
        """Oldest first; limit and before_id page back."""
        posted = [await self.post(self.alice, f"message {i}: with colon") for i in range(5)]
        history = await self.bob.request("GET_HISTORY:general")
        self.assertEqual(history, [f"HISTORY:general:{i}:alice:{ts}:0:0:message {n}: with colon"
                                   for n, (i, ts) in enumerate(posted)] + ["OK:GET_HISTORY:general:5"])
        page = await self.bob.request("GET_HISTORY:general:2")
        self.assertEqual([fields(line, 3)[2] for line in page[:-1]], [posted[3][0], posted[4][0]])
        self.assertEqual(page[-1], "OK:GET_HISTORY:general:2")
        older = await self.bob.request(f"GET_HISTORY:general:2:{posted[3][0]}")
        self.assertEqual([fields(line, 3)[2] for line in older[:-1]], [posted[1][0], posted[2][0]])
        oldest = await self.bob.request(f"GET_HISTORY:general::{posted[1][0]}")
        self.assertEqual([fields(line, 3)[2] for line in oldest[:-1]], [posted[0][0]])

    async def test_current_room_form(self):
        """GET_HISTORY:<limit> reads the current room; with none, NO_CURRENT_ROOM."""
        self.assertEqual(await self.bob.request("GET_HISTORY:10"),
                         ["ERROR:1111:NO_CURRENT_ROOM:you are in no room: GET_HISTORY:<room> or JOIN_ROOM:<room>"])
        posted = [await self.post(self.alice, f"m{i}") for i in range(3)]
        for connection in self.server.server.hub.connections_of(self.users["bob"].id):
            connection.current_room = "general"
        history = await self.bob.request("GET_HISTORY:2")
        self.assertEqual([fields(line, 3)[2] for line in history[:-1]], [posted[1][0], posted[2][0]])
        self.assertEqual(history[-1], "OK:GET_HISTORY:general:2")
        history = await self.bob.request(f"GET_HISTORY:5:{posted[1][0]}")
        self.assertEqual([fields(line, 3)[2] for line in history[:-1]], [posted[0][0]])
        self.assertEqual(fields((await self.bob.request("GET_HISTORY:5:1:1"))[0], 3), ["ERROR", "1112", "INVALID_FORMAT"])

    async def test_refusals(self):
        """Non-member, private room, limits out of range."""
        await make_room(self.store, "secret", {self.users["bob"]: "owner"}, "private")
        self.assertEqual(await self.carol.request("GET_HISTORY:general"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        self.assertEqual(await self.carol.request("GET_HISTORY:secret"), ["ERROR:1501:NOT_FOUND:no room named secret"])
        for bad in ("GET_HISTORY:general:0", "GET_HISTORY:general:201", "GET_HISTORY:201"):
            self.assertEqual(fields((await self.bob.request(bad))[0], 3), ["ERROR", "1111", "INVALID_INPUT"], bad)
        self.assertEqual(fields((await self.bob.request("GET_HISTORY:general:10:x"))[0], 3),
                         ["ERROR", "1112", "INVALID_FORMAT"])
        self.assertEqual(fields((await self.bob.request("GET_HISTORY"))[0], 3), ["ERROR", "1112", "INVALID_FORMAT"])

    async def test_largest_page(self):
        """A limit of 200 gives up to 200 lines; the default is 50."""
        await self.store.db.execute(
            "INSERT INTO messages (room_id, sender_id, body) "
            "SELECT %s, %s, 'bulk ' || g FROM generate_series(1, 250) g",
            (self.room_id, self.users["alice"].id),
        )
        self.assertEqual((await self.bob.request("GET_HISTORY:general:200"))[-1], "OK:GET_HISTORY:general:200")
        self.assertEqual((await self.bob.request("GET_HISTORY:general"))[-1], "OK:GET_HISTORY:general:50")


class SearchReadTests(RoomTestCase):
    """SEARCH_MESSAGES, MARK_READ, UNREAD."""

    async def test_search(self):
        """Best match first, only the searcher's rooms, at most 20."""
        await make_room(self.store, "secret", {self.users["carol"]: "owner"}, "private")
        await self.post(self.carol, "kumquat in secret", "secret")
        weak, _ = await self.post(self.alice, "a kumquat among other words")
        strong, ts = await self.post(self.bob, "kumquat kumquat kumquat")
        found = await self.mod.request("SEARCH_MESSAGES:kumquat")
        self.assertEqual(found, [
            f"SEARCH_RESULT:general:{strong}:bob:{ts}:kumquat kumquat kumquat",
            f"SEARCH_RESULT:general:{weak}:alice:{fields(found[1], 5)[4]}:a kumquat among other words",
            "OK:SEARCH_MESSAGES:2",
        ])
        self.assertEqual(await self.mod.request("SEARCH_MESSAGES:zzz"), ["OK:SEARCH_MESSAGES:0"])
        self.assertEqual([fields(line, 2)[1] for line in (await self.carol.request("SEARCH_MESSAGES:kumquat"))[:-1]],
                         ["secret"])
        await self.store.db.execute(
            "INSERT INTO messages (room_id, sender_id, body) "
            "SELECT %s, %s, 'kumquat ' || g FROM generate_series(1, 30) g",
            (self.room_id, self.users["alice"].id),
        )
        self.assertEqual((await self.mod.request("SEARCH_MESSAGES:kumquat"))[-1], "OK:SEARCH_MESSAGES:20")
        self.assertEqual(fields((await self.mod.request("SEARCH_MESSAGES:" + "q" * 201))[0], 3),
                         ["ERROR", "1113", "INVALID_LENGTH"])

    async def test_unread_and_mark_read(self):
        """Others' messages count until marked read; one's own never."""
        first, _ = await self.post(self.alice, "one")
        second, _ = await self.post(self.alice, "two")
        await self.post(self.bob, "mine")
        self.assertEqual(await self.bob.request("UNREAD"), ["UNREAD:general:2", "OK:UNREAD:1"])
        self.assertEqual(await self.carol.request("UNREAD"), ["OK:UNREAD:0"])
        self.assertEqual(await self.bob.request(f"MARK_READ:general:{first}"), [f"OK:MARK_READ:general:{first}"])
        self.assertEqual(await self.bob.request("UNREAD"), ["UNREAD:general:1", "OK:UNREAD:1"])
        await self.bob.ok(f"MARK_READ:general:{second}")
        self.assertEqual(await self.bob.request("UNREAD"), ["OK:UNREAD:0"])
        await self.bob.ok(f"MARK_READ:general:{first}")
        self.assertEqual(await self.bob.request("UNREAD"), ["OK:UNREAD:0"])

    async def test_mark_read_refusals(self):
        """A non-member, an id of another room, an unknown id."""
        await make_room(self.store, "other", {self.users["bob"]: "owner"})
        message_id, _ = await self.post(self.bob, "elsewhere", "other")
        self.assertEqual(await self.carol.request(f"MARK_READ:general:{message_id}"),
                         ["ERROR:1404:ACCESS_DENIED:you are not a member of general"])
        self.assertEqual(await self.bob.request(f"MARK_READ:general:{message_id}"),
                         [f"ERROR:1501:NOT_FOUND:no message {message_id} in general"])
        self.assertEqual(fields((await self.bob.request("MARK_READ:general:x"))[0], 3),
                         ["ERROR", "1112", "INVALID_FORMAT"])


class WithRoomCommandsTests(TestCase):
    """The message commands together with the room commands that set the current room."""

    async def test_plain_lines_after_join_and_leave(self):
        """CREATE_ROOM and JOIN_ROOM make plain lines go to the room; after LEAVE_ROOM nothing reaches the leaver."""
        server = await start_server(self)
        alice = await server.user("alice")
        bob = await server.user("bob")
        await alice.ok("CREATE_ROOM:hall")
        await bob.ok("JOIN_ROOM:hall")
        await alice.event("USER_JOINED:")
        reply = await bob.request("hi alice: it is bob")
        self.assertEqual(fields(reply[0], 3), ["OK", "SEND_MESSAGE", "hall"])
        message_id, ts = sent(reply)
        self.assertEqual(await alice.event("MESSAGE:"), f"MESSAGE:hall:{message_id}:bob:{ts}:hi alice: it is bob")
        history = await alice.request("GET_HISTORY:1")
        self.assertEqual(history, [f"HISTORY:hall:{message_id}:bob:{ts}:0:0:hi alice: it is bob",
                                   "OK:GET_HISTORY:hall:1"])
        await bob.ok("LEAVE_ROOM:hall")
        await alice.ok("SEND_MESSAGE:hall:bob left")
        await bob.no_event("MESSAGE:")
        self.assertEqual(await bob.request("GET_HISTORY:hall"), ["ERROR:1404:ACCESS_DENIED:you are not a member of hall"])
        self.assertEqual(fields((await bob.request("more words"))[0], 3), ["ERROR", "1111", "NO_CURRENT_ROOM"])


class PipelinedSendTests(RoomTestCase):
    """
    Messages a client sends without waiting for their replies: they are
    stored together (the next starts once the one before has its place in
    commit order), in the client's order, and answered in that order; a
    request of another kind waits for them.
    """

    async def test_sent_together_in_order(self):
        """
        Eight messages in one write, then a history request and an error in
        the middle: every reply in the order asked, ids growing, the
        history showing all eight, and fewer statements than messages
        (without pipelining each would be its own).
        """
        posts = self.store.messages.group_commit
        batches_before = posts.batches
        lines = [f"@label=p{i} SEND_MESSAGE:general:burst {i}" for i in range(8)]
        lines.insert(4, "@label=bad SEND_MESSAGE:nowhere:lost")
        lines.append("@label=h GET_HISTORY:general:20")
        self.bob.transport.write("".join(line + "\n" for line in lines).encode("utf-8"))
        replies = []
        while len(replies) < len(lines):
            line = await self.bob.line()
            if line.startswith("@label="):
                label, rest = line[len("@label="):].split(" ", 1)
                if rest.startswith(("OK:", "ERROR:")):
                    replies.append((label, rest))
                elif label == "h":
                    replies_history = getattr(self, "_history", [])
                    replies_history.append(rest)
                    self._history = replies_history
        self.assertEqual([label for label, _ in replies], [line[len("@label="):].split(" ", 1)[0] for line in lines])
        self.assertTrue(replies[4][1].startswith("ERROR:"), replies[4])
        ids = [int(rest.split(":")[3]) for label, rest in replies if label.startswith("p")]
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 8)
        self.assertEqual(replies[-1][1], "OK:GET_HISTORY:general:8")
        history = [line.split(":", 7)[7] for line in self._history]
        self.assertEqual(history, [f"burst {i}" for i in range(8)])
        self.assertLess(posts.batches - batches_before, 8)
        for i in range(8):
            self.assertEqual((await self.alice.event("MESSAGE:")).split(":", 5)[5], f"burst {i}")
