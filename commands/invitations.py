# -*- test-case-name: tests.test_invitations -*-
"""
Invitations: INVITE_USER, INVITE_AS, INVITE_MULTIPLE, ACCEPT_INVITATION,
DECLINE_INVITATION, ACCEPT_ALL_INVITATIONS, DECLINE_ALL_INVITATIONS, the
three lists, VIEW_INVITATION, REVOKE_INVITATION, INVITATION_STATS and
SET_INVITE_TEMPLATE; and the extension that delivers pending invitations at
login and runs the expiry sweep.

The lifecycle rules (which status changes exist, who may make them) are
L{lairchat.invitation_lifecycle}; room permissions are
L{lairchat.permissions}.  Events go out only after the transaction that
caused them committed.
"""

from datetime import datetime, timezone

from lairchat import access, events, permissions, validation
from lairchat import invitation_lifecycle as lifecycle
from lairchat.command import Command, Extension, Reply
from lairchat.errors import ChatError, InvalidFormat, InvalidInput, NotFound, PermissionDenied
from lairchat.models import Invitation
from lairchat.sweeper import InvitationSweeper
from lairchat.wire import render

MESSAGE_MAX = 500
"""The longest invitation message, and the longest template."""

MULTIPLE_MAX = 20
"""The most users one INVITE_MULTIPLE may name."""

GRANTABLE_ROLES = ("admin", "moderator", "member", "guest")
"""The roles an invitation may grant (ownership is never given by invitation)."""

PRIVILEGED_ROLES = ("admin", "moderator")
"""The roles only an admin+ may invite as."""

STATUS_FILTERS = (*validation.INVITATION_STATUSES, "all")
"""What a list's status filter may be."""


def iso_moment(ms: int) -> str:
    """An epoch-ms instant as an ISO 8601 UTC time, for humans."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def fill_template(template: str, sender: str, recipient: str, room: str, expires_ms: int) -> str:
    """
    A room's invitation template with its placeholders filled: C{{sender}},
    C{{recipient}}, C{{room}} and C{{expires}} (an ISO 8601 UTC time).  Any
    other text, braces included, is kept as written.
    """
    values = {"sender": sender, "recipient": recipient, "room": room, "expires": iso_moment(expires_ms)}
    out, rest = [], template
    while rest:
        start = rest.find("{")
        if start < 0:
            out.append(rest)
            break
        out.append(rest[:start])
        end = rest.find("}", start)
        key = rest[start + 1 : end] if end > 0 else None
        if key in values:
            out.append(values[key])
            rest = rest[end + 1 :]
        else:
            out.append("{")
            rest = rest[start + 1 :]
    return "".join(out)


def invitation_line(invitation: Invitation) -> str:
    """The C{INVITATION:} data line of lists and VIEW_INVITATION."""
    i = invitation
    return render("INVITATION", i.id, i.sender, i.recipient, i.room, i.status, i.role,
                  i.created_ms, i.expires_ms, i.message)


def received_event(invitation: Invitation) -> events.InvitationReceived:
    """The C{INVITATION_RECEIVED} event of an invitation."""
    i = invitation
    return events.InvitationReceived(i.id, i.recipient_id, i.sender, i.room, i.role, i.expires_ms, i.message)


def parse_ref(value: str) -> tuple[str, object]:
    """
    An invitation reference: C{LATEST} (any case), an id, or a room name.

    @return: C{("latest", None)}, C{("id", <int>)} or C{("room", <name>)}.
    """
    if value.lower() == "latest":
        return "latest", None
    if value.isascii() and value.isdigit():
        return "id", validation.identifier(value, "invitation id")
    if value[:1].isalpha():
        return "room", validation.room_name(value)
    raise InvalidFormat("an invitation is named by its id, its room's name, or LATEST")


def parse_status(arguments: list[str], index: int) -> str | None:
    """The optional status filter at C{index}: default pending; C{all} is L{None}."""
    if len(arguments) <= index or arguments[index] == "":
        return lifecycle.PENDING
    status = validation.choice(arguments[index], STATUS_FILTERS, "status")
    return None if status == "all" else status


# Inviting


async def invite_one(context, room, username: str, role: str, message: str) -> Invitation:
    """
    Invite one user to a room the caller may invite to (checked before) and
    tell them; the rules of who may be invited are checked here and in the
    store's transaction.

    @raise ChatError: the user cannot be invited.
    """
    user = context.user
    recipient = await context.store.users.by_name(username)
    if recipient is None:
        raise NotFound(f"no user named {username}")
    now_ms = context.now_ms()
    expires_ms = now_ms + context.config.invite_ttl * 1000
    if not message and room.invite_template:
        # names and times can fill a template past the limit of a message
        filled = fill_template(room.invite_template, user.username, recipient.username, room.name, expires_ms)
        message = filled[:MESSAGE_MAX]
    invitation = await context.store.invitations.create(
        user, recipient, room.id, role, message, now_ms, expires_ms
    )
    await context.publish(received_event(invitation))
    return invitation


async def inviting_room(context, room_name: str, role: str):
    """
    The room and the caller's membership, checked for inviting as C{role}:
    a member above guest; a privileged role only for admin+, and never a
    role above the caller's own.

    @raise ChatError: the caller may not invite to it as C{role}.
    """
    room, member = await access.member_room(context, room_name, "invite")
    if role in PRIVILEGED_ROLES:
        permissions.require(member.role, "invite_privileged")
    if not permissions.can_grant(member.role, role):
        raise PermissionDenied(f"you cannot invite as {role}, above your own role")
    return room, member


def grantable_role(value: str) -> str:
    """A role an invitation may grant."""
    role = validation.role(value)
    if role not in GRANTABLE_ROLES:
        raise InvalidInput("an invitation cannot grant ownership; use the room's ownership transfer")
    return role


class InviteUser(Command):
    """Invite a user to a room as a member."""

    name = "INVITE_USER"
    syntax = "INVITE_USER:<user>:<room>[:<message>]"
    summary = "Invite a user to a room (you need a role above guest there)"
    arity = (2, 3)
    rate_class = "invite"

    def parse(self, arguments):
        """A username, a room name, an optional message."""
        message = validation.optional_text(arguments[2] if len(arguments) > 2 else None,
                                           "invitation message", MESSAGE_MAX)
        return validation.username(arguments[0]), validation.room_name(arguments[1]), "member", message

    async def run(self, context, parsed):
        """Check, create, tell the recipient."""
        username, room_name, role, message = parsed
        room, _ = await inviting_room(context, room_name, role)
        invitation = await invite_one(context, room, username, role, message)
        return Reply.ok(invitation.id, invitation.recipient, invitation.room, invitation.expires_ms)


class InviteAs(InviteUser):
    """Invite a user to a room with a given role."""

    name = "INVITE_AS"
    syntax = "INVITE_AS:<user>:<room>:<role>[:<message>]"
    summary = "Invite a user with a role granted on acceptance (never above yours; moderator/admin need admin+)"
    arity = (3, 4)

    def parse(self, arguments):
        """A username, a room name, a grantable role, an optional message."""
        message = validation.optional_text(arguments[3] if len(arguments) > 3 else None,
                                           "invitation message", MESSAGE_MAX)
        return (validation.username(arguments[0]), validation.room_name(arguments[1]),
                grantable_role(arguments[2]), message)


class InviteMultiple(Command):
    """Invite several users to a room at once, one result per user."""

    name = "INVITE_MULTIPLE"
    syntax = "INVITE_MULTIPLE:<room>:<user>,<user>,...[:<message>]"
    summary = f"Invite up to {MULTIPLE_MAX} users to a room; one INVITE_RESULT line each"
    arity = (2, 3)
    rate_class = "invite"

    def parse(self, arguments):
        """A room name, a comma-separated list of names (checked one by one), a message."""
        room_name = validation.room_name(arguments[0])
        names = [n.strip() for n in arguments[1].split(",")]
        if not names or any(not n for n in names):
            raise InvalidFormat("name the users separated by commas, with no empty names")
        if len(names) > MULTIPLE_MAX:
            raise InvalidInput(f"at most {MULTIPLE_MAX} users at once")
        message = validation.optional_text(arguments[2] if len(arguments) > 2 else None,
                                           "invitation message", MESSAGE_MAX)
        return room_name, names, message

    async def run(self, context, parsed):
        """Check the caller once, then each user in a transaction of its own."""
        room_name, names, message = parsed
        room, _ = await inviting_room(context, room_name, "member")
        lines, sent = [], 0
        for name in names:
            try:
                invitation = await invite_one(context, room, validation.username(name), "member", message)
            except ChatError as error:
                lines.append(render("INVITE_RESULT", name, "ERROR", error.code, error.message))
            else:
                sent += 1
                lines.append(render("INVITE_RESULT", invitation.recipient, "OK", invitation.id))
        return Reply.ok(sent, len(names) - sent, lines=lines)


# Answering


async def resolve_received(context, ref: tuple[str, object]) -> int:
    """
    The id of the caller's invitation named by C{ref}.

    @raise NotFound: they have no such invitation (someone else's is not
        revealed: it reads the same as one that does not exist).
    """
    kind, value = ref
    store, user = context.store.invitations, context.user
    if kind == "id":
        return value
    if kind == "latest":
        invitation = await store.latest_pending(user.id)
        if invitation is None:
            raise NotFound("you have no pending invitations")
        return invitation.id
    invitation = await store.latest_to_room(user.id, value)
    if invitation is None:
        raise NotFound(f"you have no invitation to {value}")
    return invitation.id


async def accept_one(context, invitation_id: int) -> Invitation:
    """
    Accept one of the caller's invitations and tell the sender and the room.

    @raise ChatError: it cannot be accepted; nothing changed.
    """
    user = context.user
    invitation, joined = await context.store.invitations.accept(invitation_id, user, context.now_ms())
    changes = [events.InvitationAccepted(invitation.id, invitation.sender_id, user.username, invitation.room)]
    if joined:
        changes.append(events.UserJoined(events.RoomRef(invitation.room_id, invitation.room), user.id, user.username))
    await context.publish(*changes)
    return invitation


async def decline_one(context, invitation_id: int, reason: str) -> Invitation:
    """
    Decline one of the caller's invitations and tell the sender.

    @raise ChatError: it cannot be declined; nothing changed.
    """
    user = context.user
    invitation = await context.store.invitations.decline(invitation_id, user, reason, context.now_ms())
    await context.publish(events.InvitationDeclined(invitation.id, invitation.sender_id, user.username,
                                                    invitation.room))
    return invitation


class AcceptInvitation(Command):
    """Accept an invitation: join its room with the invited role."""

    name = "ACCEPT_INVITATION"
    syntax = "ACCEPT_INVITATION:<id|room|LATEST>"
    summary = "Accept an invitation; you join the room, which becomes your current room"
    arity = (1, 1)

    def parse(self, arguments):
        """An invitation reference."""
        return parse_ref(arguments[0])

    async def run(self, context, ref):
        """Resolve, accept, make the room current."""
        invitation = await accept_one(context, await resolve_received(context, ref))
        context.connection.current_room = invitation.room
        return Reply.ok(invitation.id, invitation.room)


class DeclineInvitation(Command):
    """Decline an invitation, with an optional reason the sender can read."""

    name = "DECLINE_INVITATION"
    syntax = "DECLINE_INVITATION:<id|room|LATEST>[:<reason>]"
    summary = "Decline an invitation; the reason is kept in its trail"
    arity = (1, 2)

    def parse(self, arguments):
        """An invitation reference and an optional reason."""
        reason = validation.optional_text(arguments[1] if len(arguments) > 1 else None, "reason")
        return parse_ref(arguments[0]), reason

    async def run(self, context, parsed):
        """Resolve, decline."""
        ref, reason = parsed
        invitation = await decline_one(context, await resolve_received(context, ref), reason)
        return Reply.ok(invitation.id, invitation.room)


class AcceptAllInvitations(Command):
    """Accept every pending invitation, one result per invitation."""

    name = "ACCEPT_ALL_INVITATIONS"
    aliases = ("ACCEPT_ALL",)
    syntax = "ACCEPT_ALL_INVITATIONS"
    summary = "Accept every pending invitation, oldest first; one ACCEPT_RESULT line each"

    async def run(self, context, parsed):
        """Each invitation in a transaction of its own."""
        pending = await context.store.invitations.pending_received(context.user.id, context.now_ms())
        lines, done, first_room = [], 0, None
        for invitation in pending:
            try:
                await accept_one(context, invitation.id)
            except ChatError as error:
                lines.append(render("ACCEPT_RESULT", invitation.id, invitation.room, "ERROR",
                                    error.code, error.message))
            else:
                done += 1
                first_room = first_room or invitation.room
                lines.append(render("ACCEPT_RESULT", invitation.id, invitation.room, "OK"))
        if context.connection.current_room is None and first_room is not None:
            context.connection.current_room = first_room
        return Reply.ok(done, len(pending) - done, lines=lines)


class DeclineAllInvitations(Command):
    """Decline every pending invitation, one result per invitation."""

    name = "DECLINE_ALL_INVITATIONS"
    syntax = "DECLINE_ALL_INVITATIONS[:<reason>]"
    summary = "Decline every pending invitation, oldest first; one ACCEPT_RESULT line each"
    arity = (0, 1)

    def parse(self, arguments):
        """An optional reason, kept in every invitation's trail."""
        return validation.optional_text(arguments[0] if arguments else None, "reason")

    async def run(self, context, reason):
        """Each invitation in a transaction of its own."""
        pending = await context.store.invitations.pending_received(context.user.id, context.now_ms())
        lines, done = [], 0
        for invitation in pending:
            try:
                await decline_one(context, invitation.id, reason)
            except ChatError as error:
                lines.append(render("ACCEPT_RESULT", invitation.id, invitation.room, "ERROR",
                                    error.code, error.message))
            else:
                done += 1
                lines.append(render("ACCEPT_RESULT", invitation.id, invitation.room, "OK"))
        return Reply.ok(done, len(pending) - done, lines=lines)


# Looking


class ListInvitations(Command):
    """The invitations one received."""

    name = "LIST_INVITATIONS"
    syntax = "LIST_INVITATIONS[:<status|all>]"
    summary = "Invitations you received (default pending), newest first, at most 100"
    arity = (0, 1)

    def parse(self, arguments):
        """An optional status filter."""
        return parse_status(arguments, 0)

    async def run(self, context, status):
        """Newest first."""
        found = await context.store.invitations.received(context.user.id, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


class ListSentInvitations(ListInvitations):
    """The invitations one sent."""

    name = "LIST_SENT_INVITATIONS"
    syntax = "LIST_SENT_INVITATIONS[:<status|all>]"
    summary = "Invitations you sent (default pending), newest first, at most 100"

    async def run(self, context, status):
        """Newest first."""
        found = await context.store.invitations.sent(context.user.id, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


async def room_for_invitation_admin(context, room_name: str, action: str):
    """
    A room whose invitations the caller may oversee: an admin+ of it with
    C{action} allowed, or a server admin (read-only looks).

    @raise ChatError: no such room, or the caller may not.
    """
    if context.user.is_admin:
        room, _ = await access.visible_room(context, room_name)
    else:
        room, _ = await access.member_room(context, room_name, action)
    return room


class ListRoomInvitations(Command):
    """A room's invitations, for its admins."""

    name = "LIST_ROOM_INVITATIONS"
    syntax = "LIST_ROOM_INVITATIONS:<room>[:<status|all>]"
    summary = "A room's invitations (default pending), newest first, at most 100 (admin+)"
    arity = (1, 2)

    def parse(self, arguments):
        """A room name and an optional status filter."""
        return validation.room_name(arguments[0]), parse_status(arguments, 1)

    async def run(self, context, parsed):
        """Newest first."""
        room_name, status = parsed
        room = await room_for_invitation_admin(context, room_name, "view_room_invitations")
        found = await context.store.invitations.for_room(room.id, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


async def visible_invitation(context, invitation_id: int) -> tuple[Invitation, lifecycle.Actor]:
    """
    An invitation the caller may see (sender, recipient, admin+ of its room,
    server admin), with who they are to it.

    @raise NotFound: no such invitation, or one they may not see.
    """
    user = context.user
    invitation = await context.store.invitations.get(invitation_id)
    if invitation is None:
        raise NotFound(f"no invitation {invitation_id}")
    member = await context.store.rooms.membership(invitation.room_id, user.id)
    actor = lifecycle.Actor(
        is_recipient=invitation.recipient_id == user.id,
        is_sender=invitation.sender_id == user.id,
        room_role=member.role if member else None,
    )
    if not (actor.can_see or user.is_admin):
        raise NotFound(f"no invitation {invitation_id}")
    return invitation, actor


class ViewInvitation(Command):
    """One invitation and its trail."""

    name = "VIEW_INVITATION"
    syntax = "VIEW_INVITATION:<id>"
    summary = "An invitation and each change of its status (sender, recipient, room admins)"
    arity = (1, 1)

    def parse(self, arguments):
        """An invitation id."""
        return validation.identifier(arguments[0], "invitation id")

    async def run(self, context, invitation_id):
        """The INVITATION line, then INVITATION_EVENT lines oldest first."""
        invitation, _ = await visible_invitation(context, invitation_id)
        events = await context.store.invitations.events(invitation_id)
        lines = [invitation_line(invitation)]
        lines += [render("INVITATION_EVENT", e.invitation_id, e.ts_ms, e.status, e.actor, e.note) for e in events]
        return Reply.ok(invitation.id, lines=lines)


class RevokeInvitation(Command):
    """Withdraw a pending invitation."""

    name = "REVOKE_INVITATION"
    syntax = "REVOKE_INVITATION:<id>"
    summary = "Revoke a pending invitation (its sender, or an admin+ of the room)"
    arity = (1, 1)

    def parse(self, arguments):
        """An invitation id."""
        return validation.identifier(arguments[0], "invitation id")

    async def run(self, context, invitation_id):
        """Check who asks, revoke, tell the recipient."""
        invitation, actor = await visible_invitation(context, invitation_id)
        if not actor.can_see:
            # A server admin sees every invitation but revokes only as the rules allow.
            permissions.require(actor.room_role, "revoke_any_invitation")
        lifecycle.authorize("revoke", actor)
        revoked = await context.store.invitations.revoke(invitation.id, context.user, context.now_ms())
        await context.publish(events.InvitationRevoked(revoked.id, revoked.recipient_id, revoked.room,
                                                       context.user.username))
        return Reply.ok(revoked.id)


class InvitationStats(Command):
    """Invitation statistics: one's own, a room's, or the server's."""

    name = "INVITATION_STATS"
    syntax = "INVITATION_STATS[:<room>|*]"
    summary = "Invitation counts, acceptance rate and median response time, yours, a room's (admin+), or * (server admin)"
    arity = (0, 1)

    def parse(self, arguments):
        """Nothing (one's own), a room name, or C{*}."""
        if not arguments or arguments[0] == "":
            return None
        if arguments[0] == "*":
            return "*"
        return validation.room_name(arguments[0])

    async def run(self, context, scope):
        """STAT lines in the documented order."""
        store, user = context.store.invitations, context.user
        if scope is None:
            stats, label = await store.stats(user_id=user.id), user.username
        elif scope == "*":
            if not user.is_admin:
                raise PermissionDenied("only server admins can see the server's invitation statistics")
            stats, label = await store.stats(), "*"
        else:
            room = await room_for_invitation_admin(context, scope, "room_invitation_stats")
            stats, label = await store.stats(room_id=room.id), room.name
        values = [
            ("sent", stats.sent),
            ("received", stats.received),
            ("pending", stats.pending),
            ("accepted", stats.accepted),
            ("declined", stats.declined),
            ("expired", stats.expired),
            ("revoked", stats.revoked),
            ("acceptance_rate", f"{stats.acceptance_rate:.3f}"),
            ("median_response_ms", stats.median_response_ms),
        ]
        return Reply.ok(label, lines=[render("STAT", k, v) for k, v in values])


class SetInviteTemplate(Command):
    """Set a room's default invitation message."""

    name = "SET_INVITE_TEMPLATE"
    syntax = "SET_INVITE_TEMPLATE:<room>:<template>"
    summary = "Set the room's default invitation message ({sender} {recipient} {room} {expires}); empty clears (admin+)"
    arity = (2, 2)

    def parse(self, arguments):
        """A room name and a template (empty: clear it)."""
        template = validation.optional_text(arguments[1], "template", MESSAGE_MAX)
        return validation.room_name(arguments[0]), template

    async def run(self, context, parsed):
        """Admin+ of the room only."""
        room_name, template = parsed
        room, _ = await access.member_room(context, room_name, "set_invite_template")
        await context.store.invitations.set_template(room.id, template or None, context.user.username, room.name)
        return Reply.ok(room.name)


class InvitationExtension(Extension):
    """Pending invitations at login, and the expiry sweep."""

    def services(self, server):
        """The sweeper that expires, reminds and purges."""
        return [InvitationSweeper(server)]

    async def login_events(self, context, user):
        """Every pending invitation as INVITATION_RECEIVED, oldest first."""
        pending = await context.store.invitations.pending_received(user.id, context.now_ms())
        return [received_event(i) for i in pending]


invite_user = InviteUser()
invite_as = InviteAs()
invite_multiple = InviteMultiple()
accept_invitation = AcceptInvitation()
decline_invitation = DeclineInvitation()
accept_all_invitations = AcceptAllInvitations()
decline_all_invitations = DeclineAllInvitations()
list_invitations = ListInvitations()
list_sent_invitations = ListSentInvitations()
list_room_invitations = ListRoomInvitations()
view_invitation = ViewInvitation()
revoke_invitation = RevokeInvitation()
invitation_stats = InvitationStats()
set_invite_template = SetInviteTemplate()
invitation_extension = InvitationExtension()
