"""
Accounts and sessions: REGISTER, LOGIN, RESUME, LOGOUT, CHANGE_PASSWORD.

A login failure never says whether the user or the password was wrong, and
takes as long either way; repeated failures lock the account for a while.
"""

from datetime import datetime, timezone

from lairchat import validation
from lairchat.command import Command, Reply
from lairchat.errors import AccessDenied, AccountLocked, InvalidCredentials, InvalidFormat, SessionExpired
from lairchat.events import SessionsRevoked
from lairchat.wire import render_event

WRONG = "wrong username or password"


def login_password(value: str) -> str:
    """
    A password as typed at login: only what no stored password can hold is
    refused here (the full rules apply when a password is set).
    """
    if validation.has_control_characters(value) or not 1 <= len(value) <= validation.PASSWORD_MAX:
        raise InvalidCredentials(WRONG)
    return value


def _moment(ms: int) -> str:
    """An epoch-ms instant as an ISO 8601 UTC time, for messages."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
    return lines


async def attach(context, user, session_id: int) -> None:
    """
    Log this connection in as C{user} on session C{session_id}, unless the
    account is suspended by now.

    A suspension revokes the sessions that exist and closes the connections
    logged in as it runs; a login whose password check (slow on purpose) or
    session look-up overlapped it had neither yet, and would have slipped
    through.  So the account is read again before the connection is
    attached, and once more after: a suspension either is seen here or
    finds the connection to close.

    @raise AccessDenied: the account is suspended; the session is revoked.
    """
    users, sessions = context.store.users, context.store.sessions
    current = await users.by_id(user.id)
    if current is None or current.suspended:
        await sessions.revoke(session_id)
        raise AccessDenied("this account is suspended")
    try:
        await context.connection.log_in(current, session_id)
    except Exception:
        context.connection.log_out()
        raise
    current = await users.by_id(user.id)
    if current is None or current.suspended:
        await sessions.revoke(session_id)
        context.connection.log_out()
        raise AccessDenied("this account is suspended")


async def start_session(context, user) -> str:
    """
    Open a session for C{user} on this connection; return its token.

    @raise AccessDenied: the account was suspended meanwhile (see L{attach}).
    """
    token, session_id = await context.store.sessions.open(user.id, context.config.session_ttl)
    await attach(context, user, session_id)
    return token


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
        """Hash, create, open a session."""
        username, password = parsed
        store = context.store
        password_hash = await context.server.passwords.hash(password)
        user = await store.users.create(username, password_hash)
        if username.lower() in (a.lower() for a in context.config.admins):
            user = await store.users.set_server_role(username, "admin")
        token = await start_session(context, user)
        await store.audit.record(user.username, "register", user.username)
        return Reply.ok(user.username, token)


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
        """Verify, count failures, open a session, deliver what waited."""
        username, password = parsed
        store, config = context.store, context.config
        credentials = await store.users.credentials(username)
        if credentials is not None and credentials.user.locked_until_ms > context.now_ms():
            await store.audit.record(username, "login", username, "refused", "locked")
            raise AccountLocked(f"too many failed logins; try again after {_moment(credentials.user.locked_until_ms)}")
        matches = await context.server.passwords.verify(
            credentials.password_hash if credentials else None, password
        )
        if not matches:
            await store.audit.record(username, "login", username, "failed", "bad credentials")
            if credentials is not None:
                locked_until = await store.users.login_failed(
                    credentials.user.id, config.lockout_threshold, config.lockout_seconds
                )
                if locked_until > context.now_ms():
                    raise AccountLocked(f"too many failed logins; try again after {_moment(locked_until)}")
            raise InvalidCredentials(WRONG)
        user = credentials.user
        if user.suspended:
            await store.audit.record(user.username, "login", user.username, "refused", "suspended")
            raise AccessDenied("this account is suspended")
        await store.users.login_succeeded(user.id)
        try:
            token = await start_session(context, user)
        except AccessDenied:
            await store.audit.record(user.username, "login", user.username, "refused", "suspended")
            raise
        await store.audit.record(user.username, "login", user.username)
        return Reply.ok(user.username, token, after=await events_at_login(context, user))


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
        """Find the live session; attach the connection to it."""
        session = await context.store.sessions.resume(token)
        if session is None:
            raise SessionExpired("that session has expired or was revoked; LOGIN again")
        if session.user.suspended:
            raise AccessDenied("this account is suspended")
        await attach(context, session.user, session.id)
        await context.store.users.touch(session.user.id)
        return Reply.ok(session.user.username, after=await events_at_login(context, session.user))


class Logout(Command):
    """End the session; the connection stays open."""

    name = "LOGOUT"
    syntax = "LOGOUT"
    summary = "Revoke your session token; the connection stays"

    async def run(self, context, parsed):
        """Revoke and detach."""
        user, session_id = context.user, context.connection.session_id
        await context.store.sessions.revoke(session_id)
        context.connection.log_out()
        await context.store.audit.record(user.username, "logout", user.username)
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
        """Verify the old one, store the new hash, revoke the other sessions."""
        old, new = parsed
        user, store = context.user, context.store
        credentials = await store.users.credentials(user.username)
        if credentials is None or not await context.server.passwords.verify(credentials.password_hash, old):
            await store.audit.record(user.username, "change_password", user.username, "failed", "bad credentials")
            raise InvalidCredentials("the current password is wrong")
        await store.users.set_password(user.id, await context.server.passwords.hash(new))
        keep = context.connection.session_id
        await store.sessions.revoke_all(user.id, keep=keep)
        await context.publish(SessionsRevoked(user.id, keep))
        await store.audit.record(user.username, "change_password", user.username)
        return Reply.ok()


register = Register()
login = Login()
resume = Resume()
logout = Logout()
change_password = ChangePassword()
