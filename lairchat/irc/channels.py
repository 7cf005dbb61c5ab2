# -*- test-case-name: tests.test_irc_e2e -*-
"""
The IRC commands about channels beyond joining and talking: C{LIST},
C{KICK}, C{MODE} (the channel's modes and its ban list) and C{INVITE}.

Each calls one operation of the domain (L{lairchat.domain.rooms},
L{lairchat.domain.invitations}) and answers in IRC's numerics; the
others in the room see the domain's events (rendered by
L{lairchat.irc.render}).  A ban mask names one account: C{nick!*@*} or a
bare nick (lairchat bans accounts, not addresses).  The role modes
(C{+o}/C{-o}, C{+h}/C{-h}) set lairchat roles (L{ROLE_OF_MODE}).
"""

from typing import Any

from lairchat import events, validation
from lairchat.domain import invitations, rooms
from lairchat.errors import AccessDenied, ChatError, Conflict, NotFound, PermissionDenied
from lairchat.irc.message import message
from lairchat.irc.render import MODE_OF, ban_mask, channel, render_event
from lairchat.irc.replies import Numeric

CHANNEL_MODES = {"public": "+nt", "private": "+inst"}
"""What C{324} says of a room: no messages from outside and topics for moderators; a private room is
also invite-only and secret."""

ROLE_OF_MODE = {"o": "admin", "h": "moderator"}
"""
The role a role mode gives (C{+o} admin, C{+h} moderator); taking the
mode off (C{-o}, C{-h}) makes the member a plain member.  A member holds
one role: giving a mode they hold, or one below it (C{+h} to an operator),
or taking off one they do not hold, changes nothing.
"""


def room_of(target: str) -> str:
    """
    The room a channel name names.

    @raise Numeric: C{403} for no channel name or an invalid one.
    """
    if not target.startswith("#"):
        raise Numeric("403", target, "No such channel")
    try:
        return validation.room_name(target[1:])
    except ChatError:
        raise Numeric("403", target, "No such channel") from None


def nick_of_mask(mask: str) -> str:
    """
    The account a ban mask names: C{nick!*@*} or a bare nick.

    @raise Numeric: C{FAIL MODE INVALID_MASK} for any other mask.
    """
    nick, bang, rest = mask.partition("!")
    if (bang and rest not in ("*@*", "*")) or "*" in nick or "?" in nick or "@" in nick:
        raise Numeric("FAIL", "MODE", "INVALID_MASK", "a ban mask is a nick or nick!*@* (bans are on accounts)")
    try:
        return validation.username(nick)
    except ChatError:
        raise Numeric("FAIL", "MODE", "INVALID_MASK", f"no account can be named {nick}") from None


class ChannelCommands:
    """
    C{LIST}, C{KICK}, C{MODE} and C{INVITE}, for
    L{lairchat.irc.commands.CommandTable} (which this is a base of, and
    whose C{numeric}, C{actor}, C{require_login}, C{user_mode} and
    C{server} these use).
    """

    server: Any

    async def visible_room(self, connection: Any, target: str) -> Any:
        """
        The room a channel names, if the client can see it.

        @raise Numeric: C{403} when there is none it can see.
        """
        try:
            return (await rooms.info(self.actor(connection), room_of(target))).room
        except NotFound:
            raise Numeric("403", target, "No such channel") from None

    async def irc_LIST(self, connection: Any, params: tuple) -> list:
        """
        C{LIST [#room[,#room]]}: C{321}, a C{322} (member count, topic) for
        each room the client can see (or each of those named), C{323}.
        """
        self.require_login(connection, "LIST")
        wanted = None
        if params and params[0].startswith("#"):
            wanted = {name[1:].lower() for name in params[0].split(",") if name.startswith("#")}
        lines = [self.numeric(connection, "321", "Channel", "Users  Name")]
        for summary in await rooms.visible_rooms(self.actor(connection)):
            room = summary.room
            if wanted is None or room.name.lower() in wanted:
                lines.append(self.numeric(connection, "322", channel(room.name), str(summary.members), room.topic))
        lines.append(self.numeric(connection, "323", "End of /LIST"))
        return lines

    async def irc_KICK(self, connection: Any, params: tuple) -> list:
        """
        C{KICK #room nick[,nick] [:reason]}: put each out of the room
        (moderator and above, on lower roles; they may join again).
        Refusals: C{403}, C{441} not a member, C{442} the kicker is not one,
        C{482} the roles do not allow it.
        """
        if len(params) < 2 or not params[0] or not params[1]:
            raise Numeric("461", "KICK", "Not enough parameters")
        self.require_login(connection, "KICK")
        target = params[0]
        room = await self.visible_room(connection, target)
        reason = params[2] if len(params) > 2 and params[2] else ""
        validation.text(reason, "reason", validation.TOPIC_MAX, minimum=0)
        actor = self.actor(connection)
        lines: list = []
        for nick in params[1].split(","):
            try:
                done = await rooms.kick(actor, room.name, validation.username(nick), reason)
            except AccessDenied:
                lines.append(self.numeric(connection, "442", target, "You're not on that channel"))
                continue
            except PermissionDenied:
                lines.append(self.numeric(connection, "482", target, "You're not channel operator"))
                continue
            except ChatError:
                # no such account (or no name an account can have), or no member
                lines.append(self.numeric(connection, "441", nick, target, "They aren't on that channel"))
                continue
            lines.append(message("KICK", channel(done.room.name), done.target.username, reason or connection.nick,
                                 source=connection.source))
        return lines

    async def irc_MODE(self, connection: Any, params: tuple) -> list:
        """
        C{MODE #room}: the room's modes (C{324}).  C{MODE #room b} (or
        C{+b}): its ban list (C{367}s, C{368}).  C{MODE #room +b mask} /
        C{-b mask}: ban (admin and above) or unban an account.  A mode the
        room has (C{324}'s letters are lairchat's rules, always on): set
        again, nothing to do and nothing said; taken off, C{FAIL MODE
        FIXED_MODE}.  C{+o}/C{-o}/C{+h}/C{-h nick} set roles
        (L{change_role}).  Several modes may come in one line, each
        with its argument, done one after another.  Other mode letters are
        C{472}; C{MODE nick} is the client's own modes.
        """
        if not params or not params[0]:
            raise Numeric("461", "MODE", "Not enough parameters")
        self.require_login(connection, "MODE")
        target = params[0]
        if not target.startswith("#"):
            return self.user_mode(connection, target)
        room = await self.visible_room(connection, target)
        name = channel(room.name)
        modes = CHANNEL_MODES.get(room.privacy, "+nt")
        if len(params) < 2:
            return [self.numeric(connection, "324", name, modes)]
        arguments = list(params[2:])
        lines: list = []
        adding = True
        for letter in params[1]:
            if letter in "+-":
                adding = letter == "+"
            elif letter in modes[1:]:
                if not adding:
                    lines.append(self.numeric(connection, "FAIL", "MODE", "FIXED_MODE", name, letter,
                                              f"+{letter} is one of lairchat's rules for this room: it stays on"))
            elif letter in ROLE_OF_MODE:
                if not arguments:
                    lines.append(self.numeric(connection, "461", "MODE", "Not enough parameters"))
                else:
                    lines += await self.change_role(connection, room.name, adding, letter, arguments.pop(0))
            elif letter != "b":
                lines.append(self.numeric(connection, "472", letter, "is unknown mode char to me"))
            elif not arguments:
                lines += await self.ban_list(connection, room.name)
            else:
                lines += await self.change_ban(connection, room.name, adding, arguments.pop(0))
        return lines

    async def ban_list(self, connection: Any, room_name: str) -> list:
        """C{367} for each ban (mask, who set it, when), then C{368}."""
        room, found = await rooms.bans(self.actor(connection), room_name)
        name = channel(room.name)
        lines = [self.numeric(connection, "367", name, ban_mask(ban.username), ban.by or "*",
                              str(ban.created_ms // 1000)) for ban in found]
        lines.append(self.numeric(connection, "368", name, "End of channel ban list"))
        return lines

    async def change_ban(self, connection: Any, room_name: str, adding: bool, mask: str) -> list:
        """
        Ban (C{+b}) or unban (C{-b}) the account a mask names; the client
        reads its C{MODE} line.  Banning one banned already, or unbanning
        one who is not, changes nothing and says nothing (as IRC servers
        do).
        """
        name = channel(room_name)
        try:
            nick = nick_of_mask(mask)
            actor = self.actor(connection)
            if adding:
                done = await rooms.ban(actor, room_name, nick, "")
            else:
                done = await rooms.unban(actor, room_name, nick)
        except Numeric as reply:
            return [self.numeric(connection, reply.command, *reply.params)]
        except AccessDenied:
            return [self.numeric(connection, "442", name, "You're not on that channel")]
        except PermissionDenied:
            return [self.numeric(connection, "482", name, "You're not channel operator")]
        except NotFound:
            if adding:
                return [self.numeric(connection, "401", mask, "No such nick/channel")]
            return []
        except Conflict:
            return []
        sign = "+" if adding else "-"
        return [message("MODE", channel(done.room.name), f"{sign}b", ban_mask(done.target.username),
                        source=connection.source)]

    async def change_role(self, connection: Any, room_name: str, adding: bool, letter: str, nick: str) -> list:
        """
        Give a member the role of a role mode (C{+o} admin, C{+h}
        moderator) or take it off (C{-o}, C{-h}: member), through the
        domain's L{rooms.set_role} and its rules; the client reads the
        lines the others read of the L{events.RoleChanged}.  A change that
        changes nothing (L{ROLE_OF_MODE}) says nothing.  Refusals: C{401}
        no such nick, C{441} not a member, C{442} the client is not one,
        C{482} the roles do not allow it.
        """
        name = channel(room_name)
        actor = self.actor(connection)
        roster = await rooms.members(actor, room_name)
        current = next((s.member.role for s in roster.members if s.member.username.lower() == nick.lower()), None)
        held = MODE_OF.get(current) if current else None
        if adding:
            role = ROLE_OF_MODE[letter]
            if current is not None and held in ("o", letter):
                return []
        else:
            role = "member"
            if current is not None and held != letter:
                return []
        try:
            done = await rooms.set_role(actor, room_name, nick, role)
        except AccessDenied:
            return [self.numeric(connection, "442", name, "You're not on that channel")]
        except PermissionDenied:
            return [self.numeric(connection, "482", name, "You're not channel operator")]
        except NotFound as refusal:
            if "no user named" in refusal.message:
                return [self.numeric(connection, "401", nick, "No such nick/channel")]
            return [self.numeric(connection, "441", nick, name, "They aren't on that channel")]
        changed = events.RoleChanged(events.RoomRef(done.room.id, done.room.name), done.target.id,
                                     done.target.username, role, connection.user.username, current or "")
        return render_event(changed, connection.user.id, connection.nick, self.server.config.server_name,
                            frozenset(connection.caps))

    async def irc_INVITE(self, connection: Any, params: tuple) -> list:
        """
        C{INVITE nick #room}: a lairchat invitation to the room as a member
        (C{341}); the invitee reads C{INVITE} (and a notice with its id)
        and accepts by joining.  Refusals: C{401}, C{403}, C{442}, C{443}
        already a member, C{482}; others (a pending invitation already, a
        banned invitee) as C{FAIL INVITE}.
        """
        if len(params) < 2 or not params[0] or not params[1]:
            raise Numeric("461", "INVITE", "Not enough parameters")
        self.require_login(connection, "INVITE")
        nick, target = params[0], params[1]
        room = await self.visible_room(connection, target)
        try:
            invitation = await invitations.invite(self.actor(connection), room.name, validation.username(nick))
        except NotFound:
            raise Numeric("401", nick, "No such nick/channel") from None
        except PermissionDenied:
            raise Numeric("482", target, "You're not channel operator") from None
        except AccessDenied as refusal:
            if "not a member" in refusal.message:
                raise Numeric("442", target, "You're not on that channel") from None
            raise
        except Conflict as refusal:
            if "already a member" in refusal.message:
                raise Numeric("443", nick, target, "is already on channel") from None
            raise
        except ChatError as refusal:
            if refusal.name == "INVALID_INPUT":
                raise Numeric("401", nick, "No such nick/channel") from None
            raise
        return [self.numeric(connection, "341", invitation.recipient, channel(room.name))]


__all__ = ["ChannelCommands", "nick_of_mask", "room_of"]
