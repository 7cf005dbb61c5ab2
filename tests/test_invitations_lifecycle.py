"""
Tests for L{lairchat.invitation_lifecycle}, the pure rules of an
invitation's life: a hypothesis state machine drives random actions by
random actors at random times over several invitations and checks that no
illegal transition is ever recorded; and for the pure template filling of
the invitation domain and the parsing of the invitation commands.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from twisted.trial.unittest import SynchronousTestCase

from commands.invitations import parse_ref, parse_status
from lairchat import invitation_lifecycle as lifecycle
from lairchat.domain.invitations import InvitationRef, fill_template, iso_moment
from lairchat.errors import ChatError, Gone, InvalidFormat, InvalidInput, NotFound, PermissionDenied
from lairchat.validation import INVITATION_STATUSES, ROLES

TTL = 1000
"""Each invitation's lifetime in the machine, in ms."""

ACTORS = ("recipient", "sender", "other", "system") + tuple(f"room_{r}" for r in ROLES)
"""Who may try an action: the parties, a stranger, the server, a member of each room role."""


def actor_for(who: str) -> lifecycle.Actor:
    """The L{lifecycle.Actor} for a name of L{ACTORS}."""
    if who.startswith("room_"):
        return lifecycle.Actor(room_role=who[len("room_"):])
    return lifecycle.Actor(is_recipient=who == "recipient", is_sender=who == "sender", is_system=who == "system")


def entitled(action: str, who: str) -> bool:
    """
    The rules of issue 4 written out independently of the code: only the
    recipient answers, the sender or an admin+ of the room (or a ban, the
    server) revokes, only the server expires.
    """
    if action in ("accept", "decline"):
        return who == "recipient"
    if action == "revoke":
        return who in ("sender", "system", "room_admin", "room_owner")
    return who == "system"


class InvitationLifecycle(RuleBasedStateMachine):
    """
    Invitations created at various times; actions tried on them by anyone
    at any time.  What the rules allow is applied to a simulated store,
    which records each transition.
    """

    invitations = Bundle("invitations")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0
        self.status: dict[int, str] = {}
        self.expires: dict[int, int] = {}
        self.history: dict[int, list[tuple[str, str, str, int]]] = {}

    @rule(target=invitations)
    def invite(self):
        """A new pending invitation, expiring TTL from now."""
        invitation = len(self.status)
        self.status[invitation] = lifecycle.PENDING
        self.expires[invitation] = self.now + TTL
        self.history[invitation] = []
        return invitation

    @rule(ms=st.integers(min_value=0, max_value=2 * TTL))
    def wait(self, ms):
        """Time passes."""
        self.now += ms

    @rule(invitation=invitations, action=st.sampled_from(sorted(lifecycle.OUTCOMES)), who=st.sampled_from(ACTORS))
    def act(self, invitation, action, who):
        """Someone tries something; the store changes only if the rules say yes."""
        old = self.status[invitation]
        try:
            lifecycle.authorize(action, actor_for(who))
            new = lifecycle.advance(old, action, self.expires[invitation], self.now)
        except (ChatError, ValueError) as error:
            if isinstance(error, Gone):
                assert old != lifecycle.PENDING or self.expires[invitation] <= self.now
            if isinstance(error, (NotFound, PermissionDenied)):
                assert not entitled(action, who), (action, who)
            return
        assert entitled(action, who), (action, who)
        self.status[invitation] = new
        self.history[invitation].append((old, new, action, self.now))

    @invariant()
    def only_allowed_transitions_are_recorded(self):
        """Each invitation changed at most once, from pending, to its action's outcome, at a legal time."""
        for invitation, changes in self.history.items():
            assert len(changes) <= 1, changes
            for old, new, action, at in changes:
                assert lifecycle.is_allowed(old, new), (old, new)
                assert old == lifecycle.PENDING and new == lifecycle.OUTCOMES[action]
                due = at >= self.expires[invitation]
                assert due == (action == "expire"), (action, at, self.expires[invitation])

    @invariant()
    def stored_status_matches_history(self):
        """The status is the last recorded one, or pending when nothing happened."""
        for invitation, changes in self.history.items():
            expected = changes[-1][1] if changes else lifecycle.PENDING
            assert self.status[invitation] == expected


class InvitationLifecycleMachineTests(SynchronousTestCase):
    """The state machine, run by trial."""

    def test_no_illegal_transition(self):
        """Random actions by random actors at random times never record an illegal transition."""
        run_state_machine_as_test(
            InvitationLifecycle, settings=settings(max_examples=200, stateful_step_count=40, deadline=None)
        )


class TransitionTableTests(SynchronousTestCase):
    """The table of transitions and the messages."""

    def test_only_from_pending(self):
        """Exactly the four changes out of pending are allowed; nothing leaves a final status."""
        for old in INVITATION_STATUSES:
            for new in INVITATION_STATUSES:
                self.assertEqual(lifecycle.is_allowed(old, new),
                                 old == "pending" and new in lifecycle.FINAL, (old, new))

    def test_gone_messages(self):
        """Each final status has its own message; a pending one has none."""
        messages = {lifecycle.gone_message(s) for s in lifecycle.FINAL}
        self.assertEqual(len(messages), 4)
        self.assertRaises(KeyError, lifecycle.gone_message, "pending")

    @given(st.sampled_from(INVITATION_STATUSES), st.integers(0, 10**13), st.integers(0, 10**13))
    def test_effective_status(self, status, expires, now):
        """Only a pending, due invitation reads differently: as expired."""
        effective = lifecycle.effective_status(status, expires, now)
        if status == "pending" and expires <= now:
            self.assertEqual(effective, "expired")
        else:
            self.assertEqual(effective, status)

    def test_unknown_action_is_a_bug(self):
        """A misspelt action is a KeyError."""
        self.assertRaises(KeyError, lifecycle.advance, "pending", "acept", 10, 0)
        self.assertRaises(KeyError, lifecycle.authorize, "acept", lifecycle.Actor(is_recipient=True))

    def test_who_sees(self):
        """The parties, room admins and the server see an invitation; members and strangers do not."""
        self.assertTrue(lifecycle.Actor(is_recipient=True).can_see)
        self.assertTrue(lifecycle.Actor(is_sender=True).can_see)
        self.assertTrue(lifecycle.Actor(room_role="admin").can_see)
        self.assertFalse(lifecycle.Actor(room_role="moderator").can_see)
        self.assertFalse(lifecycle.Actor().can_see)

    def test_recipient_cannot_revoke(self):
        """The recipient sees the invitation but may not revoke it: 1002, not 1501."""
        error = self.assertRaises(PermissionDenied, lifecycle.authorize, "revoke",
                                  lifecycle.Actor(is_recipient=True))
        self.assertEqual(error.code, 1002)


class TemplateTests(SynchronousTestCase):
    """Filling a room's invitation template."""

    def test_placeholders(self):
        """The four placeholders are filled; the rest stays."""
        self.assertEqual(
            fill_template("{sender} invites {recipient} to {room} until {expires}.", "alice", "bob", "lair", 0),
            "alice invites bob to lair until 1970-01-01T00:00:00Z.",
        )

    def test_other_braces_kept(self):
        """Unknown placeholders and lone braces are text, never an error."""
        self.assertEqual(fill_template("{x} {room {room}} {", "a", "b", "lair", 0), "{x} {room lair} {")

    @given(st.text(alphabet=st.characters(blacklist_characters="{}")))
    def test_without_braces_unchanged(self, text):
        """A template with no braces is its own message."""
        self.assertEqual(fill_template(text, "a", "b", "c", 0), text)

    @given(st.text(), st.text(alphabet="abc", min_size=1))
    def test_never_fails(self, template, name):
        """Any template fills without error, and no known placeholder is left."""
        filled = fill_template(template, name, name, name, 0)
        for placeholder in ("{sender}", "{recipient}", "{room}", "{expires}"):
            self.assertNotIn(placeholder, filled)

    def test_iso_moment(self):
        """Epoch ms as an ISO 8601 UTC time."""
        self.assertEqual(iso_moment(1_000), "1970-01-01T00:00:01Z")


class ArgumentTests(SynchronousTestCase):
    """References and status filters."""

    def test_refs(self):
        """LATEST in any case, an id, a room name."""
        self.assertEqual(parse_ref("latest"), InvitationRef())
        self.assertEqual(parse_ref("LATEST"), InvitationRef())
        self.assertEqual(parse_ref("42"), InvitationRef(id=42))
        self.assertEqual(parse_ref("lair"), InvitationRef(room="lair"))
        self.assertRaises(InvalidFormat, parse_ref, "_x")
        self.assertRaises(InvalidInput, parse_ref, "0")

    def test_status(self):
        """Default pending; all is no filter; anything else is refused."""
        self.assertEqual(parse_status([], 0), "pending")
        self.assertEqual(parse_status(["ACCEPTED"], 0), "accepted")
        self.assertIsNone(parse_status(["all"], 0))
        self.assertRaises(InvalidInput, parse_status, ["maybe"], 0)
