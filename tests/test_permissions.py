"""
Tests for L{lairchat.permissions}: the table of room roles to actions, and
the rules of roles acting on roles, checked over every combination.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat import permissions
from lairchat.errors import PermissionDenied
from lairchat.validation import ROLES, role_rank

roles = st.sampled_from(ROLES)
roles_or_none = st.one_of(st.none(), roles)
actions = st.sampled_from(sorted(permissions.ACTIONS))


class PermissionTableTests(SynchronousTestCase):
    """The table itself."""

    def test_every_role_has_a_row(self):
        """Each room role, and only those, has a row in the table."""
        self.assertEqual(set(permissions.PERMISSIONS), set(ROLES))

    def test_actions_are_the_owners(self):
        """The owner may do every action there is, and nothing else exists."""
        self.assertEqual(permissions.PERMISSIONS["owner"], permissions.ACTIONS)

    @given(roles, roles, actions)
    def test_higher_roles_allow_a_superset(self, higher, lower, action):
        """Whatever a role may do, every role above it may do too."""
        if role_rank(higher) >= role_rank(lower) and permissions.can(lower, action):
            self.assertTrue(permissions.can(higher, action))

    @given(actions)
    def test_non_members_may_do_nothing(self, action):
        """Without a role (not a member), every action is refused."""
        self.assertFalse(permissions.can(None, action))
        self.assertRaises(PermissionDenied, permissions.require, None, action)

    @given(roles_or_none, actions)
    def test_require_agrees_with_can(self, role, action):
        """require refuses exactly what can denies, with 1002."""
        if permissions.can(role, action):
            permissions.require(role, action)
        else:
            error = self.assertRaises(PermissionDenied, permissions.require, role, action)
            self.assertEqual(error.code, 1002)
            self.assertTrue(error.message)

    def test_unknown_action_is_a_bug(self):
        """A misspelt action is a KeyError, never a silent refusal."""
        self.assertRaises(KeyError, permissions.can, "owner", "kik")

    def test_the_documented_thresholds(self):
        """The thresholds of PROTOCOL.md: topic and kick moderator+, roles and bans admin+."""
        lowest = {
            action: min((r for r in ROLES if permissions.can(r, action)), key=role_rank)
            for action in ("set_topic", "kick", "ban", "unban", "set_role", "invite", "send", "read")
        }
        self.assertEqual(
            lowest,
            {
                "set_topic": "moderator",
                "kick": "moderator",
                "ban": "admin",
                "unban": "admin",
                "set_role": "admin",
                "invite": "member",
                "send": "guest",
                "read": "guest",
            },
        )


class RolesOnRolesTests(SynchronousTestCase):
    """outranks, can_grant, and the require_* rules built on them."""

    @given(roles, roles)
    def test_outranks_is_strict_rank_order(self, actor, target):
        """One outranks another exactly when its rank is strictly higher."""
        self.assertEqual(permissions.outranks(actor, target), role_rank(actor) > role_rank(target))

    @given(roles)
    def test_no_role_outranks_itself(self, role):
        """Nobody acts on their own role (nor on themselves)."""
        self.assertFalse(permissions.outranks(role, role))

    @given(roles, roles)
    def test_outranks_is_antisymmetric(self, first, second):
        """Two roles never outrank each other."""
        self.assertFalse(permissions.outranks(first, second) and permissions.outranks(second, first))

    @given(roles, roles)
    def test_can_grant_is_never_above_own_role(self, actor, role):
        """A role may be granted exactly when it is not above the granter's."""
        self.assertEqual(permissions.can_grant(actor, role), role_rank(role) <= role_rank(actor))

    @given(roles, roles, roles)
    def test_outranked_roles_are_grantable(self, actor, target, role):
        """Whoever outranks a role may also grant it (the ranks agree)."""
        if permissions.outranks(actor, role):
            self.assertTrue(permissions.can_grant(actor, role))

    @given(roles, roles_or_none, st.sampled_from(["kick", "ban", "set_role"]))
    def test_require_over(self, actor, target, action):
        """Acting on someone needs the action and a strictly higher role (or an outsider)."""
        allowed = permissions.can(actor, action) and (target is None or permissions.outranks(actor, target))
        if allowed:
            permissions.require_over(actor, target, action)
        else:
            error = self.assertRaises(PermissionDenied, permissions.require_over, actor, target, action)
            self.assertEqual(error.code, 1002)

    @given(roles, st.sampled_from(["kick", "ban", "set_role"]))
    def test_no_role_acts_on_itself_or_higher(self, actor, action):
        """Whatever the action, every target of equal or higher role is refused."""
        for target in ROLES:
            if role_rank(target) >= role_rank(actor):
                self.assertRaises(PermissionDenied, permissions.require_over, actor, target, action)

    @given(roles_or_none, roles)
    def test_require_grant(self, actor, role):
        """require_grant refuses exactly what can_grant denies, and any non-member."""
        if actor is not None and permissions.can_grant(actor, role):
            permissions.require_grant(actor, role)
        else:
            self.assertRaises(PermissionDenied, permissions.require_grant, actor, role)

    def test_succession_is_every_role_below_owner_highest_first(self):
        """The succession order is the role order without the owner."""
        self.assertEqual(permissions.SUCCESSION, ROLES[1:])
