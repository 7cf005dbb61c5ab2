"""
Tests for accounts, sessions and server administration as operations
(L{lairchat.domain.accounts}, L{lairchat.domain.admin}) reached through
their commands, against the real database: each change that other
connections must hear of records its event once, in the transaction of the
change, and the connections of its user act on it; a refusal records
nothing.

The wire of each command is tested end to end (C{tests.test_accounts_e2e},
C{tests.test_admin_e2e}); here the events are.
"""

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase

from lairchat.context import Config, ServerContext
from lairchat.events import AccountSuspended, ServerRoleChanged, SessionsRevoked
from lairchat.plugins import load_commands
from lairchat.router import Router
from lairchat.wire import parse_text
from tests.support import fresh_store
from tests.test_rooms import StandInConnection
from tests.test_store import recorded, writer

PASSWORD = "correct horse 9"


class ReadablePasswords:
    """Instant, obviously insecure password hashing."""

    def hash(self, password: str, address=None):
        """A readable hash."""
        return succeed("hash:" + password)

    def verify(self, password_hash, password: str, address=None):
        """Whether the readable hash matches (an unknown user's never does)."""
        return succeed(password_hash == "hash:" + password)


class LoggingInConnection(StandInConnection):
    """A stand-in connection that can be logged in by a command."""

    def log_in(self, user, session_id):
        """Become C{user}'s, on session C{session_id}."""
        self.log_out()
        self.user, self.session_id = user, session_id
        return self.server.user_online(self, user)

    def log_out(self):
        """Anonymous again."""
        user, self.user, self.session_id, self.current_room = self.user, None, None, None
        if user is not None:
            self.server.user_offline(self, user)


class AccountEventTests(TestCase):
    """A real store and router; connections log in with REGISTER and LOGIN."""

    async def setUp(self):
        self.clock = Clock()
        self.store = await fresh_store(self)
        self.server = ServerContext(
            config=Config(rate_limits=False, admins=("root",)),
            store=self.store,
            clock=self.clock,
            passwords=ReadablePasswords(),
            registry=load_commands(),
        )
        await self.store.events.join(self.server.node, self.server.bus.last)
        self.router = Router(self.server)

    def connection(self) -> LoggingInConnection:
        """A new anonymous connection."""
        connection = LoggingInConnection(self.clock)
        connection.server = self.server
        return connection

    async def ask(self, connection: LoggingInConnection, line: str) -> list[str]:
        """The reply lines of one request."""
        outcome = await self.router.dispatch(connection, parse_text(line))
        return list(outcome.lines)

    async def ok(self, connection: LoggingInConnection, line: str) -> list[str]:
        """L{ask}, asserting success."""
        reply = await self.ask(connection, line)
        self.assertTrue(reply[-1].startswith("OK:"), f"{line!r} answered {reply}")
        return reply

    async def user(self, name: str, register: bool = True) -> LoggingInConnection:
        """A connection logged in as C{name} (registered first, unless told not to)."""
        connection = self.connection()
        await self.ok(connection, f"{'REGISTER' if register else 'LOGIN'}:{name}:{PASSWORD}")
        return connection

    async def records_nothing(self, connection: LoggingInConnection, line: str) -> None:
        """Assert that C{line} is refused and records no event."""
        before = await self.store.events.latest()
        reply = await self.ask(connection, line)
        self.assertTrue(reply[-1].startswith("ERROR:"), f"{line!r} answered {reply}")
        self.assertEqual(await recorded(self.store, before), [], line)

    async def test_change_password(self):
        """
        SessionsRevoked, naming the session kept, written with the new hash;
        the user's other connection is logged out, the asking one is not.
        """
        alice = await self.user("alice")
        other = await self.user("alice", register=False)
        await self.records_nothing(alice, f"CHANGE_PASSWORD:wrong password 1:{PASSWORD}2")
        before = await self.store.events.latest()
        await self.ok(alice, f"CHANGE_PASSWORD:{PASSWORD}:{PASSWORD}2")
        xid = await writer(self.store, "SELECT xmin FROM users WHERE id = %s", (alice.user.id,))
        self.assertEqual(await recorded(self.store, before), [(SessionsRevoked(alice.user.id, alice.session_id), xid)])
        self.assertIsNone(other.user)
        self.assertIsNotNone(alice.user)

    async def test_suspend(self):
        """
        AccountSuspended, written with the flag and the revocation, closes
        the user's connections; refusals and the unsuspension record
        nothing.
        """
        root, bob = await self.user("root"), await self.user("bob")
        await self.records_nothing(bob, "SUSPEND_USER:root")
        await self.records_nothing(root, "SUSPEND_USER:root")
        await self.records_nothing(root, "SUSPEND_USER:nobody")
        before = await self.store.events.latest()
        await self.ok(root, "SUSPEND_USER:bob:spam")
        xid = await writer(self.store, "SELECT xmin FROM users WHERE id = %s", (bob.user.id,))
        self.assertEqual(await recorded(self.store, before), [(AccountSuspended(bob.user.id, "spam"), xid)])
        self.assertTrue(bob._closed)
        self.assertEqual(
            await writer(self.store, "SELECT xmin FROM sessions WHERE id = %s", (bob.session_id,)), xid
        )
        before = await self.store.events.latest()
        await self.ok(root, "UNSUSPEND_USER:bob")
        self.assertEqual(await recorded(self.store, before), [])

    async def test_set_user_role(self):
        """
        ServerRoleChanged, written with the role; the user's connection sees
        the new role at once; refusals record nothing.
        """
        root, bob = await self.user("root"), await self.user("bob")
        await self.records_nothing(bob, "SET_USER_ROLE:bob:admin")
        await self.records_nothing(root, "SET_USER_ROLE:root:user")
        before = await self.store.events.latest()
        await self.ok(root, "SET_USER_ROLE:bob:admin")
        xid = await writer(self.store, "SELECT xmin FROM users WHERE id = %s", (bob.user.id,))
        self.assertEqual(await recorded(self.store, before), [(ServerRoleChanged(bob.user.id, "admin"), xid)])
        self.assertEqual(bob.user.server_role, "admin")
        self.assertEqual(await self.ask(bob, "WHOAMI"), ["OK:WHOAMI:bob:admin"])

    async def test_sessions_record_nothing(self):
        """Registering, logging in and out, and resuming record no event of their own."""
        before = await self.store.events.latest()
        alice = await self.user("alice")
        token = (await self.ok(self.connection(), f"LOGIN:alice:{PASSWORD}"))[-1].split(":")[-1]
        await self.ok(alice, "LOGOUT")
        await self.ok(alice, f"RESUME:{token}")
        self.assertEqual(await recorded(self.store, before), [])
