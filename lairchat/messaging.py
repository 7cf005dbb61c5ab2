# -*- test-case-name: tests.test_messages -*-
"""
The rules of the message commands' arguments (pure): how a conversation
is named (a room name, or C{@<user>} for a direct conversation), and the
size and bounds of a history page.  The operations themselves are in
L{lairchat.domain.messages}.
"""

from lairchat import validation

HISTORY_DEFAULT = 50
"""Messages in a history page when no limit is given."""

HISTORY_MAX = 200
"""The largest history page."""


def conversation_ref(value: str) -> str:
    """
    An argument naming a conversation: a room name, or C{@<user>} for a
    direct conversation.
    """
    if value.startswith("@"):
        return "@" + validation.username(value[1:])
    return validation.room_name(value)


def history_limit(value: str | None) -> int:
    """A history page size: 1 to L{HISTORY_MAX}; absent or empty means L{HISTORY_DEFAULT}."""
    if value is None or value == "":
        return HISTORY_DEFAULT
    return validation.count(value, "limit", 1, HISTORY_MAX)


def before_id(value: str | None) -> int | None:
    """An optional message id that a history page ends before."""
    if value is None or value == "":
        return None
    return validation.identifier(value, "before_id")
