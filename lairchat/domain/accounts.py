# -*- test-case-name: tests.test_accounts -*-
"""
Accounts and sessions: register, log in (with lockout), resume a session,
log out, change one's password; who one is and who is online.

A login failure never says whether the user or the password was wrong, and
takes as long either way (an unknown user's password is checked against a
decoy hash: see L{lairchat.passwords}); repeated failures lock the account
for a while.

A session is attached to whatever the front end serves (a connection)
through an L{Attachment} the front end gives: the operations here decide
when, and check the account again around it, but never touch a
connection.  They act as an L{lairchat.domain.Actor} whose user may be
nobody yet.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen

from lairchat.errors import AccessDenied, AccountLocked, InvalidCredentials, SessionExpired
from lairchat.models import User, iso_moment

WRONG_CREDENTIALS = "wrong username or password"
"""The one refusal of a login, whichever of the two was wrong."""


@frozen
class Attachment:
    """
    How a front end attaches a freshly opened session to what it serves.

    @ivar attach: C{attach(user, session_id)}, awaitable: from now on the
        front end's connection is C{user}'s, on that session.
    @ivar detach: C{detach()}: it is nobody's again.
    """

    attach: Callable[[User, int], Awaitable[Any]]
    detach: Callable[[], None]


@frozen
class SignedIn:
    """A user who registered or logged in, and their new session's token."""

    user: User
    token: str


async def attach(actor: Any, user: User, session_id: int, attachment: Attachment) -> User:
    """
    Attach session C{session_id} of C{user}, unless the account is
    suspended by now.

    A suspension revokes the sessions that exist and closes the connections
    logged in as it runs; a login whose password check (slow on purpose) or
    session look-up overlapped it had neither yet, and would have slipped
    through.  So the account is read again before the session is attached,
    and once more after: a suspension either is seen here or finds the
    connection to close.

    @return: the account as it was read before attaching.
    @raise AccessDenied: the account is suspended; the session is revoked.
    """
    users, sessions = actor.store.users, actor.store.sessions
    current = await users.by_id(user.id)
    if current is None or current.suspended:
        await sessions.revoke(session_id)
        raise AccessDenied("this account is suspended")
    try:
        await attachment.attach(current, session_id)
    except Exception:
        attachment.detach()
        raise
    again = await users.by_id(user.id)
    if again is None or again.suspended:
        await sessions.revoke(session_id)
        attachment.detach()
        raise AccessDenied("this account is suspended")
    return current


async def start_session(actor: Any, user: User, attachment: Attachment) -> str:
    """
    Open a session for C{user} and attach it; return its token.

    @raise AccessDenied: the account was suspended meanwhile (see L{attach}).
    """
    token, session_id = await actor.store.sessions.open(user.id, actor.config.session_ttl)
    await attach(actor, user, session_id, attachment)
    return token


async def register(actor: Any, username: str, password: str, attachment: Attachment) -> SignedIn:
    """
    Create an account (a server admin when the settings name it) and log
    it in.

    @raise lairchat.errors.Conflict: the username is taken.
    @raise AccessDenied: the account was suspended before it was attached.
    """
    store = actor.store
    password_hash = await actor.server.passwords.hash(password)
    user = await store.users.create(username, password_hash)
    if username.lower() in (a.lower() for a in actor.config.admins):
        user = await store.users.set_server_role(username, "admin")
    token = await start_session(actor, user, attachment)
    await store.audit.record(user.username, "register", user.username)
    return SignedIn(user, token)


async def login(actor: Any, username: str, password: str, attachment: Attachment) -> SignedIn:
    """
    Log in with a password.  Every failure is audited; C{lockout_threshold}
    failures in a row lock the account for C{lockout_seconds}.

    @raise AccountLocked: the account is locked (or this failure locked it).
    @raise InvalidCredentials: no such user, or the wrong password.
    @raise AccessDenied: the account is suspended.
    """
    store, config = actor.store, actor.config
    credentials = await store.users.credentials(username)
    if credentials is not None and credentials.user.locked_until_ms > actor.now_ms():
        await store.audit.record(username, "login", username, "refused", "locked")
        raise AccountLocked(f"too many failed logins; try again after {iso_moment(credentials.user.locked_until_ms)}")
    matches = await actor.server.passwords.verify(credentials.password_hash if credentials else None, password)
    if not matches:
        await store.audit.record(username, "login", username, "failed", "bad credentials")
        if credentials is not None:
            locked_until = await store.users.login_failed(
                credentials.user.id, config.lockout_threshold, config.lockout_seconds
            )
            if locked_until > actor.now_ms():
                raise AccountLocked(f"too many failed logins; try again after {iso_moment(locked_until)}")
        raise InvalidCredentials(WRONG_CREDENTIALS)
    user = credentials.user
    if user.suspended:
        await store.audit.record(user.username, "login", user.username, "refused", "suspended")
        raise AccessDenied("this account is suspended")
    await store.users.login_succeeded(user.id)
    try:
        token = await start_session(actor, user, attachment)
    except AccessDenied:
        await store.audit.record(user.username, "login", user.username, "refused", "suspended")
        raise
    await store.audit.record(user.username, "login", user.username)
    return SignedIn(user, token)


async def resume(actor: Any, token: str, attachment: Attachment) -> User:
    """
    Log in again with a session's token.

    @return: the session's user.
    @raise SessionExpired: the token opens no live session.
    @raise AccessDenied: the account is suspended.
    """
    session = await actor.store.sessions.resume(token)
    if session is None:
        raise SessionExpired("that session has expired or was revoked")
    if session.user.suspended:
        raise AccessDenied("this account is suspended")
    await attach(actor, session.user, session.id, attachment)
    await actor.store.users.touch(session.user.id)
    return session.user


async def logout(actor: Any, session_id: int | None, attachment: Attachment) -> None:
    """End the actor's session C{session_id} and detach it; audited."""
    user = actor.user
    await actor.store.sessions.revoke(session_id)
    attachment.detach()
    await actor.store.audit.record(user.username, "logout", user.username)


async def change_password(actor: Any, old: str, new: str, keep_session: int | None) -> None:
    """
    Change the actor's password; every session but C{keep_session} is
    revoked (and the connections on them are logged out) with the change.

    @raise InvalidCredentials: C{old} is not the current password (audited).
    """
    user, store, passwords = actor.user, actor.store, actor.server.passwords
    credentials = await store.users.credentials(user.username)
    if credentials is None or not await passwords.verify(credentials.password_hash, old):
        await store.audit.record(user.username, "change_password", user.username, "failed", "bad credentials")
        raise InvalidCredentials("the current password is wrong")
    password_hash = await passwords.hash(new)
    outbox = actor.outbox()
    await store.users.change_password(user, password_hash, keep_session, outbox)
    await actor.deliver(outbox)


def whoami(actor: Any) -> User:
    """The acting user, as this request sees them (server role included)."""
    return actor.user


async def online_usernames(actor: Any) -> list[str]:
    """The names of the users online on any node, by name."""
    return await actor.store.users.online_names()
