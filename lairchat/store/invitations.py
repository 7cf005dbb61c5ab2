# -*- test-case-name: tests.test_invitations_store -*-
"""
The invitations aggregate's SQL: the C{invitations} table and the
C{invitation_events} trail written in the same transaction as every status
change.
"""

from lairchat.store.database import Database, Transaction


class InvitationStore:
    """The C{invitations} and C{invitation_events} tables."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    async def revoke_pending_in(
        tx: Transaction, room_id: int, user_id: int, actor_id: int | None, note: str
    ) -> list[int]:
        """
        Revoke the user's pending invitations to the room, inside the
        caller's transaction (a ban), recording an event for each.

        @param actor_id: who revoked them (the banning admin).
        @param note: why, kept in each event.
        @return: the ids of the invitations revoked (usually none or one).
        """
        rows = await tx.fetchall(
            "UPDATE invitations SET status = 'revoked', responded_at = now() "
            "WHERE room_id = %s AND recipient_id = %s AND status = 'pending' RETURNING id",
            (room_id, user_id),
        )
        ids = sorted(row[0] for row in rows)
        if ids:
            await tx.execute(
                "INSERT INTO invitation_events (invitation_id, status, actor_id, note) "
                "SELECT unnest(%s::bigint[]), 'revoked', %s, %s",
                (ids, actor_id, note),
            )
        return ids
