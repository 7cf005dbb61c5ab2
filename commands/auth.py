# -*- test-case-name: tests.test_protocol -*-
"""
The line protocol's account and session commands: REGISTER, LOGIN,
RESUME, LOGOUT, CHANGE_PASSWORD.

Each parses its arguments, calls its operation in
L{lairchat.domain.accounts} (where the behaviour is: lockout, the
suspension checks around attaching, sessions, auditing) and renders the
answer.  Attaching a session to the connection is this front end's part:
the operations are handed the connection's C{log_in} and C{log_out}.
REGISTER also counts new accounts per address
(L{lairchat.ratelimit.FloodControl.reserve_registration}).
"""

from lairchat import validation
from lairchat.addresses import UNKNOWN_ADDRESS
from lairchat.command import Command, Reply
from lairchat.domain import accounts
from lairchat.domain.accounts import WRONG_CREDENTIALS
from lairchat.errors import InvalidCredentials, InvalidFormat, SessionExpired
from lairchat.wire import render_event


def login_password(value: str) -> str:
    """
    A password as typed at login: only what no stored password can hold is
    refused here (the full rules apply when a password is set).
    """
    if validation.has_control_characters(value) or not 1 <= len(value) <= validation.PASSWORD_MAX:
        raise InvalidCredentials(WRONG_CREDENTIALS)
    return value


def attachment(context) -> accounts.Attachment:
    """The asking connection, as the place a new session is attached."""
    return accounts.Attachment(context.connection.log_in, context.connection.log_out)


async def events_at_login(context, user) -> list[str]:
    """
    Every extension's deliveries for a user who just logged in (pending
    invitations, offline messages), as lines.  A failing extension is
    logged and skipped: the login itself has succeeded.
    """
    lines: list[str] = []
    for extension in context.server.extensions:
        try:
            found = await extension.login_events(context, user)
        except Exception:
            context.server.log.failure("login deliveries failed for {user}", user=user.username)
            continue
        lines.extend(line for line in (render_event(e, user.id) for e in found) if line is not None)
    # without an offline delivery (none, or it failed), what comes from now on is all there is
    context.connection.caught_up()
    return lines


def registering_address(connection) -> str | None:
    """
    The address a connection's registrations count against, or L{None}
    when none does (an exempt address, or a connection with no IP address).
    """
    address = getattr(connection, "address", None)
    if getattr(connection, "exempt", False) or address in (None, UNKNOWN_ADDRESS):
        return None
    return address


class Register(Command):
    """Create an account and log in."""

    name = "REGISTER"
    syntax = "REGISTER:<user>:<password>"
    summary = "Create an account and log in (a password has 8-128 characters, a letter and a digit)"
    arity = (2, 2)
    needs_login = False
    rate_class = "auth"

    def parse(self, arguments):
        """A valid username and password."""
        return validation.username(arguments[0]), validation.password(arguments[1])

    async def run(self, context, parsed):
        """
        Register; the connection is logged in.  An address gets only so
        many new accounts an hour (exempt addresses any number): past that,
        C{1110} with the time until the next one.
        """
        username, password = parsed
        address = registering_address(context.connection)
        flood = context.server.flood
        flood.reserve_registration(address)
        try:
            signed_in = await accounts.register(context.actor, username, password, attachment(context))
        except BaseException:
            flood.release_registration(address)
            raise
        context.connection.caught_up()
        return Reply.ok(signed_in.user.username, signed_in.token)


class Login(Command):
    """Log in with a password."""

    name = "LOGIN"
    syntax = "LOGIN:<user>:<password>"
    summary = "Log in; pending invitations and offline messages follow"
    arity = (2, 2)
    needs_login = False
    rate_class = "auth"

    def parse(self, arguments):
        """A well-formed username; any plausible password."""
        return validation.username(arguments[0]), login_password(arguments[1])

    async def run(self, context, parsed):
        """Log in; what waited for the user follows the answer."""
        username, password = parsed
        signed_in = await accounts.login(context.actor, username, password, attachment(context))
        user = signed_in.user
        return Reply.ok(user.username, signed_in.token, after=await events_at_login(context, user))


class Resume(Command):
    """Log in again with a session token, e.g. after a reconnect."""

    name = "RESUME"
    syntax = "RESUME:<session_token>"
    summary = "Log in with the token LOGIN or REGISTER gave"
    arity = (1, 1)
    needs_login = False
    rate_class = "auth"

    def parse(self, arguments):
        """A token as the server makes them: 64 hex digits."""
        token = arguments[0]
        if len(token) != 64 or not token.isascii() or any(c not in "0123456789abcdef" for c in token):
            raise InvalidFormat("a session token is 64 hexadecimal digits")
        return token

    async def run(self, context, token):
        """Resume the session on this connection; what waited follows."""
        try:
            user = await accounts.resume(context.actor, token, attachment(context))
        except SessionExpired as refusal:
            raise SessionExpired(f"{refusal.message}; LOGIN again") from None
        return Reply.ok(user.username, after=await events_at_login(context, user))


class Logout(Command):
    """End the session; the connection stays open."""

    name = "LOGOUT"
    syntax = "LOGOUT"
    summary = "Revoke your session token; the connection stays"

    async def run(self, context, parsed):
        """End this connection's session; it is anonymous again."""
        await accounts.logout(context.actor, context.connection.session_id, attachment(context))
        return Reply.ok()


class ChangePassword(Command):
    """Change one's password; every other session is revoked."""

    name = "CHANGE_PASSWORD"
    syntax = "CHANGE_PASSWORD:<old>:<new>"
    summary = "Change your password (the old one cannot hold a colon); other sessions are logged out"
    arity = (2, 2)
    rate_class = "auth"

    def parse(self, arguments):
        """The old password as typed; a new one that meets the rules."""
        return login_password(arguments[0]), validation.password(arguments[1])

    async def run(self, context, parsed):
        """Change the password; this connection's session is kept."""
        old, new = parsed
        await accounts.change_password(context.actor, old, new, context.connection.session_id)
        return Reply.ok()


register = Register()
login = Login()
resume = Resume()
logout = Logout()
change_password = ChangePassword()
