"""
Tests for the account, session and audit stores (L{lairchat.store.users},
L{lairchat.store.sessions}, L{lairchat.store.audit}), the events their
changes record, and the schema, against a real Postgres: database
behaviour is never mocked.
"""

import hashlib

import psycopg2
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from attrs import evolve

from lairchat.errors import Conflict, DatabaseUnavailable
from lairchat.events import AccountSuspended, Event, PresenceChanged, ServerRoleChanged, SessionsRevoked
from lairchat.store import Database, schema_text
from lairchat.store.database import is_unavailable
from lairchat.store.events import Outbox
from tests.support import fresh_database, fresh_store

HASH = "$argon2id$not-a-real-hash"


async def recorded(store, after: int = 0) -> list[tuple[Event, str]]:
    """
    Every event recorded after sequence number C{after}, oldest first, as
    L{lairchat.store.events.EventLog.since} reads it (its origin left out),
    with the id of the transaction that wrote it.  Presence, which logging
    in records on its own schedule, is left out.
    """
    writers = dict(await store.db.fetchall("SELECT seq, xmin::text FROM events WHERE seq > %s", (after,)))
    return [
        (evolve(logged.event, origin=None), writers[logged.seq])
        for logged in await store.events.since(after)
        if not isinstance(logged.event, PresenceChanged)
    ]


async def writer(store, query: str, params: tuple) -> str:
    """The id of the transaction that last wrote the one row C{query} selects (its C{xmin})."""
    [(xid,)] = await store.db.fetchall(f"SELECT xmin::text FROM ({query}) AS t", params)
    return xid


def recorded_by(testcase, outbox: Outbox, found: list[tuple[Event, str]]) -> None:
    """
    Assert that C{found} is what C{outbox} recorded: the same events, in
    order, under the sequence numbers it was given.
    """
    testcase.assertEqual([evolve(e, origin=None) for e in outbox.events], [e for e, _ in found])
    testcase.assertEqual(len(outbox.seqs), len(set(outbox.seqs)))


class UserStoreTests(TestCase):
    """
    L{lairchat.store.users.UserStore}.
    """

    async def test_create(self):
        """
        A new account keeps the case it was given and starts as a plain,
        unlocked, active user.
        """
        store = await fresh_store(self)
        user = await store.users.create("Alice", HASH)
        self.assertEqual((user.username, user.server_role, user.suspended, user.locked_until_ms),
                         ("Alice", "user", False, 0))
        self.assertGreater(user.created_ms, 0)
        self.assertFalse(user.is_admin)
        other = await store.users.create("bob", HASH)
        self.assertNotEqual(other.id, user.id)

    async def test_conflict_case_insensitive(self):
        """
        A name differing only in case is taken: L{Conflict}, code 1211.
        """
        store = await fresh_store(self)
        await store.users.create("alice", HASH)
        for name in ["alice", "ALICE", "aLiCe"]:
            with self.assertRaises(Conflict) as caught:
                await store.users.create(name, HASH)
            self.assertEqual(caught.exception.code, 1211)
        rows = await store.db.fetchall("SELECT count(*) FROM users")
        self.assertEqual(rows, [(1,)])

    async def test_by_name(self):
        """
        An account is found by its name in any case; an unknown name is
        L{None}.
        """
        store = await fresh_store(self)
        created = await store.users.create("Alice", HASH)
        self.assertEqual(await store.users.by_name("alice"), created)
        self.assertEqual(await store.users.by_name("ALICE"), created)
        self.assertIsNone(await store.users.by_name("alicia"))

    async def test_by_id(self):
        """
        An account is found by its id; an unknown id is L{None}.
        """
        store = await fresh_store(self)
        created = await store.users.create("alice", HASH)
        self.assertEqual(await store.users.by_id(created.id), created)
        self.assertIsNone(await store.users.by_id(created.id + 1000))

    async def test_credentials(self):
        """
        The credentials hold the hash and the failure count; unknown names
        have none.
        """
        store = await fresh_store(self)
        created = await store.users.create("alice", HASH)
        credentials = await store.users.credentials("ALICE")
        self.assertEqual((credentials.user, credentials.password_hash, credentials.failed_logins),
                         (created, HASH, 0))
        self.assertIsNone(await store.users.credentials("nobody"))

    async def test_change_password(self):
        """
        A new hash replaces the old one; every session but the one kept is
        revoked, and the change is audited.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        opened = [await store.sessions.open(user.id, 3600) for _ in range(3)]
        keep = opened[1][1]
        await store.users.change_password(user, "new-hash", keep, Outbox(None))
        self.assertEqual((await store.users.credentials("alice")).password_hash, "new-hash")
        self.assertEqual([await store.sessions.is_live(s) for _, s in opened], [False, True, False])
        entries = await store.audit.latest(10)
        self.assertEqual([(e.actor, e.action, e.target, e.outcome) for e in entries],
                         [("alice", "change_password", "alice", "ok")])

    async def test_login_succeeded_notes_seen(self):
        """
        A success notes when the user was seen.  (Failed logins are counted
        by account and address: see C{tests.test_login_throttle_store}.)
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        await store.users.login_succeeded(user.id)
        [(seen,)] = await store.db.fetchall("SELECT last_seen IS NOT NULL FROM users WHERE id = %s", (user.id,))
        self.assertTrue(seen)

    async def test_set_server_role(self):
        """
        A server role is set by name in any case; an unknown name is
        L{None}.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        admin = await store.users.set_server_role("ALICE", "admin")
        self.assertEqual((admin.id, admin.server_role, admin.is_admin), (user.id, "admin", True))
        self.assertEqual((await store.users.by_id(user.id)).server_role, "admin")
        back = await store.users.set_server_role("alice", "user")
        self.assertEqual(back.server_role, "user")
        self.assertIsNone(await store.users.set_server_role("nobody", "admin"))

    async def test_suspend_and_reinstate(self):
        """
        An account is suspended with a reason, its sessions revoked, and
        reinstated; both audited, as done by the admin named.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        _, session_id = await store.sessions.open(user.id, 3600)
        await store.users.suspend(user, "spam", "root", Outbox(None))
        self.assertTrue((await store.users.by_id(user.id)).suspended)
        [(reason,)] = await store.db.fetchall("SELECT suspend_reason FROM users WHERE id = %s", (user.id,))
        self.assertEqual(reason, "spam")
        self.assertFalse(await store.sessions.is_live(session_id))
        await store.users.reinstate(user, "root")
        self.assertFalse((await store.users.by_id(user.id)).suspended)
        [(reason,)] = await store.db.fetchall("SELECT suspend_reason FROM users WHERE id = %s", (user.id,))
        self.assertEqual(reason, "")
        entries = await store.audit.latest(10)
        self.assertEqual(
            [(e.actor, e.action, e.target, e.outcome, e.detail) for e in entries],
            [("root", "unsuspend_user", "alice", "ok", ""), ("root", "suspend_user", "alice", "ok", "spam")],
        )


class UserEventTests(TestCase):
    """
    The account changes that other connections must hear of record their
    event once, in the transaction of the change; nothing else does.
    """

    async def test_change_password(self):
        """L{SessionsRevoked}, naming the session kept, written with the new hash."""
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        _, keep = await store.sessions.open(user.id, 3600)
        before = await store.events.latest()
        outbox = Outbox(None)
        await store.users.change_password(user, "new-hash", keep, outbox)
        found = await recorded(store, before)
        xid = await writer(store, "SELECT xmin FROM users WHERE id = %s", (user.id,))
        self.assertEqual(found, [(SessionsRevoked(user.id, keep), xid)])
        recorded_by(self, outbox, found)

    async def test_suspend(self):
        """L{AccountSuspended}, with its reason, written with the flag and the revocation."""
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        _, session_id = await store.sessions.open(user.id, 3600)
        before = await store.events.latest()
        outbox = Outbox(None)
        await store.users.suspend(user, "spam", "root", outbox)
        found = await recorded(store, before)
        xid = await writer(store, "SELECT xmin FROM users WHERE id = %s", (user.id,))
        self.assertEqual(found, [(AccountSuspended(user.id, "spam"), xid)])
        self.assertEqual(await writer(store, "SELECT xmin FROM sessions WHERE id = %s", (session_id,)), xid)
        recorded_by(self, outbox, found)

    async def test_reinstate_records_nothing(self):
        """Lifting a suspension concerns no connection: no event."""
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        await store.users.suspend(user, "spam", "root", Outbox(None))
        before = await store.events.latest()
        await store.users.reinstate(user, "root")
        self.assertEqual(await recorded(store, before), [])

    async def test_set_server_role(self):
        """
        L{ServerRoleChanged}, written with the role, when an outbox is
        given; none for an unknown account or without an outbox.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        before = await store.events.latest()
        outbox = Outbox(None)
        await store.users.set_server_role("ALICE", "admin", outbox)
        found = await recorded(store, before)
        xid = await writer(store, "SELECT xmin FROM users WHERE id = %s", (user.id,))
        self.assertEqual(found, [(ServerRoleChanged(user.id, "admin"), xid)])
        recorded_by(self, outbox, found)
        before = await store.events.latest()
        self.assertIsNone(await store.users.set_server_role("nobody", "admin", Outbox(None)))
        await store.users.set_server_role("alice", "user")
        self.assertEqual(await recorded(store, before), [])


class SessionStoreTests(TestCase):
    """
    L{lairchat.store.sessions.SessionStore}.
    """

    async def test_open_and_resume(self):
        """
        A new session's token (64 hex digits) resumes it, as its user.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, session_id = await store.sessions.open(user.id, 3600)
        self.assertRegex(token, r"^[0-9a-f]{64}$")
        session = await store.sessions.resume(token)
        self.assertEqual((session.id, session.user), (session_id, user))
        self.assertTrue(await store.sessions.is_live(session_id))
        [(long_enough,)] = await store.db.fetchall(
            "SELECT expires_at > now() + interval '3000 seconds' FROM sessions WHERE id = %s", (session_id,))
        self.assertTrue(long_enough)

    async def test_only_digest_stored(self):
        """
        The table holds the token's SHA-256 digest, never the token.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, session_id = await store.sessions.open(user.id, 3600)
        [(stored,)] = await store.db.fetchall("SELECT token_hash FROM sessions WHERE id = %s", (session_id,))
        self.assertEqual(bytes(stored), hashlib.sha256(token.encode()).digest())
        [(matches,)] = await store.db.fetchall(
            "SELECT count(*) FROM sessions s WHERE s::text LIKE %s", (f"%{token}%",))
        self.assertEqual(matches, 0)

    async def test_tokens_differ(self):
        """
        Two sessions of one user have two tokens.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        first, _ = await store.sessions.open(user.id, 3600)
        second, _ = await store.sessions.open(user.id, 3600)
        self.assertNotEqual(first, second)

    async def test_unknown_token(self):
        """
        A token that was never issued resumes nothing.
        """
        store = await fresh_store(self)
        self.assertIsNone(await store.sessions.resume("0" * 64))

    async def test_resume_reads_current_user(self):
        """
        Resuming reads the account as it is now (suspended, promoted).
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, _ = await store.sessions.open(user.id, 3600)
        # flagged behind the store's back: a suspension would revoke the session
        await store.db.execute("UPDATE users SET suspended = true WHERE id = %s", (user.id,))
        await store.users.set_server_role("alice", "admin")
        session = await store.sessions.resume(token)
        self.assertEqual((session.user.suspended, session.user.server_role), (True, "admin"))

    async def test_revoke(self):
        """
        A revoked session neither resumes nor is live.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, session_id = await store.sessions.open(user.id, 3600)
        await store.sessions.revoke(session_id)
        self.assertIsNone(await store.sessions.resume(token))
        self.assertFalse(await store.sessions.is_live(session_id))

    async def test_revoke_all_keep(self):
        """
        C{revoke_all} ends every live session of the user but the one kept,
        counts them, and leaves other users' sessions alone.
        """
        store = await fresh_store(self)
        alice = await store.users.create("alice", HASH)
        bob = await store.users.create("bob", HASH)
        opened = [await store.sessions.open(alice.id, 3600) for _ in range(3)]
        bobs_token, bobs_session = await store.sessions.open(bob.id, 3600)
        keep = opened[1][1]
        self.assertEqual(await store.sessions.revoke_all(alice.id, keep=keep), 2)
        self.assertEqual([await store.sessions.is_live(s) for _, s in opened], [False, True, False])
        self.assertIsNone(await store.sessions.resume(opened[0][0]))
        self.assertEqual((await store.sessions.resume(opened[1][0])).id, keep)
        self.assertTrue(await store.sessions.is_live(bobs_session))
        self.assertEqual(await store.sessions.revoke_all(alice.id), 1)
        self.assertEqual(await store.sessions.revoke_all(alice.id), 0)
        self.assertFalse(await store.sessions.is_live(keep))
        self.assertEqual((await store.sessions.resume(bobs_token)).user, bob)

    async def test_expiry(self):
        """
        A session past its expiry neither resumes nor is live.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, session_id = await store.sessions.open(user.id, 3600)
        await store.db.execute(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = %s", (session_id,))
        self.assertIsNone(await store.sessions.resume(token))
        self.assertFalse(await store.sessions.is_live(session_id))

    async def test_expired_not_revoked_again(self):
        """
        C{revoke_all} counts only sessions that were not revoked already.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        _, first = await store.sessions.open(user.id, 3600)
        await store.sessions.open(user.id, 3600)
        await store.sessions.revoke(first)
        self.assertEqual(await store.sessions.revoke_all(user.id), 1)

    async def test_deleted_user(self):
        """
        Deleting an account deletes its sessions.
        """
        store = await fresh_store(self)
        user = await store.users.create("alice", HASH)
        token, _ = await store.sessions.open(user.id, 3600)
        await store.db.execute("DELETE FROM users WHERE id = %s", (user.id,))
        self.assertIsNone(await store.sessions.resume(token))


class AuditStoreTests(TestCase):
    """
    L{lairchat.store.audit.AuditStore}.
    """

    async def test_record_and_latest(self):
        """
        Entries come back newest first, with every field, up to the limit.
        """
        store = await fresh_store(self)
        await store.audit.record("alice", "login", "alice")
        await store.audit.record("bob", "login", "bob", "failed", "bad credentials")
        await store.audit.record("root", "suspend", "bob", "ok", "spam: lots")
        entries = await store.audit.latest(10)
        self.assertEqual(
            [(e.actor, e.action, e.target, e.outcome, e.detail) for e in entries],
            [
                ("root", "suspend", "bob", "ok", "spam: lots"),
                ("bob", "login", "bob", "failed", "bad credentials"),
                ("alice", "login", "alice", "ok", ""),
            ],
        )
        for entry in entries:
            self.assertGreater(entry.ts_ms, 0)
        self.assertEqual([e.actor for e in await store.audit.latest(2)], ["root", "bob"])

    async def test_empty(self):
        """
        No entries, no lines.
        """
        store = await fresh_store(self)
        self.assertEqual(await store.audit.latest(10), [])

    async def test_record_in_transaction(self):
        """
        An entry recorded inside a transaction is committed with it, and
        rolled back with it.
        """
        store = await fresh_store(self)

        async def committed(tx):
            await store.audit.record_in(tx, "alice", "kept")

        async def rolled_back(tx):
            await store.audit.record_in(tx, "alice", "dropped")
            raise ValueError("undo")

        await store.db.transaction(committed)
        with self.assertRaises(ValueError):
            await store.db.transaction(rolled_back)
        self.assertEqual([e.action for e in await store.audit.latest(10)], ["kept"])


class SchemaTests(TestCase):
    """
    The schema applies at every start, on a new database or an old one.
    """

    async def test_applies_twice(self):
        """
        Applying the schema again changes nothing and keeps the data.
        """
        db = await fresh_database(self)
        await db.execute("INSERT INTO users (username, password_hash) VALUES ('alice', 'x')")
        await db.apply_schema(schema_text())
        await db.apply_schema(schema_text())
        self.assertEqual(await db.fetchall("SELECT username FROM users"), [("alice",)])

    async def test_at_once(self):
        """
        Two pools applying the schema at the same moment (two nodes
        starting) both succeed.
        """
        first = await fresh_database(self)
        second = await fresh_database(self)
        await gatherResults([ensureDeferred(first.apply_schema(schema_text())),
                             ensureDeferred(second.apply_schema(schema_text()))])


class DatabaseTests(TestCase):
    """
    L{lairchat.store.database.Database}'s failure model.
    """

    async def test_unreachable(self):
        """
        A database that cannot be reached is L{DatabaseUnavailable} (1212)
        from C{start}.
        """
        db = Database("host=127.0.0.1 port=1 dbname=x connect_timeout=1", size=1)
        with self.assertRaises(DatabaseUnavailable) as caught:
            await db.start()
        self.assertEqual(caught.exception.code, 1212)
        self.assertNotIn("127.0.0.1", caught.exception.message)
        db.close()

    async def test_transaction_rolls_back(self):
        """
        A transaction whose work raises changes nothing.
        """
        db = await fresh_database(self)

        async def work(tx):
            await tx.execute("INSERT INTO users (username, password_hash) VALUES ('alice', 'x')")
            raise ValueError("undo")

        with self.assertRaises(ValueError):
            await db.transaction(work)
        self.assertEqual(await db.fetchall("SELECT count(*) FROM users"), [(0,)])

    async def test_refused_query_is_not_unavailable(self):
        """
        A statement the database refuses is that error, not
        L{DatabaseUnavailable}.
        """
        db = await fresh_database(self)
        with self.assertRaises(psycopg2.errors.UndefinedTable):
            await db.fetchall("SELECT * FROM no_such_table")
        self.assertFalse(is_unavailable(psycopg2.errors.UniqueViolation()))
        self.assertTrue(is_unavailable(psycopg2.OperationalError()))
