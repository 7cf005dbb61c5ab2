# -*- test-case-name: tests.test_irc_service -*-
"""
The service nick: the line protocol's commands from an IRC client.

IRC has no word for much of what lairchat does (search, invitation lists
and stats, templates, the audit log, room details, history as text, the
admin commands...).  An IRC client sends a line-protocol request as the
text of a C{PRIVMSG} to L{SERVICE_NICK}
(C{PRIVMSG Lair|Serv :SEARCH_MESSAGES:hello}); it goes through the line
protocol's own parser (L{lairchat.wire.parse_line}) and router
(L{lairchat.router.Router} and the C{ICommand} plugins), acting as the
IRC connection's user, so every command behaves as it does on the line
protocol; each line of the reply comes back as a C{NOTICE} from the
service.  A request draws on the flood budget of its line command
(L{service_rate_class}).

The request runs on a L{ServiceConnection}: the IRC connection's user,
session, address and current room under a connection id of its own, so
the events the command causes reach the IRC connection like anybody
else's (shown by L{lairchat.irc.render}): a C{JOIN_ROOM} through the
service shows as C{JOIN}, a C{SET_ROLE} as C{MODE}.

Refused, with a C{1603 UNKNOWN_COMMAND} line saying why: the commands of
L{REFUSED} (logging in and out, the connection's end: IRC has its own ways,
and an IRC connection is logged in for as long as it is open), and text
that names no command (the line protocol would send it to the current
room as a message; on IRC, C{PRIVMSG #room} does that).  The current room
the service's C{JOIN_ROOM}, C{CREATE_ROOM} and C{ACCEPT_INVITATION} set is
the connection's line-protocol state and used by nothing else: it serves
C{GET_HISTORY:<limit>} and C{LEAVE_ROOM} without a room.  A C{NOTICE} to
the service is ignored (IRC never answers a notice).
"""

from typing import Any

from lairchat.errors import AuthRequired, ChatError, UnknownCommand
from lairchat.irc.message import Message, message
from lairchat.irc.render import mask, plain_text
from lairchat.protocol import next_connection_id
from lairchat.router import Router, rate_class
from lairchat.wire import Request, help_line, parse_line, raw_label, render_error, render_ok, with_label

SERVICE_NICK = "Lair|Serv"
"""
The service's nick.  No account can be named so (a username, even one an
operator makes with C{--any-name}, holds no C{|}) and no guest may take it
(C{433}).
"""

SERVICE_REALNAME = "lairchat line-protocol commands: /msg Lair|Serv HELP"
"""The service's real name in C{WHOIS} and C{WHO}."""

REFUSED = {
    "LOGIN": "an IRC client logs in with SASL PLAIN or PASS <account>:<password>",
    "RESUME": "an IRC client logs in with SASL PLAIN or PASS <account>:<password>",
    "REGISTER": "accounts are made on the line protocol (REGISTER) or by an operator",
    "LOGOUT": "an IRC connection stays logged in until it closes (QUIT)",
    "QUIT": "IRC's QUIT closes the connection",
}
"""The line commands the service does not run, and what to do instead."""

LOGIN_FIRST = "log in first (SASL PLAIN or PASS <account>:<password>)"
"""Why a command that needs a login is refused to a client that has none."""

HELP_INTRO = (
    f"{SERVICE_NICK} runs lairchat's line-protocol commands for you: "
    f"/msg {SERVICE_NICK} <COMMAND>[:<argument>...], e.g. SEARCH_MESSAGES:hello or LIST_INVITATIONS. "
    "Each line of the answer comes as a NOTICE, the last one OK:... or ERROR:...",
    "Not here: " + ", ".join(sorted(REFUSED)) + " (log in with SASL or PASS, leave with QUIT); "
    "to talk, PRIVMSG #room or PRIVMSG nick. The commands:",
)
"""The plain lines C{HELP} starts with."""


def is_service(nick: str) -> bool:
    """Whether C{nick} names the service (ASCII case-insensitively, as C{CASEMAPPING=ascii} says)."""
    return nick.isascii() and nick.lower() == SERVICE_NICK.lower()


def line_request(text: str) -> Request | None:
    """
    The line-protocol request in the text of a C{PRIVMSG} to the service:
    IRC formatting stripped, then the line protocol's own parsing.
    L{None} when there is nothing to answer (an empty line, a CTCP request).

    @raise ChatError: the line protocol refuses the line (a control character).
    """
    text = plain_text(text)
    if text is None:
        return None
    return parse_line(text.encode("utf-8"))


def service_rate_class(server: Any, request: Message) -> str | None:
    """
    The flood budget a C{PRIVMSG} to the service draws from: its line
    command's (L{lairchat.router.rate_class}), or C{message} for text the
    line protocol refuses; L{None} for any other IRC message.
    """
    if request.command.upper() != "PRIVMSG" or len(request.params) < 2 or not is_service(request.params[0]):
        return None
    try:
        parsed = line_request(request.params[1])
    except ChatError:
        parsed = None
    return "message" if parsed is None else rate_class(server, parsed)


class ServiceConnection:
    """
    An IRC connection as the line protocol's commands see it when a request
    comes through the service: its user, session, address and current
    room, under a connection id of its own (L{connection_id}), so that the
    events the request causes are shown to the IRC connection too.

    @ivar irc: the L{lairchat.irc.protocol.IRCProtocol}.
    """

    def __init__(self, irc: Any) -> None:
        self.irc = irc
        self.connection_id = next_connection_id()

    @property
    def user(self) -> Any:
        """The IRC connection's user."""
        return self.irc.user

    @property
    def session_id(self) -> int | None:
        """The IRC connection's session."""
        return self.irc.session_id

    @property
    def address(self) -> str:
        """The IRC client's address."""
        return self.irc.address

    @property
    def exempt(self) -> bool:
        """Whether that address is in a trusted network."""
        return self.irc.exempt

    @property
    def current_room(self) -> str | None:
        """The IRC connection's line-protocol current room (only the service's commands use it)."""
        return self.irc.current_room

    @current_room.setter
    def current_room(self, name: str | None) -> None:
        self.irc.current_room = name


class ServiceCommands:
    """
    The service's side of L{lairchat.irc.commands.CommandTable} (which this
    is a base of, and whose C{server} and C{line_router} these use): a
    request's reply as the lines of C{NOTICE}s.
    """

    server: Any
    line_router: Router

    def service_notice(self, connection: Any, line: str) -> Message:
        """One line of the service's answer, as a C{NOTICE} to the client."""
        return message("NOTICE", connection.display_nick, line,
                       source=mask(SERVICE_NICK, self.server.config.server_name))

    async def service_request(self, connection: Any, text: str) -> tuple[list, bool]:
        """
        Run the line-protocol request in C{text} for C{connection}: the
        C{NOTICE}s of its reply, and whether the connection then closes
        (as it would on the line protocol; an C{ERROR} line ends the reply then).  Never raises a
        L{lairchat.errors.ChatError}: a refusal is the reply's C{ERROR} line.
        """
        try:
            request = line_request(text)
        except ChatError as error:
            data = text.encode("utf-8")
            return [self.service_notice(connection, with_label(raw_label(data), render_error(error)))], False
        if request is None:
            return [], False
        command = self.server.registry.get(request.command)
        refusal = None
        if command is None:
            refusal = UnknownCommand(f"{request.name} is no command; HELP lists them (to talk, PRIVMSG #room)")
        elif command.name in REFUSED:
            refusal = UnknownCommand(f"{command.name} is not available through {SERVICE_NICK}: "
                                     f"{REFUSED[command.name]}")
        elif command.needs_login and connection.user is None:
            refusal = AuthRequired(LOGIN_FIRST)
        if refusal is not None:
            lines: tuple = (with_label(request.label, render_error(refusal)),)
            close = False
        elif command.name == "HELP":
            lines, close = tuple(with_label(request.label, line) for line in self.service_help()), False
        else:
            outcome = await self.line_router.dispatch(ServiceConnection(connection), request)
            lines, close = outcome.lines + outcome.after, outcome.close
        answer = [self.service_notice(connection, line) for line in lines]
        if close:
            answer.append(message("ERROR", f"Closing link: {command.name} closed the connection"))
        return answer, close

    def service_help(self) -> list[str]:
        """What the service does, then a C{HELP} line per command it runs and C{OK:HELP:<n>}."""
        commands = [c for c in self.server.commands() if c.name not in REFUSED]
        return [*HELP_INTRO, *(help_line(c) for c in commands), render_ok("HELP", len(commands))]


__all__ = ["REFUSED", "SERVICE_NICK", "ServiceCommands", "ServiceConnection", "is_service", "service_rate_class"]
