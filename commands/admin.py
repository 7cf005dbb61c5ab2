"""
Server administration, for holders of the server role C{admin}:
SERVER_STATS, AUDIT_LOG, SET_USER_ROLE, SUSPEND_USER, UNSUSPEND_USER.
"""

from lairchat import __version__, validation
from lairchat.command import Command, Reply
from lairchat.errors import InvalidInput, NotFound, PermissionDenied
from lairchat.events import AccountSuspended, ServerRoleChanged
from lairchat.wire import render


def require_server_admin(context) -> None:
    """
    Refuse anyone but a server admin.

    @raise PermissionDenied: the caller is not one.
    """
    if not context.user.is_admin:
        raise PermissionDenied("only server admins can do that")


async def existing_user(context, name: str):
    """
    The named account.

    @raise NotFound: there is none.
    """
    user = await context.store.users.by_name(name)
    if user is None:
        raise NotFound(f"no user named {name}")
    return user


class ServerStats(Command):
    """Counts about the whole server."""

    name = "SERVER_STATS"
    syntax = "SERVER_STATS"
    summary = "Server-wide counts (server admins)"

    async def run(self, context, parsed):
        """Database counts, who is online on any node, and what this node sees."""
        require_server_admin(context)
        stats = dict(await context.store.stats.counts())
        hub = context.hub
        stats.update(
            online_users=len(await context.store.events.online_user_ids()),
            connections=hub.connection_count(),
            deliveries=hub.delivered,
            uptime_s=int(context.server.clock.seconds() - context.server.started),
            version=__version__,
        )
        return Reply.ok(lines=[render("STAT", key, value) for key, value in stats.items()])


class AuditLog(Command):
    """The newest entries of the audit log."""

    name = "AUDIT_LOG"
    syntax = "AUDIT_LOG[:<limit>]"
    summary = "The newest audit-log entries, newest first (default 50, at most 500; server admins)"
    arity = (0, 1)

    def parse(self, arguments):
        """An optional limit."""
        return validation.count(arguments[0], "limit", 1, 500) if arguments else 50

    async def run(self, context, limit):
        """AUDIT lines, newest first."""
        require_server_admin(context)
        entries = await context.store.audit.latest(limit)
        lines = [render("AUDIT", e.ts_ms, e.actor, e.action, e.target, e.outcome, e.detail) for e in entries]
        return Reply.ok(len(lines), lines=lines)


class SetUserRole(Command):
    """Give an account the server role admin or user."""

    name = "SET_USER_ROLE"
    syntax = "SET_USER_ROLE:<user>:<admin|user>"
    summary = "Set a user's server role (server admins)"
    arity = (2, 2)

    def parse(self, arguments):
        """A username and a server role."""
        return validation.username(arguments[0]), validation.choice(arguments[1], validation.SERVER_ROLES, "server role")

    async def run(self, context, parsed):
        """Change the role; the user's connections see it at once."""
        name, role = parsed
        require_server_admin(context)
        target = await existing_user(context, name)
        if target.id == context.user.id and role != "admin":
            raise InvalidInput("you cannot take your own admin role away")
        updated = await context.store.users.set_server_role(target.username, role)
        await context.publish(ServerRoleChanged(updated.id, role))
        await context.store.audit.record(context.user.username, "set_user_role", updated.username, detail=role)
        return Reply.ok(updated.username, role)


class SuspendUser(Command):
    """Suspend an account: its sessions end and its connections close."""

    name = "SUSPEND_USER"
    syntax = "SUSPEND_USER:<user>[:<reason>]"
    summary = "Suspend a user; their sessions are revoked and connections closed (server admins)"
    arity = (1, 2)

    def parse(self, arguments):
        """A username and an optional reason."""
        reason = validation.optional_text(arguments[1] if len(arguments) > 1 else None, "reason")
        return validation.username(arguments[0]), reason

    async def run(self, context, parsed):
        """Flag, revoke, disconnect."""
        name, reason = parsed
        require_server_admin(context)
        target = await existing_user(context, name)
        if target.id == context.user.id:
            raise InvalidInput("you cannot suspend yourself")
        await context.store.users.set_suspended(target.id, True, reason)
        await context.store.sessions.revoke_all(target.id)
        await context.publish(AccountSuspended(target.id, reason))
        await context.store.audit.record(context.user.username, "suspend_user", target.username, detail=reason)
        return Reply.ok(target.username)


class UnsuspendUser(Command):
    """Reinstate a suspended account."""

    name = "UNSUSPEND_USER"
    syntax = "UNSUSPEND_USER:<user>"
    summary = "Lift a suspension (server admins)"
    arity = (1, 1)

    def parse(self, arguments):
        """A username."""
        return validation.username(arguments[0])

    async def run(self, context, name):
        """Clear the flag."""
        require_server_admin(context)
        target = await existing_user(context, name)
        await context.store.users.set_suspended(target.id, False, "")
        await context.store.audit.record(context.user.username, "unsuspend_user", target.username)
        return Reply.ok(target.username)


server_stats = ServerStats()
audit_log = AuditLog()
set_user_role = SetUserRole()
suspend_user = SuspendUser()
unsuspend_user = UnsuspendUser()
