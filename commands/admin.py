# -*- test-case-name: tests.test_admin_e2e -*-
"""
The line protocol's server administration commands, for holders of the
server role C{admin}: SERVER_STATS, AUDIT_LOG, SET_USER_ROLE,
SUSPEND_USER, UNSUSPEND_USER, and the address blocks of intrusion
detection: LIST_BLOCKS, BLOCK_ADDRESS, UNBLOCK_ADDRESS.

Each parses its arguments, calls its operation in L{lairchat.domain.admin}
and renders the answer (C{STAT} and C{AUDIT} lines).
"""

from lairchat import validation
from lairchat.command import Command, Reply
from lairchat.domain import admin
from lairchat.wire import render


class ServerStats(Command):
    """Counts about the whole server."""

    name = "SERVER_STATS"
    syntax = "SERVER_STATS"
    summary = "Server-wide counts (server admins)"

    async def run(self, context, parsed):
        """One STAT line per count."""
        stats = await admin.server_stats(context.actor)
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
        entries = await admin.audit_log(context.actor, limit)
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
        """Change the role."""
        name, role = parsed
        updated = await admin.set_user_role(context.actor, name, role)
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
        """Suspend the account."""
        name, reason = parsed
        target = await admin.suspend(context.actor, name, reason)
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
        """Lift the suspension."""
        target = await admin.unsuspend(context.actor, name)
        return Reply.ok(target.username)


class ListBlocks(Command):
    """The addresses blocked now."""

    name = "LIST_BLOCKS"
    syntax = "LIST_BLOCKS"
    summary = "Addresses blocked now, soonest to end first (server admins)"

    async def run(self, context, parsed):
        """One BLOCKED line per address; the address last (IPv6 addresses hold colons)."""
        found = await admin.blocks(context.actor)
        lines = [render("BLOCKED", b.until_ms, b.blocked_by, b.strikes + 1, b.reason, b.address) for b in found]
        return Reply.ok(len(lines), lines=lines)


class BlockAddress(Command):
    """Block an address on every node."""

    name = "BLOCK_ADDRESS"
    syntax = "BLOCK_ADDRESS:<seconds>:<address>"
    summary = "Block an address; its connections close and new ones are refused (server admins)"
    arity = (2, 2)

    def parse(self, arguments):
        """A duration (1 s to 30 days) and an IPv4 or IPv6 address."""
        return validation.count(arguments[0], "seconds", 1, 30 * 24 * 3600), validation.ip_address(arguments[1])

    async def run(self, context, parsed):
        """Block it."""
        seconds, address = parsed
        block = await admin.block_address(context.actor, address, seconds)
        return Reply.ok(block.until_ms, block.address)


class UnblockAddress(Command):
    """Lift an address's block."""

    name = "UNBLOCK_ADDRESS"
    syntax = "UNBLOCK_ADDRESS:<address>"
    summary = "Lift an address's block (server admins)"
    arity = (1, 1)

    def parse(self, arguments):
        """An IPv4 or IPv6 address."""
        return validation.ip_address(arguments[0])

    async def run(self, context, address):
        """Lift it."""
        await admin.unblock_address(context.actor, address)
        return Reply.ok(address)


server_stats = ServerStats()
audit_log = AuditLog()
set_user_role = SetUserRole()
suspend_user = SuspendUser()
unsuspend_user = UnsuspendUser()
list_blocks = ListBlocks()
block_address = BlockAddress()
unblock_address = UnblockAddress()
