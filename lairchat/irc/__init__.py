# -*- test-case-name: tests.test_irc_message -*-
"""
The IRC front end: a second front end on the same core as the line
protocol, so IRC clients (irssi, weechat, bots) and telnet users share
accounts, rooms and direct messages.

L{lairchat.irc.message} parses and serializes IRC lines (IRCv3 message
tags included), L{lairchat.irc.render} turns the core's typed events into
IRC lines, L{lairchat.irc.commands} answers IRC commands by calling the
domain, and L{lairchat.irc.protocol} is the connection.  See
C{docs/irc.md} for the mapping.
"""
