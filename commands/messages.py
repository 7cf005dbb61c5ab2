# -*- test-case-name: tests.test_messages -*-
"""
Messages: SEND_MESSAGE (and plain lines), REPLY_MESSAGE, EDIT_MESSAGE,
DELETE_MESSAGE, REACT_MESSAGE, UNREACT_MESSAGE, GET_HISTORY, GET_THREAD,
GET_REACTIONS, SEARCH_MESSAGES, MARK_READ and UNREAD.

They work alike on rooms and on direct conversations (named C{@<user>}).
This module is their wire form; what they do is in
L{lairchat.domain.messages}.
"""

from lairchat import validation
from lairchat.command import Command, Reply
from lairchat.domain import messages
from lairchat.errors import InvalidFormat, InvalidInput
from lairchat.messaging import before_id, conversation_ref, history_limit
from lairchat.store.messages import SEARCH_MAX
from lairchat.wire import history_line, render

SEARCH_QUERY_MAX = 200
"""The longest search query, in characters."""


class SendMessage(Command):
    """Send a message to a room (plain lines come here too)."""

    name = "SEND_MESSAGE"
    syntax = "SEND_MESSAGE:<room>:<text>"
    summary = "Send a message to a room you are a member of (@<user> sends a direct message)"
    arity = (2, 2)
    rate_class = "message"
    pipelined = True

    def parse(self, arguments):
        """A room name (or C{@<user>}) and 1-4000 characters of text."""
        return conversation_ref(arguments[0]), validation.text(arguments[1])

    async def run(self, context, parsed):
        """Store it, then tell the other members."""
        ref, text = parsed
        sent = await messages.send(context.actor, ref, text)
        return Reply.ok(sent.name, sent.message.id, sent.message.created_ms)


class ReplyMessage(Command):
    """Reply to a message, in its room, as part of its thread."""

    name = "REPLY_MESSAGE"
    syntax = "REPLY_MESSAGE:<parent_id>:<text>"
    summary = "Reply to a message; threads are one level deep (a reply to a reply joins the same thread)"
    arity = (2, 2)
    rate_class = "message"

    def parse(self, arguments):
        """A message id and the text."""
        return validation.identifier(arguments[0], "parent_id"), validation.text(arguments[1])

    async def run(self, context, parsed):
        """Store the reply under the thread's root; tell the room."""
        parent_id, text = parsed
        sent = await messages.reply(context.actor, parent_id, text)
        return Reply.ok(sent.name, sent.message.id, sent.message.created_ms)


class EditMessage(Command):
    """Change the text of one's own message."""

    name = "EDIT_MESSAGE"
    syntax = "EDIT_MESSAGE:<id>:<text>"
    summary = "Edit the text of a message you sent"
    arity = (2, 2)
    rate_class = "message"

    def parse(self, arguments):
        """A message id and the new text."""
        return validation.identifier(arguments[0]), validation.text(arguments[1])

    async def run(self, context, parsed):
        """Only the author, while a member, edits."""
        message_id, text = parsed
        await messages.edit(context.actor, message_id, text)
        return Reply.ok(message_id)


class DeleteMessage(Command):
    """Delete a message: one's own, or anyone's as a moderator."""

    name = "DELETE_MESSAGE"
    syntax = "DELETE_MESSAGE:<id>"
    summary = "Delete a message you sent, or any message of a room you moderate"
    arity = (1, 1)

    def parse(self, arguments):
        """A message id."""
        return validation.identifier(arguments[0])

    async def run(self, context, message_id):
        """The author, or a member whose role allows it."""
        await messages.delete(context.actor, message_id)
        return Reply.ok(message_id)


class _Reaction(Command):
    """
    What adding and taking back a reaction share on the wire: the
    arguments and the reply.  Subclasses say which it is.
    """

    arity = (2, 2)
    rate_class = "message"
    adds = True

    def parse(self, arguments):
        """A message id and an emoji."""
        return validation.identifier(arguments[0]), validation.emoji(arguments[1])

    async def run(self, context, parsed):
        """React (or take it back); the room is told."""
        message_id, emoji = parsed
        await messages.react(context.actor, message_id, emoji, self.adds)
        return Reply.ok(message_id, emoji)


class ReactMessage(_Reaction):
    """Add a reaction to a message."""

    name = "REACT_MESSAGE"
    syntax = "REACT_MESSAGE:<id>:<emoji>"
    summary = "React to a message (an emoji or a short word, no spaces or colons)"


class UnreactMessage(_Reaction):
    """Take back a reaction."""

    name = "UNREACT_MESSAGE"
    syntax = "UNREACT_MESSAGE:<id>:<emoji>"
    summary = "Take back your reaction to a message"
    adds = False


class GetHistory(Command):
    """A page of a room's (or conversation's) history."""

    name = "GET_HISTORY"
    syntax = "GET_HISTORY:<room>[:<limit>[:<before_id>]] or GET_HISTORY:<limit>[:<before_id>]"
    summary = "Show a room's messages, oldest first (limit 1-200, default 50; page back with before_id)"
    arity = (1, 3)

    def parse(self, arguments):
        """
        A room name (or C{@<user>}) with an optional limit and before id, or,
        when the first argument is a number, a limit (and before id) for
        the current room.
        """
        first = arguments[0]
        if first.isascii() and first.isdigit():
            if len(arguments) > 2:
                raise InvalidFormat(f"too many arguments; usage: {self.syntax}")
            return None, history_limit(first), before_id(arguments[1] if len(arguments) > 1 else None)
        rest = arguments[1:] + [None, None]
        return conversation_ref(first), history_limit(rest[0]), before_id(rest[1])

    async def run(self, context, parsed):
        """Members only; no room named means the current one."""
        ref, limit, before = parsed
        if ref is None:
            ref = context.connection.current_room
            if ref is None:
                raise InvalidInput("you are in no room: GET_HISTORY:<room> or JOIN_ROOM:<room>",
                                   name="NO_CURRENT_ROOM")
        page = await messages.history(context.actor, ref, limit, before)
        return Reply.ok(page.name, len(page.messages), lines=[history_line(page.name, m) for m in page.messages])


class GetThread(Command):
    """A thread: its root and the replies."""

    name = "GET_THREAD"
    syntax = "GET_THREAD:<id>"
    summary = "Show a message's thread (the root and its replies) as HISTORY lines"
    arity = (1, 1)

    def parse(self, arguments):
        """A message id: the root or any reply of the thread."""
        return validation.identifier(arguments[0])

    async def run(self, context, message_id):
        """The OK line names the thread's root."""
        root, page = await messages.thread(context.actor, message_id)
        return Reply.ok(root, len(page.messages), lines=[history_line(page.name, m) for m in page.messages])


class GetReactions(Command):
    """Who reacted to a message, and with what."""

    name = "GET_REACTIONS"
    syntax = "GET_REACTIONS:<id>"
    summary = "List a message's reactions with their counts and who reacted"
    arity = (1, 1)

    def parse(self, arguments):
        """A message id."""
        return validation.identifier(arguments[0])

    async def run(self, context, message_id):
        """One REACTION line per emoji."""
        summaries = await messages.reactions(context.actor, message_id)
        lines = [render("REACTION", message_id, s.emoji, s.count, ",".join(s.users)) for s in summaries]
        return Reply.ok(message_id, len(lines), lines=lines)


class SearchMessages(Command):
    """Full-text search over one's own rooms and conversations."""

    name = "SEARCH_MESSAGES"
    syntax = "SEARCH_MESSAGES:<query>"
    summary = (f"Search the messages of your rooms and conversations, best first, at most {SEARCH_MAX} "
               '(words; "a phrase"; -excluded; or)')
    arity = (1, 1)

    def parse(self, arguments):
        """1-200 characters."""
        return validation.text(arguments[0], "query", SEARCH_QUERY_MAX)

    async def run(self, context, query):
        """SEARCH_RESULT lines, best match first."""
        found = await messages.search(context.actor, query, SEARCH_MAX)
        lines = [
            render("SEARCH_RESULT", f.label, f.message.id, f.message.sender, f.message.created_ms, f.message.text)
            for f in found
        ]
        return Reply.ok(len(lines), lines=lines)


class MarkRead(Command):
    """Move one's read marker in a room or conversation."""

    name = "MARK_READ"
    syntax = "MARK_READ:<room>:<id>"
    summary = "Mark a room's (or @user's) messages read up to this id"
    arity = (2, 2)

    def parse(self, arguments):
        """A room name (or C{@<user>}) and a message id of it."""
        return conversation_ref(arguments[0]), validation.identifier(arguments[1])

    async def run(self, context, parsed):
        """The marker never moves back; the id must be a message of that room."""
        ref, message_id = parsed
        name = await messages.mark_read(context.actor, ref, message_id)
        return Reply.ok(name, message_id)


class UnreadCounts(Command):
    """How many unread messages each room and conversation holds."""

    name = "UNREAD"
    syntax = "UNREAD"
    summary = "Count your unread messages per room and direct conversation"

    async def run(self, context, parsed):
        """One UNREAD line per room or conversation with unread messages."""
        unread = await messages.unread(context.actor)
        return Reply.ok(len(unread), lines=[render("UNREAD", u.label, u.count) for u in unread])


send_message = SendMessage()
reply_message = ReplyMessage()
edit_message = EditMessage()
delete_message = DeleteMessage()
react_message = ReactMessage()
unreact_message = UnreactMessage()
get_history = GetHistory()
get_thread = GetThread()
get_reactions = GetReactions()
search_messages = SearchMessages()
mark_read = MarkRead()
unread = UnreadCounts()
