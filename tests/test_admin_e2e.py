"""
End-to-end tests of server administration over TCP.
"""

from twisted.trial.unittest import TestCase

from tests.support import start_server


class AdminEndToEndTests(TestCase):
    """SERVER_STATS, AUDIT_LOG, SET_USER_ROLE, SUSPEND_USER, UNSUSPEND_USER."""

    async def test_only_admins(self):
        """Every admin command refuses a user without the server role admin."""
        server = await start_server(self)
        alice = await server.user("alice")
        await server.user("bob")
        for line in ("SERVER_STATS", "AUDIT_LOG", "SET_USER_ROLE:bob:admin", "SUSPEND_USER:bob",
                     "UNSUSPEND_USER:bob"):
            reply = await alice.request(line)
            self.assertEqual(reply, ["ERROR:1002:PERMISSION_DENIED:only server admins can do that"], line)

    async def test_server_stats(self):
        """SERVER_STATS counts users and online connections."""
        server = await start_server(self, admins=("root_user",))
        root = await server.user("root_user")
        await server.user("alice")
        reply = await root.request("SERVER_STATS")
        self.assertEqual(reply[-1], "OK:SERVER_STATS")
        stats = dict(line.split(":", 2)[1:] for line in reply[:-1])
        self.assertEqual(stats["users"], "2")
        self.assertEqual(stats["online_users"], "2")
        self.assertEqual(stats["connections"], "2")

    async def test_audit_log_records_logins(self):
        """Registrations and failed logins are in the audit log, newest first."""
        server = await start_server(self, admins=("root_user",))
        root = await server.user("root_user")
        other = await server.connect()
        await other.request("LOGIN:root_user:wrong horse 1")
        reply = await root.request("AUDIT_LOG:2")
        self.assertEqual(reply[-1], "OK:AUDIT_LOG:2")
        newest = reply[0].split(":")
        self.assertEqual(newest[0], "AUDIT")
        self.assertEqual(newest[2:6], ["root_user", "login", "root_user", "failed"])
        self.assertEqual(reply[1].split(":")[2:6], ["root_user", "register", "root_user", "ok"])

    async def test_set_user_role(self):
        """A promoted user is an admin on their open connection at once."""
        server = await start_server(self, admins=("root_user",))
        root = await server.user("root_user")
        bob = await server.user("bob")
        self.assertEqual(await root.request("SET_USER_ROLE:bob:admin"), ["OK:SET_USER_ROLE:bob:admin"])
        self.assertEqual(await bob.request("WHOAMI"), ["OK:WHOAMI:bob:admin"])
        reply = await root.request("SET_USER_ROLE:nobody:admin")
        self.assertTrue(reply[0].startswith("ERROR:1501:NOT_FOUND:"), reply)
        reply = await root.request("SET_USER_ROLE:bob:emperor")
        self.assertTrue(reply[0].startswith("ERROR:1111:INVALID_INPUT:"), reply)

    async def test_suspend_closes_and_blocks_login(self):
        """A suspended user's connection closes, and they cannot log in until reinstated."""
        server = await start_server(self, admins=("root_user",))
        root = await server.user("root_user")
        bob = await server.user("bob")
        self.assertEqual(await root.request("SUSPEND_USER:bob:spam"), ["OK:SUSPEND_USER:bob"])
        self.assertEqual(await bob.event("SYSTEM_MESSAGE:"), "SYSTEM_MESSAGE:your account was suspended: spam")
        await bob.closed
        again = await server.connect()
        reply = await again.request("LOGIN:bob:correct horse 9")
        self.assertEqual(reply, ["ERROR:1404:ACCESS_DENIED:this account is suspended"])
        self.assertEqual(await root.request("UNSUSPEND_USER:bob"), ["OK:UNSUSPEND_USER:bob"])
        reply = await again.request("LOGIN:bob:correct horse 9")
        self.assertTrue(reply[-1].startswith("OK:LOGIN:bob:"), reply)

    async def test_cannot_suspend_self(self):
        """An admin cannot suspend themself."""
        server = await start_server(self, admins=("root_user",))
        root = await server.user("root_user")
        reply = await root.request("SUSPEND_USER:root_user")
        self.assertEqual(reply, ["ERROR:1111:INVALID_INPUT:you cannot suspend yourself"])
