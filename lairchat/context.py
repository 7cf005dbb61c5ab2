# -*- test-case-name: tests.test_protocol -*-
"""
What a command can reach: the server's shared parts (L{ServerContext}) and
the connection that sent the request (L{RequestContext}).
"""

from typing import Any

from attrs import define, field, frozen
from twisted.internet.defer import ensureDeferred
from twisted.logger import Logger

from lairchat.errors import AuthRequired
from lairchat.hub import Hub
from lairchat.metrics import Metrics
from lairchat.models import User


@frozen
class Config:
    """
    The server's settings, from the command line (see L{lairchat.tap}).

    Durations are in seconds; sizes in bytes.
    """

    server_name: str = "lair"
    max_line: int = 16384
    session_ttl: int = 7 * 24 * 3600
    invite_ttl: int = 7 * 24 * 3600
    sweep_interval: float = 60.0
    invite_retention: int = 90 * 24 * 3600
    reminder_window: int = 24 * 3600
    max_output_buffer: int = 1024 * 1024
    admins: tuple[str, ...] = ()
    rate_limits: bool = True
    lockout_threshold: int = 5
    lockout_seconds: int = 15 * 60


@define
class ServerContext:
    """
    The parts every request shares.

    @ivar registry: every command by each of its names.
    @ivar extensions: every L{lairchat.interfaces.IExtension} plugin.
    """

    config: Config
    store: Any
    clock: Any
    passwords: Any
    registry: dict = field(factory=dict)
    extensions: list = field(factory=list)
    hub: Hub = field(factory=Hub)
    log: Logger = field(factory=Logger)
    started: float = 0.0
    metrics: Metrics = field(factory=Metrics)

    def __attrs_post_init__(self) -> None:
        """Let the metrics read the hub."""
        self.metrics.watch_hub(self.hub)

    def commands(self) -> list:
        """Every command once, by name."""
        unique = {id(c): c for c in self.registry.values()}
        return sorted(unique.values(), key=lambda c: c.name)

    def user_online(self, connection: Any, user: User) -> None:
        """
        Attach a freshly logged-in connection to the hub and tell the
        extensions when the user came online.
        """
        if self.hub.attach(connection, user):
            self._presence(user, True)

    def user_offline(self, connection: Any, user: User) -> None:
        """
        Detach a connection that logged out or closed, and tell the
        extensions when it was the user's last.
        """
        if self.hub.detach(connection, user):
            self._presence(user, False)

    def _presence(self, user: User, online: bool) -> None:
        """Run every extension's presence hook; log, never raise."""
        for extension in self.extensions:
            try:
                result = extension.presence_changed(self, user, online)
                if result is not None:
                    ensureDeferred(result).addErrback(
                        lambda f: self.log.failure("presence hook failed", f)
                    )
            except Exception:
                self.log.failure("presence hook failed")


@define
class RequestContext:
    """
    One request: the server, the connection that sent it, its label.

    @ivar connection: the L{lairchat.protocol.ChatProtocol}.
    """

    server: ServerContext
    connection: Any
    label: str | None = None

    @property
    def store(self) -> Any:
        """The server's store."""
        return self.server.store

    @property
    def hub(self) -> Hub:
        """The server's hub."""
        return self.server.hub

    @property
    def config(self) -> Config:
        """The server's settings."""
        return self.server.config

    @property
    def user(self) -> User:
        """
        The logged-in user.

        @raise AuthRequired: nobody is logged in on this connection.
        """
        user = self.connection.user
        if user is None:
            raise AuthRequired("log in first: LOGIN:<user>:<password> or REGISTER:<user>:<password>")
        return user

    def now_ms(self) -> int:
        """The server clock, in epoch milliseconds."""
        return int(self.server.clock.seconds() * 1000)
