# -*- test-case-name: tests.test_admin_cli -*-
"""
C{lairchat-admin}: the operator's command line.  It works on the database
a server uses (C{--dsn}, or the embedded Postgres in C{--data-dir}), with
or without a server running, and applies the schema first, so it also
provisions a database no server has started on yet::

    lairchat-admin set-password alice --password-stdin < secret
    lairchat-admin --dsn postgresql:///chat set-role alice admin
    lairchat-admin suspend mallory --reason spam
    lairchat-admin list-blocks

Each subcommand is one operation of L{lairchat.domain.operator}; this
module parses the command line, reads the password, connects, and renders
what the operation returns.  It runs its own reactor (L{react}).

Exit status: 0 done, 1 refused (unknown user, address not blocked, a
password or name that breaks the rules), 2 a usage error, 3 the database
cannot be reached.  Every error is one line on standard error, never a
traceback.

The embedded Postgres is shared with a server running on the same data
directory through pgserver's list of holders (see L{lairchat.embedded}):
the command line adds itself to the list and takes itself out when done,
and Postgres is stopped only when no one else holds it (that is, only when
the command line started it).
"""

import argparse
import getpass
import sys
import warnings
from collections.abc import Callable
from typing import IO, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react
from twisted.internet.threads import deferToThread

from lairchat import validation
from lairchat.domain import operator as operations
from lairchat.errors import ChatError, DatabaseUnavailable
from lairchat.models import iso_moment

PROGRAM = "lairchat-admin"

OK, REFUSED, USAGE, UNAVAILABLE = 0, 1, 2, 3
"""The exit statuses."""


class UsageError(Exception):
    """The command line cannot be acted on (exit status L{USAGE})."""


def parser() -> argparse.ArgumentParser:
    """The command line's grammar."""
    top = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Administer a lairchat server's accounts and blocks from the command line. "
        "Works with or without the server running; every change is in the audit log as done by "
        f"{PROGRAM}.",
        epilog="Exit status: 0 done, 1 refused (unknown user, not blocked, bad password), "
        "2 usage error, 3 database unreachable.",
    )
    where = top.add_mutually_exclusive_group()
    where.add_argument("--dsn", help="the Postgres connection string the server uses")
    where.add_argument("--data-dir", default="./lairchat-data",
                       help="the data directory of the server's embedded Postgres (default: %(default)s)")
    commands = top.add_subparsers(dest="command", metavar="COMMAND", required=True)

    set_password = commands.add_parser(
        "set-password", help="create an account, or set its password (idempotent)",
        description="Create the account with this password, or give an existing account this password "
        "(its sessions are revoked and its connections logged out, as CHANGE_PASSWORD does). "
        "Running it again with the same password changes nothing. With neither --password nor "
        "--password-stdin the password is asked for on the terminal.")
    set_password.add_argument("user")
    given = set_password.add_mutually_exclusive_group()
    given.add_argument("--password", help="the password (visible to other local users in ps: "
                                          "prefer --password-stdin)")
    given.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
    set_password.add_argument(
        "--any-password", action="store_true",
        help="skip the password policy (8-128 characters, a letter and a digit): any password of 1 to "
        f"{validation.ANY_PASSWORD_MAX} characters without control characters, for test suites")
    set_password.add_argument(
        "--any-name", action="store_true",
        help="create an account whose name breaks the protocol's rule (3-20 letters, digits, _): "
        "1 to 50 letters, digits, _ and -, a letter first (IRC nicks such as bar-1a2b)")

    set_role = commands.add_parser("set-role", help="give an account a server role",
                                   description="Give an account the server role admin or user.")
    set_role.add_argument("user")
    set_role.add_argument("role", choices=validation.SERVER_ROLES)

    suspend = commands.add_parser("suspend", help="suspend an account",
                                  description="Suspend an account: its sessions are revoked and its "
                                  "connections closed, on every node.")
    suspend.add_argument("user")
    suspend.add_argument("--reason", default="", help="shown to the user's connections as they are closed")

    unsuspend = commands.add_parser("unsuspend", help="lift an account's suspension")
    unsuspend.add_argument("user")

    commands.add_parser("list-users", help="list the accounts",
                        description="One account a line, tab-separated: name, server role, "
                        "active or suspended, created (UTC).")
    commands.add_parser("list-blocks", help="list the blocked addresses",
                        description="One block a line, soonest to end first, tab-separated: address, "
                        "until (UTC), blocked by, strike, reason.")
    unblock = commands.add_parser("unblock", help="lift an address's block")
    unblock.add_argument("address")
    return top


def read_password(options: argparse.Namespace, stdin: IO[bytes] | None,
                  prompt: Callable[[str], str] | None) -> str:
    """
    The password C{set-password} sets: C{--password}, the first line of
    C{stdin} (C{--password-stdin}; UTF-8, the line end taken off), or typed
    twice at C{prompt} (the terminal), checked against the rules
    (L{validation.password}, or L{validation.any_password} with
    C{--any-password}).

    @raise UsageError: no password can be had.
    @raise ChatError: it breaks the rules.
    """
    if options.password is not None:
        password = options.password
    elif options.password_stdin:
        if stdin is None:
            raise UsageError("--password-stdin: there is no standard input")
        line = stdin.readline()
        try:
            password = line.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError("--password-stdin: the password is not UTF-8") from None
        password = password.removesuffix("\n").removesuffix("\r")
    elif prompt is not None:
        password = prompt(f"password for {options.user}: ")
        if prompt(f"password for {options.user} again: ") != password:
            raise UsageError("the two passwords differ")
    else:
        raise UsageError("set-password: give --password-stdin or --password (no terminal to ask on)")
    check = validation.any_password if options.any_password else validation.password
    return check(password)


def checked(options: argparse.Namespace) -> argparse.Namespace:
    """
    The options with their values checked against the rules before the
    database is touched.

    @raise ChatError: a value breaks them.
    """
    if options.command == "set-password":
        name_rule = validation.any_username if options.any_name else validation.username
        options.user = name_rule(options.user)
    elif getattr(options, "user", None) is not None:
        options.user = validation.any_username(options.user)
    if options.command == "suspend":
        options.reason = validation.optional_text(options.reason, "reason")
    if options.command == "unblock":
        options.address = validation.ip_address(options.address)
    return options


async def perform(operator: operations.Operator, options: argparse.Namespace, out: IO[str]) -> None:
    """
    Do what C{options} ask as C{operator} and write what came of it to
    C{out}.

    @raise ChatError: it was refused.
    """
    command = options.command
    if command == "set-password":
        done = await operations.set_password(operator, options.user, options.password)
        name = done.user.username
        out.write({
            operations.CREATED: f"created account {name}\n",
            operations.CHANGED: f"changed the password of {name}; its sessions are revoked\n",
            operations.UNCHANGED: f"{name} has this password already; nothing changed\n",
        }[done.outcome])
    elif command == "set-role":
        user, before = await operations.set_role(operator, options.user, options.role)
        if before == user.server_role:
            out.write(f"{user.username} is {user.server_role} (already)\n")
        else:
            out.write(f"{user.username} is {user.server_role} (was {before})\n")
    elif command == "suspend":
        user = await operations.suspend(operator, options.user, options.reason)
        out.write(f"suspended {user.username}\n")
    elif command == "unsuspend":
        user = await operations.unsuspend(operator, options.user)
        out.write(f"reinstated {user.username}\n" if user.suspended else f"{user.username} was not suspended\n")
    elif command == "list-users":
        for user in await operations.accounts(operator):
            state = "suspended" if user.suspended else "active"
            out.write(f"{user.username}\t{user.server_role}\t{state}\t{iso_moment(user.created_ms)}\n")
    elif command == "list-blocks":
        for block in await operations.blocks(operator):
            reason = " ".join(block.reason.split())
            out.write(f"{block.address}\t{iso_moment(block.until_ms)}\t{block.blocked_by}\t"
                      f"{block.strikes + 1}\t{reason}\n")
    elif command == "unblock":
        await operations.unblock(operator, options.address)
        out.write(f"unblocked {options.address}\n")
    else:  # pragma: no cover - argparse allows no other
        raise UsageError(f"unknown command {command}")


async def run(reactor: Any, options: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    """
    Connect (starting or adopting the embedded Postgres without C{--dsn}),
    apply the schema, do what C{options} ask, and disconnect.

    @return: the exit status; every error is written to C{err} in one line.
    """
    from lairchat.embedded import EmbeddedPostgres
    from lairchat.passwords import Passwords
    from lairchat.store import Database, Store, schema_text

    embedded = db = None
    try:
        dsn = options.dsn
        if dsn is None:
            embedded = EmbeddedPostgres(options.data_dir)
            try:
                dsn = await deferToThread(embedded.start)
            except Exception as error:
                embedded = None
                raise DatabaseUnavailable(f"the embedded database in {options.data_dir} would not start: "
                                          f"{one_line(error)}") from None
        db = Database(dsn, 1, reactor=reactor)
        await db.start()
        await db.apply_schema(schema_text())
        operator = operations.Operator(Store(db), Passwords(reactor))
        await perform(operator, options, out)
        return OK
    except DatabaseUnavailable as error:
        lines = str(getattr(error, "reason", "")).splitlines()
        reason = "; ".join(line.strip() for line in lines if line.strip())
        err.write(f"{PROGRAM}: {error.message}{': ' + reason if reason else ''}\n")
        return UNAVAILABLE
    except ChatError as error:
        err.write(f"{PROGRAM}: {error.message}\n")
        return REFUSED
    except Exception as error:
        err.write(f"{PROGRAM}: failed: {one_line(error)}\n")
        return REFUSED
    finally:
        if db is not None:
            db.close()
        if embedded is not None:
            # stops Postgres only if no one else (a running server) holds it
            await deferToThread(embedded.stop)


def one_line(error: BaseException) -> str:
    """An exception as one line of text."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


def main(argv: list[str] | None = None) -> None:
    """
    The C{lairchat-admin} console script: parse C{argv} (the process's
    arguments by default), act, and exit with the status L{run} returns.
    """
    options = parser().parse_args(argv)
    # pgserver's lock lives in the runtime directory; with no XDG_RUNTIME_DIR
    # platformdirs warns on stderr and falls back to /tmp, which is fine
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    try:
        password_stdin = sys.stdin.buffer if sys.stdin is not None else None
        prompt = getpass.getpass if sys.stdin is not None and sys.stdin.isatty() else None
        options = checked(options)
        if options.command == "set-password":
            options.password = read_password(options, password_stdin, prompt)
    except UsageError as error:
        sys.stderr.write(f"{PROGRAM}: {error}\n")
        sys.exit(USAGE)
    except ChatError as error:
        sys.stderr.write(f"{PROGRAM}: {error.message}\n")
        sys.exit(REFUSED)
    except (KeyboardInterrupt, EOFError):
        sys.stderr.write(f"{PROGRAM}: no password given\n")
        sys.exit(USAGE)

    async def act(reactor: Any) -> None:
        status = await run(reactor, options, sys.stdout, sys.stderr)
        raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(act(reactor)))


if __name__ == "__main__":
    main()
