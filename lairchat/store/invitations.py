# -*- test-case-name: tests.test_invitations_store -*-
"""
The invitations aggregate's SQL: the C{invitations} table and the
C{invitation_events} trail written in the same transaction as every status
change.

Every status change is a conditional C{UPDATE ... WHERE status = 'pending'}
(the only status anything leaves, L{lairchat.invitation_lifecycle}), so of
two racing changes exactly one finds the row still pending.  The unique
partial index C{invitations_one_pending} makes a second pending invitation
for the same room and recipient impossible; its violation is a
L{Conflict}.

Every change records the event it causes (L{lairchat.events}) in the
caller's L{Outbox}, as the last statement of its own transaction: the event
exists if and only if the change committed, and a change that several
nodes race for (an expiry, a reminder) is made, and told, once.

Times come from the caller (the server's clock, in epoch milliseconds), so
expiry is decided by one clock and tests can drive it with a fake one.
"""

from datetime import datetime, timezone

import psycopg2

from lairchat import invitation_lifecycle as lifecycle
from lairchat.errors import AccessDenied, Conflict, Gone, NotFound
from lairchat.events import (
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    InvitationReceived,
    InvitationReminder,
    InvitationRevoked,
    RoomRef,
)
from lairchat.models import Invitation, InvitationEvent, InvitationStats, User, to_ms
from lairchat.store.audit import AuditStore
from lairchat.store.database import Database, Transaction
from lairchat.store.events import Outbox
from lairchat.store.rooms import RoomStore

COLUMNS = (
    "i.id, i.sender_id, s.username, i.recipient_id, t.username, i.room_id, r.name, i.kind, "
    "i.status, i.role, i.message, i.created_at, i.expires_at, i.responded_at"
)
"""The columns L{invitation_from_row} reads."""

JOINS = "JOIN users s ON s.id = i.sender_id JOIN users t ON t.id = i.recipient_id JOIN rooms r ON r.id = i.room_id"
"""The joins that give an invitation C{i} its names."""

LIST_LIMIT = 100
"""The most invitations a list returns (the newest ones)."""


def invitation_from_row(row: tuple) -> Invitation:
    """Build an L{Invitation} from a row of L{COLUMNS}."""
    return Invitation(
        id=row[0],
        sender_id=row[1],
        sender=row[2],
        recipient_id=row[3],
        recipient=row[4],
        room_id=row[5],
        room=row[6],
        kind=row[7],
        status=row[8],
        role=row[9],
        message=row[10],
        created_ms=to_ms(row[11]),
        expires_ms=to_ms(row[12]),
        responded_ms=to_ms(row[13]),
    )


def moment(ms: int) -> datetime:
    """An epoch-millisecond instant as an aware datetime (for a parameter)."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def received_event(invitation: Invitation, guest: bool = False) -> InvitationReceived:
    """
    What the recipient of a pending invitation is told of it (when sent, and
    at each login); C{guest}: whether its sender is an IRC guest.
    """
    i = invitation
    return InvitationReceived(i.id, i.recipient_id, i.sender, i.room, i.role, i.expires_ms, i.message, guest)


def _status_filter(status: str | None) -> tuple[str, tuple]:
    """A C{WHERE} fragment (and its parameters) for an optional status."""
    if status is None:
        return "", ()
    return " AND i.status = %s", (status,)


class InvitationStore:
    """The C{invitations} and C{invitation_events} tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # Creating

    async def create(
        self,
        sender: User,
        recipient: User,
        room_id: int,
        role: str,
        message: str,
        now_ms: int,
        expires_ms: int,
        outbox: Outbox,
        kind: str = "room",
    ) -> Invitation:
        """
        Invite C{recipient} to the room, recording the first event of its
        trail, an audit entry and its L{InvitationReceived} (in C{outbox}),
        in one transaction.

        @raise Conflict: they are a member, or already hold a pending
            invitation to the room (also when two invitations race).
        @raise AccessDenied: they are banned from the room.
        """

        async def work(tx: Transaction) -> Invitation:
            # A share lock on the room, as a join takes: a ban or the room's
            # deletion (the last member leaving) waits for this invitation
            # to be stored, or this waits for them and sees what they did.
            if await tx.fetchone("SELECT 1 FROM rooms WHERE id = %s FOR SHARE", (room_id,)) is None:
                raise NotFound("that room no longer exists")
            if await tx.fetchone(
                "SELECT 1 FROM room_members WHERE room_id = %s AND user_id = %s", (room_id, recipient.id)
            ):
                raise Conflict(f"{recipient.username} is already a member")
            if await tx.fetchone(
                "SELECT 1 FROM room_bans WHERE room_id = %s AND user_id = %s", (room_id, recipient.id)
            ):
                raise AccessDenied(f"{recipient.username} is banned from that room")
            row = await tx.fetchone(
                "WITH i AS (INSERT INTO invitations "
                "(sender_id, recipient_id, room_id, kind, status, role, message, created_at, expires_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *) "
                f"SELECT {COLUMNS} FROM i {JOINS}",
                (sender.id, recipient.id, room_id, kind, lifecycle.PENDING, role, message,
                 moment(now_ms), moment(expires_ms)),
            )
            invitation = invitation_from_row(row)
            await self._event_in(tx, invitation.id, lifecycle.PENDING, sender.id, "sent", now_ms)
            await AuditStore.record_in(
                tx, sender.username, "invite", recipient.username, "ok",
                f"invitation {invitation.id} to {invitation.room} as {role}",
            )
            await outbox.add_in(tx, [received_event(invitation, sender.guest)])
            return invitation

        try:
            return await self._db.transaction(work)
        except psycopg2.errors.UniqueViolation:
            raise Conflict(f"{recipient.username} already holds a pending invitation to that room") from None

    # Status changes

    @staticmethod
    async def _event_in(
        tx: Transaction, invitation_id: int, status: str, actor_id: int | None, note: str, now_ms: int
    ) -> None:
        """Append one event to an invitation's trail."""
        await tx.execute(
            "INSERT INTO invitation_events (invitation_id, ts, status, actor_id, note) VALUES (%s, %s, %s, %s, %s)",
            (invitation_id, moment(now_ms), status, actor_id, note),
        )

    async def _change_in(
        self,
        tx: Transaction,
        invitation_id: int,
        action: str,
        actor: User,
        note: str,
        now_ms: int,
        recipient_only: bool,
    ) -> Invitation:
        """
        Move a pending, not yet due invitation on by C{action} (a conditional
        update: of racing changes exactly one wins), with its event and an
        audit entry.

        @param recipient_only: only an invitation to C{actor} may change.
        @raise NotFound: no such invitation (or, with C{recipient_only}, not
            one to C{actor}).
        @raise Gone: it is no longer pending, or is due.
        """
        status = lifecycle.outcome(action)
        recipient_clause = " AND recipient_id = %s" if recipient_only else ""
        recipient_params = (actor.id,) if recipient_only else ()
        row = await tx.fetchone(
            "WITH i AS (UPDATE invitations SET status = %s, responded_at = %s "
            f"WHERE id = %s AND status = %s AND expires_at > %s{recipient_clause} RETURNING *) "
            f"SELECT {COLUMNS} FROM i {JOINS}",
            (status, moment(now_ms), invitation_id, lifecycle.PENDING, moment(now_ms), *recipient_params),
        )
        if row is None:
            current = await tx.fetchone(
                "SELECT status, expires_at, recipient_id FROM invitations WHERE id = %s", (invitation_id,)
            )
            if current is None or (recipient_only and current[2] != actor.id):
                raise NotFound(f"you have no invitation {invitation_id}")
            lifecycle.advance(current[0], action, to_ms(current[1]), now_ms)
            raise Gone(lifecycle.gone_message("expired"))
        invitation = invitation_from_row(row)
        await self._event_in(tx, invitation.id, status, actor.id, note, now_ms)
        await AuditStore.record_in(
            tx, actor.username, action, invitation.recipient,
            "ok", f"invitation {invitation.id} to {invitation.room}" + (f": {note}" if note else ""),
        )
        return invitation

    async def accept(
        self, invitation_id: int, user: User, now_ms: int, outbox: Outbox
    ) -> tuple[Invitation, bool]:
        """
        Accept an invitation to C{user}: the status change, its trail entry,
        the membership with the invited role, and (in C{outbox}) the
        sender's L{InvitationAccepted} and, when C{user} became a member,
        the room's L{UserJoined}, in one transaction.  The ban is checked
        again inside it.

        @return: the invitation and whether C{user} became a member (false
            when they already were one: their role is kept).
        @raise NotFound: no such invitation to C{user}.
        @raise Gone: it is no longer pending, or has expired.
        @raise AccessDenied: C{user} is banned from the room (nothing changes).
        """

        async def work(tx: Transaction) -> tuple[Invitation, bool]:
            # Lock the room before the invitation, in the order a leave or a
            # ban takes them: the other way round, an acceptance and the
            # last member leaving (which deletes the room and with it the
            # invitation) could each wait for the other.
            room = await tx.fetchone("SELECT room_id FROM invitations WHERE id = %s", (invitation_id,))
            if room is not None and await tx.fetchone(
                "SELECT 1 FROM rooms WHERE id = %s FOR SHARE", (room[0],)
            ) is None:
                raise NotFound(f"you have no invitation {invitation_id}")
            invitation = await self._change_in(tx, invitation_id, "accept", user, "", now_ms, True)
            if await tx.fetchone(
                "SELECT 1 FROM room_bans WHERE room_id = %s AND user_id = %s", (invitation.room_id, user.id)
            ):
                raise AccessDenied(f"you are banned from {invitation.room}")
            joined = await RoomStore.add_member_in(tx, RoomRef(invitation.room_id, invitation.room), user,
                                                   invitation.role)
            caused = [InvitationAccepted(invitation.id, invitation.sender_id, user.username, invitation.room)]
            if joined is not None:
                caused.append(joined)
            await outbox.add_in(tx, caused)
            return invitation, joined is not None

        return await self._db.transaction(work)

    async def decline(self, invitation_id: int, user: User, reason: str, now_ms: int, outbox: Outbox) -> Invitation:
        """
        Decline an invitation to C{user}, keeping the reason in its trail,
        and record the sender's L{InvitationDeclined} in C{outbox}, in one
        transaction.

        @raise NotFound: no such invitation to C{user}.
        @raise Gone: it is no longer pending, or has expired.
        """

        async def work(tx: Transaction) -> Invitation:
            invitation = await self._change_in(tx, invitation_id, "decline", user, reason, now_ms, True)
            await outbox.add_in(
                tx, [InvitationDeclined(invitation.id, invitation.sender_id, user.username, invitation.room)]
            )
            return invitation

        return await self._db.transaction(work)

    async def revoke(self, invitation_id: int, actor: User, now_ms: int, outbox: Outbox) -> Invitation:
        """
        Revoke a pending invitation (the caller has checked that C{actor}
        may), and record the recipient's L{InvitationRevoked} in C{outbox},
        in one transaction.

        @raise NotFound: no such invitation.
        @raise Gone: it is no longer pending, or has expired.
        """

        async def work(tx: Transaction) -> Invitation:
            invitation = await self._change_in(tx, invitation_id, "revoke", actor, "", now_ms, False)
            await outbox.add_in(
                tx, [InvitationRevoked(invitation.id, invitation.recipient_id, invitation.room, actor.username)]
            )
            return invitation

        return await self._db.transaction(work)

    @staticmethod
    async def revoke_pending_in(
        tx: Transaction, room_id: int, user_id: int, actor_id: int | None, note: str
    ) -> list[int]:
        """
        Revoke the user's pending invitations to the room, inside the
        caller's transaction (a ban), recording an event for each.

        Call it before the ban removes the membership: an acceptance that
        updated the invitation first then commits before this update
        returns, and a membership removal that comes after it sees the
        membership that acceptance made.

        @param actor_id: who revoked them (the banning admin).
        @param note: why, kept in each event.
        @return: the ids of the invitations revoked (usually none or one).
        """
        rows = await tx.fetchall(
            "UPDATE invitations SET status = %s, responded_at = now() "
            "WHERE room_id = %s AND recipient_id = %s AND status = %s RETURNING id",
            (lifecycle.outcome("revoke"), room_id, user_id, lifecycle.PENDING),
        )
        ids = sorted(row[0] for row in rows)
        if ids:
            await tx.execute(
                "INSERT INTO invitation_events (invitation_id, status, actor_id, note) "
                "SELECT unnest(%s::bigint[]), %s, %s, %s",
                (ids, lifecycle.outcome("revoke"), actor_id, note),
            )
        return ids

    # Reading

    async def get(self, invitation_id: int) -> Invitation | None:
        """The invitation with this id, or L{None}."""
        row = await self._db.fetchone(f"SELECT {COLUMNS} FROM invitations i {JOINS} WHERE i.id = %s",
                                      (invitation_id,))
        return invitation_from_row(row) if row else None

    async def events(self, invitation_id: int) -> list[InvitationEvent]:
        """An invitation's trail, oldest first."""
        rows = await self._db.fetchall(
            "SELECT e.invitation_id, e.ts, e.status, coalesce(u.username, ''), e.note "
            "FROM invitation_events e LEFT JOIN users u ON u.id = e.actor_id "
            "WHERE e.invitation_id = %s ORDER BY e.id",
            (invitation_id,),
        )
        return [InvitationEvent(r[0], to_ms(r[1]), r[2], r[3], r[4]) for r in rows]

    async def pending_received(self, user_id: int, now_ms: int) -> list[Invitation]:
        """Every pending, not yet due invitation to the user, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} "
            "WHERE i.recipient_id = %s AND i.status = %s AND i.expires_at > %s ORDER BY i.id",
            (user_id, lifecycle.PENDING, moment(now_ms)),
        )
        return [invitation_from_row(r) for r in rows]

    async def latest_pending(self, user_id: int) -> Invitation | None:
        """The newest pending invitation to the user, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} "
            "WHERE i.recipient_id = %s AND i.status = %s ORDER BY i.id DESC LIMIT 1",
            (user_id, lifecycle.PENDING),
        )
        return invitation_from_row(row) if row else None

    async def latest_to_room(self, user_id: int, room_name: str) -> Invitation | None:
        """
        The user's invitation to the named room: the pending one if there is
        one, else the newest; L{None} if they never had one.
        """
        row = await self._db.fetchone(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} "
            "WHERE i.recipient_id = %s AND r.kind = 'room' AND lower(r.name) = lower(%s) "
            "ORDER BY (i.status = %s) DESC, i.id DESC LIMIT 1",
            (user_id, room_name, lifecycle.PENDING),
        )
        return invitation_from_row(row) if row else None

    async def received(self, user_id: int, status: str | None, limit: int = LIST_LIMIT) -> list[Invitation]:
        """The user's received invitations (of a status, or all), newest first."""
        clause, params = _status_filter(status)
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} WHERE i.recipient_id = %s{clause} "
            "ORDER BY i.id DESC LIMIT %s",
            (user_id, *params, limit),
        )
        return [invitation_from_row(r) for r in rows]

    async def sent(self, user_id: int, status: str | None, limit: int = LIST_LIMIT) -> list[Invitation]:
        """The user's sent invitations (of a status, or all), newest first."""
        clause, params = _status_filter(status)
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} WHERE i.sender_id = %s{clause} "
            "ORDER BY i.id DESC LIMIT %s",
            (user_id, *params, limit),
        )
        return [invitation_from_row(r) for r in rows]

    async def for_room(self, room_id: int, status: str | None, limit: int = LIST_LIMIT) -> list[Invitation]:
        """The room's invitations (of a status, or all), newest first."""
        clause, params = _status_filter(status)
        rows = await self._db.fetchall(
            f"SELECT {COLUMNS} FROM invitations i {JOINS} WHERE i.room_id = %s{clause} "
            "ORDER BY i.id DESC LIMIT %s",
            (room_id, *params, limit),
        )
        return [invitation_from_row(r) for r in rows]

    async def stats(self, user_id: int | None = None, room_id: int | None = None) -> InvitationStats:
        """
        Counts over the invitations the user sent or received, or those to
        the room, or (neither given) all of them.  C{sent} and C{received}
        are the user's own; for a room or the server both are the total.
        """
        if user_id is not None:
            scope, params = "i.sender_id = %s OR i.recipient_id = %s", (user_id, user_id)
            sent, received = "count(*) FILTER (WHERE i.sender_id = %s)", "count(*) FILTER (WHERE i.recipient_id = %s)"
            heads = (user_id, user_id)
        else:
            scope, params = ("i.room_id = %s", (room_id,)) if room_id is not None else ("true", ())
            sent = received = "count(*)"
            heads = ()
        row = await self._db.fetchone(
            f"SELECT {sent}, {received}, "
            "count(*) FILTER (WHERE i.status = 'pending'), "
            "count(*) FILTER (WHERE i.status = 'accepted'), "
            "count(*) FILTER (WHERE i.status = 'declined'), "
            "count(*) FILTER (WHERE i.status = 'expired'), "
            "count(*) FILTER (WHERE i.status = 'revoked'), "
            "percentile_cont(0.5) WITHIN GROUP "
            "(ORDER BY extract(epoch FROM i.responded_at - i.created_at) * 1000) "
            "FILTER (WHERE i.status IN ('accepted', 'declined')) "
            f"FROM invitations i WHERE {scope}",
            (*heads, *params),
        )
        accepted, declined, expired = row[3], row[4], row[5]
        decided = accepted + declined + expired
        return InvitationStats(
            sent=row[0],
            received=row[1],
            pending=row[2],
            accepted=accepted,
            declined=declined,
            expired=expired,
            revoked=row[6],
            acceptance_rate=accepted / decided if decided else 0.0,
            median_response_ms=round(row[7]) if row[7] is not None else 0,
        )

    # Room settings

    async def set_template(self, room_id: int, template: str | None, actor: str, room_name: str) -> None:
        """Set (L{None}: clear) the room's default invitation message, audited."""

        async def work(tx: Transaction) -> None:
            await tx.execute("UPDATE rooms SET invite_template = %s WHERE id = %s", (template, room_id))
            await AuditStore.record_in(tx, actor, "set_invite_template", room_name, "ok",
                                       "cleared" if template is None else template)

        await self._db.transaction(work)

    # The sweep
    #
    # Several nodes may sweep at once.  Each statement first locks the rows
    # it will change (FOR UPDATE SKIP LOCKED, in a MATERIALIZED CTE so the
    # locking query runs once), so two sweeps never wait for each other (nor
    # deadlock) and share the work; a row another transaction changed
    # meanwhile is checked again as it is locked, so each invitation
    # expires, or is reminded of, once, and its event is recorded once, by
    # the transaction that changed it.

    async def expire_due(self, now_ms: int, outbox: Outbox, limit: int | None = None) -> list[Invitation]:
        """
        Expire the pending invitations due at C{now_ms} (the C{limit} that
        are due first, when given), append each one's trail entry, and
        record each one's L{InvitationExpired} in C{outbox}, in one
        transaction.

        @return: the invitations expired.
        """
        limit_clause = " ORDER BY expires_at LIMIT %s" if limit is not None else ""
        limit_params = (limit,) if limit is not None else ()

        async def work(tx: Transaction) -> list[Invitation]:
            rows = await tx.fetchall(
                "WITH due AS MATERIALIZED (SELECT id FROM invitations WHERE status = %s AND expires_at <= %s"
                f"{limit_clause} FOR UPDATE SKIP LOCKED), "
                "i AS (UPDATE invitations SET status = %s, responded_at = %s "
                "WHERE status = %s AND id IN (SELECT id FROM due) RETURNING *), "
                "e AS (INSERT INTO invitation_events (invitation_id, ts, status, note) "
                "SELECT i.id, %s, %s, 'expired' FROM i) "
                f"SELECT {COLUMNS} FROM i {JOINS} ORDER BY i.id",
                (lifecycle.PENDING, moment(now_ms), *limit_params, lifecycle.outcome("expire"), moment(now_ms),
                 lifecycle.PENDING, moment(now_ms), lifecycle.outcome("expire")),
            )
            expired = [invitation_from_row(r) for r in rows]
            await outbox.add_in(
                tx, [InvitationExpired(i.id, i.sender_id, i.recipient_id, i.room) for i in expired]
            )
            return expired

        return await self._db.transaction(work)

    async def remind(self, now_ms: int, window_ms: int, outbox: Outbox) -> list[Invitation]:
        """
        Mark as reminded, once, the pending invitations that expire within
        C{window_ms} of C{now_ms} and whose recipients are online (on any
        node), and record each one's L{InvitationReminder} in C{outbox}, in
        one transaction.  A recipient who is offline now is reminded at a
        sweep after they come online.

        @return: the invitations their recipients were reminded of.
        """

        async def work(tx: Transaction) -> list[Invitation]:
            rows = await tx.fetchall(
                "WITH due AS MATERIALIZED (SELECT id FROM invitations WHERE status = %s AND reminded_at IS NULL "
                "AND expires_at > %s AND expires_at <= %s AND recipient_id IN (SELECT user_id FROM online) "
                "FOR UPDATE SKIP LOCKED), "
                "i AS (UPDATE invitations SET reminded_at = %s "
                "WHERE reminded_at IS NULL AND id IN (SELECT id FROM due) RETURNING *) "
                f"SELECT {COLUMNS} FROM i {JOINS} ORDER BY i.id",
                (lifecycle.PENDING, moment(now_ms), moment(now_ms + window_ms), moment(now_ms)),
            )
            reminded = [invitation_from_row(r) for r in rows]
            await outbox.add_in(
                tx, [InvitationReminder(i.id, i.recipient_id, i.room, i.expires_ms) for i in reminded]
            )
            return reminded

        return await self._db.transaction(work)

    async def purge_answered(self, before_ms: int) -> int:
        """
        Delete the invitations (and their trails) that left C{pending}
        before C{before_ms}.

        @return: how many were deleted.
        """
        rows = await self._db.fetchall(
            "WITH d AS (DELETE FROM invitations WHERE status <> %s AND responded_at < %s RETURNING 1) "
            "SELECT count(*) FROM d",
            (lifecycle.PENDING, moment(before_ms)),
            retry=False,
        )
        return rows[0][0]
