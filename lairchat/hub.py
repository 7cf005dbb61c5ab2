# -*- test-case-name: tests.test_hub -*-
"""
This node's connections: who is logged in on which, which rooms their
users are members of, and the delivery of typed events to them.

The hub keeps, for the users logged in here only, a map of room → members
(loaded once when a user's first connection logs in, then kept current by
the membership events every node reads in the same order), so that an
event's audience is a dictionary look-up, not a query; and, with it, each
room's connections here by kind of rendering, so that an event of one
room goes down a list instead of looking up each member's connections.

A connection is anything with a C{connection_id}, a C{user},
C{receive(event, is_origin, cache)}, C{PLAIN_KEY}, C{render_plain(event)},
C{write_data(data)}, C{held_output} and C{release_output()}: the front end that owns it decides
what the event looks like and what it does to its own state (the line
protocol renders a line; a suspension closes the connection).  The
C{cache} is shared by every recipient of one event, so that an event is
rendered once per distinct rendering, not once per recipient.

While the bus hands on a run of events (L{hold} ... L{release}), what
the connections write is held, and each connection's share goes out as
one write at the end: a connection that hears of ten messages makes one
write, not ten (the transport's own work per write is most of a
delivery's cost).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lairchat.events import ConversationOpened, Event, MembershipEvent
from lairchat.models import User

NOT_PLAIN = object()
"""What C{render_plain} returns for an event that is not plain to the connection (see L{Hub._show})."""

_UNSET = object()


@contextmanager
def output_held(holder: Any) -> Iterator[None]:
    """C{holder.hold()} (a L{Hub}'s, or any C{hold}/C{release} pair) for the block, released however it ends."""
    holder.hold()
    try:
        yield
    finally:
        holder.release()


class Hub:
    """
    The online users of this node, their connections and their rooms.

    @ivar node: this node's id (events from a connection of this node are
        not echoed to that connection).
    @ivar delivered: how many event deliveries were made (for metrics).
    """

    def __init__(self, node: str = "") -> None:
        self.node = node
        self._by_user: dict[int, tuple] = {}
        self._users: dict[int, User] = {}
        self._members: dict[int, set[int]] = {}
        # room -> kind of rendering (PLAIN_KEY) -> the connections here of
        # its members (a dict as an ordered set): what a room event is
        # handed to (see _show_room)
        self._listed: dict[int, dict[Any, dict]] = {}
        self._rooms_of: dict[int, set[int]] = {}
        self._loading: dict[int, list[Event]] = {}
        self._holding = 0
        self._held: list[Any] = []
        self.delivered = 0

    # Output

    @property
    def holding(self) -> bool:
        """Whether writes to connections are held (see L{hold})."""
        return self._holding > 0

    def hold(self) -> None:
        """
        From now until the matching L{release}, a connection's writes are
        held in its C{held_output} (it calls L{held_by} when it starts
        holding) and go out together.
        """
        self._holding += 1

    def held_by(self, connection: Any) -> None:
        """C{connection} holds output until the release; it is flushed then."""
        self._held.append(connection)

    def release(self) -> None:
        """
        End a L{hold}; at the outermost one, every connection that held
        output writes it (C{release_output()}), in the order they first
        held some.
        """
        self._holding -= 1
        if self._holding:
            return
        held, self._held = self._held, []
        for connection in held:
            connection.release_output()

    # Connections

    def attach(self, connection: Any, user: User) -> bool:
        """
        Note that C{user} is logged in on C{connection}.

        @return: whether this is the user's first connection here (their
            rooms are then to be loaded: L{load_rooms}).
        """
        connections = self._by_user.get(user.id, ())
        first = not connections
        if connection not in connections:
            self._by_user[user.id] = (*connections, connection)
            for room_id in self._rooms_of.get(user.id, ()):
                self._list(room_id, connection)
        self._users[user.id] = user
        if first and user.id not in self._rooms_of:
            self._loading[user.id] = []
        return first

    def detach(self, connection: Any, user: User) -> bool:
        """
        Note that C{connection} is no longer logged in as C{user}.

        @return: whether that was the user's last connection here.
        """
        connections = self._by_user.get(user.id)
        if not connections or connection not in connections:
            return False
        for room_id in self._rooms_of.get(user.id, ()):
            self._unlist(room_id, connection)
        if len(connections) > 1:
            self._by_user[user.id] = tuple(c for c in connections if c is not connection)
            return False
        del self._by_user[user.id]
        self._users.pop(user.id, None)
        self._loading.pop(user.id, None)
        for room_id in self._rooms_of.pop(user.id, ()):
            self._leave(room_id, user.id)
        return True

    def load_rooms(self, user_id: int, room_ids: list[int]) -> None:
        """
        The rooms a user who just came online here is a member of, as read
        from the database.  The events seen while they were read are then
        replayed for the user in order: membership changes on top of what
        was read (they are the same or newer), and the events of the
        user's rooms that would otherwise have missed them.
        """
        pending = self._loading.pop(user_id, None)
        if pending is None or user_id not in self._by_user:
            return
        self._rooms_of[user_id] = set()
        for room_id in room_ids:
            self._join(room_id, user_id)
        for event in pending:
            if isinstance(event, (MembershipEvent, ConversationOpened)):
                self._apply_for(event, user_id)
            audience = event.audience()
            if user_id in audience.user_ids or user_id == audience.but \
                    or not audience.rooms() & self._rooms_of[user_id]:
                continue
            self._show(event, [user_id], {}, {})

    def connections_of(self, user_id: int) -> list[Any]:
        """Every connection the user is logged in on here."""
        return list(self._by_user.get(user_id, ()))

    def is_online(self, user_id: int) -> bool:
        """Whether the user has a connection here."""
        return user_id in self._by_user

    def online_users(self) -> list[User]:
        """Every user online here, by name."""
        return sorted(self._users.values(), key=lambda u: u.username.lower())

    def connection_count(self) -> int:
        """How many logged-in connections there are here."""
        return sum(len(c) for c in self._by_user.values())

    def local_members(self, room_id: int) -> set[int]:
        """The members of a room who are online here."""
        return set(self._members.get(room_id, ()))

    def rooms_of(self, user_id: int) -> set[int]:
        """The rooms of a user online here (empty until they are loaded)."""
        return set(self._rooms_of.get(user_id, ()))

    # Membership

    def _join(self, room_id: int, user_id: int) -> None:
        members = self._members.setdefault(room_id, set())
        if user_id not in members:
            members.add(user_id)
            for connection in self._by_user.get(user_id, ()):
                self._list(room_id, connection)
        self._rooms_of[user_id].add(room_id)

    def _leave(self, room_id: int, user_id: int) -> None:
        members = self._members.get(room_id)
        if members is not None and user_id in members:
            members.discard(user_id)
            for connection in self._by_user.get(user_id, ()):
                self._unlist(room_id, connection)
            if not members:
                del self._members[room_id]

    def _list(self, room_id: int, connection: Any) -> None:
        """Add a connection of a member to the room's lists."""
        self._listed.setdefault(room_id, {}).setdefault(connection.PLAIN_KEY, {})[connection] = None

    def _unlist(self, room_id: int, connection: Any) -> None:
        """Take a connection out of the room's lists (it left, or it closed)."""
        kinds = self._listed.get(room_id)
        if kinds is None:
            return
        listed = kinds.get(connection.PLAIN_KEY)
        if listed is None:
            return
        listed.pop(connection, None)
        if not listed:
            del kinds[connection.PLAIN_KEY]
            if not kinds:
                del self._listed[room_id]

    def _change(self, room_id: int, user_id: int, joins: bool) -> None:
        """Apply one membership change of a user whose rooms are loaded here."""
        if user_id not in self._rooms_of:
            return
        if joins:
            self._join(room_id, user_id)
        else:
            self._rooms_of[user_id].discard(room_id)
            self._leave(room_id, user_id)

    def _apply_for(self, event: Event, user_id: int) -> None:
        """Apply a membership event's change, if it concerns C{user_id}."""
        if isinstance(event, MembershipEvent):
            if event.user_id == user_id:
                self._change(event.room.id, user_id, event.joins)
        elif isinstance(event, ConversationOpened):
            if any(p[0] == user_id for p in event.room.parties):
                self._change(event.room.id, user_id, True)

    def apply(self, event: Event) -> None:
        """Keep the room map current with a membership event."""
        if isinstance(event, MembershipEvent):
            self._change(event.room.id, event.user_id, event.joins)
        elif isinstance(event, ConversationOpened):
            for user_id, _ in event.room.parties:
                self._change(event.room.id, user_id, True)

    # Delivery

    def dispatch(self, event: Event) -> int:
        """
        Hand an event to every connection here of its audience; the
        connection that caused it is told it is the origin (it got its
        C{OK} and shows nothing, but its state may change).

        @return: how many connections showed it.
        """
        self.apply(event)
        audience = event.audience()
        rooms = audience.rooms()
        if rooms or isinstance(event, (MembershipEvent, ConversationOpened)):
            for pending in self._loading.values():
                pending.append(event)
        if len(rooms) == 1:
            # one room: its connections as listed, and whoever else the
            # event names (a user who left it hears of that too)
            room_id, = rooms
            cache: dict = {}
            plain: dict = {}
            shown = self._show_room(event, room_id, audience.but, cache, plain)
            members = self._members.get(room_id, ())
            others = [u for u in audience.user_ids if u not in members and u != audience.but]
            return shown + self._show(event, others, cache, plain) if others else shown
        users = set(audience.user_ids)
        for room_id in rooms:
            users.update(self._members.get(room_id, ()))
        users.discard(audience.but)
        return self._show(event, users, {}, {})

    def _show_room(self, event: Event, room_id: int, but: int | None, cache: dict, plain: dict) -> int:
        """
        Hand an event to every connection here of a room's members but the
        user C{but}: the room's connections as listed (one look-up per
        event, not one per member: a room of thousands hears of every
        join).
        """
        kinds = self._listed.get(room_id)
        if not kinds:
            return 0
        skipped = self._by_user.get(but, ()) if but is not None else ()
        return self._hand_out(event, kinds, skipped, cache, plain)

    def _show(self, event: Event, user_ids: Any, cache: dict, plain: dict) -> int:
        """Hand an event to every connection here of the listed users."""
        kinds: dict[Any, list] = {}
        for user_id in user_ids:
            for connection in self._by_user.get(user_id, ()):
                kinds.setdefault(connection.PLAIN_KEY, []).append(connection)
        return self._hand_out(event, kinds, (), cache, plain)

    def _hand_out(self, event: Event, kinds: dict, skipped: Any, cache: dict, plain: dict) -> int:
        """
        Hand an event to the connections of C{kinds} (kind of rendering,
        their C{PLAIN_KEY} → connections) but those in C{skipped}; C{plain}
        keeps each kind's plain bytes of the event, for every call about
        the one event.

        A connection with a C{PLAIN_KEY} (L{None}: none) is first asked for
        the event's plain bytes (C{render_plain(event)}), once per key: an
        event that shows the same line to every such connection and
        changes nothing of theirs.  Those bytes are then written to each,
        or added to what it holds, without a call per connection; every
        other case, and the connection that caused the event, goes through
        C{receive}.

        @return: how many connections showed it.
        """
        origin = event.origin
        origin_connection = origin.connection if origin is not None and origin.node == self.node else None
        holding = self._holding > 0
        shown = 0
        for key, listed in list(kinds.items()):
            data = NOT_PLAIN if key is None else plain.get(key, _UNSET)
            # a copy: what a connection does with an event may close it
            for connection in tuple(listed):
                if connection in skipped:
                    continue
                if connection.connection_id == origin_connection:
                    if connection.receive(event, True, cache):
                        shown += 1
                    continue
                if data is _UNSET:
                    data = plain[key] = connection.render_plain(event)
                if data is NOT_PLAIN:
                    if connection.receive(event, False, cache):
                        shown += 1
                    continue
                if data is None:
                    continue
                shown += 1
                if not holding:
                    connection.write_data(data)
                    continue
                held = connection.held_output
                if held is None:
                    connection.held_output = [data]
                    self._held.append(connection)
                else:
                    held.append(data)
        self.delivered += shown
        return shown
