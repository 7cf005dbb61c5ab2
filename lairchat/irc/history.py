# -*- test-case-name: tests.test_irc_history -*-
"""
IRCv3 C{draft/chathistory} and C{draft/read-marker}: C{CHATHISTORY} and
C{MARKREAD}.

History is the conversation history the line protocol's C{GET_HISTORY}
reads (L{lairchat.domain.messages.history} for a channel, which must be
one of the client's rooms; L{lairchat.domain.messages.direct_history} for
a nick), read within a L{lairchat.models.HistoryWindow}: C{msgid=}
selectors bound by message id, C{timestamp=} selectors by the time a
message shows (to the millisecond); every bound is exclusive, except the
middle of C{AROUND}.  Results are oldest first, at most
L{CHATHISTORY_MAX}, in a C{chathistory} batch, each message a C{PRIVMSG} (a notice a C{NOTICE})
from its sender with its C{msgid} and C{time} (rendered as the live
message was, L{lairchat.irc.render.render_event}).

Read markers are lairchat's, which are message ids
(L{lairchat.domain.messages.mark_read_until}): C{MARKREAD <target>
timestamp=<t>} moves the marker up to the newest message sent at or
before C{t}, and the marker reads back as that message's time.
"""

from typing import Any

from lairchat.domain import messages
from lairchat.errors import AccessDenied, InvalidInput, NotFound
from lairchat.events import RoomRef
from lairchat.irc.batch import batch_for
from lairchat.irc.channels import room_of
from lairchat.irc.message import Message, message
from lairchat.irc.render import (
    TAG_CAPS, channel, markread_line, parse_time_tag, render_event, stored_message_event, time_tag,
)
from lairchat.irc.replies import Numeric
from lairchat.messaging import HISTORY_MAX
from lairchat.models import HistoryWindow

CHATHISTORY_MAX = HISTORY_MAX
"""The most messages (or targets) one C{CHATHISTORY} returns (C{CHATHISTORY=} in C{005})."""

SUBCOMMANDS = {"LATEST": 3, "BEFORE": 3, "AFTER": 3, "AROUND": 3, "BETWEEN": 4, "TARGETS": 3}
"""The C{CHATHISTORY} subcommands, with the number of parameters each takes after its name."""


def parse_selector(text: str, star: bool = False) -> tuple[str, int] | None:
    """
    A message selector: C{("msgid", id)} or C{("timestamp", ms)}; L{None}
    for C{*} where C{star} allows it.

    @raise Numeric: C{FAIL CHATHISTORY INVALID_PARAMS} for anything else.
    """
    if star and text == "*":
        return None
    kind, _, value = text.partition("=")
    try:
        if kind == "msgid" and value.isascii() and value.isdigit():
            return "msgid", int(value)
        if kind == "timestamp":
            return "timestamp", parse_time_tag(value)
    except ValueError:
        pass
    raise Numeric("FAIL", "CHATHISTORY", "INVALID_PARAMS", text, "a selector is msgid=<id> or timestamp=<time>")


def parse_limit(text: str) -> int:
    """
    A limit: a count, cut to L{CHATHISTORY_MAX} (0 means the most).

    @raise Numeric: C{FAIL CHATHISTORY INVALID_PARAMS} for no count.
    """
    if not (text.isascii() and text.isdigit()):
        raise Numeric("FAIL", "CHATHISTORY", "INVALID_PARAMS", text, "the limit is a count")
    count = int(text)
    return CHATHISTORY_MAX if count == 0 else min(count, CHATHISTORY_MAX)


def after(selector: tuple[str, int] | None, inclusive: bool = False) -> dict:
    """The window bound of messages after C{selector} (at it too when C{inclusive})."""
    if selector is None:
        return {}
    kind, value = selector
    value -= 1 if inclusive else 0
    return {"after_id": value} if kind == "msgid" else {"after_ms": value}


def before(selector: tuple[str, int] | None) -> dict:
    """The window bound of messages before C{selector}."""
    if selector is None:
        return {}
    kind, value = selector
    return {"before_id": value} if kind == "msgid" else {"before_ms": value}


class HistoryCommands:
    """
    C{CHATHISTORY} and C{MARKREAD}, for L{lairchat.irc.commands.CommandTable}
    (which this is a base of, and whose C{numeric}, C{actor},
    C{require_login} and C{server} these use).
    """

    server: Any

    # CHATHISTORY

    async def irc_CHATHISTORY(self, connection: Any, params: tuple) -> list:
        """
        C{CHATHISTORY LATEST|BEFORE|AFTER|AROUND <target> <selector> <limit>},
        C{CHATHISTORY BETWEEN <target> <selector> <selector> <limit>}
        (either way round) and C{CHATHISTORY TARGETS <timestamp> <timestamp>
        <limit>}.  A target that is no room of the client's, or no user, is
        C{FAIL CHATHISTORY INVALID_TARGET}; bad parameters C{INVALID_PARAMS}.
        """
        if not params:
            raise Numeric("FAIL", "CHATHISTORY", "NEED_MORE_PARAMS", "*", "Missing parameters")
        sub = params[0].upper()
        if sub not in SUBCOMMANDS:
            raise Numeric("FAIL", "CHATHISTORY", "INVALID_PARAMS", params[0], "Unknown subcommand")
        if len(params) < 1 + SUBCOMMANDS[sub]:
            raise Numeric("FAIL", "CHATHISTORY", "NEED_MORE_PARAMS", sub, "Missing parameters")
        self.require_login(connection, "CHATHISTORY")
        if sub == "TARGETS":
            return await self.history_targets(connection, params[1], params[2], parse_limit(params[3]))
        target, limit = params[1], parse_limit(params[-1])
        first = parse_selector(params[2], star=sub == "LATEST")
        if sub == "LATEST":
            found = await self.read_history(connection, sub, target, limit, HistoryWindow(**after(first)))
        elif sub == "BEFORE":
            found = await self.read_history(connection, sub, target, limit, HistoryWindow(**before(first)))
        elif sub == "AFTER":
            found = await self.read_history(connection, sub, target, limit, HistoryWindow(**after(first), oldest=True))
        elif sub == "AROUND":
            earlier = limit // 2
            found = await self.read_history(connection, sub, target, earlier, HistoryWindow(**before(first))) \
                if earlier else []
            found += await self.read_history(connection, sub, target, limit - earlier,
                                             HistoryWindow(**after(first, inclusive=True), oldest=True))
        else:
            second = parse_selector(params[3])
            if await self.is_later(connection, first, second):
                window = HistoryWindow(**after(second), **before(first))
            else:
                window = HistoryWindow(**after(first), **before(second), oldest=True)
            found = await self.read_history(connection, sub, target, limit, window)
        return batch_for(connection.caps, connection.new_batch_ref, "chathistory", [target], found,
                         self.server.config.server_name)

    async def is_later(self, connection: Any, first: tuple[str, int], second: tuple[str, int]) -> bool:
        """
        Whether the message C{first} selects comes after the one C{second}
        does (a message id is compared with a time by its message's time).
        """
        if first[0] == second[0]:
            return first[1] > second[1]
        moments = []
        for kind, value in (first, second):
            if kind == "msgid":
                try:
                    value = (await messages.visible_message(self.actor(connection), value)).message.created_ms
                except (NotFound, AccessDenied):
                    return False
            moments.append(value)
        return moments[0] > moments[1]

    async def read_history(self, connection: Any, sub: str, target: str, limit: int,
                           window: HistoryWindow) -> list[Message]:
        """
        The lines of the messages of a channel or a conversation with a
        nick within C{window}, oldest first, as the client sees them.

        @raise Numeric: C{FAIL CHATHISTORY INVALID_TARGET}.
        """
        actor = self.actor(connection)
        user = connection.user
        invalid = Numeric("FAIL", "CHATHISTORY", "INVALID_TARGET", sub, target, "Messages could not be retrieved")
        try:
            if target.startswith("#"):
                try:
                    name = room_of(target)
                except Numeric:
                    raise invalid from None
                page = await messages.history(actor, name, limit, None, window)
                stored = page.messages
                room = RoomRef(0, page.name)
            else:
                try:
                    other, stored = await messages.direct_history(actor, target, limit, None, window)
                except InvalidInput:
                    # a conversation with oneself does not exist in lairchat
                    return []
                room = RoomRef(0, "", ((user.id, user.username), (other.id, other.username)))
        except (NotFound, AccessDenied):
            raise invalid from None
        caps = frozenset(connection.caps) | TAG_CAPS
        server_name = self.server.config.server_name
        lines: list[Message] = []
        for found in stored:
            lines += render_event(stored_message_event(found, room), user.id, user.username, server_name, caps)
        return lines

    async def history_targets(self, connection: Any, start: str, end: str, limit: int) -> list:
        """
        C{CHATHISTORY TARGETS}: a C{CHATHISTORY TARGETS <target> <time>} line
        for each channel and nick whose newest message came strictly
        between the two times (either way round), the least recent first,
        in a C{draft/chathistory-targets} batch.
        """
        first, second = parse_selector(start), parse_selector(end)
        if first[0] != "timestamp" or second[0] != "timestamp":
            raise Numeric("FAIL", "CHATHISTORY", "INVALID_PARAMS", "TARGETS", "TARGETS takes two timestamps")
        low, high = sorted((first[1], second[1]))
        server_name = self.server.config.server_name
        lines = [message("CHATHISTORY", "TARGETS", channel(a.name) if a.kind != "direct" else a.name,
                         time_tag(a.last_ms), source=server_name)
                 for a in await messages.activity(self.actor(connection), low, high, limit)]
        return batch_for(connection.caps, connection.new_batch_ref, "draft/chathistory-targets", [], lines,
                         server_name)

    # MARKREAD

    async def irc_MARKREAD(self, connection: Any, params: tuple) -> list:
        """
        C{MARKREAD <target>}: where the client's read marker of a channel
        or conversation is (C{MARKREAD <target> timestamp=<t>}, or C{*}).
        C{MARKREAD <target> timestamp=<t>} moves it up to the newest message
        at or before C{t} (never back) and answers where it is; when it
        moved, the user's other connections on every node are told
        (L{lairchat.events.ReadMarkerMoved}: a C{MARKREAD} for those with
        C{draft/read-marker}).
        """
        if not params or not params[0]:
            raise Numeric("FAIL", "MARKREAD", "NEED_MORE_PARAMS", "Missing parameters")
        self.require_login(connection, "MARKREAD")
        target = params[0]
        if len(params) < 2:
            return [await self.read_marker_line(connection, target)]
        selector = params[1]
        kind, _, value = selector.partition("=")
        try:
            if kind != "timestamp":
                raise ValueError(selector)
            ms = parse_time_tag(value)
        except ValueError:
            raise Numeric("FAIL", "MARKREAD", "INVALID_PARAMS", selector, "the marker is timestamp=<time>") from None
        try:
            _, marker = await messages.mark_read_until(self.actor(connection), self.conversation_of(target), ms)
        except (NotFound, AccessDenied, InvalidInput):
            raise Numeric("FAIL", "MARKREAD", "INVALID_PARAMS", target, "no such channel or conversation") from None
        return [self.marker_line(connection, target, marker)]

    def conversation_of(self, target: str) -> str:
        """
        The domain's name of what a C{MARKREAD} target names: a room
        (C{#room}) or C{@<nick>}.

        @raise Numeric: C{FAIL MARKREAD INVALID_PARAMS} for a bad channel name.
        """
        if not target.startswith("#"):
            return "@" + target
        try:
            return room_of(target)
        except Numeric:
            raise Numeric("FAIL", "MARKREAD", "INVALID_PARAMS", target, "no such channel or conversation") from None

    async def read_marker_line(self, connection: Any, target: str) -> Message:
        """The C{MARKREAD} line of where the client's marker of C{target} is (C{*}: nowhere, or no such target)."""
        try:
            _, marker = await messages.read_marker(self.actor(connection), self.conversation_of(target))
        except (Numeric, NotFound, AccessDenied, InvalidInput):
            marker = None
        return self.marker_line(connection, target, marker)

    def marker_line(self, connection: Any, target: str, marker: Any) -> Message:
        """C{MARKREAD <target> timestamp=<the marker message's time>}, or C{*} for none."""
        return markread_line(target, marker.created_ms if marker is not None else None,
                                self.server.config.server_name)


__all__ = ["CHATHISTORY_MAX", "HistoryCommands", "parse_limit", "parse_selector"]
