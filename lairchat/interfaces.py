"""
The seams of lairchat: what a command is (L{ICommand}) and what a domain
may hook into the server (L{IExtension}).  Both are found as plugins in the
top-level C{commands} package.
"""

from zope.interface import Attribute, Interface


class ICommand(Interface):
    """
    One request a client can send, e.g. C{LOGIN:<user>:<password>}.

    The router splits the arguments to the command's arity, applies the
    login gate and the rate limit, calls L{parse}, then L{run}.
    """

    name = Attribute("The canonical upper-case name, e.g. 'LOGIN'.")
    aliases = Attribute("Other upper-case names for the same command.")
    syntax = Attribute("The usage shown by HELP, e.g. 'LOGIN:<user>:<password>'.")
    summary = Attribute("One line saying what the command does.")
    arity = Attribute("(fewest, most) arguments; the last takes the rest of the line.")
    needs_login = Attribute("Whether the command is refused before login.")
    rate_class = Attribute("The rate-limit bucket the command draws from.")

    def parse(arguments):
        """
        Validate the split arguments (a list of str).

        @return: the value handed to L{run}.
        @raise lairchat.errors.ChatError: an argument is not acceptable.
        """

    def run(context, parsed):
        """
        Do the command for the connection in C{context}.

        @param context: a L{lairchat.context.RequestContext}.
        @return: a coroutine or Deferred firing with a
            L{lairchat.command.Reply}.
        @raise lairchat.errors.ChatError: the request is refused.
        """


class IExtension(Interface):
    """
    Hooks a domain plugs into the server beyond its commands: services that
    run beside it (sweepers) and events shown at login.
    """

    def services(server):
        """
        Services started with the server and stopped with it.

        @param server: the L{lairchat.context.ServerContext}.
        @return: a list of L{twisted.application.service.IService}.
        """

    def login_events(context, user):
        """
        Events shown to a connection right after its C{OK:LOGIN} or
        C{OK:RESUME} (pending invitations, offline deliveries).

        @return: a coroutine or Deferred firing with a list of
            L{lairchat.events.Event}.
        """
