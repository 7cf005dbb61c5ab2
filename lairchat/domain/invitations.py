# -*- test-case-name: tests.test_invitations_domain,tests.test_invitations -*-
"""
Invitations: inviting users to a room (one or several), answering one's
invitations (one, or every pending one), revoking, looking at them (lists,
one with its trail, statistics), a room's invitation template, and what a
user is handed at login.

The lifecycle rules (which status changes exist, who may make them) are
L{lairchat.invitation_lifecycle}; room permissions are
L{lairchat.permissions}.  Every change is made by the store, which records
its events in the change's own transaction (L{lairchat.store.invitations});
each operation here delivers them once that transaction committed.

An operation that acts on several invitations (L{invite_many},
L{accept_all}, L{decline_all}) changes each in a transaction of its own:
one refused does not undo the others, and each one's outcome is returned.
"""

from attrs import frozen

from lairchat import permissions, validation
from lairchat.domain import access
from lairchat import invitation_lifecycle as lifecycle
from lairchat.domain import Actor
from lairchat.errors import ChatError, InvalidInput, NotFound, PermissionDenied
from lairchat.events import InvitationReceived
from lairchat.models import Invitation, InvitationEvent, InvitationStats, Room, iso_moment
from lairchat.store.invitations import received_event

MESSAGE_MAX = 500
"""The longest invitation message, and the longest template."""

MULTIPLE_MAX = 20
"""The most users one may invite at once."""

GRANTABLE_ROLES = ("admin", "moderator", "member", "guest")
"""The roles an invitation may grant (ownership is never given by invitation)."""

PRIVILEGED_ROLES = ("admin", "moderator")
"""The roles only an admin+ may invite as."""


@frozen
class InvitationRef:
    """
    Which of a recipient's invitations: the one with this C{id}; else the
    one to the room named C{room} (the pending one there, else the
    newest); else (neither given) their newest pending one.
    """

    id: int | None = None
    room: str | None = None


LATEST = InvitationRef()
"""The recipient's newest pending invitation."""


@frozen
class InviteOutcome:
    """
    What became of inviting one user of several: the invitation, or the
    error that refused it.

    @ivar name: the name as it was given (it may not even be a valid one).
    """

    name: str
    invitation: Invitation | None = None
    error: ChatError | None = None


@frozen
class AnswerOutcome:
    """
    What became of answering one of several pending invitations: the
    invitation as it was before the answer, and the error that refused the
    answer (L{None}: it was answered).
    """

    invitation: Invitation
    error: ChatError | None = None


@frozen
class InvitationTrail:
    """An invitation and every change of its status, oldest first."""

    invitation: Invitation
    events: tuple[InvitationEvent, ...]


@frozen
class RoomStats:
    """A room's invitation statistics."""

    room: Room
    stats: InvitationStats


# Templates


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


async def set_template(actor: Actor, room_name: str, template: str | None) -> Room:
    """
    Set the room's default invitation message (empty or L{None}: clear
    it), for an admin+ of the room.

    @return: the room.
    @raise ChatError: no such room, or the actor may not.
    """
    room, _ = await access.member_room(actor, room_name, "set_invite_template")
    await actor.store.invitations.set_template(room.id, template or None, actor.user.username, room.name)
    return room


# Inviting


def grantable_role(value: str) -> str:
    """
    A role an invitation may grant.

    @raise InvalidInput: not a role, or ownership.
    """
    role = validation.role(value)
    if role not in GRANTABLE_ROLES:
        raise InvalidInput("an invitation cannot grant ownership; use the room's ownership transfer")
    return role


async def inviting_room(actor: Actor, room_name: str, role: str) -> Room:
    """
    The room, checked for the actor inviting to it as C{role}: a member
    above guest; a privileged role only for admin+, and never a role above
    the actor's own.

    @raise ChatError: the actor may not invite to it as C{role}.
    """
    role = grantable_role(role)
    room, member = await access.member_room(actor, room_name, "invite")
    if role in PRIVILEGED_ROLES:
        permissions.require(member.role, "invite_privileged")
    if not permissions.can_grant(member.role, role):
        raise PermissionDenied(f"you cannot invite as {role}, above your own role")
    return room


async def invite_to(actor: Actor, room: Room, username: str, role: str, message: str) -> Invitation:
    """
    Invite one user to a room the actor may invite to (L{inviting_room},
    checked before), and tell them.  With no message, the room's template
    (when it has one), filled and cut to L{MESSAGE_MAX}, is the message.
    Who may be invited (not a member, not banned, no pending invitation to
    the room) is checked in the store's transaction.

    @raise ChatError: the user cannot be invited; nothing changed.
    """
    user = actor.user
    recipient = await access.known_user(actor, username)
    now_ms = actor.now_ms()
    expires_ms = now_ms + actor.config.invite_ttl * 1000
    if not message and room.invite_template:
        # names and times can fill a template past the limit of a message
        filled = fill_template(room.invite_template, user.username, recipient.username, room.name, expires_ms)
        message = filled[:MESSAGE_MAX]
    outbox = actor.outbox()
    invitation = await actor.store.invitations.create(
        user, recipient, room.id, role, message, now_ms, expires_ms, outbox
    )
    await actor.deliver(outbox)
    return invitation


async def invite(actor: Actor, room_name: str, username: str, role: str = "member", message: str = "") -> Invitation:
    """
    Invite a user to a room as C{role}, and tell them.

    @raise ChatError: the actor may not invite to the room as C{role}, or
        the user cannot be invited; nothing changed.
    """
    room = await inviting_room(actor, room_name, role)
    return await invite_to(actor, room, username, role, message)


async def invite_many(actor: Actor, room_name: str, usernames: list[str], message: str = "") -> list[InviteOutcome]:
    """
    Invite several users to a room as members: the actor is checked once,
    then each user (whose name is checked here) in a transaction of its
    own.

    @return: one outcome per name, in order.
    @raise ChatError: the actor may not invite to the room; nothing changed.
    """
    room = await inviting_room(actor, room_name, "member")
    outcomes = []
    for name in usernames:
        try:
            invitation = await invite_to(actor, room, validation.username(name), "member", message)
        except ChatError as error:
            outcomes.append(InviteOutcome(name, error=error))
        else:
            outcomes.append(InviteOutcome(name, invitation=invitation))
    return outcomes


# Answering


async def resolve_received(actor: Actor, ref: InvitationRef) -> int:
    """
    The id of the actor's invitation named by C{ref}.

    @raise NotFound: they have no such invitation.  An id is not looked up
        here: an invitation that is not theirs is refused by the answer
        itself, exactly as one that does not exist.
    """
    if ref.id is not None:
        return ref.id
    store, user = actor.store.invitations, actor.user
    if ref.room is None:
        invitation = await store.latest_pending(user.id)
        if invitation is None:
            raise NotFound("you have no pending invitations")
        return invitation.id
    invitation = await store.latest_to_room(user.id, ref.room)
    if invitation is None:
        raise NotFound(f"you have no invitation to {ref.room}")
    return invitation.id


async def accept_by_id(actor: Actor, invitation_id: int) -> Invitation:
    """
    Accept one of the actor's invitations: they join its room with the
    invited role (keeping their own if they already are a member); the
    sender and the room are told.

    @raise ChatError: it cannot be accepted; nothing changed.
    """
    outbox = actor.outbox()
    invitation, _ = await actor.store.invitations.accept(invitation_id, actor.user, actor.now_ms(), outbox)
    await actor.deliver(outbox)
    return invitation


async def accept(actor: Actor, ref: InvitationRef) -> Invitation:
    """
    Accept the actor's invitation named by C{ref} (see L{accept_by_id}).

    @raise ChatError: there is none, or it cannot be accepted.
    """
    return await accept_by_id(actor, await resolve_received(actor, ref))


async def decline_by_id(actor: Actor, invitation_id: int, reason: str = "") -> Invitation:
    """
    Decline one of the actor's invitations, keeping the reason in its
    trail; the sender is told.

    @raise ChatError: it cannot be declined; nothing changed.
    """
    outbox = actor.outbox()
    invitation = await actor.store.invitations.decline(invitation_id, actor.user, reason, actor.now_ms(), outbox)
    await actor.deliver(outbox)
    return invitation


async def decline(actor: Actor, ref: InvitationRef, reason: str = "") -> Invitation:
    """
    Decline the actor's invitation named by C{ref} (see L{decline_by_id}).

    @raise ChatError: there is none, or it cannot be declined.
    """
    return await decline_by_id(actor, await resolve_received(actor, ref), reason)


async def accept_all(actor: Actor) -> list[AnswerOutcome]:
    """
    Accept every pending invitation of the actor, oldest first, each in a
    transaction of its own.

    @return: one outcome per invitation.
    """
    pending = await actor.store.invitations.pending_received(actor.user.id, actor.now_ms())
    outcomes = []
    for invitation in pending:
        try:
            await accept_by_id(actor, invitation.id)
        except ChatError as error:
            outcomes.append(AnswerOutcome(invitation, error))
        else:
            outcomes.append(AnswerOutcome(invitation))
    return outcomes


async def decline_all(actor: Actor, reason: str = "") -> list[AnswerOutcome]:
    """
    Decline every pending invitation of the actor, oldest first, each in
    a transaction of its own, the reason kept in each trail.

    @return: one outcome per invitation.
    """
    pending = await actor.store.invitations.pending_received(actor.user.id, actor.now_ms())
    outcomes = []
    for invitation in pending:
        try:
            await decline_by_id(actor, invitation.id, reason)
        except ChatError as error:
            outcomes.append(AnswerOutcome(invitation, error))
        else:
            outcomes.append(AnswerOutcome(invitation))
    return outcomes


async def pending_at_login(actor: Actor) -> list[InvitationReceived]:
    """What the actor, who just logged in, is told: each pending invitation, oldest first."""
    pending = await actor.store.invitations.pending_received(actor.user.id, actor.now_ms())
    return [received_event(i) for i in pending]


# Looking


async def received(actor: Actor, status: str | None) -> list[Invitation]:
    """The actor's received invitations of a status (L{None}: all), newest first."""
    return await actor.store.invitations.received(actor.user.id, status)


async def sent(actor: Actor, status: str | None) -> list[Invitation]:
    """The actor's sent invitations of a status (L{None}: all), newest first."""
    return await actor.store.invitations.sent(actor.user.id, status)


async def overseen_room(actor: Actor, room_name: str, action: str) -> Room:
    """
    A room whose invitations the actor may oversee: as an admin+ of it
    with C{action} allowed, or as a server admin (who only looks).

    @raise ChatError: no such room, or the actor may not.
    """
    if actor.user.is_admin:
        room, _ = await access.visible_room(actor, room_name)
    else:
        room, _ = await access.member_room(actor, room_name, action)
    return room


async def for_room(actor: Actor, room_name: str, status: str | None) -> list[Invitation]:
    """
    A room's invitations of a status (L{None}: all), newest first, for
    its admins and server admins.

    @raise ChatError: no such room, or the actor may not.
    """
    room = await overseen_room(actor, room_name, "view_room_invitations")
    return await actor.store.invitations.for_room(room.id, status)


async def visible_invitation(actor: Actor, invitation_id: int) -> tuple[Invitation, lifecycle.Actor]:
    """
    An invitation the actor may see (its sender, its recipient, an admin+
    of its room, a server admin), with who they are to it.

    @raise NotFound: no such invitation, or one they may not see.
    """
    user = actor.user
    invitation = await actor.store.invitations.get(invitation_id)
    if invitation is None:
        raise NotFound(f"no invitation {invitation_id}")
    member = await actor.store.rooms.membership(invitation.room_id, user.id)
    party = lifecycle.Actor(
        is_recipient=invitation.recipient_id == user.id,
        is_sender=invitation.sender_id == user.id,
        room_role=member.role if member else None,
    )
    if not (party.can_see or user.is_admin):
        raise NotFound(f"no invitation {invitation_id}")
    return invitation, party


async def view(actor: Actor, invitation_id: int) -> InvitationTrail:
    """
    An invitation the actor may see, and its trail.

    @raise NotFound: no such invitation, or one they may not see.
    """
    invitation, _ = await visible_invitation(actor, invitation_id)
    trail = await actor.store.invitations.events(invitation_id)
    return InvitationTrail(invitation, tuple(trail))


async def revoke(actor: Actor, invitation_id: int) -> Invitation:
    """
    Withdraw a pending invitation, as its sender or an admin+ of its room;
    the recipient is told.  A server admin sees every invitation, but
    revokes only as these rules allow.

    @return: the invitation, revoked.
    @raise ChatError: no such invitation, the actor may not, or it is no
        longer pending; nothing changed.
    """
    invitation, party = await visible_invitation(actor, invitation_id)
    if not party.can_see:
        permissions.require(party.room_role, "revoke_any_invitation")
    lifecycle.authorize("revoke", party)
    outbox = actor.outbox()
    revoked = await actor.store.invitations.revoke(invitation.id, actor.user, actor.now_ms(), outbox)
    await actor.deliver(outbox)
    return revoked


async def own_stats(actor: Actor) -> InvitationStats:
    """Statistics of the invitations the actor sent or received."""
    return await actor.store.invitations.stats(user_id=actor.user.id)


async def room_stats(actor: Actor, room_name: str) -> RoomStats:
    """
    Statistics of a room's invitations, for its admins and server admins.

    @raise ChatError: no such room, or the actor may not.
    """
    room = await overseen_room(actor, room_name, "room_invitation_stats")
    return RoomStats(room, await actor.store.invitations.stats(room_id=room.id))


async def server_stats(actor: Actor) -> InvitationStats:
    """
    Statistics of every invitation, for server admins.

    @raise PermissionDenied: the actor is not a server admin.
    """
    if not actor.user.is_admin:
        raise PermissionDenied("only server admins can see the server's invitation statistics")
    return await actor.store.invitations.stats()
