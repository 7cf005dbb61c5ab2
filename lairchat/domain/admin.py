# -*- test-case-name: tests.test_accounts -*-
"""
Server administration, for holders of the server role C{admin}: the
server's counts, the audit log, server roles, suspension.
"""

from typing import Any

from lairchat import __version__
from lairchat.errors import InvalidInput, NotFound, PermissionDenied
from lairchat.models import AddressBlock, AuditEntry, User


def require_server_admin(actor: Any) -> None:
    """
    Refuse anyone but a server admin.

    @raise PermissionDenied: the actor is not one.
    """
    if not actor.user.is_admin:
        raise PermissionDenied("only server admins can do that")


async def existing_user(actor: Any, name: str) -> User:
    """
    The named account.

    @raise NotFound: there is none.
    """
    user = await actor.store.users.by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


async def server_stats(actor: Any) -> dict[str, Any]:
    """
    Counts about the whole server, by name, in a fixed order: the
    database's counts, who is online on any node, and what this node sees
    (its connections, the event lines it delivered, its uptime in
    seconds) and its version.

    @raise PermissionDenied: the actor is no server admin.
    """
    require_server_admin(actor)
    server = actor.server
    stats = dict(await actor.store.stats.counts())
    stats.update(
        online_users=len(await actor.store.events.online_user_ids()),
        connections=server.hub.connection_count(),
        deliveries=server.hub.delivered,
        uptime_s=int(server.clock.seconds() - server.started),
        version=__version__,
    )
    return stats


async def audit_log(actor: Any, limit: int) -> list[AuditEntry]:
    """
    The newest C{limit} entries of the audit log, newest first.

    @raise PermissionDenied: the actor is no server admin.
    """
    require_server_admin(actor)
    return await actor.store.audit.latest(limit)


async def set_user_role(actor: Any, name: str, role: str) -> User:
    """
    Give an account the server role C{role} (C{admin} or C{user}); its
    connections see the change at once.  No admin can take their own admin
    role away.

    @return: the account as it is now.
    @raise PermissionDenied: the actor is no server admin.
    @raise NotFound: no such account.
    @raise InvalidInput: the actor's own demotion.
    """
    require_server_admin(actor)
    target = await existing_user(actor, name)
    if target.id == actor.user.id and role != "admin":
        raise InvalidInput("you cannot take your own admin role away")
    outbox = actor.outbox()
    updated = await actor.store.users.set_server_role(target.username, role, outbox)
    if updated is None:
        raise NotFound(f"no user named {name}")
    await actor.deliver(outbox)
    await actor.store.audit.record(actor.user.username, "set_user_role", updated.username, detail=role)
    return updated


async def suspend(actor: Any, name: str, reason: str) -> User:
    """
    Suspend an account: its sessions are revoked and its connections
    closed, with the flag.  No admin can suspend themselves.

    @return: the account suspended.
    @raise PermissionDenied: the actor is no server admin.
    @raise NotFound: no such account.
    @raise InvalidInput: the actor's own suspension.
    """
    require_server_admin(actor)
    target = await existing_user(actor, name)
    if target.id == actor.user.id:
        raise InvalidInput("you cannot suspend yourself")
    outbox = actor.outbox()
    await actor.store.users.suspend(target, reason, actor.user.username, outbox)
    await actor.deliver(outbox)
    return target


async def unsuspend(actor: Any, name: str) -> User:
    """
    Lift an account's suspension.

    @return: the account reinstated.
    @raise PermissionDenied: the actor is no server admin.
    @raise NotFound: no such account.
    """
    require_server_admin(actor)
    target = await existing_user(actor, name)
    await actor.store.users.reinstate(target, actor.user.username)
    return target


async def blocks(actor: Any) -> list[AddressBlock]:
    """
    The addresses blocked now, by intrusion detection or an admin, soonest
    to end first.

    @raise PermissionDenied: the actor is no server admin.
    """
    require_server_admin(actor)
    return await actor.store.blocks.active()


async def block_address(actor: Any, address: str, seconds: int) -> AddressBlock:
    """
    Block an address for C{seconds} on every node: its connections are
    closed, new ones refused.  Audited.

    @raise PermissionDenied: the actor is no server admin.
    @raise InvalidInput: the address is the actor's own, or in an exempt
        network (never blocked).
    """
    require_server_admin(actor)
    intrusion = actor.server.intrusion
    if not intrusion.watched(address):
        raise InvalidInput("that address is in an exempt network and is never blocked")
    if address == actor.address:
        raise InvalidInput("you cannot block the address you are connected from")
    return await intrusion.block(address, seconds, f"blocked by {actor.user.username}", actor.user.username)


async def unblock_address(actor: Any, address: str) -> None:
    """
    Lift an address's block on every node (within a few seconds on the
    others).  Audited.

    @raise PermissionDenied: the actor is no server admin.
    @raise NotFound: the address is not blocked.
    """
    require_server_admin(actor)
    if not await actor.server.intrusion.lift(address, actor.user.username):
        raise NotFound(f"{address} is not blocked")
