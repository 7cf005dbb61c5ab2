# -*- test-case-name: tests.test_protocol -*-
"""
The line protocol's session commands: HELP, PING and QUIT (pure front
end), and WHOAMI and REQUEST_USER_LIST (answered by
L{lairchat.domain.accounts}).
"""

from lairchat import validation
from lairchat.command import Command, Reply
from lairchat.domain import accounts
from lairchat.wire import help_line, render


class Help(Command):
    """List every command, generated from the registry."""

    name = "HELP"
    aliases = ("SHOW_HELP",)
    syntax = "HELP"
    summary = "List every command with its syntax"
    needs_login = False
    rate_class = "free"

    async def run(self, context, parsed):
        """One HELP line per command, by name."""
        commands = context.server.commands()
        lines = [help_line(c) for c in commands]
        return Reply.ok(len(lines), lines=lines)


class Ping(Command):
    """Check that the server answers."""

    name = "PING"
    syntax = "PING[:<token>]"
    summary = "Check the connection; the token is echoed back"
    arity = (0, 1)
    needs_login = False
    rate_class = "free"

    def parse(self, arguments):
        """An optional token of up to 64 characters."""
        if not arguments:
            return None
        return validation.text(arguments[0], "token", 64, minimum=0)

    async def run(self, context, token):
        """Echo the token."""
        return Reply.ok() if token is None else Reply.ok(token)


class Quit(Command):
    """Say goodbye and close the connection."""

    name = "QUIT"
    syntax = "QUIT[:<message>]"
    summary = "Close the connection"
    arity = (0, 1)
    needs_login = False
    rate_class = "free"

    def parse(self, arguments):
        """An optional parting message."""
        return validation.optional_text(arguments[0] if arguments else None, "message")

    async def run(self, context, message):
        """Answer, then close."""
        return Reply.ok(close=True)


class WhoAmI(Command):
    """Who this connection is logged in as."""

    name = "WHOAMI"
    syntax = "WHOAMI"
    summary = "Show your username and server role"

    async def run(self, context, parsed):
        """The user and their server role."""
        user = accounts.whoami(context.actor)
        return Reply.ok(user.username, user.server_role)


class RequestUserList(Command):
    """Every user online now, on any node."""

    name = "REQUEST_USER_LIST"
    syntax = "REQUEST_USER_LIST"
    summary = "List the users who are online"

    async def run(self, context, parsed):
        """One USER line per online user."""
        names = await accounts.online_usernames(context.actor)
        return Reply.ok(len(names), lines=[render("USER", name) for name in names])


help_command = Help()
ping = Ping()
quit_command = Quit()
whoami = WhoAmI()
request_user_list = RequestUserList()
