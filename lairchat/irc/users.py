# -*- test-case-name: tests.test_irc_e2e -*-
"""
The IRC commands about users: C{WHO}, C{WHOIS}, C{USERHOST}, C{AWAY}, C{OPER} and a
user's own C{MODE}.

A nick is an account name, and every account is a nick whether it is
online or not (a C{PRIVMSG} to an offline one is kept for them): C{WHO}
and C{WHOIS} answer for any account, an offline one shown as gone (C{G},
C{301 is offline}).  Being away (C{AWAY}) is the domain's, shared by every
node (L{lairchat.domain.accounts.set_away}); being an IRC operator
(C{OPER}) is a mark of one IRC connection, kept in memory on this node
(L{ConnectionMarks}), which nodes do not share.  The rest is the domain's
(L{lairchat.domain.rooms.memberships}, L{lairchat.domain.accounts}).
Both answer for the service nick too (L{lairchat.irc.service}).
"""

import re
from typing import Any
from weakref import WeakSet

from lairchat import validation
from lairchat.domain import accounts, rooms
from lairchat.errors import ChatError, InvalidCredentials, PermissionDenied
from lairchat.irc.message import Message
from lairchat.irc.render import channel, prefixes
from lairchat.irc.replies import Numeric
from lairchat.irc.service import SERVICE_NICK, SERVICE_REALNAME, is_service

OFFLINE = "is offline: direct messages wait for them"
"""The away text of a user with no connection on any node."""

SERVER_INFO = "lairchat: IRC and the line protocol on the same rooms"
"""The server description of C{312 RPL_WHOISSERVER}."""

SERVICE_INFO = "the server's service: line-protocol commands (/msg Lair|Serv HELP)"
"""What C{312} says of the service nick (L{lairchat.irc.service})."""


def mask_pattern(mask: str) -> re.Pattern:
    """An IRC mask (C{*} any characters, C{?} one; the rest literal) as a case-insensitive pattern."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in mask), re.IGNORECASE)


class ConnectionMarks:
    """
    What IRC keeps about its connections in memory only: the connections
    that became IRC operators.  Weakly held: a closed connection drops its
    mark.
    """

    def __init__(self) -> None:
        self.operators: WeakSet = WeakSet()

    def is_operator(self, hub: Any, user_id: int) -> bool:
        """Whether one of the user's connections on this node is an IRC operator."""
        return any(connection in self.operators for connection in hub.connections_of(user_id))

    def identity(self, hub: Any, user_id: int, nick: str) -> tuple[str, str]:
        """
        The user name and real name a user's IRC connection on this node
        gave with C{USER}; the nick for both when it has none here (a user
        offline, on the line protocol only, or on another node).
        """
        for connection in hub.connections_of(user_id):
            ident = getattr(connection, "ident", None)
            if ident:
                return ident, connection.realname or nick
        return nick, nick


class UserCommands:
    """
    C{WHO}, C{WHOIS}, C{USERHOST}, C{AWAY} and C{OPER}, for
    L{lairchat.irc.commands.CommandTable} (which this is a base of, and
    whose C{numeric}, C{actor}, C{require_login}, C{server} and C{marks}
    these use).
    """

    server: Any
    marks: ConnectionMarks

    def who_flags(self, user_id: int, here: bool, role: str | None) -> str:
        """
        The flags of a C{352}: C{H} here or C{G} gone (away or offline),
        C{*} an operator, the role's prefixes.
        """
        flags = "H" if here else "G"
        if self.marks.is_operator(self.server.hub, user_id):
            flags += "*"
        return flags + prefixes(role)

    def who_reply(self, connection: Any, where: str, user_id: int | None, nick: str, flags: str,
                  realname: str | None = None) -> Message:
        """
        One C{352 RPL_WHOREPLY} line: the user name and real name of the
        user's C{USER} (L{ConnectionMarks.identity}), the host the server;
        for no user (C{user_id} L{None}: the service nick) the nick and
        C{realname}.
        """
        server_name = self.server.config.server_name
        if user_id is None:
            ident, realname = nick, realname or nick
        else:
            ident, realname = self.marks.identity(self.server.hub, user_id, nick)
        return self.numeric(connection, "352", where, ident, server_name, server_name, nick, flags, f"0 {realname}")

    async def who_mask(self, connection: Any, mask: str) -> list:
        """
        The C{352} lines of C{WHO <mask>} (C{*} and C{?} wildcards, matched
        against nicks case-insensitively): only the client itself and those
        who share a room with it, as if every user were invisible (C{+i}):
        a mask does not list the server's accounts.
        """
        actor = self.actor(connection)
        me = connection.user
        pattern = mask_pattern(mask)
        here = await accounts.away(actor, me) == ""
        found: dict[int, tuple[str, str]] = {me.id: (me.username, self.who_flags(me.id, here, None))}
        _, mine = await rooms.memberships(actor, me.username)
        for room, _ in mine:
            try:
                roster = await rooms.members(actor, room.name)
            except ChatError:
                continue
            for status in roster.members:
                member = status.member
                if member.user_id not in found:
                    found[member.user_id] = (member.username,
                                             self.who_flags(member.user_id, status.online and not status.away, None))
        return [self.who_reply(connection, "*", user_id, nick, flags)
                for user_id, (nick, flags) in sorted(found.items(), key=lambda item: item[1][0].lower())
                if pattern.fullmatch(nick)]

    async def irc_WHO(self, connection: Any, params: tuple) -> list:
        """
        C{WHO #room}: a C{352} for each member (offline ones gone, C{G});
        C{WHO nick}: one for that account; C{WHO <mask>}: those who share a
        room with the client (L{who_mask}); then C{315}.  An unknown or
        hidden room or an unknown nick has just the C{315}.
        """
        if not params or not params[0]:
            raise Numeric("461", "WHO", "Not enough parameters")
        self.require_login(connection, "WHO")
        target = params[0]
        actor = self.actor(connection)
        lines: list = []
        try:
            if is_service(target):
                lines.append(self.who_reply(connection, "*", None, SERVICE_NICK, "H", SERVICE_REALNAME))
            elif target.startswith("#"):
                roster = await rooms.members(actor, validation.room_name(target[1:]))
                name = channel(roster.room.name)
                for status in roster.members:
                    member = status.member
                    flags = self.who_flags(member.user_id, status.online and not status.away, member.role)
                    lines.append(self.who_reply(connection, name, member.user_id, member.username, flags))
            elif "*" in target or "?" in target:
                lines += await self.who_mask(connection, target)
            else:
                user = await accounts.known(actor, validation.any_username(target))
                away = await accounts.away(actor, user)
                lines.append(self.who_reply(connection, "*", user.id, user.username,
                                            self.who_flags(user.id, away == "", None)))
        except ChatError:
            pass
        lines.append(self.numeric(connection, "315", target, "End of /WHO list"))
        return lines

    async def irc_WHOIS(self, connection: Any, params: tuple) -> list:
        """
        C{WHOIS [server] nick}: C{311}, C{312}, C{313} for an operator,
        C{301} when away or offline, C{319} the rooms the asker can see,
        C{330} the account (a guest has none), C{318}; C{401} and C{318} for no such account.
        """
        if not params or not params[-1]:
            raise Numeric("431", "No nickname given")
        self.require_login(connection, "WHOIS")
        target = params[-1].split(",")[0]
        actor = self.actor(connection)
        server_name = self.server.config.server_name
        end = self.numeric(connection, "318", target, "End of /WHOIS list")
        if is_service(target):
            return [self.numeric(connection, "311", SERVICE_NICK, SERVICE_NICK, server_name, "*", SERVICE_REALNAME),
                    self.numeric(connection, "312", SERVICE_NICK, server_name, SERVICE_INFO),
                    self.numeric(connection, "318", SERVICE_NICK, "End of /WHOIS list")]
        try:
            user, memberships = await rooms.memberships(actor, validation.any_username(target))
        except ChatError:
            return [self.numeric(connection, "401", target, "No such nick/channel"), end]
        nick = user.username
        away = await accounts.away(actor, user)
        ident, realname = self.marks.identity(self.server.hub, user.id, nick)
        lines = [self.numeric(connection, "311", nick, ident, server_name, "*", realname),
                 self.numeric(connection, "312", nick, server_name, SERVER_INFO)]
        if self.marks.is_operator(self.server.hub, user.id):
            lines.append(self.numeric(connection, "313", nick, "is an IRC operator"))
        if away is None or away:
            lines.append(self.numeric(connection, "301", nick, OFFLINE if away is None else away))
        if memberships:
            names = " ".join(prefixes(role) + channel(room.name) for room, role in memberships)
            lines.append(self.numeric(connection, "319", nick, names))
        if not user.guest:
            lines.append(self.numeric(connection, "330", nick, nick, "is logged in as"))
        lines.append(self.numeric(connection, "318", nick, "End of /WHOIS list"))
        return lines

    async def irc_USERHOST(self, connection: Any, params: tuple) -> list:
        """
        C{USERHOST nick [nick...]} (at most 5): one C{302} with
        C{nick[*]=<+|->user@host} for each that is a user (C{*} an
        operator, C{-} away or offline); unknown nicks are left out.
        """
        if not params or not params[0]:
            raise Numeric("461", "USERHOST", "Not enough parameters")
        self.require_login(connection, "USERHOST")
        actor = self.actor(connection)
        server_name = self.server.config.server_name
        found = []
        for nick in params[:5]:
            try:
                user = await accounts.known(actor, validation.any_username(nick))
            except ChatError:
                continue
            operator = "*" if self.marks.is_operator(self.server.hub, user.id) else ""
            here = "+" if await accounts.away(actor, user) == "" else "-"
            ident, _ = self.marks.identity(self.server.hub, user.id, user.username)
            found.append(f"{user.username}{operator}={here}{ident}@{server_name}")
        return [self.numeric(connection, "302", " ".join(found))]

    async def irc_AWAY(self, connection: Any, params: tuple) -> list:
        """
        C{AWAY :text} marks the user away (C{306}); C{AWAY} alone, or with
        an empty text, takes the mark off (C{305}).  The mark is the
        domain's (L{accounts.set_away}): every node shows it, and clients
        with C{away-notify} in the user's rooms read C{AWAY}; it lasts
        until the user comes back or is online nowhere.
        """
        text = params[0][:validation.TOPIC_MAX] if params and params[0] else ""
        if connection.user is not None:
            await accounts.set_away(self.actor(connection), text)
        if text:
            return [self.numeric(connection, "306", "You have been marked as being away")]
        return [self.numeric(connection, "305", "You are no longer marked as being away")]

    async def irc_OPER(self, connection: Any, params: tuple) -> list:
        """
        C{OPER <account> <password>}: with the connection's own account
        name and password, and the account a server admin, the connection
        becomes an IRC operator (C{381}); a wrong name or password is
        C{464}, an account that is no server admin (or no account) C{491}.
        """
        if len(params) < 2 or not params[0]:
            raise Numeric("461", "OPER", "Not enough parameters")
        if connection.user is None:
            raise Numeric("491", "No O-lines for your host: log in to a server admin's account")
        try:
            await accounts.confirm_server_admin(self.actor(connection), params[0], params[1])
        except InvalidCredentials:
            raise Numeric("464", "Password incorrect") from None
        except PermissionDenied:
            raise Numeric("491", "No O-lines for your host: your account is no server admin") from None
        self.marks.operators.add(connection)
        return [self.numeric(connection, "381", "You are now an IRC operator")]

    def user_mode(self, connection: Any, target: str) -> list:
        """
        C{MODE <nick> ...}: a client's own modes (C{221}: C{+o} once an
        operator); they cannot be changed, and another's are C{502}.
        """
        if target.lower() != connection.display_nick.lower():
            raise Numeric("502", "Can't change mode for other users")
        return [self.numeric(connection, "221", "+o" if connection in self.marks.operators else "+")]


__all__ = ["ConnectionMarks", "UserCommands", "mask_pattern"]
