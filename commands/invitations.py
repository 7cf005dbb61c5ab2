# -*- test-case-name: tests.test_invitations -*-
"""
Invitations on the line protocol: INVITE_USER, INVITE_AS, INVITE_MULTIPLE,
ACCEPT_INVITATION, DECLINE_INVITATION, ACCEPT_ALL_INVITATIONS,
DECLINE_ALL_INVITATIONS, the three lists, VIEW_INVITATION,
REVOKE_INVITATION, INVITATION_STATS and SET_INVITE_TEMPLATE; and the
extension that delivers pending invitations at login and runs the expiry
sweep.

Each command parses its arguments, calls its operation in
L{lairchat.domain.invitations} (where the behaviour, the checks and the
events are), and renders what it returns; accepting also makes the room
the connection's current room.
"""

from attrs import evolve

from lairchat import validation
from lairchat import invitation_lifecycle as lifecycle
from lairchat.command import Command, Extension, Reply
from lairchat.domain import invitations as domain
from lairchat.domain.invitations import MESSAGE_MAX, MULTIPLE_MAX, InvitationRef
from lairchat.errors import InvalidFormat, InvalidInput
from lairchat.models import Invitation
from lairchat.sweeper import InvitationSweeper
from lairchat.wire import render

STATUS_FILTERS = (*validation.INVITATION_STATUSES, "all")
"""What a list's status filter may be."""


def invitation_line(invitation: Invitation) -> str:
    """The C{INVITATION:} data line of lists and VIEW_INVITATION."""
    i = invitation
    return render("INVITATION", i.id, i.sender, i.recipient, i.room, i.status, i.role,
                  i.created_ms, i.expires_ms, i.message)


def parse_ref(value: str) -> InvitationRef:
    """
    An invitation reference: C{LATEST} (any case), an id, or a room name.

    @raise InvalidFormat: none of these.
    """
    if value.lower() == "latest":
        return domain.LATEST
    if value.isascii() and value.isdigit():
        return InvitationRef(id=validation.identifier(value, "invitation id"))
    if value[:1].isalpha():
        return InvitationRef(room=validation.room_name(value))
    raise InvalidFormat("an invitation is named by its id, its room's name, or LATEST")


def parse_status(arguments: list[str], index: int) -> str | None:
    """The optional status filter at C{index}: default pending; C{all} is L{None}."""
    if len(arguments) <= index or arguments[index] == "":
        return lifecycle.PENDING
    status = validation.choice(arguments[index], STATUS_FILTERS, "status")
    return None if status == "all" else status


def optional_message(arguments: list[str], index: int) -> str:
    """The optional invitation message at C{index}."""
    return validation.optional_text(arguments[index] if len(arguments) > index else None,
                                    "invitation message", MESSAGE_MAX)


def answer_lines(outcomes: list[domain.AnswerOutcome]) -> list[str]:
    """The C{ACCEPT_RESULT} line of each invitation answered in bulk."""
    lines = []
    for outcome in outcomes:
        i, error = outcome.invitation, outcome.error
        if error is None:
            lines.append(render("ACCEPT_RESULT", i.id, i.room, "OK"))
        else:
            lines.append(render("ACCEPT_RESULT", i.id, i.room, "ERROR", error.code, error.message))
    return lines


def answered(outcomes: list[domain.AnswerOutcome]) -> int:
    """How many of the invitations answered in bulk were answered."""
    return sum(1 for outcome in outcomes if outcome.error is None)


# Inviting


class InviteUser(Command):
    """Invite a user to a room as a member."""

    name = "INVITE_USER"
    syntax = "INVITE_USER:<user>:<room>[:<message>]"
    summary = "Invite a user to a room (you need a role above guest there)"
    arity = (2, 3)
    rate_class = "invite"

    def parse(self, arguments):
        """A username, a room name, an optional message."""
        message = optional_message(arguments, 2)
        return validation.username(arguments[0]), validation.room_name(arguments[1]), "member", message

    async def run(self, context, parsed):
        """The invitation's id, recipient, room and expiry."""
        username, room_name, role, message = parsed
        invitation = await domain.invite(context.actor, room_name, username, role, message)
        return Reply.ok(invitation.id, invitation.recipient, invitation.room, invitation.expires_ms)


class InviteAs(InviteUser):
    """Invite a user to a room with a given role."""

    name = "INVITE_AS"
    syntax = "INVITE_AS:<user>:<room>:<role>[:<message>]"
    summary = "Invite a user with a role granted on acceptance (never above yours; moderator/admin need admin+)"
    arity = (3, 4)

    def parse(self, arguments):
        """A username, a room name, a grantable role, an optional message."""
        message = optional_message(arguments, 3)
        return (validation.username(arguments[0]), validation.room_name(arguments[1]),
                domain.grantable_role(arguments[2]), message)


class InviteMultiple(Command):
    """Invite several users to a room at once, one result per user."""

    name = "INVITE_MULTIPLE"
    syntax = "INVITE_MULTIPLE:<room>:<user>,<user>,...[:<message>]"
    summary = f"Invite up to {MULTIPLE_MAX} users to a room; one INVITE_RESULT line each"
    arity = (2, 3)
    rate_class = "invite"

    def parse(self, arguments):
        """A room name, a comma-separated list of names (checked one by one when invited), a message."""
        room_name = validation.room_name(arguments[0])
        names = [n.strip() for n in arguments[1].split(",")]
        if not names or any(not n for n in names):
            raise InvalidFormat("name the users separated by commas, with no empty names")
        if len(names) > MULTIPLE_MAX:
            raise InvalidInput(f"at most {MULTIPLE_MAX} users at once")
        return room_name, names, optional_message(arguments, 2)

    async def run(self, context, parsed):
        """One INVITE_RESULT line per name, in order; how many were invited and refused."""
        room_name, names, message = parsed
        outcomes = await domain.invite_many(context.actor, room_name, names, message)
        lines, sent = [], 0
        for outcome in outcomes:
            if outcome.error is None:
                sent += 1
                lines.append(render("INVITE_RESULT", outcome.invitation.recipient, "OK", outcome.invitation.id))
            else:
                lines.append(render("INVITE_RESULT", outcome.name, "ERROR", outcome.error.code,
                                    outcome.error.message))
        return Reply.ok(sent, len(outcomes) - sent, lines=lines)


# Answering


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
        """Accept; the room becomes the connection's current room."""
        invitation = await domain.accept(context.actor, ref)
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
        """The invitation's id and room."""
        ref, reason = parsed
        invitation = await domain.decline(context.actor, ref, reason)
        return Reply.ok(invitation.id, invitation.room)


class AcceptAllInvitations(Command):
    """Accept every pending invitation, one result per invitation."""

    name = "ACCEPT_ALL_INVITATIONS"
    aliases = ("ACCEPT_ALL",)
    syntax = "ACCEPT_ALL_INVITATIONS"
    summary = "Accept every pending invitation, oldest first; one ACCEPT_RESULT line each"

    async def run(self, context, parsed):
        """
        One ACCEPT_RESULT line each; with no current room, the first room
        joined becomes current.
        """
        outcomes = await domain.accept_all(context.actor)
        joined = [o.invitation.room for o in outcomes if o.error is None]
        if context.connection.current_room is None and joined:
            context.connection.current_room = joined[0]
        done = answered(outcomes)
        return Reply.ok(done, len(outcomes) - done, lines=answer_lines(outcomes))


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
        """One ACCEPT_RESULT line each."""
        outcomes = await domain.decline_all(context.actor, reason)
        done = answered(outcomes)
        return Reply.ok(done, len(outcomes) - done, lines=answer_lines(outcomes))


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
        """One INVITATION line each, newest first."""
        found = await domain.received(context.actor, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


class ListSentInvitations(ListInvitations):
    """The invitations one sent."""

    name = "LIST_SENT_INVITATIONS"
    syntax = "LIST_SENT_INVITATIONS[:<status|all>]"
    summary = "Invitations you sent (default pending), newest first, at most 100"

    async def run(self, context, status):
        """One INVITATION line each, newest first."""
        found = await domain.sent(context.actor, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


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
        """One INVITATION line each, newest first."""
        room_name, status = parsed
        found = await domain.for_room(context.actor, room_name, status)
        return Reply.ok(len(found), lines=[invitation_line(i) for i in found])


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
        trail = await domain.view(context.actor, invitation_id)
        lines = [invitation_line(trail.invitation)]
        lines += [render("INVITATION_EVENT", e.invitation_id, e.ts_ms, e.status, e.actor, e.note)
                  for e in trail.events]
        return Reply.ok(trail.invitation.id, lines=lines)


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
        """The invitation's id."""
        revoked = await domain.revoke(context.actor, invitation_id)
        return Reply.ok(revoked.id)


STAT_FIELDS = ("sent", "received", "pending", "accepted", "declined", "expired", "revoked")
"""The counts of C{INVITATION_STATS}, in the documented order (the rate and the median follow)."""


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
        if scope is None:
            stats, label = await domain.own_stats(context.actor), context.user.username
        elif scope == "*":
            stats, label = await domain.server_stats(context.actor), "*"
        else:
            found = await domain.room_stats(context.actor, scope)
            stats, label = found.stats, found.room.name
        values = [(key, getattr(stats, key)) for key in STAT_FIELDS]
        values += [("acceptance_rate", f"{stats.acceptance_rate:.3f}"),
                   ("median_response_ms", stats.median_response_ms)]
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
        """The room's name."""
        room_name, template = parsed
        room = await domain.set_template(context.actor, room_name, template)
        return Reply.ok(room.name)


class InvitationExtension(Extension):
    """Pending invitations at login, and the expiry sweep."""

    def services(self, server):
        """The sweeper that expires, reminds and purges."""
        return [InvitationSweeper(server)]

    async def login_events(self, context, user):
        """Every pending invitation as INVITATION_RECEIVED, oldest first."""
        return await domain.pending_at_login(evolve(context.actor, user_or_none=user))


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
