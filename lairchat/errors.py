# -*- test-case-name: tests.test_wire -*-
"""
The one error model of lairchat.

Every refusal a client can see is a L{ChatError}: it knows its numeric code,
its NAME, the human message the client reads, and whether the connection is
closed after the error line.  The codes and names are the wire contract of
PROTOCOL.md section 3; nothing here may reveal internals.
"""


class ChatError(Exception):
    """
    A refusal with a stable code, rendered as C{ERROR:<code>:<NAME>:<message>}.

    Subclasses fix C{code} and a default C{name}; a caller may pass a more
    specific name (for example C{NO_CURRENT_ROOM} for an L{InvalidInput}).

    @ivar code: the numeric code of PROTOCOL.md section 3.
    @ivar name: the upper-case NAME.
    @ivar message: the text the client reads.
    @ivar closes: whether the server closes the connection after the line.
    """

    code = 1301
    name = "INTERNAL_ERROR"
    closes = False

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if name is not None:
            self.name = name

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.code}:{self.name}:{self.message}>"


class AuthRequired(ChatError):
    """Log in first (1001)."""

    code = 1001
    name = "AUTH_REQUIRED"


class AuthenticationFailed(ChatError):
    """The login did not succeed (1001)."""

    code = 1001
    name = "AUTHENTICATION_FAILED"


class PermissionDenied(ChatError):
    """Authenticated, but not allowed (1002)."""

    code = 1002
    name = "PERMISSION_DENIED"


class SessionExpired(ChatError):
    """The session token is unknown, revoked or expired (1003)."""

    code = 1003
    name = "SESSION_EXPIRED"


class InvalidCredentials(ChatError):
    """Wrong user or password, never saying which (1004)."""

    code = 1004
    name = "INVALID_CREDENTIALS"


class AccountLocked(ChatError):
    """Too many failed logins; the message says until when (1005)."""

    code = 1005
    name = "ACCOUNT_LOCKED"


class RateLimited(ChatError):
    """Too many requests; the message says when to retry (1110)."""

    code = 1110
    name = "RATE_LIMITED"


class TooManyConnections(ChatError):
    """
    Too many open connections, from one address or in all (1110, an
    extension of the table's NAMEs): the connection is closed after the
    line.
    """

    code = 1110
    name = "TOO_MANY_CONNECTIONS"
    closes = True


class InvalidInput(ChatError):
    """A value is not acceptable (1111)."""

    code = 1111
    name = "INVALID_INPUT"


class InvalidFormat(ChatError):
    """Wrong number or shape of arguments (1112)."""

    code = 1112
    name = "INVALID_FORMAT"


class InvalidLength(ChatError):
    """A value is too long or too short (1113)."""

    code = 1113
    name = "INVALID_LENGTH"


class LineTooLong(InvalidLength):
    """A line over the framing limit; the connection is closed (1113)."""

    name = "LINE_TOO_LONG"
    closes = True


class InvalidCharacters(ChatError):
    """A field holds a control character or a forbidden character (1114)."""

    code = 1114
    name = "INVALID_CHARACTERS"


class InvalidEncoding(InvalidCharacters):
    """A line that is not valid UTF-8 (1114)."""

    name = "INVALID_ENCODING"


class Conflict(ChatError):
    """Already exists, already a member, already invited (1211)."""

    code = 1211
    name = "CONFLICT"


class DatabaseUnavailable(ChatError):
    """The database cannot be reached; nothing was changed (1212)."""

    code = 1212
    name = "DATABASE_UNAVAILABLE"

    def __init__(
        self,
        message: str = "the database is unavailable, try again later; nothing was changed",
        name: str | None = None,
    ) -> None:
        super().__init__(message, name)


class InternalError(ChatError):
    """A bug; the message carries the reference id that is in the log (1301)."""

    code = 1301
    name = "INTERNAL_ERROR"


class Timeout(ChatError):
    """The request took too long (1303)."""

    code = 1303
    name = "TIMEOUT"


class SecurityViolation(ChatError):
    """A hostile request; the connection is closed after this line (1401)."""

    code = 1401
    name = "SECURITY_VIOLATION"
    closes = True


class AccessDenied(ChatError):
    """Banned, private room, not a member (1404)."""

    code = 1404
    name = "ACCESS_DENIED"


class NotFound(ChatError):
    """No such user, room, message or invitation (1501)."""

    code = 1501
    name = "NOT_FOUND"


class Gone(ChatError):
    """The invitation expired, was revoked, or was already answered (1502)."""

    code = 1502
    name = "GONE"


class UnknownCommand(ChatError):
    """Not a command this server knows (1603)."""

    code = 1603
    name = "UNKNOWN_COMMAND"
