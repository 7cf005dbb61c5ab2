"""
Tests of C{lairchat-admin} (L{lairchat.admin_cli}) and the operations it
runs (L{lairchat.domain.operator}), against the real test database: the
command line's core (L{run}) in this process, and the whole program in a
child process (L{main} ends with C{react}, which stops the reactor).
"""

import io
import json
import os
import subprocess
import shutil
import sys
import tempfile
from pathlib import Path

from argon2 import PasswordHasher
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SynchronousTestCase, TestCase

from lairchat.admin_cli import (OK, REFUSED, UNAVAILABLE, USAGE, UsageError, checked, parser, read_password,
                                run)
from lairchat.domain.operator import OPERATOR
from lairchat.embedded import HANDLES, EmbeddedPostgres
from lairchat.errors import InvalidCharacters, InvalidInput, InvalidLength
from lairchat.events import AccountSuspended, ServerRoleChanged, SessionsRevoked
from lairchat.store import Database, Store
from tests.support import fresh_store, test_dsn

REPOSITORY = Path(__file__).resolve().parents[1]
"""The source tree, the child processes' working directory (C{python -m lairchat.admin_cli})."""


def options(*argv: str, stdin: bytes = b"", dsn: str | None = None):
    """
    The checked options of C{lairchat-admin --dsn <test database> argv},
    the password (if any) read from C{stdin}.
    """
    parsed = checked(parser().parse_args(["--dsn", dsn or test_dsn(), *argv]))
    if parsed.command == "set-password":
        parsed.password = read_password(parsed, io.BytesIO(stdin), None)
    return parsed


def matches(password_hash: str, password: str) -> bool:
    """Whether C{password} is the one C{password_hash} was made from."""
    try:
        return PasswordHasher().verify(password_hash, password)
    except Exception:
        return False


class PasswordReadingTests(SynchronousTestCase):
    """
    L{read_password} and L{checked}: what C{set-password} accepts before it
    touches the database.
    """

    def read(self, *argv: str, stdin: bytes = b"", prompt=None) -> str:
        """The password C{set-password argv} reads."""
        parsed = checked(parser().parse_args(["set-password", *argv]))
        return read_password(parsed, io.BytesIO(stdin), prompt)

    def test_stdin_first_line(self):
        """
        C{--password-stdin} reads the first line as UTF-8, its line end
        (LF or CRLF) taken off, spaces kept.
        """
        self.assertEqual(self.read("alice", "--password-stdin", stdin=b"s3cret pass\r\nrest\n"), "s3cret pass")
        self.assertEqual(self.read("alice", "--password-stdin", stdin="mötley9crüe\n".encode()), "mötley9crüe")

    def test_policy(self):
        """
        Without C{--any-password} the protocol's policy applies.
        """
        self.assertEqual(self.read("alice", "--password", "secret12"), "secret12")
        self.assertRaises(InvalidLength, self.read, "alice", "--password", "sesame")
        self.assertRaises(InvalidInput, self.read, "alice", "--password", "onlyletters")

    def test_any_password(self):
        """
        C{--any-password} takes what test suites register (short, long,
        non-ASCII) but never an empty password or control characters.
        """
        for password in ["sesame", "é" * 100, "x" * 592, "a b"]:
            self.assertEqual(self.read("foo", "--any-password", "--password", password), password)
        self.assertRaises(InvalidLength, self.read, "foo", "--any-password", "--password-stdin", stdin=b"\n")
        self.assertRaises(InvalidCharacters, self.read, "foo", "--any-password", "--password", "a\x01b")
        self.assertRaises(InvalidCharacters, self.read, "foo", "--any-password", "--password-stdin",
                          stdin=b"a\rb\n")
        self.assertRaises(InvalidLength, self.read, "foo", "--any-password", "--password", "x" * 1025)

    def test_any_name(self):
        """
        Names follow the protocol's rule unless C{--any-name} allows IRC
        nicks such as C{bar-1a2b3c4d5e}; never a colon or a space.
        """
        self.assertRaises(InvalidInput, self.read, "bar-1a2b3c4d5e", "--password", "secret12")
        self.assertEqual(self.read("bar-1a2b3c4d5e", "--any-name", "--password", "secret12"), "secret12")
        for name in ["a:b", "a b", "-bar", "1bar", ""]:
            self.assertRaises((InvalidInput, InvalidLength), self.read, "--any-name", "--password", "secret12",
                              "--", name)

    def test_prompt(self):
        """
        With neither option the password is typed twice at the prompt; two
        different ones are refused, and with no terminal it is a usage
        error.
        """
        typed = iter(["secret12", "secret12"])
        self.assertEqual(self.read("alice", prompt=lambda _: next(typed)), "secret12")
        typed = iter(["secret12", "secret13"])
        self.assertRaises(UsageError, self.read, "alice", prompt=lambda _: next(typed))
        self.assertRaises(UsageError, self.read, "alice")

    def test_invalid_utf8(self):
        """A password that is not UTF-8 is a usage error."""
        self.assertRaises(UsageError, self.read, "alice", "--password-stdin", stdin=b"\xff\n")


class RunTests(TestCase):
    """
    L{run}, the command line's core, on the test database.
    """

    async def setUp(self):
        self.store = await fresh_store(self)

    async def admin(self, *argv: str, stdin: bytes = b"", dsn: str | None = None) -> tuple[int, str, str]:
        """Run C{lairchat-admin argv}: its exit status, output and errors."""
        out, err = io.StringIO(), io.StringIO()
        status = await run(reactor, options(*argv, stdin=stdin, dsn=dsn), out, err)
        return status, out.getvalue(), err.getvalue()

    async def events(self) -> list:
        """Every event in the log."""
        return [logged.event for logged in await self.store.events.since(0)]

    async def audited(self) -> list[tuple[str, str, str, str]]:
        """The audit log, oldest first, as (actor, action, target, detail)."""
        return [(e.actor, e.action, e.target, e.detail) for e in reversed(await self.store.audit.latest(100))]

    async def test_set_password_creates(self):
        """
        C{set-password} creates a missing account with the password, a
        plain user; audited as C{create_user} by C{lairchat-admin}.
        """
        status, out, err = await self.admin("set-password", "alice", "--password-stdin", stdin=b"secret12\n")
        self.assertEqual((status, out, err), (OK, "created account alice\n", ""))
        credentials = await self.store.users.credentials("alice")
        self.assertTrue(matches(credentials.password_hash, "secret12"))
        self.assertEqual((credentials.user.server_role, credentials.user.suspended), ("user", False))
        self.assertEqual(await self.audited(), [(OPERATOR, "create_user", "alice", "")])

    async def test_set_password_idempotent(self):
        """
        The same password again changes nothing: the account's sessions
        live on, nothing is recorded.
        """
        await self.admin("set-password", "alice", "--password", "secret12")
        user = await self.store.users.by_name("alice")
        _, session = await self.store.sessions.open(user.id, 3600)
        status, out, err = await self.admin("set-password", "ALICE", "--password", "secret12")
        self.assertEqual((status, out, err), (OK, "alice has this password already; nothing changed\n", ""))
        self.assertTrue(await self.store.sessions.is_live(session))
        self.assertEqual(await self.events(), [])
        self.assertEqual(len(await self.audited()), 1)

    async def test_set_password_changes(self):
        """
        Another password replaces the old one and revokes every session of
        the account, with L{SessionsRevoked} in the event log (which running
        nodes deliver: their connections are logged out); audited as
        C{change_password} by C{lairchat-admin}.
        """
        await self.admin("set-password", "alice", "--password", "secret12")
        user = await self.store.users.by_name("alice")
        _, session = await self.store.sessions.open(user.id, 3600)
        status, out, err = await self.admin("set-password", "alice", "--password", "other345")
        self.assertEqual((status, out, err), (OK, "changed the password of alice; its sessions are revoked\n", ""))
        credentials = await self.store.users.credentials("alice")
        self.assertTrue(matches(credentials.password_hash, "other345"))
        self.assertFalse(matches(credentials.password_hash, "secret12"))
        self.assertFalse(await self.store.sessions.is_live(session))
        [event] = await self.events()
        self.assertIsInstance(event, SessionsRevoked)
        self.assertEqual(event.user_id, user.id)
        self.assertEqual(event.origin.node, "")
        self.assertEqual((await self.audited())[-1], (OPERATOR, "change_password", "alice", ""))

    async def test_any_password_and_name(self):
        """
        The accounts an IRC test suite registers: a nick with a dash and a
        password outside the policy, created then updated.
        """
        argv = ("set-password", "bar-1a2b3c4d5e", "--any-name", "--any-password", "--password-stdin")
        self.assertEqual((await self.admin(*argv, stdin="é".encode() * 100))[0], OK)
        self.assertEqual((await self.admin(*argv, stdin=b"sesame"))[:2], (OK, "changed the password of "
                                                                               "bar-1a2b3c4d5e; its sessions are "
                                                                               "revoked\n"))
        self.assertTrue(matches((await self.store.users.credentials("bar-1a2b3c4d5e")).password_hash, "sesame"))

    async def test_set_role(self):
        """
        C{set-role} gives the server role, with L{ServerRoleChanged} in the
        event log; audited.  Saying it again is no error.
        """
        await self.admin("set-password", "alice", "--password", "secret12")
        self.assertEqual(await self.admin("set-role", "alice", "admin"), (OK, "alice is admin (was user)\n", ""))
        self.assertEqual(await self.admin("set-role", "Alice", "admin"), (OK, "alice is admin (already)\n", ""))
        self.assertTrue((await self.store.users.by_name("alice")).is_admin)
        self.assertEqual(await self.admin("set-role", "alice", "user"), (OK, "alice is user (was admin)\n", ""))
        self.assertFalse((await self.store.users.by_name("alice")).is_admin)
        events = await self.events()
        self.assertEqual([(type(e), e.role) for e in events], [(ServerRoleChanged, "admin")] * 2
                         + [(ServerRoleChanged, "user")])
        self.assertIn((OPERATOR, "set_user_role", "alice", "admin"), await self.audited())

    async def test_suspend(self):
        """
        C{suspend} suspends the account and revokes its sessions, with
        L{AccountSuspended} (and its reason) in the event log; C{unsuspend}
        lifts it.  Both audited.
        """
        await self.admin("set-password", "alice", "--password", "secret12")
        user = await self.store.users.by_name("alice")
        _, session = await self.store.sessions.open(user.id, 3600)
        self.assertEqual(await self.admin("suspend", "alice", "--reason", "spam"), (OK, "suspended alice\n", ""))
        self.assertTrue((await self.store.users.by_name("alice")).suspended)
        self.assertFalse(await self.store.sessions.is_live(session))
        [event] = await self.events()
        self.assertIsInstance(event, AccountSuspended)
        self.assertEqual((event.user_id, event.reason), (user.id, "spam"))
        self.assertEqual(await self.admin("unsuspend", "alice"), (OK, "reinstated alice\n", ""))
        self.assertFalse((await self.store.users.by_name("alice")).suspended)
        self.assertEqual(await self.admin("unsuspend", "alice"), (OK, "alice was not suspended\n", ""))
        audited = await self.audited()
        self.assertIn((OPERATOR, "suspend_user", "alice", "spam"), audited)
        self.assertIn((OPERATOR, "unsuspend_user", "alice", ""), audited)

    async def test_unknown_user(self):
        """
        C{set-role}, C{suspend} and C{unsuspend} of no such account exit 1
        with one line on the error stream, and change nothing.
        """
        for argv in [("set-role", "bob", "admin"), ("suspend", "bob"), ("unsuspend", "bob")]:
            self.assertEqual(await self.admin(*argv), (REFUSED, "", "lairchat-admin: no user named bob\n"))
        self.assertEqual(await self.store.users.everyone(), [])
        self.assertEqual(await self.audited(), [])

    async def test_list_users(self):
        """
        C{list-users}: one account a line, by name: name, role, state,
        creation time.
        """
        await self.admin("set-password", "bob", "--password", "secret12")
        await self.admin("set-password", "alice", "--password", "secret12")
        await self.admin("set-role", "alice", "admin")
        await self.admin("suspend", "bob")
        status, out, err = await self.admin("list-users")
        self.assertEqual((status, err), (OK, ""))
        lines = [line.split("\t") for line in out.splitlines()]
        self.assertEqual([line[:3] for line in lines], [["alice", "admin", "active"], ["bob", "user", "suspended"]])
        self.assertRegex(lines[0][3], r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")

    async def test_blocks(self):
        """
        C{list-blocks} lists the blocks in force, soonest to end first;
        C{unblock} lifts one (audited), and exits 1 for an address that is
        not blocked.
        """
        self.assertEqual(await self.admin("list-blocks"), (OK, "", ""))
        await self.store.blocks.block("10.1.2.3", 600, "failed logins", "server")
        await self.store.blocks.block("2001:db8::1", 60, "blocked by root", "root")
        status, out, err = await self.admin("list-blocks")
        self.assertEqual((status, err), (OK, ""))
        lines = [line.split("\t") for line in out.splitlines()]
        self.assertEqual([[line[0], *line[2:]] for line in lines],
                         [["2001:db8::1", "root", "1", "blocked by root"], ["10.1.2.3", "server", "1", "failed logins"]])
        self.assertEqual(await self.admin("unblock", "10.1.2.3"), (OK, "unblocked 10.1.2.3\n", ""))
        self.assertEqual([b.address for b in await self.store.blocks.active()], ["2001:db8::1"])
        self.assertEqual(await self.admin("unblock", "10.1.2.3"),
                         (REFUSED, "", "lairchat-admin: 10.1.2.3 is not blocked\n"))
        self.assertIn((OPERATOR, "unblock", "10.1.2.3", ""), await self.audited())

    async def test_database_unreachable(self):
        """
        A database that cannot be reached: exit 3, one line saying so and
        why.
        """
        status, out, err = await self.admin("list-users", dsn="host=127.0.0.1 port=1 dbname=none connect_timeout=3")
        self.assertEqual((status, out), (UNAVAILABLE, ""))
        self.assertTrue(err.startswith("lairchat-admin: the database cannot be reached: "), err)
        self.assertEqual(err.count("\n"), 1, err)


def environment() -> dict:
    """This process's environment, for a child that imports the source tree."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    return env


def lairchat_admin(*argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    """Run C{python -m lairchat.admin_cli argv} from the source tree (blocking)."""
    return subprocess.run([sys.executable, "-m", "lairchat.admin_cli", *argv], input=stdin, capture_output=True,
                          cwd=REPOSITORY, env=environment(), timeout=120)


class CommandLineTests(TestCase):
    """
    The whole program in a child process: exit statuses and one-line
    errors, and the embedded database of C{--data-dir}.
    """

    async def admin(self, *argv: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        """L{lairchat_admin} in a thread."""
        return await deferToThread(lairchat_admin, *argv, stdin=stdin)

    async def test_dsn(self):
        """
        With C{--dsn}: an account provisioned, then its role set; an
        unknown user and a bad role exit non-zero with one line on the
        error stream, no traceback.
        """
        store = await fresh_store(self)
        done = await self.admin("--dsn", test_dsn(), "set-password", "dave", "--password-stdin", stdin=b"secret12\n")
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"created account dave\n", b""))
        self.assertTrue(matches((await store.users.credentials("dave")).password_hash, "secret12"))
        done = await self.admin("--dsn", test_dsn(), "set-role", "nobody", "admin")
        self.assertEqual((done.returncode, done.stderr), (REFUSED, b"lairchat-admin: no user named nobody\n"))
        done = await self.admin("--dsn", test_dsn(), "set-role", "dave", "boss")
        self.assertEqual(done.returncode, USAGE)
        self.assertIn(b"invalid choice: 'boss'", done.stderr)
        self.assertNotIn(b"Traceback", done.stderr)
        done = await self.admin("--dsn", test_dsn(), "set-password", "dave", "--password", "sesame")
        self.assertEqual((done.returncode, done.stderr),
                         (REFUSED, b"lairchat-admin: a password has 8 to 128 characters\n"))

    async def test_unreachable(self):
        """A database that cannot be reached: exit 3, one line, no traceback."""
        done = await self.admin("--dsn", "host=127.0.0.1 port=1 dbname=none connect_timeout=3", "list-blocks")
        self.assertEqual(done.returncode, UNAVAILABLE)
        self.assertEqual(done.stderr.count(b"\n"), 1, done.stderr)
        self.assertTrue(done.stderr.startswith(b"lairchat-admin: the database cannot be reached"), done.stderr)

    async def test_data_dir(self):
        """
        With C{--data-dir}: on a directory no server uses, the embedded
        Postgres is created and started for the command and stopped after
        it; on one a server (here, this process) holds, the command uses
        the running Postgres and leaves it running.
        """
        directory = tempfile.mkdtemp(prefix="lairchat-admin-test-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        pgdata = Path(directory) / "pg"

        done = await self.admin("--data-dir", directory, "set-password", "erin", "--password", "secret12")
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"created account erin\n", b""))
        self.assertFalse((pgdata / "postmaster.pid").exists(), "the command left Postgres running")

        embedded = EmbeddedPostgres(directory)
        dsn = await deferToThread(embedded.start)
        self.addCleanup(deferToThread, embedded.stop)
        done = await self.admin("--data-dir", directory, "set-role", "erin", "admin")
        self.assertEqual((done.returncode, done.stdout, done.stderr), (0, b"erin is admin (was user)\n", b""))
        self.assertTrue(embedded.running(), "the command stopped the server's Postgres")
        self.assertEqual(json.loads((pgdata / HANDLES).read_text()), [os.getpid()])
        db = Database(dsn, 1)
        await db.start()
        self.addCleanup(db.close)
        erin = await Store(db).users.by_name("erin")
        self.assertTrue(erin.is_admin)
