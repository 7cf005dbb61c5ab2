# -*- test-case-name: tests.test_protocol -*-
"""
The connection: bytes framed into lines with a hard length cap, requests
answered one at a time and in order, events written between replies, and a
client that stops reading cut off before its backlog grows without bound.

The factory admits each new connection through a
L{lairchat.admission.ConnectionGate} (a refused one reads one C{ERROR} line
and is closed, never reaching the router or the database); a connection not
logged in within C{--login-timeout} (its TLS handshake included) is closed;
every client socket gets TCP keepalive and a user timeout
(L{lairchat.liveness}).
Flood control delays: each line is charged to its budgets
(L{lairchat.ratelimit.FloodControl}) as it is read, and waits in the queue
until they allow it; a line that would wait longer than the backlog bound
is answered C{1110} and the connection closed.
"""

import itertools
from collections import deque
from typing import Any

from attrs import evolve, frozen
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IHandshakeListener, INegotiated, IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from zope.interface import implementer

from lairchat import __version__, events
from lairchat.addresses import UNKNOWN_ADDRESS, address_of, peer_address
from lairchat.context import ServerContext
from lairchat.domain.messages import direct_message_received
from lairchat.errors import ChatError, LineTooLong, Timeout
from lairchat.hub import NOT_PLAIN
from lairchat.liveness import keep_alive
from lairchat.ratelimit import Flooding
from lairchat.router import Outcome, Router, rate_class
from lairchat.tcp_output import write_at_once
from lairchat.wire import event_variant, parse_line, raw_label, render, render_error, render_event, with_label

_UNRENDERED = object()
"""A cache entry not filled yet."""

_SHOWN_ONLY = frozenset({
    events.MessageSent, events.MessageEdited, events.MessageDeleted, events.ReactionAdded,
    events.ReactionRemoved, events.UserJoined, events.RoleChanged, events.TopicChanged,
    events.InvitationReceived, events.InvitationAccepted, events.InvitationDeclined, events.InvitationRevoked,
    events.InvitationExpired, events.InvitationReminder, events.PresenceChanged, events.Notice,
})
"""
Events that only show a line: they change nothing of a connection's state
and never hand over a direct message (L{ReplySent} and
L{DirectMessageSent} may; room messages come as L{MessageSent} only).
"""

_connection_ids = itertools.count(1)
"""Ids of this process's connections (an event's origin names one)."""


def next_connection_id() -> int:
    """
    A connection id no other connection of this process has (an event's
    origin names one; the connection with that id is not shown the event).
    """
    return next(_connection_ids)

QUEUE_LIMIT = 64
"""Requests queued per connection before it stops reading from the socket."""

PIPELINE_DEPTH = 16
"""Pipelined requests of one connection under way at once (see L{ChatProtocol._drain})."""

CLOSE_GRACE = 10.0
"""
Seconds a connection the server closes for a limit (a refusal, the login
timeout) may take to send its last line before it is cut: a peer that does
not read, or a TLS handshake that never finishes, would hold it forever.
Never more than the login timeout.
"""

REFUSAL_RATE_CLASS = "default"
"""The rate class a line refused for its bytes (bad encoding) is charged to."""


@frozen
class Queued:
    """
    A line waiting for its turn.

    @ivar item: a L{lairchat.wire.Request}, or a refusal as C{(label, error)}.
    @ivar ready_at: the clock time before which its budgets do not allow
        it (0: no wait).
    """

    item: Any
    ready_at: float = 0.0


class EventReceiver:
    """
    How the line protocol shows events to a connection and what they do to
    its state.  A connection using it has C{server}, C{user},
    C{session_id}, C{current_room}, C{write_data}, C{close} and
    C{log_out}, and calls L{logged_in} when a user logs in on it.
    """

    _closed = False
    _login_direct: dict | None = None
    _offline_direct: frozenset = frozenset()

    held_output: list[bytes] | None = None
    """What was written while the hub held output (see L{lairchat.hub.Hub.hold}), until L{release_output}."""

    def release_output(self) -> None:
        """Write what was held while the hub handed on a run of events, as one write."""
        held, self.held_output = self.held_output, None
        if held and not self._closed:
            self.write_data(held[0] if len(held) == 1 else b"".join(held))

    PLAIN_KEY: Any = "line"
    """
    How this kind of connection renders plain events (L{None}: it renders
    none plainly; see L{lairchat.hub.Hub._show}).  What is added to a
    connection that closed meanwhile is dropped with it.
    """

    def render_plain(self, event: events.Event) -> Any:
        """
        The bytes an event shows every connection of this kind that did not
        cause it, when it only shows a line and that line is the same for
        every viewer (no direct conversation's name in it); L{None} when it
        shows nothing; L{NOT_PLAIN} otherwise.
        """
        if type(event) not in _SHOWN_ONLY or event_variant(event, self.user.id):
            return NOT_PLAIN
        line = render_event(event, self.user.id)
        return None if line is None else (line + "\r\n").encode("utf-8")

    def logged_in(self) -> None:
        """A user logged in: until L{caught_up}, direct messages shown live are kept aside."""
        self._login_direct = {}
        self._offline_direct = frozenset()

    def receive(self, event: events.Event, is_origin: bool, cache: dict) -> bool:
        """
        An event for this connection's user (the hub calls this): show it
        as its line unless this connection caused it, and apply what it
        does to the connection (a suspension closes it, a password change
        logs out other sessions, leaving a room forgets it as the current
        one).  C{cache} holds the lines already rendered for this event.

        @return: whether a line was written.
        """
        user = self.user
        if user is None or self._closed:
            return False
        if type(event) in _SHOWN_ONLY:
            return False if is_origin else self._show(event, cache)
        if isinstance(event, events.ServerRoleChanged):
            self.user = evolve(user, server_role=event.role)
            return False
        if isinstance(event, (events.UserLeft, events.UserKicked, events.UserBanned)):
            if event.user_id == user.id and self.current_room is not None \
                    and self.current_room.lower() == event.room.name.lower():
                self.current_room = None
        shown = False
        if not is_origin:
            if isinstance(event, events.SessionsRevoked) and self.session_id == event.kept_session:
                return False
            received = direct_message_received(event, user.id)
            if received is not None:
                return self._direct_message(event, received, cache)
            shown = self._show(event, cache)
        if isinstance(event, events.AccountSuspended):
            self.close()
        elif isinstance(event, events.SessionsRevoked) and shown:
            self.log_out()
        return shown

    def _show(self, event: events.Event, cache: dict) -> bool:
        """
        Write an event's line, rendered and encoded once per variant
        through C{cache}; whether there was one.
        """
        key = event_variant(event, self.user.id)
        data = cache.get(key, _UNRENDERED)
        if data is _UNRENDERED:
            line = render_event(event, self.user.id)
            data = cache[key] = None if line is None else (line + "\r\n").encode("utf-8")
        if data is None:
            return False
        self.write_data(data)
        return True

    def _direct_message(self, event: events.Event, received: tuple[int, int], cache: dict) -> bool:
        """
        A new message of a direct conversation for this connection's user:
        shown unless the login's offline delivery already handed it over;
        noted as delivered once this connection has everything before it.
        """
        room_id, message_id = received
        if message_id in self._offline_direct:
            return False
        shown = self._show(event, cache)
        if self._login_direct is not None:
            self._login_direct.setdefault(room_id, set()).add(message_id)
        else:
            self.server.receipts.note(room_id, self.user.id, message_id)
        return shown

    def direct_messages_shown_at_login(self) -> set[int]:
        """
        The direct messages shown live since this connection logged in,
        while its offline delivery is not done.
        """
        return {m for shown in (self._login_direct or {}).values() for m in shown}

    def caught_up(self, offline: Any = ()) -> None:
        """
        The login's offline delivery is done, handing over the messages
        C{offline} (their ids): from now on this connection has every direct
        message as it comes, notes each as delivered, and does not show
        again one of C{offline} whose live event comes late.
        """
        if self._login_direct is None:
            return
        shown, self._login_direct = self._login_direct, None
        self._offline_direct = frozenset(offline)
        for room_id, message_ids in shown.items():
            self.server.receipts.note(room_id, self.user.id, max(message_ids))



@implementer(IPushProducer, IHandshakeListener)
class ChatProtocol(EventReceiver, LineOnlyReceiver):
    """
    One client connection.

    @ivar user: the logged-in L{lairchat.models.User}, or L{None}.
    @ivar session_id: the id of the session it logged in with.
    @ivar current_room: the name of the room plain lines go to, or L{None}.
    @ivar address: the IP address the client connects from (text).
    @ivar exempt: whether that address lies in a trusted network
        (C{--exempt-network}).
    @ivar handshaking: whether a TLS handshake is still under way.
    @ivar admitted_as: the address the factory's gate counted this
        connection under (released when it closes), or L{None}.
    """

    delimiter = b"\n"
    log = Logger()

    def __init__(self, server: ServerContext, router: Router) -> None:
        self.server = server
        self.router = router
        self.MAX_LENGTH = server.config.max_line
        self.user = None
        self.session_id: int | None = None
        self.current_room: str | None = None
        self._queue: deque = deque()
        self._pipeline: deque = deque()
        self._busy = False
        # fired by _stir when a request is queued or a pipelined one answered, while _settle waits for either
        self._stirred: Deferred | None = None
        self._closed = False
        self._reading_paused = False
        self._refusing = False
        self._output_paused = False
        self._producing = False
        self._backlog = 0
        self._delay_call: Any = None
        self._delay_over: Deferred | None = None
        self.lost: Deferred = Deferred()
        self.connection_id = next_connection_id()
        self.address = UNKNOWN_ADDRESS
        self.exempt = False
        self.handshaking = False
        self.admitted_as: str | None = None
        self._login_timer: Any = None
        self._abort_timer: Any = None

    # Connection lifecycle

    def connectionMade(self) -> None:
        """Greet the client and watch our own output buffer."""
        self.address = peer_address(self.transport)
        self.exempt = self.address in self.server.config.exempt_networks
        # Over TLS this runs before the handshake; the login timer covers both.
        self.handshaking = INegotiated.providedBy(self.transport)
        self.factory.connections.add(self)
        self._start_login_timer()
        config = self.server.config
        keep_alive(self.transport, config.keepalive_idle, config.keepalive_interval, config.keepalive_count,
                   config.tcp_user_timeout)
        self.transport.registerProducer(self, True)
        self._producing = True
        # Lines are small and interactive: send each at once rather than
        # waiting for Nagle's algorithm to fill a segment.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        self.write_lines(self.greeting())

    def greeting(self) -> list[str]:
        """The lines a new connection reads first (this front end's C{WELCOME})."""
        server_name = self.server.config.server_name
        return [
            render("WELCOME", "lairchat", __version__, server_name),
            render(
                "SYSTEM_MESSAGE",
                f"Welcome to {server_name}! LOGIN:<user>:<password> or "
                "REGISTER:<user>:<password>; HELP lists every command",
            ),
        ]

    def error_lines(self, label: str | None, error: ChatError) -> list[str]:
        """
        How this front end tells its client of C{error} outside a command's
        reply (a refused line, a timeout, a block): one labelled C{ERROR} line.
        """
        return [with_label(label, render_error(error))]

    def connectionLost(self, reason: Any = None) -> None:
        """Forget the connection: it is no longer online."""
        self._closed = True
        self._queue.clear()
        self._cancel_timers()
        self._end_delay()
        self.server.flood.forget_connection(self.connection_id)
        self.factory.connections.discard(self)
        if self.admitted_as is not None:
            self.factory.gate.release(self.admitted_as)
            self.admitted_as = None
        self.log_out()
        self.lost.callback(None)

    def handshakeCompleted(self) -> None:
        """The TLS handshake finished (L{IHandshakeListener})."""
        self.handshaking = False

    # Login timeout

    def _start_login_timer(self) -> None:
        """Close this connection if nobody logs in on it within the login timeout."""
        if self._login_timer is None and not self._closed:
            self._login_timer = self.server.clock.callLater(self.server.config.login_timeout,
                                                            self._login_timed_out)

    def _stop_login_timer(self) -> None:
        """Somebody logged in: no login timeout."""
        if self._login_timer is not None:
            if self._login_timer.active():
                self._login_timer.cancel()
            self._login_timer = None

    def _login_timed_out(self) -> None:
        """
        Nobody logged in in time: say why and close.  A TLS handshake that
        has not finished is cut at once (nobody could read the line).
        """
        self._login_timer = None
        if self._closed or self.user is not None:
            return
        if self.handshaking:
            self.factory.connection_timed_out(self.address, "tls_handshake")
            self._closed = True
            self.transport.abortConnection()
            return
        self.factory.connection_timed_out(self.address, "login")
        timeout = self.server.config.login_timeout
        self.write_lines(self.error_lines(None, Timeout(f"no login within {timeout:g} s; closing the connection")))
        self.close()
        self._abort_timer = self.server.clock.callLater(min(CLOSE_GRACE, timeout), self._abort)

    def _abort(self) -> None:
        """The closing connection did not go: cut it."""
        self._abort_timer = None
        if not self._closed:
            self._closed = True
            self.transport.abortConnection()

    def _cancel_timers(self) -> None:
        """The connection is gone: no timer may fire for it."""
        self._stop_login_timer()
        if self._abort_timer is not None:
            if self._abort_timer.active():
                self._abort_timer.cancel()
            self._abort_timer = None

    def log_in(self, user: Any, session_id: int) -> Deferred:
        """
        Make this connection C{user}'s (logging out whoever was here).  The
        Deferred fires once the events of the user's rooms reach it.

        A connection already lost (its peer left, or it was cut, while the
        login was being checked) stays out of the hub: nothing would ever
        take it out again, and its user would be shown online forever.
        """
        if self._closed:
            return succeed(None)
        self.log_out()
        self._stop_login_timer()
        self.user = user
        self.session_id = session_id
        self.logged_in()
        return self.server.user_online(self, user)

    def log_out(self) -> None:
        """Make this connection anonymous again (and give it a login timeout afresh)."""
        user, self.user, self.session_id, self.current_room = self.user, None, None, None
        if user is not None:
            self.server.user_offline(self, user)
            self._start_login_timer()

    # Input

    def lineReceived(self, line: bytes) -> None:
        """
        Parse a line and queue it; requests are answered in order.  A line
        refused before parsing (bad encoding) is queued as its error, so
        it too is answered in its turn.
        """
        if self._refusing:
            return
        try:
            request = parse_line(line)
        except ChatError as error:
            self.server.intrusion.note(self.address, "malformed_line")
            self._enqueue((raw_label(line), error), REFUSAL_RATE_CLASS)
            return
        if request is None:
            return
        self._enqueue(request, rate_class(self.server, request))

    def _enqueue(self, item: Any, charged_to: str | None = None) -> None:
        """
        Queue a request, or a refusal as C{(label, error)}, and make sure
        the queue drains.  With C{charged_to} (a rate class) the line is
        charged to this connection's budgets first and waits as long as
        they say; past the backlog bound the connection is cut off instead.
        """
        ready_at = 0.0
        if charged_to is not None:
            try:
                wait = self.server.flood.charge(
                    charged_to,
                    self.connection_id,
                    None if self.exempt or self.address == UNKNOWN_ADDRESS else self.address,
                    None if self.user is None else self.user.id,
                    refused_address=self.address,
                )
            except Flooding as error:
                self._cut_off(item[0] if isinstance(item, tuple) else item.label, error)
                return
            if wait > 0:
                ready_at = self.server.clock.seconds() + wait
        self._queue.append(Queued(item, ready_at))
        if len(self._queue) >= QUEUE_LIMIT and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        if not self._busy:
            Deferred.fromCoroutine(self._drain())
        else:
            self._stir()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        Refuse an over-long line once, after the replies to the requests
        before it, then close the connection; read nothing more.
        """
        self._buffer = b""
        if self._refusing:
            return
        self.server.intrusion.note(self.address, "malformed_line")
        self._refusing = True
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        self._enqueue((raw_label(line), LineTooLong(f"a line holds at most {self.MAX_LENGTH} bytes")))

    def _cut_off(self, label: str | None, error: Flooding) -> None:
        """
        The client floods past the backlog bound: read nothing more, drop
        what waits, and answer C{error} (under the label of the line that
        went over) right after the request in progress, then close.
        """
        self._refusing = True
        if not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        self._queue.clear()
        self._queue.append(Queued((label, error)))
        self._end_delay()
        if not self._busy:
            Deferred.fromCoroutine(self._drain())
        else:
            self._stir()

    async def _wait(self, seconds: float) -> None:
        """Wait C{seconds} on the server clock, or until L{_end_delay}."""
        self._delay_over = Deferred()
        self._delay_call = self.server.clock.callLater(seconds, self._end_delay)
        await self._delay_over

    def _end_delay(self) -> None:
        """End the wait in progress, if any (its time came, or there is nothing left to wait for)."""
        call, self._delay_call = self._delay_call, None
        if call is not None and call.active():
            call.cancel()
        over, self._delay_over = self._delay_over, None
        if over is not None:
            over.callback(None)

    async def _drain(self) -> None:
        """
        Answer queued requests one after another, each once its budgets
        allow it, replies in the order the requests came.

        A pipelined request (L{lairchat.router.Router.pipelined}: a
        message) does not wait for the replies to the pipelined requests
        before it: it starts once the one before it took its place in
        commit order, so that a client that sends several messages without
        waiting has them stored together, in its order.  Any other request
        first waits for every reply before it.  While pipelined requests are
        under way and nothing else is queued, their replies are written as
        they come, and a request that arrives meanwhile is taken up at
        once: a client that sends a message at a time, each before the one
        before it is answered, does not wait for each message's commit
        before its next one is even started.
        """
        self._busy = True
        try:
            while True:
                while self._queue and not self._closed:
                    wait = self._queue[0].ready_at - self.server.clock.seconds()
                    if wait > 0:
                        if not await self._settle():
                            return
                        await self._wait(wait)
                        continue  # the queue may have changed meanwhile (a cut-off)
                    item = self._queue.popleft().item
                    if not isinstance(item, tuple) and len(self._pipeline) < PIPELINE_DEPTH \
                            and self.router.pipelined(self, item):
                        await self._start_pipelined(item)
                        continue
                    if not await self._settle():
                        return
                    if isinstance(item, tuple):
                        label, error = item
                        outcome = Outcome(tuple(self.error_lines(label, error)), close=error.closes)
                    else:
                        outcome = await self.router.dispatch(self, item)
                    if not self._answer(outcome):
                        return
                if not await self._settle(until_queued=True) or not self._queue or self._closed:
                    return
        finally:
            self._busy = False

    async def _start_pipelined(self, request: Any) -> None:
        """
        Start a pipelined request; come back once it took its place in
        commit order (or was answered without one).
        """
        placed: Deferred = Deferred()

        def queued() -> None:
            if not placed.called:
                placed.callback(None)

        def answered(outcome: Outcome) -> Outcome:
            queued()
            self._stir()
            return outcome

        answer = Deferred.fromCoroutine(self.router.dispatch(self, request, queued))
        self._pipeline.append(answer)
        if not answer.called:
            answer.addCallback(answered)
            await placed

    async def _settle(self, until_queued: bool = False) -> bool:
        """
        Write the replies of the pipelined requests under way, in order, as
        they come; whether the connection goes on (none of them closed it).
        With C{until_queued}, stop early (with replies still to come) as
        soon as a request is queued.
        """
        while self._pipeline:
            if until_queued and not self._pipeline[0].called:
                if self._queue:
                    return True
                self._stirred = Deferred()
                await self._stirred
                continue
            outcome = await self._pipeline[0]
            self._pipeline.popleft()
            if not self._answer(outcome):
                self._pipeline.clear()
                return False
        return True

    def _stir(self) -> None:
        """A request was queued, or a pipelined one answered: wake L{_settle} if it waits for either."""
        stirred, self._stirred = self._stirred, None
        if stirred is not None:
            stirred.callback(None)

    def _answer(self, outcome: Outcome) -> bool:
        """Write one request's reply; whether the connection goes on."""
        if self._closed:
            return False
        self.write_lines(outcome.lines)
        if outcome.after:
            self.write_lines(outcome.after)
        if outcome.close:
            self.close()
            return False
        if self._reading_paused and not self._refusing and len(self._queue) < QUEUE_LIMIT // 2:
            self._reading_paused = False
            self.transport.resumeProducing()
        return True

    def close(self) -> None:
        """
        Close the connection once what was written has been sent, and read
        and answer nothing more.

        The producer registration goes first: a transport whose streaming
        producer is paused (a reply larger than its buffer was just
        written) resumes that producer when the buffer drains instead of
        closing, and would never close.
        """
        self._queue.clear()
        self._end_delay()
        self._refusing = True
        self.release_output()
        if self._producing:
            self._producing = False
            self.transport.unregisterProducer()
        self.transport.loseConnection()

    # Output

    def write_lines(self, lines: Any) -> None:
        """Write lines in one go, so nothing comes between them."""
        if self._closed or not lines:
            return
        self.write_data("".join(line + "\r\n" for line in lines).encode("utf-8"))

    def write_data(self, data: bytes) -> None:
        """
        Write encoded lines, or hold them while the hub holds output (see
        L{lairchat.hub.Hub.hold}).
        """
        if self._closed:
            return
        if self.held_output is not None:
            self.held_output.append(data)
        elif self.server.hub.holding:
            self.held_output = [data]
            self.server.hub.held_by(self)
        else:
            self._transmit(data)

    def _transmit(self, data: bytes) -> None:
        """
        Give the transport encoded lines (sent at once when nothing waits
        before them: L{write_at_once}); a client that stopped reading is
        cut off past the output limit.
        """
        if self._output_paused:
            self._backlog += len(data)
            if self._backlog > self.server.config.max_output_buffer:
                self.log.warn("closing a connection that stopped reading ({user})",
                              user=self.user.username if self.user else "anonymous")
                self._closed = True
                self.held_output = None
                self.transport.abortConnection()
                return
        write_at_once(self.transport, data)

    def send_event(self, line: str) -> None:
        """Write one event line."""
        self.write_lines([line])

    # IPushProducer: the transport tells us when the client stops reading.

    def pauseProducing(self) -> None:
        """The transport's buffer is full: count what we add from now on."""
        self._output_paused = True

    def resumeProducing(self) -> None:
        """The client caught up."""
        self._output_paused = False
        self._backlog = 0

    def stopProducing(self) -> None:
        """The connection is going away."""
        self._closed = True


class RefusedConnection(Protocol):
    """
    A connection the gate refused: it reads the refusal's C{ERROR} line and
    is closed.  Nothing it sends is read; it never meets the router, the
    database or the hub.  A peer that does not take the line (a TLS
    handshake that does not finish) is cut after a grace period.
    """

    def __init__(self, error: ChatError, clock: Any, grace: float, render_refusal: Any = render_error) -> None:
        self.error = error
        self.clock = clock
        self.grace = grace
        self.render_refusal = render_refusal
        self._abort_timer: Any = None

    def connectionMade(self) -> None:
        """Write the line (as the front end renders it), close, and cut the connection if it lingers."""
        self.transport.write((self.render_refusal(self.error) + "\r\n").encode("utf-8"))
        self.transport.loseConnection()
        self._abort_timer = self.clock.callLater(self.grace, self._abort)

    def _abort(self) -> None:
        """The line was not taken in time: cut the connection."""
        self._abort_timer = None
        self.transport.abortConnection()

    def dataReceived(self, data: bytes) -> None:
        """Ignore whatever the client sends."""

    def connectionLost(self, reason: Any = None) -> None:
        """Gone: no cut needed."""
        if self._abort_timer is not None and self._abort_timer.active():
            self._abort_timer.cancel()
        self._abort_timer = None


class FrontEndFactory(Factory):
    """
    What the factories of every front end share: each new connection is
    admitted through the server's one L{lairchat.admission.ConnectionGate} (so the limits
    count the connections of all front ends together) after intrusion
    detection's refusal check; a refused one gets a L{RefusedConnection}
    that speaks this front end's language.  The server's metrics and
    intrusion detection see this factory's connections
    (L{ServerContext.add_front_end}).

    Subclasses say how to build their protocol (L{make_protocol}) and how
    a refusal reads (L{render_refusal}); the protocol is a L{ChatProtocol}
    or one built on it, which releases its gate slot when it closes.

    @ivar gate: the server's L{lairchat.admission.ConnectionGate}.
    @ivar connections: the open connections of this front end.
    """

    log = Logger()

    def __init__(self, server: ServerContext) -> None:
        self.server = server
        self.connections: set = set()
        self.gate = server.gate
        server.add_front_end(self)

    def make_protocol(self) -> Protocol:
        """A new connection's protocol (admitted already)."""
        raise NotImplementedError(type(self).__name__)

    def render_refusal(self, error: ChatError) -> str:
        """The line a refused connection reads before it is closed."""
        return render_error(error)

    def close_address(self, address: str, error: ChatError) -> None:
        """Close every connection from C{address}, each after the line of C{error}."""
        for connection in [c for c in self.connections if c.address == address]:
            connection.write_lines(connection.error_lines(None, error))
            connection.close()

    def buildProtocol(self, addr: Any) -> Protocol:
        """
        A new connection from C{addr}: this front end's protocol when the
        gate admits it, else a L{RefusedConnection}.
        """
        config = self.server.config
        address = address_of(addr)
        grace = min(CLOSE_GRACE, config.login_timeout)
        blocked = self.server.intrusion.refusal(address)
        if blocked is not None:
            self.server.metrics.connection_refused("blocked")
            return RefusedConnection(blocked, self.server.clock, grace, self.render_refusal)
        refusal = self.gate.admit(address, address in config.exempt_networks)
        if refusal is not None:
            self.connection_refused(address, refusal.reason)
            return RefusedConnection(refusal.error, self.server.clock, grace, self.render_refusal)
        protocol = self.make_protocol()
        protocol.factory = self
        protocol.admitted_as = address
        return protocol

    def connection_refused(self, address: str, reason: str) -> None:
        """
        The one place a connection is refused for a limit, with its
        address and the refusal's reason (C{total}, C{per_address},
        C{rate}): counted for the metrics and by intrusion detection.
        """
        self.server.metrics.connection_refused(reason)
        self.server.intrusion.note(address, "refused_connection")

    def connection_timed_out(self, address: str, reason: str) -> None:
        """
        A connection from C{address} closed for not logging in in time
        (C{reason} C{login}, or C{tls_handshake} when its TLS handshake did
        not even finish): counted for the metrics.
        """
        self.server.metrics.connection_timed_out(reason)

    def connection_states(self) -> dict[str, int]:
        """How many open connections are in each state: C{tls_handshake}, C{anonymous}, C{logged_in}."""
        states = {"tls_handshake": 0, "anonymous": 0, "logged_in": 0}
        for connection in self.connections:
            if connection.user is not None:
                states["logged_in"] += 1
            elif connection.handshaking:
                states["tls_handshake"] += 1
            else:
                states["anonymous"] += 1
        return states


class ChatFactory(FrontEndFactory):
    """
    The line protocol's factory: a L{ChatProtocol} per admitted
    connection, over one shared server and router.
    """

    def __init__(self, server: ServerContext) -> None:
        self.router = Router(server)
        super().__init__(server)

    def make_protocol(self) -> Protocol:
        """A L{ChatProtocol} on this factory's router."""
        return ChatProtocol(self.server, self.router)
