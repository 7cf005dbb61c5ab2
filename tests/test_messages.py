"""
Tests for L{lairchat.store.messages}: messages, reactions, history, threads,
search, read markers and unread counts, against the real database; and
for the argument rules of L{lairchat.messaging}.
"""

from types import SimpleNamespace

import psycopg2
import psycopg2.extensions
from twisted.internet.task import Clock
from twisted.logger import Logger
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from lairchat.errors import InvalidFormat, InvalidInput, InvalidLength
from lairchat.events import MessageSent, RoomRef
from lairchat.messaging import HISTORY_DEFAULT, HISTORY_MAX, before_id, conversation_ref, history_limit
from lairchat.node import NodeService
from lairchat.plugins import load_commands, load_extensions
from lairchat.store.database import Database
from lairchat.store.messages import SEARCH_INDEX_LOCK_KEY, index_pending
from tests.support import fresh_store, test_dsn

MESSAGE_COMMANDS = (
    "SEND_MESSAGE", "REPLY_MESSAGE", "EDIT_MESSAGE", "DELETE_MESSAGE", "REACT_MESSAGE", "UNREACT_MESSAGE",
    "GET_HISTORY", "GET_THREAD", "GET_REACTIONS", "SEARCH_MESSAGES", "MARK_READ", "UNREAD",
    "DM", "DM_HISTORY", "LIST_CONVERSATIONS",
)


async def make_room(store, name, members, privacy="public"):
    """
    A room (set up directly, not through the room commands) whose members
    are C{members}, a dict of L{lairchat.models.User} to role.

    @return: the room's id.
    """
    owner = next((u for u, role in members.items() if role == "owner"), None)
    row = await store.db.fetchone(
        "INSERT INTO rooms (name, privacy, owner_id) VALUES (%s, %s, %s) RETURNING id",
        (name, privacy, owner.id if owner else None),
    )
    for user, role in members.items():
        await store.db.execute(
            "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, %s)", (row[0], user.id, role)
        )
    return row[0]


async def make_users(store, *names):
    """Accounts with these names (no usable password)."""
    return [await store.users.create(name, "not a hash") for name in names]


class RegistrationTests(SynchronousTestCase):
    """The message commands are plugins the server finds."""

    def test_registered(self):
        """Every message and direct-message command is registered."""
        registry = load_commands()
        for name in MESSAGE_COMMANDS:
            self.assertIn(name, registry)
            self.assertEqual(registry[name].name, name)

    def test_offline_delivery_registered(self):
        """The offline delivery is an extension the server finds."""
        self.assertIn("OfflineDelivery", [type(e).__name__ for e in load_extensions()])


class ArgumentTests(SynchronousTestCase):
    """The argument rules shared by the message commands."""

    def test_conversation_ref(self):
        """A room name, or @ and a username."""
        self.assertEqual(conversation_ref("general"), "general")
        self.assertEqual(conversation_ref("@bob"), "@bob")
        self.assertRaises(InvalidInput, conversation_ref, "@b-b")
        self.assertRaises(InvalidLength, conversation_ref, "@")
        self.assertRaises(InvalidInput, conversation_ref, "lobby")

    def test_history_limit(self):
        """Absent or empty: the default; else 1 to the maximum."""
        self.assertEqual(history_limit(None), HISTORY_DEFAULT)
        self.assertEqual(history_limit(""), HISTORY_DEFAULT)
        self.assertEqual(history_limit("1"), 1)
        self.assertEqual(history_limit(str(HISTORY_MAX)), HISTORY_MAX)
        self.assertRaises(InvalidInput, history_limit, str(HISTORY_MAX + 1))
        self.assertRaises(InvalidInput, history_limit, "0")
        self.assertRaises(InvalidFormat, history_limit, "ten")

    def test_before_id(self):
        """Absent or an id."""
        self.assertIsNone(before_id(None))
        self.assertEqual(before_id("12"), 12)
        self.assertRaises(InvalidFormat, before_id, "-1")


class MessageStoreTests(TestCase):
    """L{lairchat.store.messages.MessageStore} against the real database."""

    async def setUp(self):
        self.store = await fresh_store(self)
        self.alice, self.bob, self.carol = await make_users(self.store, "alice", "bob", "carol")
        self.room = await make_room(self.store, "general", {self.alice: "owner", self.bob: "member"})

    async def test_post_by_member(self):
        """A member's message is stored with its sender and time."""
        message = await self.store.messages.post(self.room, self.alice.id, "hello: world")
        self.assertEqual((message.room_id, message.sender, message.text), (self.room, "alice", "hello: world"))
        self.assertEqual((message.parent_id, message.edited, message.deleted), (0, False, False))
        self.assertGreater(message.created_ms, 0)

    async def test_post_by_non_member(self):
        """A non-member's message is refused in the statement itself: nothing is stored."""
        self.assertIsNone(await self.store.messages.post(self.room, self.carol.id, "let me in"))
        self.assertEqual(await self.store.messages.history(self.room, 50), [])

    async def test_ids_grow_across_rooms(self):
        """One id sequence for every room."""
        other = await make_room(self.store, "random", {self.alice: "owner"})
        first = await self.store.messages.post(self.room, self.alice.id, "one")
        second = await self.store.messages.post(other, self.alice.id, "two")
        third = await self.store.messages.post(self.room, self.alice.id, "three")
        self.assertLess(first.id, second.id)
        self.assertLess(second.id, third.id)

    async def test_history_pages(self):
        """Oldest first; the newest page, then older ones with before_id."""
        ids = [(await self.store.messages.post(self.room, self.alice.id, f"m{i}")).id for i in range(7)]
        page = await self.store.messages.history(self.room, 3)
        self.assertEqual([m.id for m in page], ids[4:])
        older = await self.store.messages.history(self.room, 3, page[0].id)
        self.assertEqual([m.id for m in older], ids[1:4])
        oldest = await self.store.messages.history(self.room, 3, older[0].id)
        self.assertEqual([m.id for m in oldest], ids[:1])

    async def test_history_leaves_out_deleted(self):
        """A deleted message leaves history."""
        keep = await self.store.messages.post(self.room, self.alice.id, "keep")
        gone = await self.store.messages.post(self.room, self.alice.id, "gone")
        self.assertTrue(await self.store.messages.delete(gone.id))
        self.assertFalse(await self.store.messages.delete(gone.id))
        self.assertEqual([m.id for m in await self.store.messages.history(self.room, 50)], [keep.id])

    async def test_locate(self):
        """A message with its room and the viewer's role, or none for a non-member."""
        message = await self.store.messages.post(self.room, self.bob.id, "hi")
        access = await self.store.messages.locate(message.id, self.alice.id)
        self.assertEqual((access.message, access.room.name, access.role), (message, "general", "owner"))
        self.assertIsNone((await self.store.messages.locate(message.id, self.carol.id)).role)
        self.assertIsNone(await self.store.messages.locate(message.id + 1000, self.alice.id))

    async def test_edit_by_author_only(self):
        """The author edits; anyone else, or a deleted message, changes nothing."""
        message = await self.store.messages.post(self.room, self.alice.id, "helo")
        self.assertIsNone(await self.store.messages.edit(message.id, self.bob.id, "hijacked"))
        edited = await self.store.messages.edit(message.id, self.alice.id, "hello")
        self.assertEqual(edited.text, "hello")
        self.assertTrue(edited.edited)
        self.assertGreaterEqual(edited.edited_ms, message.created_ms)
        await self.store.messages.delete(message.id)
        self.assertIsNone(await self.store.messages.edit(message.id, self.alice.id, "again"))

    async def test_reactions(self):
        """One reaction per user and emoji, grouped by emoji with who reacted."""
        message = await self.store.messages.post(self.room, self.alice.id, "hi")
        self.assertTrue(await self.store.messages.add_reaction(message.id, self.alice.id, "👍"))
        self.assertFalse(await self.store.messages.add_reaction(message.id, self.alice.id, "👍"))
        self.assertTrue(await self.store.messages.add_reaction(message.id, self.bob.id, "👍"))
        self.assertTrue(await self.store.messages.add_reaction(message.id, self.bob.id, "tada"))
        self.assertFalse(await self.store.messages.add_reaction(message.id, self.carol.id, "👍"))
        summaries = await self.store.messages.reactions(message.id)
        self.assertEqual([(s.emoji, s.count, s.users) for s in summaries],
                         [("👍", 2, ("alice", "bob")), ("tada", 1, ("bob",))])
        self.assertTrue(await self.store.messages.remove_reaction(message.id, self.alice.id, "👍"))
        self.assertFalse(await self.store.messages.remove_reaction(message.id, self.alice.id, "👍"))
        self.assertEqual([s.users for s in await self.store.messages.reactions(message.id)], [("bob",), ("bob",)])

    async def test_no_reaction_to_deleted(self):
        """A deleted message takes no reactions."""
        message = await self.store.messages.post(self.room, self.alice.id, "hi")
        await self.store.messages.delete(message.id)
        self.assertFalse(await self.store.messages.add_reaction(message.id, self.bob.id, "x"))

    async def test_thread(self):
        """The root and its undeleted replies, oldest first."""
        root = await self.store.messages.post(self.room, self.alice.id, "root")
        other = await self.store.messages.post(self.room, self.alice.id, "unrelated")
        first = await self.store.messages.post(self.room, self.bob.id, "first", root.id)
        second = await self.store.messages.post(self.room, self.bob.id, "second", root.id)
        await self.store.messages.post(self.room, self.bob.id, "elsewhere", other.id)
        self.assertEqual(first.parent_id, root.id)
        thread = await self.store.messages.thread(root.id)
        self.assertEqual([m.id for m in thread], [root.id, first.id, second.id])
        await self.store.messages.delete(first.id)
        await self.store.messages.delete(root.id)
        self.assertEqual([m.id for m in await self.store.messages.thread(root.id)], [second.id])

    async def test_search_scoped_to_membership(self):
        """Only the rooms the searcher belongs to; deleted messages never."""
        secret = await make_room(self.store, "secret", {self.carol: "owner"}, "private")
        hit = await self.store.messages.post(self.room, self.alice.id, "the purple elephant")
        await self.store.messages.post(secret, self.carol.id, "purple secrets")
        gone = await self.store.messages.post(self.room, self.bob.id, "purple and deleted")
        await self.store.messages.delete(gone.id)
        found = await self.store.messages.search(self.bob.id, "purple")
        self.assertEqual([(f.message.id, f.label) for f in found], [(hit.id, "general")])
        self.assertEqual([f.label for f in await self.store.messages.search(self.carol.id, "purple")], ["secret"])

    async def test_search_best_first(self):
        """Better matches first, at most the limit, and odd syntax is no error."""
        weak = await self.store.messages.post(self.room, self.alice.id, "one cat among many words here")
        strong = await self.store.messages.post(self.room, self.alice.id, "cat cat cat")
        found = await self.store.messages.search(self.alice.id, "cat")
        self.assertEqual([f.message.id for f in found], [strong.id, weak.id])
        self.assertEqual(len(await self.store.messages.search(self.alice.id, "cat", 1)), 1)
        self.assertEqual(await self.store.messages.search(self.alice.id, "!!! & | ("), [])
        self.assertEqual([f.message.id for f in await self.store.messages.search(self.alice.id, '"cat cat" -many')],
                         [strong.id])

    async def test_unread_and_mark_read(self):
        """Unread: others' undeleted messages past the marker; the marker never moves back."""
        first = await self.store.messages.post(self.room, self.alice.id, "one")
        await self.store.messages.post(self.room, self.bob.id, "mine")
        third = await self.store.messages.post(self.room, self.alice.id, "three")
        gone = await self.store.messages.post(self.room, self.alice.id, "gone")
        await self.store.messages.delete(gone.id)
        unread = await self.store.messages.unread(self.bob.id)
        self.assertEqual([(u.label, u.count) for u in unread], [("general", 2)])
        self.assertEqual([(u.label, u.count) for u in await self.store.messages.unread(self.alice.id)],
                         [("general", 1)])
        self.assertTrue(await self.store.messages.mark_read(self.room, self.bob.id, first.id))
        self.assertEqual([u.count for u in await self.store.messages.unread(self.bob.id)], [1])
        self.assertTrue(await self.store.messages.mark_read(self.room, self.bob.id, third.id))
        self.assertTrue(await self.store.messages.mark_read(self.room, self.bob.id, first.id))
        self.assertEqual(await self.store.messages.unread(self.bob.id), [])

    async def test_unread_only_since_joining(self):
        """What was said before someone joined is never unread for them."""
        await self.store.messages.post(self.room, self.alice.id, "before carol")
        await self.store.db.execute(
            "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, 'member')", (self.room, self.carol.id)
        )
        self.assertEqual(await self.store.messages.unread(self.carol.id), [])
        await self.store.messages.post(self.room, self.alice.id, "after carol")
        self.assertEqual([u.count for u in await self.store.messages.unread(self.carol.id)], [1])

    async def test_mark_read_needs_a_message_of_the_room(self):
        """An id of another room, or no message at all, changes nothing."""
        other = await make_room(self.store, "random", {self.alice: "owner", self.bob: "member"})
        elsewhere = await self.store.messages.post(other, self.alice.id, "elsewhere")
        self.assertFalse(await self.store.messages.mark_read(self.room, self.bob.id, elsewhere.id))
        self.assertFalse(await self.store.messages.mark_read(self.room, self.bob.id, elsewhere.id + 100))
        self.assertFalse(await self.store.messages.mark_read(other, self.carol.id, elsewhere.id))
        self.assertEqual([u.label for u in await self.store.messages.unread(self.bob.id)], ["random"])

    async def test_history_uses_the_room_index(self):
        """
        With a busy room beside ours and fresh statistics, a page of our
        history is read through the (room_id, id) index, not by scanning the
        table or walking every id.
        """
        other = await make_room(self.store, "busy", {self.alice: "owner"})
        await self.store.db.execute(
            "INSERT INTO messages (room_id, sender_id, body) "
            "SELECT %s, %s, 'filler ' || n FROM generate_series(1, 20000) AS n",
            (other, self.alice.id),
        )
        for n in range(60):
            await self.store.messages.post(self.room, self.alice.id, f"ours {n}")
        await self.store.db.execute("ANALYZE messages")
        rows = await self.store.db.fetchall(
            "EXPLAIN SELECT id FROM messages m WHERE m.room_id = %s AND m.deleted_at IS NULL AND m.id < %s "
            "ORDER BY m.id DESC LIMIT 50",
            (self.room, 2**63 - 1),
        )
        plan = "\n".join(r[0] for r in rows)
        self.assertIn("messages_room_id", plan)


class SearchIndexUpkeepTests(TestCase):
    """
    L{lairchat.store.messages.index_pending} and the node's loop that calls
    it (L{lairchat.node.NodeService}), against the real database.
    """

    async def setUp(self):
        self.store = await fresh_store(self)
        # an autovacuum (or auto-analyze) of messages moves the pending entries too
        await self.store.db.execute("ALTER TABLE messages SET (autovacuum_enabled = false)")
        self.addCleanup(self.store.db.execute, "ALTER TABLE messages RESET (autovacuum_enabled)")
        self.alice, self.bob = await make_users(self.store, "alice", "bob")
        self.room = await make_room(self.store, "general", {self.alice: "owner", self.bob: "member"})
        await index_pending(self.store.db)

    async def post(self, count):
        """C{count} messages from alice, every one with words of its own."""
        for i in range(count):
            await self.store.messages.post(self.room, self.alice.id, f"note{i} about topic{i % 7} and more")

    async def test_moves_pending_entries(self):
        """New messages' entries are pending until moved; once moved, nothing is left, and search finds them."""
        await self.post(40)
        self.assertGreater(await index_pending(self.store.db), 0)
        self.assertEqual(await index_pending(self.store.db), 0)
        found = await self.store.messages.search(self.bob.id, "topic3")
        self.assertEqual(sorted(f.message.text for f in found),
                         [f"note{i} about topic3 and more" for i in (10, 17, 24, 3, 31, 38)])

    async def test_one_node_at_a_time(self):
        """While another session holds the lock (another node moving them), nothing is done."""
        await self.post(5)
        other = psycopg2.connect(test_dsn())
        self.addCleanup(other.close)
        other.autocommit = True
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", (SEARCH_INDEX_LOCK_KEY,))
            self.assertIsNone(await index_pending(self.store.db))
            cursor.execute("SELECT pg_advisory_unlock(%s)", (SEARCH_INDEX_LOCK_KEY,))
        self.assertGreater(await index_pending(self.store.db), 0)

    async def test_waits_briefly_for_the_index(self):
        """
        While the index is locked (an autovacuum moving the list, here a
        REINDEX under way), it gives up after a moment and says nothing was
        done; its connection (which also carries the heartbeats) goes on.
        """
        await self.post(5)
        other = psycopg2.connect(test_dsn())
        self.addCleanup(other.close)
        with other.cursor() as cursor:
            cursor.execute("REINDEX INDEX messages_search")
            self.assertIsNone(await index_pending(self.store.db))
            self.assertEqual(await self.store.db.fetchone("SELECT 1"), (1,))
        other.rollback()
        self.assertGreater(await index_pending(self.store.db), 0)

    async def visitor_database(self):
        """
        A pool connected as a role that owns nothing (made for the test and
        dropped after it; the test is skipped when it cannot be made or
        cannot log in).
        """
        admin = psycopg2.connect(test_dsn())
        admin.autocommit = True
        try:
            with admin.cursor() as cursor:
                cursor.execute("DO $$ BEGIN CREATE ROLE lairchat_test_visitor LOGIN; "
                               "EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        except psycopg2.errors.InsufficientPrivilege as error:
            raise SkipTest(f"cannot make a second role: {error}")
        finally:
            admin.close()
        self.addCleanup(self.store.db.execute, "DROP ROLE IF EXISTS lairchat_test_visitor")
        dsn = psycopg2.extensions.make_dsn(test_dsn(), user="lairchat_test_visitor")
        try:
            psycopg2.connect(dsn).close()
        except psycopg2.OperationalError as error:
            raise SkipTest(f"cannot log in as a second role: {error}")
        db = Database(dsn, 1)
        await db.start()
        self.addCleanup(db.close)
        return db

    async def test_refused_to_a_role_that_does_not_own_the_index(self):
        """A role that does not own the index is refused, and the node stops asking, saying why once."""
        visitor = await self.visitor_database()
        with self.assertRaises(psycopg2.errors.InsufficientPrivilege):
            await index_pending(visitor)
        node = self.node(visitor)
        await self.post_with_event()
        logged = []
        node.log = Logger(observer=logged.append)
        await node._index()
        self.assertEqual(len(logged), 1)
        self.assertIn("does not own the search index", logged[0]["log_format"])
        await self.post_with_event()
        self.assertIsNone(node._index())

    async def post_with_event(self):
        """A message from alice, posted as the server posts them (it counts as this node's)."""
        posted = await self.store.messages.post_with_event(
            MessageSent(RoomRef(self.room, "general"), 0, self.alice.id, "alice", 0, "words of the node"))
        self.assertIsNotNone(posted)

    def node(self, db):
        """A node service whose upkeep connection is C{db} and whose store is this test's."""
        server = SimpleNamespace(store=self.store, clock=Clock())
        node = NodeService(server, test_dsn())
        node._upkeep = db
        return node

    async def test_node_moves_them_after_it_posted(self):
        """The node's loop asks the database only when this node posted messages since it last looked."""
        node = self.node(self.store.db)
        self.assertIsNone(node._index())
        await self.post_with_event()
        await self.post(20)  # posted without an event: another node's, as far as this one knows
        self.assertGreater(await node._index(), 0)
        self.assertIsNone(node._index())
        self.assertEqual(await index_pending(self.store.db), 0)
