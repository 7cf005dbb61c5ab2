"""
Tests for L{lairchat.hub.Hub}: who is online where, the rooms of the users
online here (kept from membership events, including those seen while a
user's rooms were being read), and the delivery of typed events.
"""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from twisted.trial.unittest import SynchronousTestCase

from lairchat import events
from lairchat.hub import NOT_PLAIN, Hub
from lairchat.models import User
from lairchat.wire import event_variant, render_event


def user(user_id: int, name: str) -> User:
    """An account."""
    return User(id=user_id, username=name, server_role="user", suspended=False, created_ms=0)


ALICE = user(1, "alice")
BOB = user(2, "Bob")
CAROL = user(3, "carol")

HALL = events.RoomRef(10, "hall")
NODE = "node-a"

_ids = itertools.count(1)


class FakeConnection:
    """A connection that records the lines events are shown as (and how often one was rendered)."""

    PLAIN_KEY = None

    def __init__(self, owner: User | None = None) -> None:
        self.events: list[str] = []
        self.user = owner
        self.connection_id = next(_ids)

    def receive(self, event, is_origin, cache):
        """Render through the shared cache; show unless this connection caused it."""
        if is_origin:
            return False
        key = event_variant(event, self.user.id)
        if key not in cache:
            cache[key] = render_event(event, self.user.id)
            cache.setdefault("renders", 0)
            cache["renders"] += 1
        self.events.append(cache[key])
        return True


class AttachTests(SynchronousTestCase):
    """
    L{Hub.attach} and L{Hub.detach}: a user comes online with the first
    connection and goes offline with the last.
    """

    def test_first_and_last(self):
        """
        Only the first attach and the last detach say so.
        """
        hub = Hub()
        one, two = FakeConnection(), FakeConnection()
        self.assertTrue(hub.attach(one, ALICE))
        self.assertFalse(hub.attach(two, ALICE))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertFalse(hub.detach(one, ALICE))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertTrue(hub.detach(two, ALICE))
        self.assertFalse(hub.is_online(ALICE.id))

    def test_attach_twice(self):
        """
        Attaching the same connection again is not a second connection.
        """
        hub = Hub()
        one = FakeConnection()
        hub.attach(one, ALICE)
        self.assertFalse(hub.attach(one, ALICE))
        self.assertEqual(hub.connection_count(), 1)
        self.assertTrue(hub.detach(one, ALICE))

    def test_detach_unknown(self):
        """
        Detaching a connection that is not attached changes nothing.
        """
        hub = Hub()
        one, other = FakeConnection(), FakeConnection()
        self.assertFalse(hub.detach(one, ALICE))
        hub.attach(one, ALICE)
        self.assertFalse(hub.detach(other, ALICE))
        self.assertFalse(hub.detach(one, BOB))
        self.assertTrue(hub.is_online(ALICE.id))
        self.assertTrue(hub.detach(one, ALICE))
        self.assertFalse(hub.detach(one, ALICE))

    def test_listing(self):
        """
        Online users are listed once each, by name regardless of case;
        connections are counted and listed per user.
        """
        hub = Hub()
        connections = [FakeConnection() for _ in range(4)]
        hub.attach(connections[0], CAROL)
        hub.attach(connections[1], ALICE)
        hub.attach(connections[2], BOB)
        hub.attach(connections[3], ALICE)
        self.assertEqual([u.username for u in hub.online_users()], ["alice", "Bob", "carol"])
        self.assertEqual(hub.connection_count(), 4)
        self.assertEqual(set(hub.connections_of(ALICE.id)), {connections[1], connections[3]})
        self.assertEqual(hub.connections_of(99), [])


class RoomMapTests(SynchronousTestCase):
    """
    The rooms of users online here: loaded once, then kept current by
    membership events, with the events seen during loading replayed.
    """

    def setUp(self):
        self.hub = Hub(NODE)
        self.alice = FakeConnection(ALICE)
        self.bob = FakeConnection(BOB)
        self.hub.attach(self.alice, ALICE)
        self.hub.load_rooms(ALICE.id, [HALL.id])
        self.hub.attach(self.bob, BOB)

    def message(self, text, origin=None):
        """A message from alice in the hall."""
        return events.MessageSent(HALL, 1, ALICE.id, "alice", 0, text, origin=origin)

    def test_loaded_rooms_receive(self):
        """A room event reaches the loaded members here, nobody else."""
        self.hub.load_rooms(BOB.id, [])
        self.assertEqual(self.hub.dispatch(self.message("hi")), 1)
        self.assertEqual(self.alice.events, ["MESSAGE:hall:1:alice:0:hi"])
        self.assertEqual(self.bob.events, [])

    def test_events_while_loading_are_replayed(self):
        """
        A message of one of bob's rooms seen while his rooms were read is
        shown once they are loaded; a membership change seen then is
        applied on top of what was read.
        """
        self.hub.dispatch(self.message("early"))
        self.hub.dispatch(events.MemberRemoved(events.RoomRef(11), BOB.id))
        self.hub.load_rooms(BOB.id, [HALL.id, 11])
        self.assertEqual(self.bob.events, ["MESSAGE:hall:1:alice:0:early"])
        self.assertEqual(self.hub.rooms_of(BOB.id), {HALL.id})
        self.assertEqual(self.hub.local_members(HALL.id), {ALICE.id, BOB.id})

    def test_membership_events(self):
        """Joining and leaving change the map; the last local member leaving forgets the room."""
        self.hub.load_rooms(BOB.id, [])
        self.hub.dispatch(events.UserJoined(HALL, BOB.id, "Bob"))
        self.assertEqual(self.hub.local_members(HALL.id), {ALICE.id, BOB.id})
        self.hub.dispatch(events.MemberRemoved(HALL, BOB.id))
        self.hub.dispatch(events.UserLeft(HALL, ALICE.id, "alice"))
        self.assertEqual(self.hub.local_members(HALL.id), set())
        self.assertEqual(self.hub.rooms_of(ALICE.id), set())

    def test_conversation_opened(self):
        """Both parties of a new conversation who are online here become its members."""
        self.hub.load_rooms(BOB.id, [])
        conversation = events.RoomRef(12, "", ((ALICE.id, "alice"), (BOB.id, "Bob")))
        self.hub.dispatch(events.ConversationOpened(conversation))
        self.assertEqual(self.hub.local_members(12), {ALICE.id, BOB.id})

    def test_detach_forgets_rooms(self):
        """A user's last connection here going takes them out of every room."""
        self.hub.detach(self.alice, ALICE)
        self.assertEqual(self.hub.local_members(HALL.id), set())
        self.assertEqual(self.hub.dispatch(self.message("x")), 0)


class DispatchTests(SynchronousTestCase):
    """
    L{Hub.dispatch}: to every connection of the audience, the origin told
    it is the origin, each distinct rendering made once.
    """

    def setUp(self):
        self.hub = Hub(NODE)
        self.alice1, self.alice2 = FakeConnection(ALICE), FakeConnection(ALICE)
        self.bob = FakeConnection(BOB)
        for connection in (self.alice1, self.alice2, self.bob):
            self.hub.attach(connection, connection.user)
        for person in (ALICE, BOB):
            self.hub.load_rooms(person.id, [HALL.id])

    def test_origin_is_excluded(self):
        """The connection whose request caused the event shows nothing; the user's other one does."""
        event = events.MessageSent(HALL, 1, ALICE.id, "alice", 0, "hi", origin=events.Origin(NODE, self.alice1.connection_id))
        self.assertEqual(self.hub.dispatch(event), 2)
        self.assertEqual(self.alice1.events, [])
        self.assertEqual(self.alice2.events, ["MESSAGE:hall:1:alice:0:hi"])
        self.assertEqual(self.bob.events, ["MESSAGE:hall:1:alice:0:hi"])
        self.assertEqual(self.hub.delivered, 2)

    def test_origin_on_another_node(self):
        """The same connection id on another node is not this one."""
        event = events.MessageSent(HALL, 1, ALICE.id, "alice", 0, "hi",
                                   origin=events.Origin("node-b", self.alice1.connection_id))
        self.assertEqual(self.hub.dispatch(event), 3)

    def test_user_audience(self):
        """An event for users reaches their connections, members of anything or not."""
        event = events.InvitationReceived(5, BOB.id, "alice", "hall", "member", 9, "")
        self.assertEqual(self.hub.dispatch(event), 1)
        self.assertEqual(self.bob.events, ["INVITATION_RECEIVED:5:alice:hall:member:9:"])

    def test_rendered_once(self):
        """Three recipients of one rendering: it is rendered once."""
        cache_sizes = []
        original = FakeConnection.receive

        def spy(connection, event, is_origin, cache):
            shown = original(connection, event, is_origin, cache)
            cache_sizes.append(cache.get("renders"))
            return shown

        self.patch(FakeConnection, "receive", spy)
        self.hub.dispatch(events.MessageSent(HALL, 1, ALICE.id, "alice", 0, "hi"))
        self.assertEqual(cache_sizes, [1, 1, 1])

    def test_presence_to_the_rooms_but_the_user(self):
        """
        A presence change reaches the members here of the user's rooms,
        not the user's own connections.
        """
        event = events.PresenceChanged(ALICE.id, "alice", True, (HALL.id, 99))
        self.assertEqual(self.hub.dispatch(event), 1)
        self.assertEqual(self.bob.events, ["PRESENCE:alice:online"])
        self.assertEqual(self.alice1.events + self.alice2.events, [])

    def test_absent_user(self):
        """An audience with nobody here delivers nothing."""
        self.assertEqual(self.hub.dispatch(events.InvitationReceived(5, CAROL.id, "a", "b", "member", 0, "")), 0)


class PlainConnection(FakeConnection):
    """
    A connection with a plain rendering: a room message is the same line
    for everyone of its kind; anything else goes through L{receive}.
    Records what it writes, one entry per write.
    """

    PLAIN_KEY = "plain"

    def __init__(self, owner: User | None = None, renders: list | None = None) -> None:
        super().__init__(owner)
        self.writes: list[bytes] = []
        self.held_output = None
        self.renders = renders if renders is not None else []

    def render_plain(self, event):
        """A room message's line, once per event (counted in C{renders}); L{NOT_PLAIN} for the rest."""
        if not isinstance(event, events.MessageSent):
            return NOT_PLAIN
        self.renders.append(event)
        return (render_event(event, self.user.id) + "\r\n").encode()

    def write_data(self, data):
        """One write, or held while the hub holds output."""
        if self.held_output is not None:
            self.held_output.append(data)
        else:
            self.writes.append(data)

    def release_output(self):
        """Everything held, as one write."""
        held, self.held_output = self.held_output, None
        if held:
            self.writes.append(b"".join(held))


class PlainDeliveryTests(SynchronousTestCase):
    """
    L{Hub.dispatch} to connections with a plain rendering: one rendering
    per event and kind, written without a call per connection, held and
    written once per connection while the hub holds output.
    """

    def setUp(self):
        self.hub = Hub(NODE)
        self.renders: list = []
        self.alice1 = PlainConnection(ALICE, self.renders)
        self.alice2 = PlainConnection(ALICE, self.renders)
        self.bob = PlainConnection(BOB, self.renders)
        self.carol = FakeConnection(CAROL)
        for connection in (self.alice1, self.alice2, self.bob, self.carol):
            self.hub.attach(connection, connection.user)
        for person in (ALICE, BOB, CAROL):
            self.hub.load_rooms(person.id, [HALL.id])

    def message(self, text, origin=None):
        """A message from alice in the hall."""
        return events.MessageSent(HALL, 1, ALICE.id, "alice", 0, text, origin=origin)

    def test_rendered_once(self):
        """
        A plain event is rendered once for all plain connections, written
        to each at once, not to its origin; a connection without a plain
        rendering gets it through C{receive}.
        """
        shown = self.hub.dispatch(self.message("hi", origin=events.Origin(NODE, self.alice1.connection_id)))
        self.assertEqual(shown, 3)
        self.assertEqual(len(self.renders), 1)
        self.assertEqual(self.alice1.writes, [])
        self.assertEqual(self.alice2.writes, [b"MESSAGE:hall:1:alice:0:hi\r\n"])
        self.assertEqual(self.bob.writes, [b"MESSAGE:hall:1:alice:0:hi\r\n"])
        self.assertEqual(self.carol.events, ["MESSAGE:hall:1:alice:0:hi"])
        self.assertEqual(self.hub.delivered, 3)

    def test_not_plain_goes_through_receive(self):
        """An event a connection does not render plainly is handed to its C{receive}."""
        received = []
        self.bob.receive = lambda event, is_origin, cache: received.append(event) or True
        event = events.TopicChanged(HALL, "alice", "new")
        self.assertEqual(self.hub.dispatch(event), 4)
        self.assertEqual(received, [event])
        self.assertEqual(self.renders, [])

    def test_held_until_release(self):
        """
        While the hub holds output, each connection's share of several
        events (and what it writes itself meanwhile) waits, and goes out as
        one write at the outermost release, in order.
        """
        self.hub.hold()
        self.hub.dispatch(self.message("one"))
        self.hub.hold()
        self.hub.dispatch(self.message("two"))
        self.bob.write_data(b"OK\r\n")
        self.hub.release()
        self.assertEqual(self.bob.writes, [])
        self.assertTrue(self.hub.holding)
        self.hub.release()
        self.assertFalse(self.hub.holding)
        self.assertEqual(self.bob.writes, [b"MESSAGE:hall:1:alice:0:one\r\nMESSAGE:hall:1:alice:0:two\r\nOK\r\n"])
        self.assertEqual(self.alice1.writes, [b"MESSAGE:hall:1:alice:0:one\r\nMESSAGE:hall:1:alice:0:two\r\n"])
        self.assertEqual(len(self.renders), 2)
        self.hub.dispatch(self.message("three"))
        self.assertEqual(self.bob.writes[1:], [b"MESSAGE:hall:1:alice:0:three\r\n"])


class RoomListsTests(SynchronousTestCase):
    """
    The hub keeps each room's connections here listed (L{Hub.dispatch}
    hands a room's events to them, not member by member): whatever order
    connections come and go and users join and leave in, a room event
    reaches exactly the connections of the room's members here.
    """

    PEOPLE = (ALICE, BOB, CAROL)
    ROOMS = (HALL.id, 11)

    @given(
        st.lists(st.tuples(st.sampled_from(["attach", "detach", "load", "join", "leave"]),
                           st.integers(0, 5), st.sampled_from(ROOMS)), min_size=1, max_size=30),
        st.booleans(),
    )
    @settings(max_examples=500)
    def test_room_event_reaches_its_members_connections(self, steps, holding):
        """
        After each step of any run of attaches, detaches, loads, joins and
        leaves, an event of either room (with a user it is not for, or
        none) is handed to every connection of every other member here
        once, rendered plainly or through C{receive} by its kind, and to
        nobody else.
        """
        hub = Hub(NODE)
        # each person has a connection of each kind
        connections = [(PlainConnection if i % 2 else FakeConnection)(self.PEOPLE[i // 2]) for i in range(6)]
        for action, index, room in steps:
            connection = connections[index]
            owner = connection.user
            if action == "attach":
                hub.attach(connection, owner)
            elif action == "detach":
                hub.detach(connection, owner)
            elif action == "load":
                hub.load_rooms(owner.id, [room])
            elif action == "join":
                hub.dispatch(events.MemberAdded(events.RoomRef(room), owner.id))
            else:
                hub.dispatch(events.MemberRemoved(events.RoomRef(room), owner.id))
            for room_id in self.ROOMS:
                for but in (None, ALICE.id):
                    self.assertShownToMembers(hub, connections, room_id, but, holding)

    def assertShownToMembers(self, hub, connections, room_id, but, holding):
        """A message of the room reaches exactly the connections here of its members but C{but}, once each."""
        for connection in connections:
            connection.events.clear()
            if isinstance(connection, PlainConnection):
                connection.writes.clear()
        expected = {c for u in hub.local_members(room_id) if u != but for c in hub.connections_of(u)}
        event = events.MessageSent(events.RoomRef(room_id, "hall"), 1, CAROL.id, "carol", 0, "hi")
        if holding:
            hub.hold()
        self.assertEqual(hub._show_room(event, room_id, but, {}, {}), len(expected))
        if holding:
            hub.release()
        line = "MESSAGE:hall:1:carol:0:hi"
        got = {c for c in connections if c.events or getattr(c, "writes", None)}
        self.assertEqual(got, expected)
        for connection in got:
            if isinstance(connection, PlainConnection):
                self.assertEqual(connection.writes, [(line + "\r\n").encode()])
            else:
                self.assertEqual(connection.events, [line])

    def test_user_named_outside_the_room(self):
        """
        An event of one room that also names a user who is not a member
        (the user who left hears of it) reaches them as well, once.
        """
        hub = Hub(NODE)
        alice, bob = FakeConnection(ALICE), FakeConnection(BOB)
        for connection in (alice, bob):
            hub.attach(connection, connection.user)
            hub.load_rooms(connection.user.id, [HALL.id])
        self.assertEqual(hub.dispatch(events.UserLeft(HALL, BOB.id, "Bob")), 2)
        self.assertEqual(alice.events, ["USER_LEFT:hall:Bob"])
        self.assertEqual(bob.events, ["USER_LEFT:hall:Bob"])
        self.assertEqual(hub.local_members(HALL.id), {ALICE.id})
        self.assertEqual(hub.dispatch(events.MessageSent(HALL, 1, ALICE.id, "alice", 0, "hi")), 1)
        self.assertEqual(bob.events, ["USER_LEFT:hall:Bob"])

    def test_rendered_once_for_the_room_and_a_user_outside_it(self):
        """
        An event of a room that also names a user who is not a member here
        yet (their rooms are still being read) reaches both, its plain
        line rendered once.
        """
        renders = []

        class EveryEventPlain(PlainConnection):
            """Renders every event plainly."""

            def render_plain(self, event):
                renders.append(event)
                return (render_event(event, self.user.id) + "\r\n").encode()

        hub = Hub(NODE)
        alice, bob = EveryEventPlain(ALICE), EveryEventPlain(BOB)
        hub.attach(alice, ALICE)
        hub.load_rooms(ALICE.id, [HALL.id])
        hub.attach(bob, BOB)
        self.assertEqual(hub.dispatch(events.UserJoined(HALL, BOB.id, "Bob")), 2)
        self.assertEqual(alice.writes, [b"USER_JOINED:hall:Bob\r\n"])
        self.assertEqual(bob.writes, [b"USER_JOINED:hall:Bob\r\n"])
        self.assertEqual(len(renders), 1)
