"""
End-to-end tests of accounts and sessions: the real service on a TCP port,
real clients over sockets, a real Postgres, real argon2 hashes.
"""

from twisted.trial.unittest import TestCase

from tests.support import RunningServer, start_server


class AccountsEndToEndTests(TestCase):
    """REGISTER, LOGIN, RESUME, LOGOUT, CHANGE_PASSWORD over TCP."""

    async def test_register_then_whoami(self):
        """A new account is logged in at once, with the server role user."""
        server = await start_server(self)
        client = await server.connect()
        reply = await client.request("REGISTER:alice:correct horse 9")
        self.assertEqual(len(reply), 1)
        self.assertRegex(reply[0], r"^OK:REGISTER:alice:[0-9a-f]{64}$")
        self.assertEqual(await client.request("WHOAMI"), ["OK:WHOAMI:alice:user"])

    async def test_register_taken_case_insensitively(self):
        """A username differing only in case is taken."""
        server = await start_server(self)
        await server.user("alice")
        other = await server.connect()
        reply = await other.request("REGISTER:ALICE:correct horse 9")
        self.assertEqual(reply, ["ERROR:1211:CONFLICT:that username is taken"])

    async def test_login_failure_never_says_which(self):
        """A wrong password and an unknown user read the same."""
        server = await start_server(self)
        await server.user("alice")
        client = await server.connect()
        wrong_password = await client.request("LOGIN:alice:wrong horse 9")
        unknown_user = await client.request("LOGIN:nobody:correct horse 9")
        self.assertEqual(wrong_password, unknown_user)
        self.assertEqual(wrong_password, ["ERROR:1004:INVALID_CREDENTIALS:wrong username or password"])

    async def test_lockout_after_repeated_failures(self):
        """
        The fifth failure in a row from one address throttles the account
        from that address, even for the right password (from elsewhere it
        is not: see C{tests.test_guessing_e2e}).  The first delay is set
        long, so that the test does not depend on its speed.
        """
        server = await start_server(self, login_delay_seconds=600)
        await server.user("alice")
        client = await server.connect()
        for _ in range(4):
            reply = await client.request("LOGIN:alice:wrong horse 9")
            self.assertTrue(reply[-1].startswith("ERROR:1004:"), reply)
        reply = await client.request("LOGIN:alice:wrong horse 9")
        self.assertTrue(reply[-1].startswith("ERROR:1005:ACCOUNT_LOCKED:"), reply)
        reply = await client.request("LOGIN:alice:correct horse 9")
        self.assertTrue(reply[-1].startswith("ERROR:1005:ACCOUNT_LOCKED:"), reply)

    async def test_session_survives_restart(self):
        """A token from before a restart of the service resumes after it."""
        server = await start_server(self)
        client = await server.connect()
        token = (await client.request("REGISTER:alice:correct horse 9"))[0].split(":")[3]
        await client.close()
        await server.stop()
        again = await RunningServer(self, server.config).start()
        client = await again.connect()
        self.assertEqual(await client.request(f"RESUME:{token}"), ["OK:RESUME:alice"])
        self.assertEqual(await client.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
        login = await client.request("LOGIN:alice:correct horse 9")
        self.assertTrue(login[-1].startswith("OK:LOGIN:alice:"), login)

    async def test_logout_revokes_the_token(self):
        """After LOGOUT the connection stays, anonymous, and the token is dead."""
        server = await start_server(self)
        client = await server.connect()
        token = (await client.request("REGISTER:alice:correct horse 9"))[0].split(":")[3]
        self.assertEqual(await client.request("LOGOUT"), ["OK:LOGOUT"])
        self.assertEqual((await client.request("WHOAMI"))[0].split(":")[:3], ["ERROR", "1001", "AUTH_REQUIRED"])
        reply = await client.request(f"RESUME:{token}")
        self.assertTrue(reply[0].startswith("ERROR:1003:SESSION_EXPIRED:"), reply)

    async def test_change_password_revokes_other_sessions(self):
        """The new password works, the old one does not, other sessions end."""
        server = await start_server(self)
        first = await server.connect()
        old_token = (await first.request("REGISTER:alice:correct horse 9"))[0].split(":")[3]
        second = await server.connect()
        await second.ok("LOGIN:alice:correct horse 9")
        self.assertEqual(await second.request("CHANGE_PASSWORD:correct horse 9:battery staple 7"),
                         ["OK:CHANGE_PASSWORD"])
        notice = await first.event("SYSTEM_MESSAGE:")
        self.assertIn("password was changed", notice)
        self.assertTrue((await first.request("WHOAMI"))[0].startswith("ERROR:1001:"))
        self.assertTrue((await first.request(f"RESUME:{old_token}"))[0].startswith("ERROR:1003:"))
        self.assertTrue((await first.request("LOGIN:alice:correct horse 9"))[0].startswith("ERROR:1004:"))
        await first.ok("LOGIN:alice:battery staple 7")
        self.assertEqual(await second.request("WHOAMI"), ["OK:WHOAMI:alice:user"])

    async def test_admin_option_grants_server_role(self):
        """A user named by --admin is a server admin from registration on."""
        server = await start_server(self, admins=("root_user",))
        client = await server.user("root_user")
        self.assertEqual(await client.request("WHOAMI"), ["OK:WHOAMI:root_user:admin"])

    async def test_user_list(self):
        """REQUEST_USER_LIST lists each online user once, by name."""
        server = await start_server(self)
        await server.user("bob")
        alice = await server.user("alice")
        again = await server.connect()
        await again.ok("LOGIN:alice:correct horse 9")
        self.assertEqual(await alice.request("REQUEST_USER_LIST"),
                         ["USER:alice", "USER:bob", "OK:REQUEST_USER_LIST:2"])


class FramingEndToEndTests(TestCase):
    """Bad bytes over a real socket."""

    async def test_invalid_utf8_keeps_the_connection(self):
        """Invalid UTF-8 is refused with 1114 and the connection stays."""
        server = await start_server(self)
        client = await server.connect()
        client.send(b"PING:\xff\xfe")
        self.assertEqual(await client.line(), "ERROR:1114:INVALID_ENCODING:the line is not valid UTF-8")
        self.assertEqual(await client.request("PING:still here"), ["OK:PING:still here"])

    async def test_overlong_line_closes(self):
        """A line over --max-line gets 1113 and the connection closes."""
        server = await start_server(self, max_line=1024)
        client = await server.connect()
        client.send(b"PING:" + b"x" * 2000)
        self.assertEqual(await client.line(), "ERROR:1113:LINE_TOO_LONG:a line holds at most 1024 bytes")
        await client.closed
        self.assertTrue(client.is_closed)

    async def test_control_characters_refused(self):
        """A control character anywhere in a line is refused with 1114."""
        server = await start_server(self)
        client = await server.connect()
        client.send(b"PING:a\x07b")
        self.assertEqual(await client.line(), "ERROR:1114:INVALID_CHARACTERS:control characters are not allowed")

    async def test_quit_closes(self):
        """QUIT answers, then the server closes."""
        server = await start_server(self)
        client = await server.connect()
        self.assertEqual(await client.request("QUIT:bye"), ["OK:QUIT"])
        await client.closed

    async def test_crlf_and_case_insensitive(self):
        """Telnet's CRLF and lower-case commands work."""
        server = await start_server(self)
        client = await server.connect()
        client.send(b"ping:abc\r")
        self.assertEqual(await client.line(), "OK:PING:abc")
