# -*- test-case-name: tests.test_dms -*-
"""
Direct messages: DM, DM_HISTORY, LIST_CONVERSATIONS, and the delivery at
login of what arrived while the user had no connection.

A conversation is a two-member room of kind C{direct}, created by the first
C{DM} between two users; every message command (edit, delete, react,
reply, thread, search, mark read) works on its messages.  On the wire it is
named C{@<the other party>}.
"""

from lairchat import events, validation
from lairchat.command import Command, Extension, Reply
from lairchat.domain import messages
from lairchat.messaging import before_id, history_limit
from lairchat.wire import history_line, render


class DirectMessage(Command):
    """Send a direct message."""

    name = "DM"
    syntax = "DM:<user>:<text>"
    summary = "Send a direct message; stored and delivered at login if the user is offline"
    arity = (2, 2)
    rate_class = "message"

    def parse(self, arguments):
        """A username and 1-4000 characters of text."""
        return validation.username(arguments[0]), validation.text(arguments[1])

    async def run(self, context, parsed):
        """Store it; PRIVATE_MESSAGE to the recipient and the sender's other connections."""
        name, text = parsed
        message, other = await messages.send_direct(context.actor, name, text)
        return Reply.ok(other.username, message.id, message.created_ms)


class DirectHistory(Command):
    """A page of a direct conversation."""

    name = "DM_HISTORY"
    syntax = "DM_HISTORY:<user>[:<limit>[:<before_id>]]"
    summary = "Show your direct messages with a user, oldest first (limit 1-200, default 50)"
    arity = (1, 3)

    def parse(self, arguments):
        """A username, an optional limit and an optional before id."""
        rest = arguments[1:] + [None, None]
        return validation.username(arguments[0]), history_limit(rest[0]), before_id(rest[1])

    async def run(self, context, parsed):
        """No conversation yet is an empty history."""
        name, limit, before = parsed
        other, found = await messages.direct_history(context.actor, name, limit, before)
        label = f"@{other.username}"
        return Reply.ok(other.username, len(found), lines=[history_line(label, m) for m in found])


class ListConversations(Command):
    """Every direct conversation, the most recent first."""

    name = "LIST_CONVERSATIONS"
    syntax = "LIST_CONVERSATIONS"
    summary = "List your direct conversations with the last message's time and how many are unread"

    async def run(self, context, parsed):
        """One CONVERSATION line each."""
        conversations = await messages.conversations(context.actor)
        lines = [render("CONVERSATION", c.other.username, c.last_ms, c.unread) for c in conversations]
        return Reply.ok(len(lines), lines=lines)


class OfflineDelivery(Extension):
    """
    At login, the direct messages that arrived while the user had no
    connection, as C{PRIVATE_MESSAGE} events, oldest first.
    """

    async def login_events(self, context, user):
        """The undelivered messages (the newest few hundred), now noted as delivered."""
        connection = context.connection
        left_out, found = await messages.offline_deliveries(context.actor, user)
        # what arrived live while they were taken is not handed over twice
        live = connection.direct_messages_shown_at_login()
        found = [e for e in found if e.message_id not in live]
        connection.caught_up(e.message_id for e in found)
        if left_out:
            notice = f"{left_out} older direct messages arrived while you were away; see LIST_CONVERSATIONS and DM_HISTORY"
            return [events.Notice(user.id, notice), *found]
        return found


dm = DirectMessage()
dm_history = DirectHistory()
list_conversations = ListConversations()
offline_delivery = OfflineDelivery()
