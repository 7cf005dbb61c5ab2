# -*- test-case-name: tests.test_accounts -*-
"""
Accounts and sessions: register, log in (with lockout), resume a session,
log out, change one's password; who one is and who is online.

A login failure never says whether the user or the password was wrong, and
takes as long either way (an unknown user's password is checked against a
decoy hash: see L{lairchat.passwords}).  Password guessing is throttled per
account I{and address} and per address across accounts, never per account
alone, so someone guessing never locks the owner out from elsewhere (see
L{lairchat.login_throttle}); an attempt is counted before its password is
checked, so parallel guesses gain nothing.  Every failed or refused login
is audited with the address it came from; refusals of a throttled key in
counted summaries.  L{suspicious_login} is where every failed or refused
login passes, with its address.

A session is attached to whatever the front end serves (a connection)
through an L{Attachment} the front end gives: the operations here decide
when, and check the account again around it, but never touch a
connection.  They act as an L{lairchat.domain.Actor} whose user may be
nobody yet.
"""

from collections.abc import Awaitable, Callable
from typing import Any

from attrs import frozen

from lairchat.addresses import UNKNOWN_ADDRESS
from lairchat.domain import access
from lairchat.errors import (
    AccessDenied, AccountLocked, ChatError, InvalidCredentials, PermissionDenied, SessionExpired,
)
from lairchat.events import AwayChanged, GuestLoggedIn, UserQuit
from lairchat.login_throttle import ADDRESS, Reservation, ThrottleRule
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
    password_hash = await actor.server.passwords.hash(password, address=hashing_address(actor))
    user = await store.users.create(username, password_hash)
    if username.lower() in (a.lower() for a in actor.config.admins):
        user = await store.users.set_server_role(username, "admin")
    token = await start_session(actor, user, attachment)
    await store.audit.record(user.username, "register", user.username, "ok", f"from {client_address(actor)}")
    return SignedIn(user, token)


async def start_guest(actor: Any, nick: str, attachment: Attachment) -> User:
    """
    Make an ephemeral guest named C{nick} (an IRC client registered
    without credentials on a server with C{--irc-guests}) and attach it.
    A guest is a C{users} row flagged C{guest}: rooms, messages and events
    refer to it as to any user, but it has no password (it cannot log in)
    and no session, and L{end_guest} deletes it when its connection closes.

    @raise lairchat.errors.Conflict: the nick is an account's or a
        connected guest's.
    """
    user = await actor.store.users.create_guest(nick)
    try:
        await attachment.attach(user, None)
    except Exception:
        attachment.detach()
        await actor.store.users.remove_guest(user.id)
        raise
    await actor.store.audit.record(user.username, "guest", user.username, "ok", f"from {client_address(actor)}")
    return user


async def rename_guest(actor: Any, nick: str) -> User:
    """
    Give the acting guest another nick.

    @raise lairchat.errors.Conflict: the nick is taken.
    @raise AccessDenied: the actor is no guest.
    """
    outbox = actor.outbox()
    renamed = await actor.store.users.rename_guest(actor.user.id, nick, outbox)
    if renamed is None:
        raise AccessDenied("only a guest can change its name")
    await actor.deliver(outbox)
    return renamed


async def guest_quits(actor: Any, reason: str) -> None:
    """
    Tell the members of the acting guest's rooms, once each, that it
    quits, saying C{reason} (L{UserQuit}); L{end_guest} then takes it out.
    """
    user, store = actor.user, actor.store
    rooms = await store.rooms.rooms_of_member(user.id)
    if rooms:
        quit_event = UserQuit(user.id, user.username, reason, tuple(r.id for r in rooms), origin=actor.origin)
        seqs = await store.events.record([quit_event], actor.origin)
        await actor.server.bus.committed(seqs, [quit_event])


async def end_guest(actor: Any, reason: str | None = "Connection closed", account: str = "") -> None:
    """
    The acting guest's connection closed, or it logged in to C{account}.
    A guest that logged in tells the members of its rooms so
    (L{GuestLoggedIn}); one whose connection closed tells them once that
    it quits, unless told already (L{guest_quits}; C{reason} is then
    L{None}).  Then it leaves every room as C{LEAVE_ROOM} does (its events
    go out, marked C{quitting} when it quit; a room it leaves empty is
    deleted, so the next joiner founds it afresh), and is deleted.  Its
    messages stay, anonymised (see
    L{lairchat.store.users.UserStore.remove_guest}).
    """
    user, store = actor.user, actor.store
    if account:
        event = GuestLoggedIn(user.id, user.username, account, tuple(await store.events.room_ids_of(user.id)),
                              origin=actor.origin)
        await actor.server.bus.committed(await store.events.record([event], actor.origin), [event])
    elif reason is not None:
        await guest_quits(actor, reason)
    for room in await store.rooms.rooms_of_member(user.id):
        outbox = actor.outbox()
        if await store.rooms.leave(room, user, outbox, quitting=not account) is not None:
            await actor.deliver(outbox)
    await store.users.remove_guest(user.id)


def account_rule(config: Any) -> ThrottleRule:
    """The throttle of one account from one address, from the settings."""
    return ThrottleRule(
        threshold=config.lockout_threshold,
        first_delay=config.login_delay_seconds,
        cap=config.lockout_seconds,
        forget=config.login_failure_memory,
    )


def address_rule(config: Any, address: str) -> ThrottleRule | None:
    """
    The throttle of one address across accounts, from the settings, or
    L{None} for an address of an exempt network (C{--exempt-network}).
    """
    if address in config.exempt_networks:
        return None
    return ThrottleRule(
        threshold=config.address_lockout_threshold,
        first_delay=config.login_delay_seconds,
        cap=config.address_lockout_seconds,
        forget=config.address_failure_memory,
    )


def client_address(actor: Any) -> str:
    """The address the actor's request came from, as the throttle and the audit log name it."""
    return actor.address or UNKNOWN_ADDRESS


def hashing_address(actor: Any) -> str | None:
    """
    The address the password hasher queues the actor's work under, or
    L{None} (no per-address cap) for an exempt network or a request from no
    client.
    """
    if actor.address is None or actor.address in actor.config.exempt_networks:
        return None
    return actor.address


def suspicious_login(actor: Any, address: str, username: str, reason: str) -> None:
    """
    A login from C{address} failed (C{reason} C{"failed"}) or was refused
    by the throttle (C{"throttled:account"}, C{"throttled:address"}).

    The one place every such login passes with its address: counted
    (C{lairchat_suspicious_logins_total}) and scored against the address
    by intrusion detection (L{lairchat.intrusion}).
    """
    metrics = getattr(actor.server, "metrics", None)
    if metrics is not None:
        metrics.suspicious_login(reason)
    intrusion = getattr(actor.server, "intrusion", None)
    if intrusion is not None:
        intrusion.note(address, "failed_login" if reason == "failed" else "throttled_login")


def _plural(count: int, word: str) -> str:
    """C{"1 attempt"}, C{"2 attempts"}."""
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


async def _audit_summaries(actor: Any, username: str, address: str, reservation: Reservation) -> None:
    """Write the counted summaries of refused logins the throttle reported."""
    for scope, count in reservation.summaries:
        where = "on any account from" if scope == ADDRESS else "from"
        await actor.store.audit.record(
            username, "login", username, "refused",
            f"refused {_plural(count, 'attempt')} {where} {address}: too many failed logins",
        )


def _locked(reservation: Reservation, now_ms: int) -> AccountLocked:
    """The refusal of a throttled login, saying truthfully until when."""
    seconds = max(1, -(-(reservation.until_ms - now_ms) // 1000))
    whose = "from your address" if reservation.scope == ADDRESS else "of this account from your address"
    return AccountLocked(
        f"too many failed logins {whose}; try again after {iso_moment(reservation.until_ms)} (in {seconds} s)"
    )


async def login(actor: Any, username: str, password: str, attachment: Attachment) -> SignedIn:
    """
    Log in with a password.

    The attempt is first reserved with the throttle (L{account_rule},
    L{address_rule}), which counts it as a failure until the password turns
    out right; a throttled attempt is refused before its password is
    checked.  Every failure and refusal is audited with the address.

    @raise AccountLocked: this account from this address, or this address,
        is throttled (or this failure started a delay).
    @raise InvalidCredentials: no such user, or the wrong password.
    @raise AccessDenied: the account is suspended.
    """
    store, config = actor.store, actor.config
    address = client_address(actor)
    pair_rule, whole_rule = account_rule(config), address_rule(config, address)
    reservation = await store.logins.reserve(username, address, actor.now_ms(), pair_rule, whole_rule)
    await _audit_summaries(actor, username, address, reservation)
    if not reservation.allowed:
        suspicious_login(actor, address, username, f"throttled:{reservation.scope}")
        raise _locked(reservation, actor.now_ms())
    credentials = await store.users.credentials(username)
    try:
        matches = await actor.server.passwords.verify(
            credentials.password_hash if credentials else None, password, address=hashing_address(actor)
        )
    except ChatError:
        # never checked (the hasher is too busy): not a failure
        await store.logins.release(username, address, pair_rule, whole_rule, correct=False)
        raise
    if not matches:
        await store.audit.record(username, "login", username, "failed", f"bad credentials from {address}")
        suspicious_login(actor, address, username, "failed")
        if reservation.until_ms > actor.now_ms():
            raise _locked(reservation, actor.now_ms())
        raise InvalidCredentials(WRONG_CREDENTIALS)
    await store.logins.release(username, address, pair_rule, whole_rule, correct=True)
    user = credentials.user
    if user.suspended:
        await store.audit.record(user.username, "login", user.username, "refused", f"suspended; from {address}")
        raise AccessDenied("this account is suspended")
    await store.users.login_succeeded(user.id)
    try:
        token = await start_session(actor, user, attachment)
    except AccessDenied:
        await store.audit.record(user.username, "login", user.username, "refused", f"suspended; from {address}")
        raise
    await store.audit.record(user.username, "login", user.username, "ok", f"from {address}")
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
    key = hashing_address(actor)
    if credentials is None or not await passwords.verify(credentials.password_hash, old, address=key):
        await store.audit.record(user.username, "change_password", user.username, "failed", "bad credentials")
        raise InvalidCredentials("the current password is wrong")
    password_hash = await passwords.hash(new, address=key)
    outbox = actor.outbox()
    await store.users.change_password(user, password_hash, keep_session, outbox)
    await actor.deliver(outbox)


async def confirm_server_admin(actor: Any, name: str, password: str) -> User:
    """
    Check that the actor is the account C{name}, that C{password} is its
    password, and that it holds the server role admin: what an IRC
    C{OPER} asks.  A wrong name or password is audited.

    @raise InvalidCredentials: C{name} is not the actor, or the password
        is wrong.
    @raise lairchat.errors.PermissionDenied: the account is no server admin.
    """
    user, store, passwords = actor.user, actor.store, actor.server.passwords
    credentials = await store.users.credentials(user.username)
    key = hashing_address(actor)
    if (name.lower() != user.username.lower() or credentials is None
            or not await passwords.verify(credentials.password_hash, password, address=key)):
        await store.audit.record(user.username, "oper", name, "failed", "bad credentials")
        raise InvalidCredentials(WRONG_CREDENTIALS)
    if not credentials.user.is_admin:
        raise PermissionDenied("only server admins can do that")
    return credentials.user


def whoami(actor: Any) -> User:
    """The acting user, as this request sees them (server role included)."""
    return actor.user


async def known(actor: Any, name: str) -> User:
    """
    The account with this name (case-insensitively).

    @raise lairchat.errors.NotFound: there is none.
    """
    return await access.known_user(actor, name)


async def is_online(actor: Any, user: User) -> bool:
    """Whether the user is logged in on any node."""
    return user.id in await actor.store.events.online_user_ids([user.id])


async def away(actor: Any, user: User) -> str | None:
    """The away text of a user online on some node (empty when not away); L{None} when they are offline."""
    return (await actor.store.events.online_with_away([user.id])).get(user.id)


async def set_away(actor: Any, text: str) -> bool:
    """
    Mark the acting user away, on every node, with C{text} (empty: back).
    Those who share a room or conversation with them are told
    (L{AwayChanged}); the mark lasts until they come back or are online
    nowhere.

    @return: whether it changed.
    """
    user = actor.user
    outbox = actor.outbox()

    def announce(room_ids: list[int]) -> AwayChanged:
        return AwayChanged(user.id, user.username, text, tuple(room_ids), user.guest)

    changed = await actor.store.events.set_away(user.id, text, outbox, announce)
    await actor.deliver(outbox)
    return changed


async def online_usernames(actor: Any) -> list[str]:
    """The names of the users online on any node, by name."""
    return await actor.store.users.online_names()
