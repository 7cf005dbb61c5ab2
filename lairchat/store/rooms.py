# -*- test-case-name: tests.test_rooms -*-
"""
Rooms, membership and bans.  Direct-message conversations are rooms of kind
C{direct} with two members, so every message operation serves both.

Every change records the events it causes in its own transaction, through
the L{Outbox} it is given, as that transaction's last statement: an event
exists if and only if its change committed.  Joining a public room is one
statement that checks, changes and records at once, shared by the joins
asked for meanwhile (group commit, as for messages).
"""

from collections.abc import Callable

import psycopg2
from attrs import evolve, frozen
from twisted.internet.defer import Deferred

from lairchat.errors import AccessDenied, Conflict, NotFound
from lairchat.events import (
    InvitationRevoked,
    Origin,
    RoleChanged,
    RoomCreated,
    RoomRef,
    TopicChanged,
    UserBanned,
    UserJoined,
    UserKicked,
    UserLeft,
)
from lairchat.models import Ban, BanEntry, Departure, Member, Room, RoomSummary, User, to_ms
from lairchat.permissions import SUCCESSION
from lairchat.store.audit import AuditStore
from lairchat.store.batch import GroupCommit
from lairchat.store.database import Database, Transaction
from lairchat.store.events import Outbox, batch_event_params
from lairchat.validation import ROLES

Authorize = Callable[[str, str | None], None]
"""
A permission check run inside a moderation transaction, with the roles read
under the room's lock: C{authorize(actor_role, target_role)} (the target's
role is L{None} when they are not a member).  It raises the refusal.
"""

ROOM_COLUMNS = "r.id, r.name, r.kind, r.privacy, r.topic, r.owner_id, r.created_at, r.invite_template"
"""The columns L{room_from_row} reads, for a C{rooms} table aliased C{r}."""

MEMBER_COLUMNS = "m.room_id, m.user_id, u.username, m.role, m.joined_at, m.last_read_id"
"""The columns L{member_from_row} reads: C{room_members m} joined to C{users u}."""


def room_from_row(row: tuple) -> Room:
    """Build a L{Room} from the first eight columns of C{row} (L{ROOM_COLUMNS})."""
    return Room(
        id=row[0],
        name=row[1],
        kind=row[2],
        privacy=row[3],
        topic=row[4],
        owner_id=row[5],
        created_ms=to_ms(row[6]),
        invite_template=row[7],
    )


def member_from_row(row: tuple) -> Member:
    """Build a L{Member} from the first six columns of C{row} (L{MEMBER_COLUMNS})."""
    return Member(
        room_id=row[0],
        user_id=row[1],
        username=row[2],
        role=row[3],
        joined_ms=to_ms(row[4]),
        last_read_id=row[5],
    )


JOINED = "joined"
"""A join's outcome: the user became a member (and its event was recorded)."""
MEMBER = "member"
"""A join's outcome: the user already was a member (nothing changed)."""
PRIVATE = "private"
"""A join's outcome: the room is private and the user no member (nothing changed)."""
BANNED = "banned"
"""A join's outcome: the user is banned from the room (nothing changed)."""
GONE = "gone"
"""A join's outcome: there is no such room (any more)."""
ACCOUNT_GONE = "account gone"
"""
A join's outcome: the joining account was deleted as it joined (a guest
whose connection closed); nothing changed.  The statement locks the
joining accounts, so a deletion is either seen or waits.
"""


@frozen
class JoinOutcome:
    """
    What a join did (L{JOINED}, L{MEMBER}, L{PRIVATE}, L{BANNED}, L{GONE}
    or L{ACCOUNT_GONE}), the room as the join read it (L{None} when the
    room is gone), and, when the user became a member, their L{UserJoined}
    and its sequence number.
    """

    status: str
    room: Room | None = None
    event: UserJoined | None = None
    seq: int | None = None


_JOIN_CHECKED = (
    "WITH input AS ("
    "  SELECT * FROM unnest(%(rooms)s::bigint[], %(users)s::bigint[], %(payloads)s::text[], %(nodes)s::text[],"
    "                       %(connections)s::bigint[])"
    "  WITH ORDINALITY AS t(room_id, user_id, payload, node, connection, n)"
    "), checked AS ("
    "  SELECT i.*, CASE"
    f"    WHEN r.id IS NULL THEN '{GONE}'"
    f"    WHEN NOT EXISTS (SELECT 1 FROM users u WHERE u.id = i.user_id) THEN '{ACCOUNT_GONE}'"
    f"    WHEN me.user_id IS NOT NULL THEN '{MEMBER}'"
    f"    WHEN r.privacy <> 'public' THEN '{PRIVATE}'"
    "    WHEN EXISTS (SELECT 1 FROM room_bans b WHERE b.room_id = i.room_id AND b.user_id = i.user_id)"
    f"      THEN '{BANNED}'"
    f"    ELSE '{JOINED}' END AS status"
    "  FROM input i LEFT JOIN rooms r ON r.id = i.room_id AND r.kind = 'room'"
    "  LEFT JOIN room_members me ON me.room_id = i.room_id AND me.user_id = i.user_id"
    ")"
)
"""
The joins asked for (parallel arrays, numbered C{n} from 1), each with
what it would do as the statement sees the tables (C{status}): the rule
of who may join, in one place for L{_JOIN_SQL} and L{_JOIN_SETTLE_SQL}.
"""


def _join_result(extra: str) -> str:
    """
    The rows a join batch answers, one per item in order: C{n}, its
    outcome, its event's sequence number and away text (L{None} unless
    joined), the room's L{ROOM_COLUMNS} (L{None}s when gone), then
    C{extra}; from C{checked} and C{ev} (the batch's events).
    """
    return (
        f"SELECT c.n, CASE WHEN ev.seq IS NOT NULL THEN '{JOINED}' WHEN c.status = '{JOINED}' THEN '{MEMBER}'"
        f" ELSE c.status END, ev.seq, ev.away, {ROOM_COLUMNS}{extra} "
        "FROM checked c LEFT JOIN ev ON ev.n = c.n LEFT JOIN rooms r ON r.id = c.room_id AND r.kind = 'room' "
        "ORDER BY c.n"
    )


_JOIN_SQL = (
    # The rooms first, then the ordering lock, as lairchat_post_messages (schema.sql) takes them (so
    # neither waits for the other holding what it needs).  A share lock, not
    # a key-share one: a ban or a departure (which lock the room exclusively)
    # is either committed before the checks read the tables or waits for
    # this join to commit, and then sees its member.
    "SELECT 1 FROM rooms WHERE id = ANY(%(room_ids)s) ORDER BY id FOR SHARE; "
    # the joining accounts, as the foreign key would: one deleted meanwhile
    # (a guest whose connection closed) is answered, not a failed batch
    "SELECT 1 FROM users WHERE id = ANY(%(users)s) ORDER BY id FOR KEY SHARE; "
    "SELECT pg_advisory_xact_lock(%(lock)s); "
    f"{_JOIN_CHECKED}, first AS ("
    # the same user asking twice in one batch: the first asking joins
    f"  SELECT DISTINCT ON (room_id, user_id) * FROM checked WHERE status = '{JOINED}'"
    "  ORDER BY room_id, user_id, n"
    "), added AS ("
    "  INSERT INTO room_members (room_id, user_id, role) SELECT room_id, user_id, 'member' FROM first ORDER BY n"
    "  ON CONFLICT (room_id, user_id) DO NOTHING"
    "  RETURNING room_id, user_id, (SELECT a.text FROM away a WHERE a.user_id = room_members.user_id) AS away"
    "), ev AS ("
    "  INSERT INTO events (node, connection, kind, payload)"
    f"  SELECT f.node, f.connection, '{UserJoined.__name__}', f.payload::jsonb || jsonb_build_object("
    "    'away', coalesce(a.away, ''), 'batch', %(batch)s::text, 'n', f.n)"
    "  FROM first f JOIN added a ON a.room_id = f.room_id AND a.user_id = f.user_id ORDER BY f.n"
    "  RETURNING seq, (payload->>'n')::bigint AS n, payload->>'away' AS away"
    ") "
    + _join_result(", CASE WHEN ev.seq IS NOT NULL"
                   " THEN pg_notify(%(channel)s, (max(ev.seq) OVER ())::text || ' ' || %(node)s) END")
)
"""
Joins, many at once, in one statement and one commit: each user who may
join (L{_JOIN_CHECKED}) becomes a member, and their L{UserJoined} is
recorded with their away text as it is now, the batch's token and the
item's place in it (C{batch}, C{n}: what L{_JOIN_SETTLE_SQL} finds them
by should the connection be lost).  A join that found its user already
a member (a duplicate, or a membership committed meanwhile) answers
L{MEMBER}.
"""

_JOIN_SETTLE_SQL = (
    f"{_JOIN_CHECKED}, ev AS ("
    "  SELECT seq, (payload->>'n')::bigint AS n, payload->>'away' AS away FROM events"
    "  WHERE seq > %(after)s AND payload->>'batch' = %(batch)s"
    ") " + _join_result(", NULL")
)
"""
What a batch of L{_JOIN_SQL} did, in the rows it would have returned:
its joins found by its token among the events (kept at least a minute),
the other items as they stand now.
"""


class RoomStore:
    """
    The C{rooms}, C{room_members} and C{room_bans} tables.

    @ivar group_commit: the group commit that writes joins: what the server
        hands their results out under (its C{output}) and measures (its
        C{observe}).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.group_commit = GroupCommit(self._join_batch)
        self._seen_seq = 0

    async def by_name(self, name: str) -> Room | None:
        """The room (kind C{room}) with this name, case-insensitively, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.kind = 'room' AND lower(r.name) = lower(%s)", (name,)
        )
        return room_from_row(row) if row else None

    async def by_id(self, room_id: int) -> Room | None:
        """The room or conversation with this id, or L{None}."""
        row = await self._db.fetchone(f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = %s", (room_id,))
        return room_from_row(row) if row else None

    async def membership(self, room_id: int, user_id: int) -> Member | None:
        """The user's membership of the room, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {MEMBER_COLUMNS} FROM room_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.room_id = %s AND m.user_id = %s",
            (room_id, user_id),
        )
        return member_from_row(row) if row else None

    async def rooms_of_member(self, user_id: int) -> list[Room]:
        """The rooms (kind C{room}, not conversations) the user is a member of, by id."""
        rows = await self._db.fetchall(
            f"SELECT {ROOM_COLUMNS} FROM rooms r JOIN room_members m ON m.room_id = r.id "
            "WHERE m.user_id = %s AND r.kind = 'room' ORDER BY r.id",
            (user_id,),
        )
        return [room_from_row(r) for r in rows]

    async def member_ids(self, room_id: int) -> list[int]:
        """The ids of every member of the room (the audience of its events)."""
        rows = await self._db.fetchall("SELECT user_id FROM room_members WHERE room_id = %s", (room_id,))
        return [r[0] for r in rows]

    async def is_banned(self, room_id: int, user_id: int) -> bool:
        """Whether the user is banned from the room."""
        row = await self._db.fetchone(
            "SELECT 1 FROM room_bans WHERE room_id = %s AND user_id = %s", (room_id, user_id)
        )
        return row is not None

    @staticmethod
    async def add_member_in(tx: Transaction, ref: RoomRef, user: User, role: str) -> UserJoined | None:
        """
        Make the user a member with C{role}, inside a transaction that changes
        something else too (an invitation's acceptance), in one statement
        that also reads their away text as it is in C{tx}.

        @return: the L{UserJoined} to record, or L{None} when they already
            were a member.
        """
        row = await tx.fetchone(
            "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, %s) "
            "ON CONFLICT (room_id, user_id) DO NOTHING "
            "RETURNING (SELECT text FROM away WHERE user_id = %s)",
            (ref.id, user.id, role, user.id),
        )
        if row is None:
            return None
        return UserJoined(ref, user.id, user.username, user.guest, row[0] or "")

    # Creating, joining, leaving

    async def create(self, name: str, privacy: str, owner: User, outbox: Outbox) -> Room:
        """
        Create a room with C{owner} as its first member and owner, in one
        transaction with its audit entry and its L{RoomCreated} event.

        @raise Conflict: a room of that name exists (case-insensitively).
        """

        async def create_in(tx: Transaction) -> Room:
            row = await tx.fetchone(
                "INSERT INTO rooms AS r (name, kind, privacy, owner_id) VALUES (%s, 'room', %s, %s) "
                f"RETURNING {ROOM_COLUMNS}",
                (name, privacy, owner.id),
            )
            room = room_from_row(row)
            await tx.execute(
                "INSERT INTO room_members (room_id, user_id, role) VALUES (%s, %s, 'owner')", (room.id, owner.id)
            )
            await AuditStore.record_in(tx, owner.username, "create_room", room.name, detail=privacy)
            await outbox.add_in(tx, [RoomCreated(_ref(room), owner.id)])
            return room

        try:
            return await self._db.transaction(create_in)
        except psycopg2.errors.UniqueViolation:
            raise Conflict(f"a room named {name} already exists") from None

    def join_with_event(self, ref: RoomRef, user: User, origin: Origin | None) -> Deferred:
        """
        Make the user a member (role C{member}) of a public room they are
        not banned from, and record its L{UserJoined}, in one statement
        shared with the joins asked for meanwhile (group commit).  The
        checks are made in that statement, under the room's share lock
        (which a ban or a departure takes exclusively), so none can change
        between the check and the change.

        @param ref: the room (of kind C{room}), as events name it.
        @return: a Deferred firing with a L{JoinOutcome}.
        """
        return self.group_commit.submit((ref, user, origin))

    async def _join_batch(self, items: list) -> list["JoinOutcome"]:
        """Write a batch of L{join_with_event} items; a failing statement fails them all."""
        templates = [UserJoined(ref, user.id, user.username, user.guest, "", origin=origin)
                     for ref, user, origin in items]
        params = batch_event_params(templates)
        params.update({
            "room_ids": sorted({t.room.id for t in templates}),
            "rooms": [t.room.id for t in templates],
            "users": [t.user_id for t in templates],
            "after": self._seen_seq,
        })

        async def settle() -> list[tuple] | None:
            # what the lost statement did: nothing, unless its events are there
            rows = await self._db.fetchall(_JOIN_SETTLE_SQL, params)
            return rows if any(row[2] is not None for row in rows) else None

        # one autocommitted statement; should its connection be lost, the
        # store learns which joins it stored by the batch's token
        rows = await self._db.write_once(_JOIN_SQL, params, settle)
        results: list[JoinOutcome] = [JoinOutcome(GONE)] * len(items)
        for n, status, seq, away, *room_row in rows:
            room = room_from_row(room_row) if room_row[0] is not None else None
            if seq is None:
                results[n - 1] = JoinOutcome(status, room)
                continue
            self._seen_seq = max(self._seen_seq, seq)
            event = evolve(templates[n - 1], away=away)
            results[n - 1] = JoinOutcome(JOINED, room, event, seq)
        return results

    async def leave(self, room: Room, user: User, outbox: Outbox, quitting: bool = False,
                    reason: str = "") -> Departure | None:
        """
        Take the user out of the room.  When they were its last owner, the
        longest-standing member of the highest role left (see
        L{lairchat.permissions.SUCCESSION}) becomes owner; when nobody is
        left, the room is deleted with its history.  Records L{UserLeft}
        (marked C{quitting} for a guest whose connection closed; with the
        member's C{reason}) and, when
        a successor became owner, L{RoleChanged}, in the same transaction.

        @return: what changed, or L{None} when they were not a member (and
            nothing is recorded).
        """

        async def leave_in(tx: Transaction) -> Departure | None:
            locked = await _lock(tx, room.id)
            if locked is None:
                return None
            row = await tx.fetchone(
                "DELETE FROM room_members WHERE room_id = %s AND user_id = %s RETURNING role", (room.id, user.id)
            )
            if row is None:
                return None
            role = row[0]
            ref = _ref(locked)
            left = await tx.fetchone("SELECT count(*) FROM room_members WHERE room_id = %s", (room.id,))
            if left[0] == 0:
                await tx.execute("DELETE FROM rooms WHERE id = %s", (room.id,))
                await outbox.add_in(tx, [UserLeft(ref, user.id, user.username, quitting, reason)])
                return Departure(role, deleted=True)
            successor = None
            if role == "owner":
                owner = await tx.fetchone(
                    "SELECT user_id FROM room_members WHERE room_id = %s AND role = 'owner' "
                    "ORDER BY joined_at, user_id LIMIT 1",
                    (room.id,),
                )
                if owner is None:
                    successor, previous = await _promote_successor(tx, room.id)
                    owner_id = successor.user_id
                else:
                    owner_id = owner[0]
                if owner_id != locked.owner_id:
                    await tx.execute("UPDATE rooms SET owner_id = %s WHERE id = %s", (owner_id, room.id))
            changes = [UserLeft(ref, user.id, user.username, quitting, reason)]
            if successor is not None:
                changes.append(RoleChanged(ref, successor.user_id, successor.username, "owner", user.username,
                                           previous))
            await outbox.add_in(tx, changes)
            return Departure(role, successor=successor)

        return await self._db.transaction(leave_in)

    # Moderation

    async def set_topic(self, room: Room, by: User, topic: str, outbox: Outbox) -> None:
        """
        Replace the room's topic, recording L{TopicChanged} in the same
        transaction.

        @raise NotFound: the room is gone.
        """

        async def set_topic_in(tx: Transaction) -> None:
            changed = await tx.execute("UPDATE rooms SET topic = %s WHERE id = %s", (topic, room.id))
            if not changed:
                raise NotFound("that room no longer exists")
            await outbox.add_in(tx, [TopicChanged(_ref(room), by.username, topic)])

        await self._db.transaction(set_topic_in)

    async def set_role(
        self, room: Room, actor: User, target: User, role: str, authorize: Authorize, outbox: Outbox
    ) -> bool:
        """
        Give a member another role, after C{authorize} accepted the roles
        as they are under the room's lock; audited, and L{RoleChanged}
        recorded, in the same transaction.

        @return: whether the role changed (false: they already had it, and
            nothing is recorded).
        @raise AccessDenied: the actor is not a member.
        @raise NotFound: the target is not a member.
        """

        async def set_role_in(tx: Transaction) -> bool:
            actor_role, target_role = await _roles_for(tx, room.id, actor.id, target.id)
            if target_role is None:
                raise NotFound(f"{target.username} is not a member of {room.name}")
            authorize(actor_role, target_role)
            if target_role == role:
                return False
            await tx.execute(
                "UPDATE room_members SET role = %s WHERE room_id = %s AND user_id = %s", (role, room.id, target.id)
            )
            await AuditStore.record_in(
                tx, actor.username, "set_role", _target(room, target), detail=f"{target_role} -> {role}"
            )
            await outbox.add_in(tx, [RoleChanged(_ref(room), target.id, target.username, role, actor.username,
                                                 target_role)])
            return True

        return await self._db.transaction(set_role_in)

    async def kick(
        self, room: Room, actor: User, target: User, reason: str, authorize: Authorize, outbox: Outbox
    ) -> None:
        """
        Take a member out of the room, after C{authorize} accepted the roles
        as they are under the room's lock; audited, and L{UserKicked}
        recorded, in the same transaction.

        @raise AccessDenied: the actor is not a member.
        @raise NotFound: the target is not a member.
        """

        async def kick_in(tx: Transaction) -> None:
            actor_role, target_role = await _roles_for(tx, room.id, actor.id, target.id)
            if target_role is None:
                raise NotFound(f"{target.username} is not a member of {room.name}")
            authorize(actor_role, target_role)
            await tx.execute("DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (room.id, target.id))
            await AuditStore.record_in(tx, actor.username, "kick", _target(room, target), detail=reason)
            await outbox.add_in(tx, [UserKicked(_ref(room), target.id, target.username, actor.username, reason)])

        await self._db.transaction(kick_in)

    async def ban(
        self, room: Room, actor: User, target: User, reason: str, authorize: Authorize, outbox: Outbox
    ) -> Ban:
        """
        Ban a user (a member or not) from the room, in one transaction: the
        ban, the end of their membership, the revocation of their pending
        invitations to the room, the audit entry, and the events
        (L{UserBanned}, then one L{InvitationRevoked} per invitation).

        @raise AccessDenied: the actor is not a member.
        @raise Conflict: the user is already banned.
        """
        from lairchat.store.invitations import InvitationStore

        async def ban_in(tx: Transaction) -> Ban:
            if await _lock(tx, room.id) is None:
                raise NotFound("that room no longer exists")
            # Revoke first: this waits for an acceptance in flight, so the
            # membership read next includes anyone it just let in.
            revoked = await InvitationStore.revoke_pending_in(
                tx, room.id, target.id, actor.id, f"banned by {actor.username}"
            )
            actor_role, target_role = await _roles_for(tx, room.id, actor.id, target.id, lock=False)
            authorize(actor_role, target_role)
            inserted = await tx.execute(
                "INSERT INTO room_bans (room_id, user_id, banned_by, reason) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (room_id, user_id) DO NOTHING",
                (room.id, target.id, actor.id, reason),
            )
            if inserted != 1:
                raise Conflict(f"{target.username} is already banned from {room.name}")
            removed = await tx.execute(
                "DELETE FROM room_members WHERE room_id = %s AND user_id = %s", (room.id, target.id)
            )
            await AuditStore.record_in(tx, actor.username, "ban", _target(room, target), detail=reason)
            ref = _ref(room)
            await outbox.add_in(tx, [
                UserBanned(ref, target.id, target.username, actor.username, reason),
                *(InvitationRevoked(i, target.id, room.name, actor.username) for i in revoked),
            ])
            return Ban(was_member=removed == 1, revoked=tuple(revoked))

        return await self._db.transaction(ban_in)

    async def unban(self, room: Room, actor: User, target: User, authorize: Authorize) -> None:
        """
        Lift a ban, after C{authorize} accepted the actor's role; audited in
        the same transaction.

        @raise AccessDenied: the actor is not a member.
        @raise NotFound: the user is not banned.
        """

        async def unban_in(tx: Transaction) -> None:
            actor_role, _ = await _roles_for(tx, room.id, actor.id, target.id)
            authorize(actor_role, None)
            removed = await tx.execute(
                "DELETE FROM room_bans WHERE room_id = %s AND user_id = %s", (room.id, target.id)
            )
            if removed != 1:
                raise NotFound(f"{target.username} is not banned from {room.name}")
            await AuditStore.record_in(tx, actor.username, "unban", _target(room, target))

        await self._db.transaction(unban_in)

    # Reading

    async def summaries(self, user_id: int, everything: bool = False) -> list[RoomSummary]:
        """
        The rooms a user can see, by name: every public room and the private
        rooms they belong to (all rooms when C{everything}: a server
        admin).  Never direct conversations.
        """
        rows = await self._db.fetchall(
            f"SELECT {ROOM_COLUMNS}, "
            "  (SELECT count(*) FROM room_members c WHERE c.room_id = r.id), coalesce(o.username, '') "
            "FROM rooms r LEFT JOIN users o ON o.id = r.owner_id "
            "WHERE r.kind = 'room' AND (r.privacy = 'public' OR %(everything)s OR EXISTS "
            "  (SELECT 1 FROM room_members m WHERE m.room_id = r.id AND m.user_id = %(user)s)) "
            "ORDER BY lower(r.name)",
            {"user": user_id, "everything": everything},
        )
        return [RoomSummary(room_from_row(r), r[8], r[9]) for r in rows]

    async def summary(self, room_id: int) -> RoomSummary | None:
        """One room with its member count and owner's name, or L{None}."""
        row = await self._db.fetchone(
            f"SELECT {ROOM_COLUMNS}, "
            "  (SELECT count(*) FROM room_members c WHERE c.room_id = r.id), coalesce(o.username, '') "
            "FROM rooms r LEFT JOIN users o ON o.id = r.owner_id WHERE r.id = %s",
            (room_id,),
        )
        return RoomSummary(room_from_row(row), row[8], row[9]) if row else None

    async def members(self, room_id: int) -> list[Member]:
        """Every member of the room, highest role first, then by name."""
        rows = await self._db.fetchall(
            f"SELECT {MEMBER_COLUMNS} FROM room_members m JOIN users u ON u.id = m.user_id "
            "WHERE m.room_id = %s ORDER BY array_position(%s::text[], m.role), lower(u.username)",
            (room_id, list(ROLES)),
        )
        return [member_from_row(r) for r in rows]

    async def bans(self, room_id: int) -> list[BanEntry]:
        """The bans on the room, oldest first."""
        rows = await self._db.fetchall(
            "SELECT u.username, coalesce(b.username, ''), rb.created_at FROM room_bans rb "
            "JOIN users u ON u.id = rb.user_id LEFT JOIN users b ON b.id = rb.banned_by "
            "WHERE rb.room_id = %s ORDER BY rb.created_at, lower(u.username)",
            (room_id,),
        )
        return [BanEntry(r[0], r[1], to_ms(r[2])) for r in rows]

    async def memberships_of(self, user_id: int) -> list[tuple[Room, str]]:
        """The rooms (never direct conversations) the user is a member of, with their role there, by name."""
        rows = await self._db.fetchall(
            f"SELECT {ROOM_COLUMNS}, m.role FROM room_members m JOIN rooms r ON r.id = m.room_id "
            "WHERE m.user_id = %s AND r.kind = 'room' ORDER BY lower(r.name)",
            (user_id,),
        )
        return [(room_from_row(r[:8]), r[8]) for r in rows]

    async def co_member_ids(self, user_id: int) -> list[int]:
        """
        The ids of everyone who shares a room or a direct conversation with
        the user (the audience of their presence), without the user.
        """
        rows = await self._db.fetchall(
            "SELECT DISTINCT other.user_id FROM room_members mine "
            "JOIN room_members other ON other.room_id = mine.room_id AND other.user_id <> mine.user_id "
            "WHERE mine.user_id = %s",
            (user_id,),
        )
        return [r[0] for r in rows]


async def _lock(tx: Transaction, room_id: int) -> Room | None:
    """
    Lock the room's row against other membership changes until the
    transaction ends (joins, which take a share lock, wait too); L{None}
    when the room is gone.  C{FOR NO KEY UPDATE} leaves foreign-key checks
    (an invitation's acceptance adding a member) unblocked.
    """
    row = await tx.fetchone(f"SELECT {ROOM_COLUMNS} FROM rooms r WHERE r.id = %s FOR NO KEY UPDATE", (room_id,))
    return room_from_row(row) if row else None


async def _roles_for(
    tx: Transaction, room_id: int, actor_id: int, target_id: int, lock: bool = True
) -> tuple[str, str | None]:
    """
    The roles of the actor and the target in the room, read under the
    room's lock (taken here unless the caller holds it).

    @raise NotFound: the room is gone.
    @raise AccessDenied: the actor is not a member.
    """
    if lock and await _lock(tx, room_id) is None:
        raise NotFound("that room no longer exists")
    rows = await tx.fetchall(
        "SELECT user_id, role FROM room_members WHERE room_id = %s AND user_id IN (%s, %s)",
        (room_id, actor_id, target_id),
    )
    roles = dict(rows)
    if actor_id not in roles:
        raise AccessDenied("you are not a member of this room")
    return roles[actor_id], roles.get(target_id)


async def _promote_successor(tx: Transaction, room_id: int) -> tuple[Member, str]:
    """
    Make the longest-standing member of the highest role below owner the
    room's owner (the room has members and no owner left); that member and
    the role they had.
    """
    row = await tx.fetchone(
        "WITH pick AS ("
        "  SELECT room_id, user_id, role FROM room_members WHERE room_id = %s AND role = ANY(%s::text[]) "
        "  ORDER BY array_position(%s::text[], role), joined_at, user_id LIMIT 1) "
        "UPDATE room_members AS m SET role = 'owner' FROM users u, pick "
        "WHERE u.id = m.user_id AND (m.room_id, m.user_id) = (pick.room_id, pick.user_id) "
        f"RETURNING {MEMBER_COLUMNS}, pick.role",
        (room_id, list(SUCCESSION), list(SUCCESSION)),
    )
    return member_from_row(row), row[-1]


def _ref(room: Room) -> RoomRef:
    """A room (of kind C{room}) as its events name it."""
    return RoomRef(room.id, room.name)


def _target(room: Room, user: User) -> str:
    """The audit target of a moderation action: C{<room>/<user>}."""
    return f"{room.name}/{user.username}"
