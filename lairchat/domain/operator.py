# -*- test-case-name: tests.test_admin_cli -*-
"""
What the operator does from the command line (C{lairchat-admin}), with no
account and no connection: provision accounts and their passwords, give
server roles, suspend and reinstate, list and lift address blocks.

The operator acts on the database itself, as whoever can reach it.  The
changes are those the admin commands of the line protocol make, with the
same events recorded in the same transactions; the events carry no node
(L{Operator.outbox}), so every running node reads them from the event log
and acts on its connections (a suspension closes them, a password change
logs them out, a role change shows at once).  Every change is audited with
the actor L{OPERATOR}.
"""

from typing import Any

from attrs import frozen

from lairchat.errors import Conflict, NotFound
from lairchat.models import AddressBlock, User
from lairchat.store.events import Outbox

OPERATOR = "lairchat-admin"
"""The actor the audit log names for the operator's changes."""

CREATED = "created"
CHANGED = "changed"
UNCHANGED = "unchanged"


@frozen
class Operator:
    """
    The operator: the store it acts on, the L{lairchat.passwords.Passwords}
    that hashes, and the name the audit log gives it.
    """

    store: Any
    passwords: Any
    name: str = OPERATOR

    def outbox(self) -> Outbox:
        """
        An outbox for the events of one change.  They come from no node, so
        every running node delivers them from the event log.
        """
        return Outbox(None)


@frozen
class PasswordSet:
    """
    What L{set_password} did.

    @ivar user: the account.
    @ivar outcome: L{CREATED} (a new account), L{CHANGED} (its sessions
        were revoked) or L{UNCHANGED} (it had this password already).
    """

    user: User
    outcome: str


async def existing_user(operator: Operator, name: str) -> User:
    """
    The named account (case-insensitively).

    @raise NotFound: there is none.
    """
    user = await operator.store.users.by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


async def set_password(operator: Operator, name: str, password: str) -> PasswordSet:
    """
    Give the account C{name} the password C{password}, creating the account
    when there is none: idempotent, so that a provisioning script can run
    it again and again.

    An account that has this password already is left alone (its sessions
    live on).  Otherwise its password is replaced and every session of it
    revoked, as C{CHANGE_PASSWORD} does, logging its connections out on
    every node.  The name and password are taken as given: the caller
    checks them against whichever rules it applies.
    """
    users = operator.store.users
    for _ in range(2):
        credentials = await users.credentials(name)
        if credentials is None:
            password_hash = await operator.passwords.hash(password)
            try:
                user = await users.create(name, password_hash)
            except Conflict:
                continue  # created meanwhile by someone else: change it instead
            await operator.store.audit.record(operator.name, "create_user", user.username)
            return PasswordSet(user, CREATED)
        user = credentials.user
        if await operator.passwords.verify(credentials.password_hash, password):
            return PasswordSet(user, UNCHANGED)
        password_hash = await operator.passwords.hash(password)
        await users.change_password(user, password_hash, None, operator.outbox(), by=operator.name)
        return PasswordSet(user, CHANGED)
    raise Conflict(f"the account {name} was created and removed meanwhile; try again")


async def set_role(operator: Operator, name: str, role: str) -> tuple[User, str]:
    """
    Give the account C{name} the server role C{role} (C{admin} or
    C{user}); its connections see the change at once, on every node.

    @return: the account as it is now, and the role it had before.
    @raise NotFound: no such account.
    """
    before = await existing_user(operator, name)
    updated = await operator.store.users.set_server_role(before.username, role, operator.outbox())
    if updated is None:
        raise NotFound(f"no user named {name}")
    await operator.store.audit.record(operator.name, "set_user_role", updated.username, detail=role)
    return updated, before.server_role


async def suspend(operator: Operator, name: str, reason: str) -> User:
    """
    Suspend the account C{name}: its sessions are revoked and its
    connections closed on every node.  Suspending it again only records
    the new reason.

    @return: the account as it was before.
    @raise NotFound: no such account.
    """
    target = await existing_user(operator, name)
    await operator.store.users.suspend(target, reason, operator.name, operator.outbox())
    return target


async def unsuspend(operator: Operator, name: str) -> User:
    """
    Lift the account C{name}'s suspension (nothing happens to an account
    that is not suspended, but the audit entry).

    @return: the account as it was before.
    @raise NotFound: no such account.
    """
    target = await existing_user(operator, name)
    await operator.store.users.reinstate(target, operator.name)
    return target


async def accounts(operator: Operator) -> list[User]:
    """Every account, by name."""
    return await operator.store.users.everyone()


async def blocks(operator: Operator) -> list[AddressBlock]:
    """The addresses blocked now, soonest to end first."""
    return await operator.store.blocks.active()


async def unblock(operator: Operator, address: str) -> None:
    """
    Lift an address's block; every node lets it in again within a few
    seconds (they read the blocks in force every 2 seconds).

    @raise NotFound: the address is not blocked.
    """
    if not await operator.store.blocks.lift(address, operator.name):
        raise NotFound(f"{address} is not blocked")
