"""
Tests for rooms, membership, roles and moderation (L{commands.rooms},
L{lairchat.domain.rooms}, L{lairchat.domain.access}, L{lairchat.store.rooms})
against the real database, and for the events each change records.

Commands run through the real router with stand-in connections that record
the events the hub delivers to them, so each test sees exactly who was told
what.
"""

import itertools

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from lairchat.context import Config, ServerContext
from lairchat.errors import Conflict, PermissionDenied
from lairchat.events import (
    InvitationRevoked,
    MemberAdded,
    MemberRemoved,
    Origin,
    RoleChanged,
    RoomCreated,
    RoomRef,
    TopicChanged,
    UserBanned,
    UserJoined,
    UserKicked,
    UserLeft,
)
from lairchat.plugins import load_commands
from lairchat.protocol import EventReceiver
from lairchat.router import Router
from lairchat.store.events import Outbox
from lairchat.store.rooms import ACCOUNT_GONE, BANNED, GONE, JOINED, MEMBER, PRIVATE, JoinOutcome
from lairchat.wire import parse_text
from tests.support import fresh_store, held_open, until_waiting_for_a_lock
from tests.test_store import recorded, writer

ROOM_COMMANDS = (
    "CREATE_ROOM",
    "JOIN_ROOM",
    "LEAVE_ROOM",
    "LIST_ROOMS",
    "ROOM_INFO",
    "ROOM_MEMBERS",
    "SET_TOPIC",
    "SET_ROLE",
    "KICK_USER",
    "BAN_USER",
    "UNBAN_USER",
)


class StandInConnection(EventReceiver):
    """
    What the router and the hub need of a connection, recording the event
    lines the line protocol shows it.

    @ivar events: every event line delivered, in order.
    """

    _ids = itertools.count(1)

    def __init__(self, clock: Clock) -> None:
        self.user = None
        self.session_id = None
        self.current_room = None
        self.events: list[str] = []
        self.connection_id = next(self._ids)

    def write_data(self, data: bytes) -> None:
        """Record event lines; hold them while the hub holds output (what it adds itself is held)."""
        if self.held_output is not None:
            self.held_output.append(data)
            return
        self.events.extend(data.decode("utf-8").split("\r\n")[:-1])

    def close(self) -> None:
        """Closed: nothing more is shown."""
        self._closed = True

    def log_out(self) -> None:
        """Logged out."""
        self.user = None

    def take_events(self) -> list[str]:
        """
        The events so far, forgetting them: those written, then those held
        while the hub holds output (a test resumed by a batch's results
        runs before the hub releases them).
        """
        events, self.events = self.events, []
        if self.held_output:
            events += b"".join(self.held_output).decode("utf-8").split("\r\n")[:-1]
            self.held_output = []
        return events


class RoomsTestCase(TestCase):
    """A real store and router, with helpers to log users in and ask."""

    extensions: tuple = ()

    async def setUp(self):
        self.clock = Clock()
        self.store = await fresh_store(self)
        self.server = ServerContext(
            config=Config(rate_limits=False),
            store=self.store,
            clock=self.clock,
            passwords=None,
            registry=load_commands(),
            extensions=list(self.extensions),
        )
        self.router = Router(self.server)

    async def connect(self, name: str, admin: bool = False) -> StandInConnection:
        """A connection logged in as C{name} (created on first use)."""
        user = await self.store.users.by_name(name)
        if user is None:
            user = await self.store.users.create(name, "not a real hash")
        if admin:
            user = await self.store.users.set_server_role(name, "admin")
        connection = StandInConnection(self.clock)
        connection.user = user
        await self.server.store.events.join(self.server.node, self.server.bus.last)
        await self.server.user_online(connection, user)
        return connection

    def disconnect(self, connection: StandInConnection) -> None:
        """Log a connection out."""
        user, connection.user = connection.user, None
        self.server.user_offline(connection, user)

    async def ask(self, connection: StandInConnection, line: str) -> list[str]:
        """The reply lines of one request."""
        outcome = await self.router.dispatch(connection, parse_text(line))
        return list(outcome.lines)

    async def ok(self, connection: StandInConnection, line: str) -> list[str]:
        """L{ask}, asserting success."""
        reply = await self.ask(connection, line)
        self.assertTrue(reply[-1].startswith("OK:"), f"{line!r} answered {reply}")
        return reply

    async def refused(self, connection: StandInConnection, line: str, code: int, name: str = "") -> str:
        """L{ask}, asserting the one-line refusal C{code} (and C{name})."""
        reply = await self.ask(connection, line)
        self.assertEqual(len(reply), 1, reply)
        prefix = f"ERROR:{code}:{name}" if name else f"ERROR:{code}:"
        self.assertTrue(reply[0].startswith(prefix), f"{line!r} answered {reply}, not {prefix}")
        return reply[0]

    async def roles(self, room: str) -> dict[str, str]:
        """Every member of the room by name, with their role."""
        found = await self.store.rooms.by_name(room)
        return {m.username: m.role for m in await self.store.rooms.members(found.id)}

    async def room_with(self, owner: str = "alice", **members: str) -> dict[str, StandInConnection]:
        """
        A public room C{hall} created by C{owner}, joined by every other
        user named, who is then given the role named; their connections
        by name, with no events pending.
        """
        connections = {owner: await self.connect(owner)}
        await self.ok(connections[owner], "CREATE_ROOM:hall")
        for name, role in members.items():
            connections[name] = await self.connect(name)
            await self.ok(connections[name], "JOIN_ROOM:hall")
            if role != "member":
                await self.ok(connections[owner], f"SET_ROLE:hall:{name}:{role}")
        for connection in connections.values():
            connection.take_events()
        return connections

    async def audit_actions(self) -> list[tuple[str, str, str, str]]:
        """(actor, action, target, outcome) of every audit entry, oldest first."""
        entries = await self.store.audit.latest(500)
        return [(e.actor, e.action, e.target, e.outcome) for e in reversed(entries)]


class RegistrationTests(TestCase):
    """The commands are plugins the server finds."""

    def test_every_room_command_is_registered(self):
        """Each command of this domain is found by getPlugins."""
        registry = load_commands()
        for name in ROOM_COMMANDS:
            self.assertIn(name, registry)
            self.assertEqual(registry[name].name, name)


class CreateRoomTests(RoomsTestCase):
    """CREATE_ROOM."""

    async def test_create(self):
        """The creator owns the new room, which becomes their current room."""
        alice = await self.connect("alice")
        self.assertEqual(await self.ask(alice, "CREATE_ROOM:Hall"), ["OK:CREATE_ROOM:Hall"])
        self.assertEqual(alice.current_room, "Hall")
        room = await self.store.rooms.by_name("hall")
        self.assertEqual((room.name, room.privacy, room.kind, room.owner_id), ("Hall", "public", "room", alice.user.id))
        self.assertEqual(await self.roles("hall"), {"alice": "owner"})
        self.assertIn(("alice", "create_room", "Hall", "ok"), await self.audit_actions())

    async def test_create_private(self):
        """The optional privacy makes a private room (case-insensitively)."""
        alice = await self.connect("alice")
        await self.ok(alice, "CREATE_ROOM:secret:PRIVATE")
        self.assertEqual((await self.store.rooms.by_name("secret")).privacy, "private")

    async def test_name_taken_case_insensitively(self):
        """A second room of the same name, in any case, is a conflict; nothing changes."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.refused(bob, "CREATE_ROOM:HALL:private", 1211, "CONFLICT")
        self.assertIsNone(bob.current_room)
        self.assertEqual(await self.roles("hall"), {"alice": "owner"})
        self.assertEqual(len(await self.store.rooms.summaries(bob.user.id, everything=True)), 1)

    async def test_bad_input(self):
        """Bad names and privacies are refused with the field rules' codes."""
        alice = await self.connect("alice")
        await self.refused(alice, "CREATE_ROOM:ab", 1113)
        await self.refused(alice, "CREATE_ROOM:" + "a" * 51, 1113)
        await self.refused(alice, "CREATE_ROOM:9lives", 1111)
        await self.refused(alice, "CREATE_ROOM:has space", 1111)
        await self.refused(alice, "CREATE_ROOM:Lobby", 1111)
        await self.refused(alice, "CREATE_ROOM:latest", 1111)
        await self.refused(alice, "CREATE_ROOM:hall:secret", 1111)
        await self.refused(alice, "CREATE_ROOM:hall:public:extra", 1111)
        await self.refused(alice, "CREATE_ROOM", 1112)
        await self.refused(alice, "CREATE_ROOM:hall\u0007", 1114)
        self.assertEqual(await self.store.rooms.summaries(alice.user.id, everything=True), [])
        self.assertIsNone(alice.current_room)

    async def test_needs_login(self):
        """Anonymous connections cannot create rooms."""
        anonymous = StandInConnection(self.clock)
        await self.refused(anonymous, "CREATE_ROOM:hall", 1001)


class JoinRoomTests(RoomsTestCase):
    """JOIN_ROOM."""

    async def test_join_public(self):
        """
        A public room is joined as member; the other members are told, and
        so are the joiner's other connections, but not the joining one.
        """
        alice, outsider = await self.connect("alice"), await self.connect("carol")
        await self.ok(alice, "CREATE_ROOM:hall")
        bob, bob_again = await self.connect("bob"), await self.connect("bob")
        self.assertEqual(await self.ask(bob, "join_room:HALL"), ["OK:JOIN_ROOM:hall"])
        self.assertEqual(bob.current_room, "hall")
        self.assertIsNone(bob_again.current_room)
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member"})
        self.assertEqual(alice.take_events(), ["USER_JOINED:hall:bob"])
        self.assertEqual(bob_again.take_events(), ["USER_JOINED:hall:bob"])
        self.assertEqual(bob.take_events(), [])
        self.assertEqual(outsider.take_events(), [])

    async def test_join_again(self):
        """A member joining again just makes the room current; nobody is told."""
        alice = await self.connect("alice")
        bob = await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(bob, "JOIN_ROOM:hall")
        alice.take_events()
        other = await self.connect("alice")
        self.assertEqual(await self.ask(other, "JOIN_ROOM:hall"), ["OK:JOIN_ROOM:hall"])
        self.assertEqual(other.current_room, "hall")
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member"})
        self.assertEqual(alice.take_events() + bob.take_events(), [])

    async def test_unknown_room(self):
        """No such room: 1501."""
        bob = await self.connect("bob")
        await self.refused(bob, "JOIN_ROOM:nowhere", 1501, "NOT_FOUND")
        self.assertIsNone(bob.current_room)

    async def test_private_needs_membership(self):
        """A private room refuses a non-member with 1404; nothing changes."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:secret:private")
        alice.take_events()
        await self.refused(bob, "JOIN_ROOM:secret", 1404, "ACCESS_DENIED")
        self.assertEqual(await self.roles("secret"), {"alice": "owner"})
        self.assertIsNone(bob.current_room)
        self.assertEqual(alice.take_events(), [])

    async def test_private_member_enters(self):
        """A member of a private room (e.g. by an accepted invitation) may enter it."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:secret:private")
        room = await self.store.rooms.by_name("secret")
        await self.store.db.transaction(lambda tx: self.store.rooms.add_member_in(tx, RoomRef(room.id, room.name), bob.user, "member"))
        await self.ok(bob, "JOIN_ROOM:secret")
        self.assertEqual(bob.current_room, "secret")

    async def test_banned(self):
        """A banned user cannot join: 1404, and nobody is told."""
        rooms = await self.room_with(bob="member")
        await self.ok(rooms["alice"], "BAN_USER:hall:bob")
        rooms["alice"].take_events()
        await self.refused(rooms["bob"], "JOIN_ROOM:hall", 1404, "ACCESS_DENIED")
        self.assertEqual(await self.roles("hall"), {"alice": "owner"})
        self.assertEqual(rooms["alice"].take_events(), [])

    async def test_bad_input(self):
        """A malformed name: 1111, 1112 without one."""
        bob = await self.connect("bob")
        await self.refused(bob, "JOIN_ROOM:no way", 1111)
        await self.refused(bob, "JOIN_ROOM", 1112)


class LeaveRoomTests(RoomsTestCase):
    """LEAVE_ROOM, and who owns a room its last owner left."""

    async def test_leave(self):
        """
        The leaver is no longer a member; the room and the leaver's other
        connections are told; every current room that was it is cleared.
        """
        rooms = await self.room_with(bob="member", carol="member")
        bob_again = await self.connect("bob")
        await self.ok(bob_again, "JOIN_ROOM:hall")
        rooms["alice"].take_events()
        self.assertEqual(await self.ask(rooms["bob"], "LEAVE_ROOM"), ["OK:LEAVE_ROOM:hall"])
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "carol": "member"})
        self.assertIsNone(rooms["bob"].current_room)
        self.assertIsNone(bob_again.current_room)
        self.assertEqual(rooms["alice"].take_events(), ["USER_LEFT:hall:bob"])
        self.assertEqual(rooms["carol"].take_events(), ["USER_LEFT:hall:bob"])
        self.assertEqual(bob_again.take_events(), ["USER_LEFT:hall:bob"])
        self.assertEqual(rooms["bob"].take_events(), [])

    async def test_leave_named_keeps_other_current_room(self):
        """Leaving a room by name leaves a different current room alone."""
        rooms = await self.room_with(bob="member")
        await self.ok(rooms["bob"], "CREATE_ROOM:other")
        await self.ok(rooms["bob"], "LEAVE_ROOM:HALL")
        self.assertEqual(rooms["bob"].current_room, "other")

    async def test_no_current_room(self):
        """Without a room and a current room: 1111 NO_CURRENT_ROOM."""
        bob = await self.connect("bob")
        await self.refused(bob, "LEAVE_ROOM", 1111, "NO_CURRENT_ROOM")

    async def test_not_a_member(self):
        """Leaving a public room one is not in: 1404; a private one: 1501."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(alice, "CREATE_ROOM:secret:private")
        alice.take_events()
        await self.refused(bob, "LEAVE_ROOM:hall", 1404, "ACCESS_DENIED")
        await self.refused(bob, "LEAVE_ROOM:secret", 1501, "NOT_FOUND")
        await self.refused(bob, "LEAVE_ROOM:nowhere", 1501, "NOT_FOUND")
        self.assertEqual(alice.take_events(), [])

    async def test_last_owner_succeeded_by_longest_standing_admin(self):
        """
        The longest-standing admin becomes owner and the room is told (a
        ROLE_CHANGED by the leaver); the owner shown by ROOM_INFO follows.
        """
        rooms = await self.room_with(mod="moderator", first="admin", second="admin")
        self.assertEqual(await self.ask(rooms["alice"], "LEAVE_ROOM:hall"), ["OK:LEAVE_ROOM:hall"])
        self.assertEqual(
            await self.roles("hall"), {"first": "owner", "second": "admin", "mod": "moderator"}
        )
        for name in ("mod", "first", "second"):
            self.assertEqual(
                rooms[name].take_events(), ["USER_LEFT:hall:alice", "ROLE_CHANGED:hall:first:owner:alice"]
            )
        self.assertEqual(rooms["alice"].take_events(), [])
        info = await self.ok(rooms["mod"], "ROOM_INFO:hall")
        self.assertEqual(info[0].split(":")[:6], ["OK", "ROOM_INFO", "hall", "public", "first", "3"])

    async def test_succession_falls_to_lower_roles(self):
        """With no admin, a moderator; then a member; then a guest."""
        await self.room_with(guest_one="guest", member_one="member", member_two="member", mod="moderator")
        chain = [("alice", "mod"), ("mod", "member_one"), ("member_one", "member_two"), ("member_two", "guest_one")]
        for leaver, heir in chain:
            leaving = await self.connect(leaver)
            await self.ok(leaving, "LEAVE_ROOM:hall")
            roles = await self.roles("hall")
            self.assertEqual(roles[heir], "owner", roles)
            self.assertEqual(list(roles.values()).count("owner"), 1)
            room = await self.store.rooms.by_name("hall")
            self.assertEqual(room.owner_id, (await self.store.users.by_name(heir)).id)

    async def test_co_owner_remains(self):
        """When another owner remains nobody is promoted, and they become the room's owner."""
        rooms = await self.room_with(bob="owner", carol="admin")
        await self.ok(rooms["alice"], "LEAVE_ROOM:hall")
        self.assertEqual(await self.roles("hall"), {"bob": "owner", "carol": "admin"})
        self.assertEqual(rooms["carol"].take_events(), ["USER_LEFT:hall:alice"])
        self.assertEqual((await self.store.rooms.by_name("hall")).owner_id, rooms["bob"].user.id)

    async def test_last_member_deletes_the_room(self):
        """A room whose last member leaves is gone; its name is free again."""
        alice = await self.connect("alice")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(alice, "LEAVE_ROOM:hall")
        self.assertIsNone(await self.store.rooms.by_name("hall"))
        await self.refused(alice, "ROOM_INFO:hall", 1501)
        await self.ok(alice, "CREATE_ROOM:hall")


class ListAndInfoTests(RoomsTestCase):
    """LIST_ROOMS, ROOM_INFO, ROOM_MEMBERS."""

    async def make_rooms(self):
        """alice: public hall (topic, bob in it), private secret; carol: private den."""
        alice, bob, carol = await self.connect("alice"), await self.connect("bob"), await self.connect("carol")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(alice, "SET_TOPIC:hall:all: welcome")
        await self.ok(bob, "JOIN_ROOM:hall")
        await self.ok(alice, "CREATE_ROOM:secret:private")
        await self.ok(carol, "CREATE_ROOM:Den:private")
        return alice, bob, carol

    async def test_list_visible_rooms(self):
        """Public rooms and one's own private rooms, by name, never direct rooms."""
        alice, bob, carol = await self.make_rooms()
        await self.store.db.execute(
            "INSERT INTO rooms (kind, direct_key) VALUES ('direct', %s)", (f"{alice.user.id}:{bob.user.id}",)
        )
        self.assertEqual(
            await self.ask(alice, "LIST_ROOMS"),
            ["ROOM:hall:public:2:all: welcome", "ROOM:secret:private:1:", "OK:LIST_ROOMS:2"],
        )
        self.assertEqual(await self.ask(bob, "LIST_ROOMS"), ["ROOM:hall:public:2:all: welcome", "OK:LIST_ROOMS:1"])
        self.assertEqual(
            await self.ask(carol, "LIST_ROOMS"),
            ["ROOM:Den:private:1:", "ROOM:hall:public:2:all: welcome", "OK:LIST_ROOMS:2"],
        )
        await self.refused(alice, "LIST_ROOMS:x", 1112)

    async def test_server_admin_sees_every_room(self):
        """A server admin lists and inspects private rooms too."""
        await self.make_rooms()
        root = await self.connect("root", admin=True)
        reply = await self.ask(root, "LIST_ROOMS")
        self.assertEqual(reply[-1], "OK:LIST_ROOMS:3")
        await self.ok(root, "ROOM_INFO:secret")
        await self.refused(root, "JOIN_ROOM:secret", 1404)

    async def test_room_info(self):
        """Privacy, owner, members, creation time and topic (colons and all)."""
        alice, bob, carol = await self.make_rooms()
        room = await self.store.rooms.by_name("hall")
        self.assertGreater(room.created_ms, 0)
        self.assertEqual(
            await self.ask(bob, "ROOM_INFO:HALL"), [f"OK:ROOM_INFO:hall:public:alice:2:{room.created_ms}:all: welcome"]
        )
        secret = await self.store.rooms.by_name("secret")
        self.assertEqual(
            await self.ask(alice, "ROOM_INFO:secret"), [f"OK:ROOM_INFO:secret:private:alice:1:{secret.created_ms}:"]
        )

    async def test_private_room_invisible(self):
        """A private room reads exactly as a room that does not exist, to non-members."""
        alice, bob, carol = await self.make_rooms()
        missing = await self.refused(bob, "ROOM_INFO:nowhere", 1501)
        hidden = await self.refused(bob, "ROOM_INFO:secret", 1501)
        self.assertEqual(hidden.replace("secret", "nowhere"), missing)
        await self.refused(bob, "ROOM_MEMBERS:secret", 1501)

    async def test_room_members(self):
        """Highest role first, then by name, each online or offline."""
        rooms = await self.room_with(zed="admin", bob="member", amy="member", mod="moderator")
        self.disconnect(rooms["bob"])
        outsider = await self.connect("carol")
        self.assertEqual(
            await self.ask(outsider, "ROOM_MEMBERS:hall"),
            [
                "MEMBER:hall:alice:owner:online",
                "MEMBER:hall:zed:admin:online",
                "MEMBER:hall:mod:moderator:online",
                "MEMBER:hall:amy:member:online",
                "MEMBER:hall:bob:member:offline",
                "OK:ROOM_MEMBERS:5",
            ],
        )
        await self.refused(outsider, "ROOM_MEMBERS:nowhere", 1501)


class SetTopicTests(RoomsTestCase):
    """SET_TOPIC."""

    async def test_moderator_sets_topic(self):
        """A moderator sets it; the room hears TOPIC_CHANGED, the setter the OK."""
        rooms = await self.room_with(mod="moderator", bob="member")
        outsider = await self.connect("carol")
        self.assertEqual(await self.ask(rooms["mod"], "SET_TOPIC:hall:news: at 5"), ["OK:SET_TOPIC:hall"])
        self.assertEqual((await self.store.rooms.by_name("hall")).topic, "news: at 5")
        self.assertEqual(rooms["alice"].take_events(), ["TOPIC_CHANGED:hall:mod:news: at 5"])
        self.assertEqual(rooms["bob"].take_events(), ["TOPIC_CHANGED:hall:mod:news: at 5"])
        self.assertEqual(rooms["mod"].take_events() + outsider.take_events(), [])

    async def test_clear_topic(self):
        """An empty topic clears it."""
        rooms = await self.room_with()
        await self.ok(rooms["alice"], "SET_TOPIC:hall:something")
        await self.ok(rooms["alice"], "SET_TOPIC:hall:")
        self.assertEqual((await self.store.rooms.by_name("hall")).topic, "")

    async def test_refusals(self):
        """A member: 1002; a non-member: 1404; too long: 1113; nothing changes."""
        rooms = await self.room_with(bob="member")
        outsider = await self.connect("carol")
        await self.refused(rooms["bob"], "SET_TOPIC:hall:mine", 1002, "PERMISSION_DENIED")
        await self.refused(outsider, "SET_TOPIC:hall:mine", 1404)
        await self.refused(rooms["alice"], "SET_TOPIC:hall:" + "x" * 501, 1113)
        await self.refused(rooms["alice"], "SET_TOPIC:nowhere:x", 1501)
        await self.refused(rooms["alice"], "SET_TOPIC:hall", 1112)
        self.assertEqual((await self.store.rooms.by_name("hall")).topic, "")
        self.assertEqual(rooms["alice"].take_events() + rooms["bob"].take_events(), [])


class SetRoleTests(RoomsTestCase):
    """SET_ROLE: admin+, on lower roles only, never granting above one's own."""

    async def test_admin_promotes(self):
        """An admin makes a member moderator; the room hears ROLE_CHANGED; audited."""
        rooms = await self.room_with(adm="admin", bob="member")
        self.assertEqual(await self.ask(rooms["adm"], "SET_ROLE:hall:BOB:Moderator"), ["OK:SET_ROLE:hall:bob:moderator"])
        self.assertEqual((await self.roles("hall"))["bob"], "moderator")
        for name in ("alice", "bob"):
            self.assertEqual(rooms[name].take_events(), ["ROLE_CHANGED:hall:bob:moderator:adm"])
        self.assertEqual(rooms["adm"].take_events(), [])
        self.assertIn(("adm", "set_role", "hall/bob", "ok"), await self.audit_actions())

    async def test_grant_up_to_own_role(self):
        """An admin may make another admin; an owner another owner."""
        rooms = await self.room_with(adm="admin", bob="member", carol="member")
        await self.ok(rooms["adm"], "SET_ROLE:hall:bob:admin")
        await self.ok(rooms["alice"], "SET_ROLE:hall:carol:owner")
        roles = await self.roles("hall")
        self.assertEqual((roles["bob"], roles["carol"]), ("admin", "owner"))

    async def test_same_role_is_quiet(self):
        """Giving someone the role they have succeeds and tells nobody."""
        rooms = await self.room_with(bob="moderator")
        await self.ok(rooms["alice"], "SET_ROLE:hall:bob:moderator")
        self.assertEqual(rooms["bob"].take_events(), [])

    async def test_refusals(self):
        """Each refusal has its code, changes nothing, tells nobody."""
        rooms = await self.room_with(adm="admin", other="admin", mod="moderator", bob="member")
        outsider = await self.connect("carol")
        before = await self.roles("hall")
        cases = [
            (rooms["adm"], "SET_ROLE:hall:bob:owner", 1002),
            (rooms["adm"], "SET_ROLE:hall:other:member", 1002),
            (rooms["adm"], "SET_ROLE:hall:alice:member", 1002),
            (rooms["adm"], "SET_ROLE:hall:adm:member", 1002),
            (rooms["alice"], "SET_ROLE:hall:alice:admin", 1002),
            (rooms["mod"], "SET_ROLE:hall:bob:guest", 1002),
            (rooms["bob"], "SET_ROLE:hall:bob:admin", 1002),
            (outsider, "SET_ROLE:hall:bob:guest", 1404),
            (rooms["adm"], "SET_ROLE:hall:carol:guest", 1501),
            (rooms["adm"], "SET_ROLE:hall:nobody:guest", 1501),
            (rooms["adm"], "SET_ROLE:nowhere:bob:guest", 1501),
            (rooms["adm"], "SET_ROLE:hall:bob:king", 1111),
            (rooms["adm"], "SET_ROLE:hall:bob", 1112),
        ]
        for connection, line, code in cases:
            await self.refused(connection, line, code)
        self.assertEqual(await self.roles("hall"), before)
        for connection in [*rooms.values(), outsider]:
            self.assertEqual(connection.take_events(), [])
        self.assertIn(("adm", "set_role", "hall/bob", "refused"), await self.audit_actions())

    async def test_roles_rechecked_under_the_lock(self):
        """The store applies the permission check to the roles it reads itself."""
        rooms = await self.room_with(adm="admin", bob="member")
        room = await self.store.rooms.by_name("hall")
        seen = []

        def authorize(actor_role, target_role):
            seen.append((actor_role, target_role))
            raise PermissionDenied("no")

        with self.assertRaises(PermissionDenied):
            await self.store.rooms.set_role(
                room, rooms["adm"].user, rooms["bob"].user, "guest", authorize, Outbox(None)
            )
        self.assertEqual(seen, [("admin", "member")])
        self.assertEqual((await self.roles("hall"))["bob"], "member")


class KickTests(RoomsTestCase):
    """KICK_USER."""

    async def test_moderator_kicks_member(self):
        """
        The member is out; the room and every connection of theirs hear
        USER_KICKED, the kicker the OK; their current room is cleared.
        """
        rooms = await self.room_with(mod="moderator", bob="member", carol="member")
        bob_elsewhere = await self.connect("bob")
        self.assertEqual(
            await self.ask(rooms["mod"], "KICK_USER:hall:bob:spam: lots of it"), ["OK:KICK_USER:hall:bob"]
        )
        self.assertNotIn("bob", await self.roles("hall"))
        line = "USER_KICKED:hall:bob:mod:spam: lots of it"
        for connection in (rooms["alice"], rooms["carol"], rooms["bob"], bob_elsewhere):
            self.assertEqual(connection.take_events(), [line])
        self.assertEqual(rooms["mod"].take_events(), [])
        self.assertIsNone(rooms["bob"].current_room)
        self.assertIn(("mod", "kick", "hall/bob", "ok"), await self.audit_actions())
        await self.ok(rooms["bob"], "JOIN_ROOM:hall")

    async def test_no_reason(self):
        """The reason is optional: the event's last field is empty."""
        rooms = await self.room_with(bob="member")
        await self.ok(rooms["alice"], "KICK_USER:hall:bob")
        self.assertEqual(rooms["bob"].take_events(), ["USER_KICKED:hall:bob:alice:"])

    async def test_refusals(self):
        """Only on lower roles, only moderator+, only members; nothing changes."""
        rooms = await self.room_with(mod="moderator", mod2="moderator", bob="member", adm="admin")
        outsider = await self.connect("carol")
        before = await self.roles("hall")
        cases = [
            (rooms["bob"], "KICK_USER:hall:mod", 1002),
            (rooms["bob"], "KICK_USER:hall:bob", 1002),
            (rooms["mod"], "KICK_USER:hall:mod2", 1002),
            (rooms["mod"], "KICK_USER:hall:adm", 1002),
            (rooms["mod"], "KICK_USER:hall:mod", 1002),
            (rooms["adm"], "KICK_USER:hall:alice", 1002),
            (outsider, "KICK_USER:hall:bob", 1404),
            (rooms["mod"], "KICK_USER:hall:carol", 1501),
            (rooms["mod"], "KICK_USER:hall:nobody", 1501),
            (rooms["mod"], "KICK_USER:nowhere:bob", 1501),
            (rooms["mod"], "KICK_USER:hall", 1112),
            (rooms["mod"], "KICK_USER:hall:bob:" + "x" * 501, 1113),
        ]
        for connection, line, code in cases:
            await self.refused(connection, line, code)
        self.assertEqual(await self.roles("hall"), before)
        for connection in [*rooms.values(), outsider]:
            self.assertEqual(connection.take_events(), [])


class BanTests(RoomsTestCase):
    """BAN_USER and UNBAN_USER."""

    async def invite(self, room: str, sender: StandInConnection, recipient: StandInConnection) -> int:
        """A pending invitation (written directly: this is not the invitations' test)."""
        found = await self.store.rooms.by_name(room)
        [(invitation_id,)] = await self.store.db.fetchall(
            "INSERT INTO invitations (sender_id, recipient_id, room_id, expires_at) "
            "VALUES (%s, %s, %s, now() + interval '1 day') RETURNING id",
            (sender.user.id, recipient.user.id, found.id),
            retry=False,
        )
        return invitation_id

    async def invitation_status(self, invitation_id: int) -> tuple[str, list]:
        """An invitation's status and its trail of (status, note)."""
        row = await self.store.db.fetchone("SELECT status FROM invitations WHERE id = %s", (invitation_id,))
        trail = await self.store.db.fetchall(
            "SELECT status, note FROM invitation_events WHERE invitation_id = %s ORDER BY id", (invitation_id,)
        )
        return row[0], [tuple(t) for t in trail]

    async def test_ban_member(self):
        """The member is out and cannot come back; room and user hear USER_BANNED."""
        rooms = await self.room_with(adm="admin", bob="member", carol="member")
        self.assertEqual(await self.ask(rooms["adm"], "BAN_USER:hall:bob:rude"), ["OK:BAN_USER:hall:bob"])
        self.assertNotIn("bob", await self.roles("hall"))
        for name in ("alice", "carol", "bob"):
            self.assertEqual(rooms[name].take_events(), ["USER_BANNED:hall:bob:adm:rude"])
        self.assertEqual(rooms["adm"].take_events(), [])
        self.assertIsNone(rooms["bob"].current_room)
        room = await self.store.rooms.by_name("hall")
        self.assertTrue(await self.store.rooms.is_banned(room.id, rooms["bob"].user.id))
        self.assertIn(("adm", "ban", "hall/bob", "ok"), await self.audit_actions())
        await self.refused(rooms["bob"], "JOIN_ROOM:hall", 1404)

    async def test_ban_outsider(self):
        """Someone who is not a member can be banned; they hear of it."""
        rooms = await self.room_with()
        carol = await self.connect("carol")
        await self.ok(rooms["alice"], "BAN_USER:hall:carol")
        self.assertEqual(carol.take_events(), ["USER_BANNED:hall:carol:alice:"])
        await self.refused(carol, "JOIN_ROOM:hall", 1404)

    async def test_ban_revokes_pending_invitations(self):
        """In the same transaction; the user hears INVITATION_REVOKED for each."""
        alice, carol = await self.connect("alice"), await self.connect("carol")
        await self.ok(alice, "CREATE_ROOM:secret:private")
        invitation = await self.invite("secret", alice, carol)
        await self.ok(alice, "BAN_USER:secret:carol:no")
        self.assertEqual(
            carol.take_events(),
            ["USER_BANNED:secret:carol:alice:no", f"INVITATION_REVOKED:{invitation}:secret:alice"],
        )
        status, trail = await self.invitation_status(invitation)
        self.assertEqual(status, "revoked")
        self.assertEqual(trail, [("revoked", "banned by alice")])

    async def test_refused_ban_revokes_nothing(self):
        """A refused ban leaves the invitations pending (the transaction rolled back)."""
        rooms = await self.room_with(adm="admin", adm2="admin")
        invitation = await self.invite("hall", rooms["alice"], rooms["adm2"])
        await self.refused(rooms["adm"], "BAN_USER:hall:adm2", 1002)
        self.assertEqual(await self.invitation_status(invitation), ("pending", []))
        room = await self.store.rooms.by_name("hall")
        self.assertFalse(await self.store.rooms.is_banned(room.id, rooms["adm2"].user.id))

    async def test_already_banned(self):
        """A second ban is a conflict."""
        rooms = await self.room_with(bob="member")
        await self.ok(rooms["alice"], "BAN_USER:hall:bob")
        await self.refused(rooms["alice"], "BAN_USER:hall:bob", 1211, "CONFLICT")

    async def test_ban_refusals(self):
        """Admin+ only, on lower roles only; nothing changes, nobody hears."""
        rooms = await self.room_with(adm="admin", adm2="admin", mod="moderator", bob="member")
        outsider = await self.connect("carol")
        before = await self.roles("hall")
        cases = [
            (rooms["mod"], "BAN_USER:hall:bob", 1002),
            (rooms["bob"], "BAN_USER:hall:carol", 1002),
            (rooms["adm"], "BAN_USER:hall:adm2", 1002),
            (rooms["adm"], "BAN_USER:hall:alice", 1002),
            (rooms["adm"], "BAN_USER:hall:adm", 1002),
            (outsider, "BAN_USER:hall:bob", 1404),
            (rooms["adm"], "BAN_USER:hall:nobody", 1501),
            (rooms["adm"], "BAN_USER:nowhere:bob", 1501),
            (rooms["adm"], "BAN_USER:hall:b", 1113),
        ]
        for connection, line, code in cases:
            await self.refused(connection, line, code)
        self.assertEqual(await self.roles("hall"), before)
        for connection in [*rooms.values(), outsider]:
            self.assertEqual(connection.take_events(), [])
        self.assertIn(("mod", "ban", "hall/bob", "refused"), await self.audit_actions())

    async def test_unban(self):
        """After UNBAN_USER the user may join again; audited."""
        rooms = await self.room_with(bob="member")
        await self.ok(rooms["alice"], "BAN_USER:hall:bob")
        self.assertEqual(await self.ask(rooms["alice"], "UNBAN_USER:hall:Bob"), ["OK:UNBAN_USER:hall:bob"])
        await self.ok(rooms["bob"], "JOIN_ROOM:hall")
        self.assertIn(("alice", "unban", "hall/bob", "ok"), await self.audit_actions())

    async def test_unban_refusals(self):
        """Not banned: 1501; below admin: 1002; outsider: 1404."""
        rooms = await self.room_with(mod="moderator", bob="member")
        await self.ok(rooms["alice"], "BAN_USER:hall:bob")
        outsider = await self.connect("carol")
        await self.refused(rooms["mod"], "UNBAN_USER:hall:bob", 1002)
        await self.refused(outsider, "UNBAN_USER:hall:bob", 1404)
        await self.refused(rooms["alice"], "UNBAN_USER:hall:carol", 1501)
        await self.refused(rooms["alice"], "UNBAN_USER:hall:nobody", 1501)
        room = await self.store.rooms.by_name("hall")
        self.assertTrue(await self.store.rooms.is_banned(room.id, rooms["bob"].user.id))


class StoreTests(RoomsTestCase):
    """The store's answers that commands rely on."""

    async def test_create_conflict_is_an_error_not_a_database_exception(self):
        """The unique violation is translated."""
        alice = await self.connect("alice")
        await self.store.rooms.create("hall", "public", alice.user, Outbox(None))
        with self.assertRaises(Conflict):
            await self.store.rooms.create("HALL", "public", alice.user, Outbox(None))

    async def test_join_gone_room(self):
        """Joining a room deleted meanwhile answers it gone; a banned user, banned."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        room = await self.store.rooms.create("hall", "public", alice.user, Outbox(None))
        ref = RoomRef(room.id, room.name)
        await self.store.rooms.ban(room, alice.user, bob.user, "", lambda a, t: None, Outbox(None))
        self.assertEqual((await self.store.rooms.join_with_event(ref, bob.user, None)).status, BANNED)
        await self.store.rooms.leave(room, alice.user, Outbox(None))
        self.assertEqual(await self.store.rooms.join_with_event(ref, bob.user, None), JoinOutcome(GONE))

    async def test_leave_when_not_a_member(self):
        """L{None}, and nothing changes."""
        alice, bob = await self.connect("alice"), await self.connect("bob")
        room = await self.store.rooms.create("hall", "public", alice.user, Outbox(None))
        self.assertIsNone(await self.store.rooms.leave(room, bob.user, Outbox(None)))
        self.assertEqual(await self.store.rooms.member_ids(room.id), [alice.user.id])

    async def test_owners_leaving_at_once_leave_an_owner(self):
        """Two owners leaving concurrently: the second sees the first gone and names a successor."""
        rooms = await self.room_with(bob="owner", carol="member")
        room = await self.store.rooms.by_name("hall")
        departures = await gatherResults(
            [
                Deferred.fromCoroutine(self.store.rooms.leave(room, rooms[name].user, Outbox(None)))
                for name in ("alice", "bob")
            ]
        )
        self.assertEqual(sum(d.successor is not None for d in departures), 1)
        self.assertEqual(await self.roles("hall"), {"carol": "owner"})
        self.assertEqual((await self.store.rooms.by_name("hall")).owner_id, rooms["carol"].user.id)

    async def test_co_members_include_direct_conversations(self):
        """Everyone sharing a room or a direct conversation, once, never oneself."""
        alice, bob, carol, dave = [await self.connect(n) for n in ("alice", "bob", "carol", "dave")]
        one = await self.store.rooms.create("one", "public", alice.user, Outbox(None))
        two = await self.store.rooms.create("two", "private", alice.user, Outbox(None))
        await self.store.rooms.join_with_event(RoomRef(one.id, one.name), bob.user, None)
        await self.store.db.transaction(
            lambda tx: self.store.rooms.add_member_in(tx, RoomRef(two.id, two.name), bob.user, "member"))
        [row] = await self.store.db.fetchall(
            "INSERT INTO rooms (kind, direct_key) VALUES ('direct', 'x') RETURNING id", retry=False
        )
        direct = RoomRef(row[0], "")
        await self.store.db.transaction(lambda tx: self.store.rooms.add_member_in(tx, direct, alice.user, "member"))
        await self.store.db.transaction(lambda tx: self.store.rooms.add_member_in(tx, direct, carol.user, "member"))
        self.assertEqual(sorted(await self.store.rooms.co_member_ids(alice.user.id)), [bob.user.id, carol.user.id])
        self.assertEqual(await self.store.rooms.co_member_ids(dave.user.id), [])


class JoinBatchTests(RoomsTestCase):
    """
    L{lairchat.store.rooms.RoomStore.join_with_event}: the joins asked for
    while a statement is under way are checked, written and recorded
    together by the next one.
    """

    async def test_batch(self):
        """
        One statement answers each join of a batch for itself: joins to two
        rooms, a user asking twice (the first asking joins), a member, a
        banned user, a private room and a room deleted meanwhile.  The
        joined get their membership and their L{UserJoined} (with their away
        text, from the same statement) under the sequence number returned;
        the others change and record nothing.
        """
        alice, bob, carol, dave = [await self.connect(n) for n in ("alice", "bob", "carol", "dave")]
        rooms = self.store.rooms
        hall = await rooms.create("hall", "public", alice.user, Outbox(None))
        annex = await rooms.create("annex", "public", alice.user, Outbox(None))
        secret = await rooms.create("secret", "private", alice.user, Outbox(None))
        attic = await rooms.create("attic", "public", alice.user, Outbox(None))
        await rooms.ban(hall, alice.user, dave.user, "", lambda a, t: None, Outbox(None))
        await rooms.leave(attic, alice.user, Outbox(None))
        await self.store.db.execute("INSERT INTO away (user_id, text) VALUES (%s, 'gone fishing')", (carol.user.id,))
        [hall_ref, annex_ref, secret_ref, attic_ref] = [RoomRef(r.id, r.name) for r in (hall, annex, secret, attic)]
        before = await self.store.events.latest()
        batches = rooms.group_commit.batches
        asked = [
            (hall_ref, bob), (hall_ref, carol), (hall_ref, bob), (annex_ref, carol), (hall_ref, alice),
            (hall_ref, dave), (secret_ref, bob), (attic_ref, bob),
        ]
        # the first join goes alone; the rest, asked meanwhile, share the next statement
        leader = rooms.join_with_event(annex_ref, alice.user, None)
        outcomes = await gatherResults(
            [rooms.join_with_event(ref, c.user, Origin("n1", c.connection_id)) for ref, c in asked]
        )
        self.assertEqual((await leader).status, MEMBER)
        self.assertEqual(rooms.group_commit.batches - batches, 2)

        self.assertEqual([o.status for o in outcomes],
                         [JOINED, JOINED, MEMBER, JOINED, MEMBER, BANNED, PRIVATE, GONE])
        hall, annex, secret = [await rooms.by_id(r.id) for r in (hall, annex, secret)]
        self.assertEqual([o.room for o in outcomes], [hall, hall, hall, annex, hall, hall, secret, None])
        joined = [
            UserJoined(hall_ref, bob.user.id, "bob", origin=Origin("n1", bob.connection_id)),
            UserJoined(hall_ref, carol.user.id, "carol", away="gone fishing", origin=Origin("n1", carol.connection_id)),
            UserJoined(annex_ref, carol.user.id, "carol", away="gone fishing", origin=Origin("n1", carol.connection_id)),
        ]
        self.assertEqual([o.event for o in outcomes if o.status == JOINED], joined)
        self.assertEqual([o.event for o in outcomes if o.status != JOINED], [None] * 5)
        self.assertEqual([o.seq for o in outcomes if o.status != JOINED], [None] * 5)

        logged = await self.store.events.since(before)
        self.assertEqual([(e.seq, e.event) for e in logged if isinstance(e.event, UserJoined)],
                         [(o.seq, o.event) for o in outcomes if o.status == JOINED])
        self.assertEqual(
            sorted((e.event.room.id, e.event.user_id) for e in logged if isinstance(e.event, MemberAdded)),
            sorted([(hall.id, bob.user.id), (hall.id, carol.user.id), (annex.id, carol.user.id)]),
        )
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member", "carol": "member"})
        self.assertEqual(await self.roles("annex"), {"alice": "owner", "carol": "member"})
        self.assertEqual(await self.roles("secret"), {"alice": "owner"})
        self.assertIsNone(await rooms.by_name("attic"))

    async def test_account_deleted_in_a_batch(self):
        """
        A join of an account deleted before its statement (a guest whose
        connection closed) is answered L{ACCOUNT_GONE}; the joins sharing
        its statement are made and recorded.
        """
        alice, bob, carol, ghost = [await self.connect(n) for n in ("alice", "bob", "carol", "ghost")]
        rooms = self.store.rooms
        hall = await rooms.create("hall", "public", alice.user, Outbox(None))
        hall_ref = RoomRef(hall.id, hall.name)
        await self.store.db.execute("DELETE FROM users WHERE id = %s", (ghost.user.id,))
        batches = rooms.group_commit.batches
        leader = rooms.join_with_event(hall_ref, alice.user, None)
        outcomes = await gatherResults([rooms.join_with_event(hall_ref, c.user, None) for c in (bob, ghost, carol)])
        self.assertEqual((await leader).status, MEMBER)
        self.assertEqual(rooms.group_commit.batches - batches, 2)
        self.assertEqual([o.status for o in outcomes], [JOINED, ACCOUNT_GONE, JOINED])
        self.assertLess(outcomes[0].seq, outcomes[2].seq)
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member", "carol": "member"})

    async def test_account_deleted_as_a_batch_is_written(self):
        """
        An account whose deletion is under way when its join's statement
        starts: the statement waits for the deletion (it locks the joining
        accounts, as the foreign key would), then answers that join
        L{ACCOUNT_GONE} and makes the other, instead of failing both.
        """
        alice, bob, ghost = [await self.connect(n) for n in ("alice", "bob", "ghost")]
        rooms = self.store.rooms
        hall = await rooms.create("hall", "public", alice.user, Outbox(None))
        hall_ref = RoomRef(hall.id, hall.name)
        commit, deleted = await held_open(self, "DELETE FROM users WHERE id = %s", (ghost.user.id,))
        leader = rooms.join_with_event(hall_ref, alice.user, None)
        joins = gatherResults([rooms.join_with_event(hall_ref, c.user, None) for c in (ghost, bob)])
        await leader
        await until_waiting_for_a_lock(self.store.db, joins)
        self.assertFalse(joins.called, "the joins did not wait for the deletion")
        commit.callback(None)
        await deleted
        self.assertEqual([o.status for o in await joins], [ACCOUNT_GONE, JOINED])
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member"})

    async def test_joins_wait_for_a_ban(self):
        """
        A join asked while a ban of its user is being written waits for it
        (the room's share lock), then answers banned: never a member who
        is banned.
        """
        alice, bob = await self.connect("alice"), await self.connect("bob")
        hall = await self.store.rooms.create("hall", "public", alice.user, Outbox(None))
        joined = []

        def authorize(actor_role, target_role):
            # under the ban's room lock: a join asked now must wait for it
            joined.append(self.store.rooms.join_with_event(RoomRef(hall.id, hall.name), bob.user, None))

        await self.store.rooms.ban(hall, alice.user, bob.user, "", authorize, Outbox(None))
        self.assertEqual((await joined[0]).status, BANNED)
        self.assertEqual(await self.roles("hall"), {"alice": "owner"})

    async def test_results_held(self):
        """The server's hub holds its output while a batch of joins hands out its results."""
        self.assertIs(self.store.rooms.group_commit.output, self.server.hub)

    async def test_remembered_room_gone(self):
        """
        A room this node remembers by name that was deleted since: joining
        by that name joins the room of that name now, or is 1501 when
        there is none.
        """
        alice, bob, carol = [await self.connect(n) for n in ("alice", "bob", "carol")]
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(bob, "JOIN_ROOM:hall")
        old = self.server.room_names.get("hall")
        await self.ok(bob, "LEAVE_ROOM:hall")
        await self.ok(alice, "LEAVE_ROOM:hall")
        self.assertEqual(self.server.room_names.get("hall"), old)
        await self.refused(carol, "JOIN_ROOM:hall", 1501, "NOT_FOUND")
        await self.ok(alice, "CREATE_ROOM:hall")
        bob.take_events()
        self.assertEqual(self.server.room_names.get("hall"), None)
        await self.ok(bob, "JOIN_ROOM:Hall")
        self.assertEqual(await self.roles("hall"), {"alice": "owner", "bob": "member"})
        self.assertNotEqual(self.server.room_names.get("hall"), old)

    async def test_message_to_remembered_room_gone(self):
        """
        A room this node remembers by name was deleted and created again
        (as another node would, leaving this node's memory stale): a
        message to that name goes to the new room in the one statement,
        with no second try (which a connection's next messages could pass),
        and the node remembers the new room.
        """
        alice, bob = await self.connect("alice"), await self.connect("bob")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(alice, "SEND_MESSAGE:hall:the first hall")
        old = self.server.room_names.get("hall")
        await self.ok(alice, "LEAVE_ROOM:hall")
        await self.ok(bob, "CREATE_ROOM:hall")
        await self.ok(alice, "JOIN_ROOM:hall")
        self.server.room_names.remember(old)
        posts = self.store.messages.group_commit
        batches = posts.batches
        bob.take_events()
        [reply] = await self.ok(alice, "SEND_MESSAGE:hall:the second hall")
        self.assertEqual(posts.batches - batches, 1)
        new = self.server.room_names.get("hall")
        self.assertNotEqual(new, old)
        self.assertEqual(new.id, (await self.store.rooms.by_name("hall")).id)
        message_id = int(reply.split(":")[3])
        access = await self.store.messages.locate(message_id, bob.user.id)
        self.assertEqual(access.message.room_id, new.id)
        self.assertEqual([line.split(":", 5)[5] for line in bob.take_events() if line.startswith("MESSAGE:")],
                         ["the second hall"])


class PresenceTests(RoomsTestCase):
    """PRESENCE to those who share a room, through the extension."""

    async def settle(self):
        """Wait until every queued announcement went out."""
        await self.server.presence.settled()
        self.assertEqual(self.server.presence._chains, {})

    async def test_presence_to_co_members_only(self):
        """Online and offline go to those sharing a room, in order, and to nobody else."""
        alice, bob, carol = await self.connect("alice"), await self.connect("bob"), await self.connect("carol")
        await self.ok(alice, "CREATE_ROOM:hall")
        await self.ok(bob, "JOIN_ROOM:hall")
        await self.settle()
        for connection in (alice, bob, carol):
            connection.take_events()
        self.disconnect(bob)
        again = await self.connect("bob")
        self.disconnect(again)
        await self.settle()
        self.assertEqual(alice.take_events(), ["PRESENCE:bob:offline", "PRESENCE:bob:online", "PRESENCE:bob:offline"])
        self.assertEqual(carol.take_events(), [])


class EventRecordingTests(RoomsTestCase):
    """
    Every change of a room records its events once, in the transaction of
    the change (the events' rows and the changed rows have one writer), the
    database's own membership events included; a refused or idle request
    records none.
    """

    async def hall(self) -> RoomRef:
        """The room C{hall}, as its events name it."""
        room = await self.store.rooms.by_name("hall")
        return RoomRef(room.id, room.name)

    async def recorded_by(self, connection: StandInConnection, line: str) -> list[tuple]:
        """What answering C{line} (successfully) recorded, with each event's writer."""
        before = await self.store.events.latest()
        await self.ok(connection, line)
        return await recorded(self.store, before)

    async def records_nothing(self, connection: StandInConnection, line: str) -> None:
        """Assert that answering C{line} recorded no event."""
        before = await self.store.events.latest()
        await self.ask(connection, line)
        self.assertEqual(await recorded(self.store, before), [], line)

    async def test_create(self):
        """RoomCreated, with the new room."""
        alice = await self.connect("alice")
        found = await self.recorded_by(alice, "CREATE_ROOM:hall")
        hall = await self.hall()
        xid = await writer(self.store, "SELECT xmin FROM rooms WHERE id = %s", (hall.id,))
        self.assertEqual(found, [
            (RoomCreated(hall, alice.user.id), xid),
            (MemberAdded(RoomRef(hall.id), alice.user.id), xid),
        ])
        await self.records_nothing(alice, "CREATE_ROOM:HALL")

    async def test_join(self):
        """UserJoined with the membership; entering again, or a private room, records nothing."""
        rooms = await self.room_with()
        bob = await self.connect("bob")
        found = await self.recorded_by(bob, "JOIN_ROOM:hall")
        hall = await self.hall()
        xid = await writer(
            self.store, "SELECT xmin FROM room_members WHERE room_id = %s AND user_id = %s", (hall.id, bob.user.id)
        )
        self.assertEqual(found, [
            (UserJoined(hall, bob.user.id, "bob"), xid),
            (MemberAdded(RoomRef(hall.id), bob.user.id), xid),
        ])
        await self.records_nothing(bob, "JOIN_ROOM:hall")
        await self.ok(rooms["alice"], "CREATE_ROOM:secret:private")
        await self.records_nothing(bob, "JOIN_ROOM:secret")

    async def test_leave(self):
        """UserLeft, and RoleChanged for the successor promoted with it; a non-member records nothing."""
        rooms = await self.room_with(bob="admin")
        carol = await self.connect("carol")
        await self.records_nothing(carol, "LEAVE_ROOM:hall")
        found = await self.recorded_by(rooms["alice"], "LEAVE_ROOM:hall")
        hall, alice, bob = await self.hall(), rooms["alice"].user, rooms["bob"].user
        xid = await writer(
            self.store, "SELECT xmin FROM room_members WHERE room_id = %s AND user_id = %s", (hall.id, bob.id)
        )
        self.assertEqual(found, [
            (UserLeft(hall, alice.id, "alice"), xid),
            (RoleChanged(hall, bob.id, "bob", "owner", "alice", "admin"), xid),
            (MemberRemoved(RoomRef(hall.id), alice.id), xid),
        ])

    async def test_leave_deletes(self):
        """The last member's UserLeft is written by the transaction that deletes the room."""
        alice = await self.connect("alice")
        await self.ok(alice, "CREATE_ROOM:hall")
        hall = await self.hall()
        found = await self.recorded_by(alice, "LEAVE_ROOM:hall")
        self.assertEqual(
            [e for e, _ in found],
            [UserLeft(hall, alice.user.id, "alice"), MemberRemoved(RoomRef(hall.id), alice.user.id)],
        )
        self.assertEqual(len({xid for _, xid in found}), 1)

    async def test_set_topic(self):
        """TopicChanged with the topic; a refusal records nothing."""
        rooms = await self.room_with(bob="member")
        await self.records_nothing(rooms["bob"], "SET_TOPIC:hall:mine")
        found = await self.recorded_by(rooms["alice"], "SET_TOPIC:hall:news: here")
        hall = await self.hall()
        xid = await writer(self.store, "SELECT xmin FROM rooms WHERE id = %s", (hall.id,))
        self.assertEqual(found, [(TopicChanged(hall, "alice", "news: here"), xid)])

    async def test_set_role(self):
        """RoleChanged with the role; the same role again, or a refusal, records nothing."""
        rooms = await self.room_with(adm="admin", bob="member")
        found = await self.recorded_by(rooms["adm"], "SET_ROLE:hall:bob:moderator")
        hall, bob = await self.hall(), rooms["bob"].user
        xid = await writer(
            self.store, "SELECT xmin FROM room_members WHERE room_id = %s AND user_id = %s", (hall.id, bob.id)
        )
        self.assertEqual(found, [(RoleChanged(hall, bob.id, "bob", "moderator", "adm", "member"), xid)])
        await self.records_nothing(rooms["adm"], "SET_ROLE:hall:bob:moderator")
        await self.records_nothing(rooms["adm"], "SET_ROLE:hall:alice:guest")
        await self.records_nothing(rooms["bob"], "SET_ROLE:hall:adm:guest")

    async def test_kick(self):
        """UserKicked with the reason, written with the audit entry; a refusal records nothing."""
        rooms = await self.room_with(mod="moderator", bob="member")
        await self.records_nothing(rooms["mod"], "KICK_USER:hall:alice")
        await self.records_nothing(rooms["bob"], "KICK_USER:hall:mod")
        found = await self.recorded_by(rooms["mod"], "KICK_USER:hall:bob:spam")
        hall, bob = await self.hall(), rooms["bob"].user
        xid = await writer(self.store, "SELECT xmin FROM audit_log WHERE action = 'kick' AND outcome = 'ok'", ())
        self.assertEqual(found, [
            (UserKicked(hall, bob.id, "bob", "mod", "spam"), xid),
            (MemberRemoved(RoomRef(hall.id), bob.id), xid),
        ])

    async def test_ban(self):
        """
        UserBanned and an InvitationRevoked per pending invitation, written
        with the ban; banning again, a refusal, or an unban records nothing.
        """
        rooms = await self.room_with(adm="admin", bob="member")
        carol = await self.connect("carol")
        hall = await self.hall()
        [(invitation,)] = await self.store.db.fetchall(
            "INSERT INTO invitations (sender_id, recipient_id, room_id, expires_at) "
            "VALUES (%s, %s, %s, now() + interval '1 day') RETURNING id",
            (rooms["alice"].user.id, carol.user.id, hall.id),
            retry=False,
        )
        await self.records_nothing(rooms["adm"], "BAN_USER:hall:alice")
        found = await self.recorded_by(rooms["adm"], "BAN_USER:hall:carol:no")
        xid = await writer(
            self.store, "SELECT xmin FROM room_bans WHERE room_id = %s AND user_id = %s", (hall.id, carol.user.id)
        )
        self.assertEqual(found, [
            (UserBanned(hall, carol.user.id, "carol", "adm", "no"), xid),
            (InvitationRevoked(invitation, carol.user.id, "hall", "adm"), xid),
        ])
        bob = rooms["bob"].user
        found = await self.recorded_by(rooms["adm"], "BAN_USER:hall:bob")
        self.assertEqual(
            [e for e, _ in found],
            [UserBanned(hall, bob.id, "bob", "adm", ""), MemberRemoved(RoomRef(hall.id), bob.id)],
        )
        self.assertEqual(len({xid for _, xid in found}), 1)
        await self.records_nothing(rooms["adm"], "BAN_USER:hall:bob")
        await self.records_nothing(rooms["adm"], "UNBAN_USER:hall:bob")
