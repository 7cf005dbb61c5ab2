"""
Tests for L{lairchat.events} and the rendering of events in
L{lairchat.wire}: the JSON codec round-trips every event, every event a
client is shown renders to exactly the line of PROTOCOL.md section 4, and
every event says who it is for.

The expected lines and audiences are written out here, kind by kind, as an
independent statement of the protocol: they are not derived from the code
under test.
"""

import json
from collections.abc import Callable

from attrs import evolve, fields
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat import events
from lairchat.events import (
    EVENT_TYPES,
    AccountSuspended,
    Audience,
    AwayChanged,
    ConversationOpened,
    DirectMessageSent,
    GuestLoggedIn,
    InvitationAccepted,
    InvitationDeclined,
    InvitationExpired,
    InvitationReceived,
    InvitationReminder,
    InvitationRevoked,
    MemberAdded,
    MemberRemoved,
    MessageDeleted,
    MessageEdited,
    MessageSent,
    Notice,
    Origin,
    PresenceChanged,
    ReactionAdded,
    ReactionRemoved,
    ReadMarkerMoved,
    ReplySent,
    RoleChanged,
    RoomCreated,
    RoomRef,
    ServerRoleChanged,
    SessionsRevoked,
    TagsSent,
    TopicChanged,
    UserBanned,
    UserJoined,
    UserKicked,
    UserLeft,
    UserQuit,
    UserRenamed,
)
from lairchat.validation import ROLES, SERVER_ROLES
from lairchat.wire import event_variant, has_control_characters, parse_text, render_event, split_arguments

EXAMPLES_PER_KIND = 30
"""How many events of each kind every property is checked against."""

# Strategies -----------------------------------------------------------------

IDS = st.integers(min_value=1, max_value=2**63 - 1)
"""Ids: positive, up to the largest bigint."""

TIMESTAMPS = st.integers(min_value=0, max_value=2**63 - 1)
"""Epoch milliseconds."""

USERNAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_]{2,19}", fullmatch=True)
"""Usernames, by the rule of L{lairchat.validation.username}."""

ROOM_NAMES = st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{2,49}", fullmatch=True).filter(
    lambda name: name.lower() not in ("lobby", "latest")
)
"""Room names, by the rule of L{lairchat.validation.room_name}."""

_FIELD_CHARACTERS = st.characters(exclude_categories=("Cc", "Cs"), include_characters="\t:")
"""Every character a free-text field may hold (colons included)."""


def _texts(min_size: int = 1) -> st.SearchStrategy:
    """Free text of C{min_size} to 200 characters, no control characters."""
    return st.text(_FIELD_CHARACTERS, min_size=min_size, max_size=200).filter(
        lambda text: not has_control_characters(text)
    )


TEXTS = _texts()
"""Message texts."""

OPTIONAL_TEXTS = _texts(min_size=0)
"""Texts that may be empty (a reason, a topic, an invitation's message)."""

EMOJIS = st.text(_FIELD_CHARACTERS, min_size=1, max_size=32).filter(
    lambda text: not has_control_characters(text) and not any(c.isspace() or c == ":" for c in text)
)
"""Reactions: no spaces, colons or control characters."""

NAMED_ROOMS = st.builds(RoomRef, IDS, ROOM_NAMES)
"""A room by its name."""


@st.composite
def direct_rooms(draw: Callable) -> RoomRef:
    """A direct conversation: two distinct parties, each with their username."""
    first_id, second_id = draw(st.lists(IDS, min_size=2, max_size=2, unique=True))
    first, second = draw(st.lists(USERNAMES, min_size=2, max_size=2, unique_by=str.lower))
    return RoomRef(draw(IDS), "", ((first_id, first), (second_id, second)))


ANY_ROOM = st.one_of(NAMED_ROOMS, direct_rooms())
"""Either kind of room."""

DIRECT_CAPABLE = (MessageSent, ReplySent, MessageEdited, MessageDeleted, ReactionAdded, ReactionRemoved, TagsSent,
                  ReadMarkerMoved)
"""The kinds that happen in direct conversations as well as in rooms."""

ORIGINS = st.one_of(
    st.none(),
    st.builds(Origin, st.text(st.characters(exclude_categories=("Cs",)), max_size=20),
              st.integers(min_value=0, max_value=2**63 - 1)),
)
"""Where an event came from, or nowhere."""

FIELD_STRATEGIES: dict[str, st.SearchStrategy] = {
    "message_id": IDS,
    "parent_id": IDS,
    "sender_id": IDS,
    "recipient_id": IDS,
    "user_id": IDS,
    "invitation_id": IDS,
    "room_id": IDS,
    "kept_session": IDS,
    "sender": USERNAMES,
    "recipient": USERNAMES,
    "editor": USERNAMES,
    "by": USERNAMES,
    "user": USERNAMES,
    "ts": TIMESTAMPS,
    "expires_ms": TIMESTAMPS,
    "text": TEXTS,
    "topic": OPTIONAL_TEXTS,
    "reason": OPTIONAL_TEXTS,
    "message": OPTIONAL_TEXTS,
    "emoji": EMOJIS,
    "role": st.sampled_from(ROLES),
    "online": st.booleans(),
    "room_ids": st.lists(IDS, max_size=5, unique=True).map(tuple),
    "guest": st.booleans(),
    "client_tags": st.sampled_from(["", "+baz=bat", "+draft/reply=12;+x"]),
    "tags": st.sampled_from(["+typing=active", "+draft/react=👍;+draft/reply=3"]),
    "msgid": st.from_regex(r"t[0-9a-f]{16}", fullmatch=True),
    "away": OPTIONAL_TEXTS,
    "previous": st.sampled_from(("",) + ROLES),
    "account": USERNAMES,
    "old": USERNAMES,
    "notice": st.booleans(),
    "quitting": st.booleans(),
}
"""How each field is drawn, by its name (L{room} and a few others depend on the kind)."""


def event_strategy(cls: type, any_room: bool = False) -> st.SearchStrategy:
    """
    Events of kind C{cls}, with no origin.

    @param any_room: draw any room for a C{room} field, whatever the kind
        (for the codec); otherwise only the rooms an event of this kind can
        be about.
    """
    arguments = {}
    for attribute in fields(cls):
        name = attribute.name
        if name == "origin":
            continue
        if name == "room" and attribute.type is str:
            strategy = ROOM_NAMES
        elif name == "room":
            if any_room or cls in DIRECT_CAPABLE:
                strategy = ANY_ROOM
            elif cls is ConversationOpened:
                strategy = direct_rooms()
            else:
                strategy = NAMED_ROOMS
        elif name == "role" and cls is ServerRoleChanged:
            strategy = st.sampled_from(SERVER_ROLES)
        else:
            strategy = FIELD_STRATEGIES[name]
        arguments[name] = strategy
    return st.builds(cls, **arguments)


@st.composite
def viewers(draw: Callable, event: events.Event) -> int:
    """
    A user who may see C{event}: in a direct conversation, one of its
    parties; otherwise anyone.
    """
    room = getattr(event, "room", None)
    if isinstance(room, RoomRef) and room.parties:
        return draw(st.sampled_from([party_id for party_id, _ in room.parties]))
    return draw(IDS)


def for_every_kind(check: Callable, strategy: Callable[[type], st.SearchStrategy] = event_strategy,
                   kinds: tuple[type, ...] | None = None) -> None:
    """
    Run C{check(event, data)} on L{EXAMPLES_PER_KIND} events of every kind
    of L{EVENT_TYPES} (or of C{kinds}; C{data} draws more values).
    """
    for cls in kinds if kinds is not None else EVENT_TYPES.values():

        @settings(max_examples=EXAMPLES_PER_KIND)
        @given(strategy(cls), st.data())
        def run(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            check(event, data)

        run()


# The protocol, written out -------------------------------------------------


def room_as_seen(room: RoomRef, viewer_id: int) -> str:
    """
    How C{viewer_id} names a room in an event: a room by its name, a direct
    conversation as C{@} and the username of the other party.
    """
    if not room.parties:
        return room.name
    (others,) = [username for party_id, username in room.parties if party_id != viewer_id]
    return "@" + others


def _suspended(e: AccountSuspended) -> str:
    """The notice of a suspension (docs/protocol.md, admin commands)."""
    if e.reason:
        return f"your account was suspended: {e.reason}"
    return "your account was suspended"


EXPECTED_LINES: dict[type, Callable[[events.Event, int], tuple[str, list[str]] | None]] = {
    MessageSent: lambda e, v: ("MESSAGE", [room_as_seen(e.room, v), str(e.message_id), e.sender, str(e.ts), e.text]),
    ReplySent: lambda e, v: (
        "REPLY",
        [room_as_seen(e.room, v), str(e.message_id), str(e.parent_id), e.sender, str(e.ts), e.text],
    ),
    MessageEdited: lambda e, v: (
        "MESSAGE_EDITED",
        [room_as_seen(e.room, v), str(e.message_id), e.editor, str(e.ts), e.text],
    ),
    MessageDeleted: lambda e, v: ("MESSAGE_DELETED", [room_as_seen(e.room, v), str(e.message_id), e.by]),
    ReactionAdded: lambda e, v: ("REACTION_ADDED", [room_as_seen(e.room, v), str(e.message_id), e.user, e.emoji]),
    ReactionRemoved: lambda e, v: (
        "REACTION_REMOVED",
        [room_as_seen(e.room, v), str(e.message_id), e.user, e.emoji],
    ),
    DirectMessageSent: lambda e, v: (
        "PRIVATE_MESSAGE",
        [e.sender, e.recipient, str(e.message_id), str(e.ts), e.text],
    ),
    UserJoined: lambda e, v: ("USER_JOINED", [e.room.name, e.user]),
    UserLeft: lambda e, v: ("USER_LEFT", [e.room.name, e.user]),
    UserKicked: lambda e, v: ("USER_KICKED", [e.room.name, e.user, e.by, e.reason]),
    UserBanned: lambda e, v: ("USER_BANNED", [e.room.name, e.user, e.by, e.reason]),
    RoleChanged: lambda e, v: ("ROLE_CHANGED", [e.room.name, e.user, e.role, e.by]),
    TopicChanged: lambda e, v: ("TOPIC_CHANGED", [e.room.name, e.by, e.topic]),
    InvitationReceived: lambda e, v: (
        "INVITATION_RECEIVED",
        [str(e.invitation_id), e.sender, e.room, e.role, str(e.expires_ms), e.message],
    ),
    InvitationAccepted: lambda e, v: ("INVITATION_ACCEPTED", [str(e.invitation_id), e.user, e.room]),
    InvitationDeclined: lambda e, v: ("INVITATION_DECLINED", [str(e.invitation_id), e.user, e.room]),
    InvitationRevoked: lambda e, v: ("INVITATION_REVOKED", [str(e.invitation_id), e.room, e.by]),
    InvitationExpired: lambda e, v: ("INVITATION_EXPIRED", [str(e.invitation_id), e.room]),
    InvitationReminder: lambda e, v: ("INVITATION_REMINDER", [str(e.invitation_id), e.room, str(e.expires_ms)]),
    PresenceChanged: lambda e, v: ("PRESENCE", [e.user, "online" if e.online else "offline"]),
    TagsSent: lambda e, v: None,
    AwayChanged: lambda e, v: None,
    GuestLoggedIn: lambda e, v: None,
    ReadMarkerMoved: lambda e, v: None,
    AccountSuspended: lambda e, v: ("SYSTEM_MESSAGE", [_suspended(e)]),
    SessionsRevoked: lambda e, v: ("SYSTEM_MESSAGE", ["your password was changed; log in again"]),
    Notice: lambda e, v: ("SYSTEM_MESSAGE", [e.text]),
    RoomCreated: lambda e, v: None,
    ConversationOpened: lambda e, v: None,
    MemberAdded: lambda e, v: None,
    MemberRemoved: lambda e, v: None,
    ServerRoleChanged: lambda e, v: None,
    UserQuit: lambda e, v: None,
    UserRenamed: lambda e, v: None,
}
"""
The kind and fields of the line each event is shown as to a viewer
(PROTOCOL.md section 4, SYSTEM_MESSAGE texts from docs/protocol.md), or
L{None} for the internal events no client is shown.
"""

INTERNAL = (RoomCreated, ConversationOpened, MemberAdded, MemberRemoved, ServerRoleChanged)
"""The events that only keep the servers' memory current."""

IRC_ONLY = (TagsSent, AwayChanged, GuestLoggedIn, ReadMarkerMoved)
"""The events only IRC clients are shown: the line protocol has no line for them (its wire does not change)."""

_NOBODY = Audience(None, frozenset())

EXPECTED_AUDIENCES: dict[type, Callable[[events.Event], Audience]] = {
    MessageSent: lambda e: Audience(e.room.id),
    ReplySent: lambda e: Audience(e.room.id),
    MessageEdited: lambda e: Audience(e.room.id),
    MessageDeleted: lambda e: Audience(e.room.id),
    ReactionAdded: lambda e: Audience(e.room.id),
    ReactionRemoved: lambda e: Audience(e.room.id),
    RoleChanged: lambda e: Audience(e.room.id),
    TopicChanged: lambda e: Audience(e.room.id),
    DirectMessageSent: lambda e: Audience(None, frozenset({e.sender_id, e.recipient_id})),
    RoomCreated: lambda e: Audience(e.room.id, frozenset({e.user_id})),
    UserJoined: lambda e: Audience(e.room.id, frozenset({e.user_id})),
    UserLeft: lambda e: Audience(e.room.id, frozenset({e.user_id})),
    UserKicked: lambda e: Audience(e.room.id, frozenset({e.user_id})),
    UserBanned: lambda e: Audience(e.room.id, frozenset({e.user_id})),
    ConversationOpened: lambda e: Audience(e.room.id, frozenset(p for p, _ in e.room.parties)),
    MemberAdded: lambda e: _NOBODY,
    MemberRemoved: lambda e: _NOBODY,
    InvitationReceived: lambda e: Audience(None, frozenset({e.recipient_id})),
    InvitationAccepted: lambda e: Audience(None, frozenset({e.sender_id})),
    InvitationDeclined: lambda e: Audience(None, frozenset({e.sender_id})),
    InvitationRevoked: lambda e: Audience(None, frozenset({e.recipient_id})),
    InvitationExpired: lambda e: Audience(None, frozenset({e.sender_id, e.recipient_id})),
    InvitationReminder: lambda e: Audience(None, frozenset({e.recipient_id})),
    PresenceChanged: lambda e: Audience(more_rooms=frozenset(e.room_ids), but=e.user_id),
    AwayChanged: lambda e: Audience(more_rooms=frozenset(e.room_ids), but=e.user_id),
    GuestLoggedIn: lambda e: Audience(more_rooms=frozenset(e.room_ids), but=e.user_id),
    ReadMarkerMoved: lambda e: Audience(None, frozenset({e.user_id})),
    TagsSent: lambda e: Audience(e.room.id),
    AccountSuspended: lambda e: Audience(None, frozenset({e.user_id})),
    SessionsRevoked: lambda e: Audience(None, frozenset({e.user_id})),
    ServerRoleChanged: lambda e: Audience(None, frozenset({e.user_id})),
    Notice: lambda e: Audience(None, frozenset({e.user_id})),
    UserQuit: lambda e: Audience(more_rooms=frozenset(e.room_ids), but=e.user_id),
    UserRenamed: lambda e: Audience(more_rooms=frozenset(e.room_ids), but=e.user_id),
}
"""Who each event is for."""


def parse_event_line(line: str, field_count: int) -> tuple[str, list[str]]:
    """
    Read an event line as a client does: the kind before the first C{:},
    then C{field_count} fields, the last taking the rest of the line.
    """
    request = parse_text(line)
    assert request is not None and request.label is None, line
    return request.name, split_arguments(request.rest, field_count, field_count, "event")


# Tests ---------------------------------------------------------------------


class TablesTests(SynchronousTestCase):
    """
    The tables of this module cover every kind of event, so a new kind
    cannot go untested.
    """

    def test_every_kind_has_a_line(self):
        """
        L{EXPECTED_LINES} says how every kind of L{EVENT_TYPES} is shown.
        """
        self.assertEqual(set(EXPECTED_LINES), set(EVENT_TYPES.values()))

    def test_every_kind_has_an_audience(self):
        """
        L{EXPECTED_AUDIENCES} says who every kind of L{EVENT_TYPES} is for.
        """
        self.assertEqual(set(EXPECTED_AUDIENCES), set(EVENT_TYPES.values()))

    def test_kinds_by_class_name(self):
        """
        Every kind is stored under its class name.
        """
        for name, cls in EVENT_TYPES.items():
            self.assertEqual(cls.__name__, name)


class CodecTests(SynchronousTestCase):
    """
    L{events.encode}, L{events.payload} and L{events.decode}.
    """

    def test_round_trip(self):
        """
        Every event, encoded to JSON and decoded with its kind (its class
        name, which L{EVENT_TYPES} maps back to the class) and origin, is
        the same event, whatever its fields.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            event = evolve(event, origin=data.draw(ORIGINS))
            text = events.encode(event)
            self.assertIsInstance(text, str)
            self.assertIs(EVENT_TYPES[events.kind(event)], type(event))
            decoded = events.decode(events.kind(event), json.loads(text), event.origin)
            self.assertEqual(decoded, event)
            self.assertIs(type(decoded), type(event))

        for_every_kind(check, lambda cls: event_strategy(cls, any_room=True))

    def test_encode_excludes_origin(self):
        """
        The origin is stored beside the event, not in its JSON: two events
        differing only in origin encode the same.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            here = evolve(event, origin=Origin("node-a", 3))
            self.assertEqual(events.encode(here), events.encode(event))
            self.assertNotIn("origin", events.payload(here))

        for_every_kind(check)

    def test_unknown_kind(self):
        """
        Decoding a kind this node does not know raises L{KeyError}.
        """
        self.assertRaises(KeyError, events.decode, "FromTheFuture", {}, None)

    def test_fields_added_later_take_their_defaults(self):
        """
        An event written before a field with a default was added (by an
        older node) decodes with that default; a field without one is
        still required.
        """
        room = RoomRef(7, "lounge")
        old = {"room": [7, "lounge", []], "user_id": 2, "user": "bob"}
        self.assertEqual(events.decode("UserJoined", old), UserJoined(room, 2, "bob", False, ""))
        self.assertRaises(KeyError, events.decode, "UserJoined", {"room": [7, "lounge", []], "user_id": 2})

    def test_direct_room_round_trip(self):
        """
        A direct conversation's parties come back as tuples of
        C{(user_id, username)}, in their order.
        """
        room = RoomRef(7, "", ((3, "alice"), (5, "bob")))
        event = MessageSent(room, 1, 3, "alice", 1000, "hi", origin=Origin("n", 1))
        decoded = events.decode("MessageSent", json.loads(events.encode(event)), Origin("n", 1))
        self.assertEqual(decoded.room.parties, ((3, "alice"), (5, "bob")))
        self.assertTrue(decoded.room.is_direct)


class RenderingTests(SynchronousTestCase):
    """
    L{lairchat.wire.render_event} and L{lairchat.wire.event_variant}
    against PROTOCOL.md section 4.
    """

    def test_lines(self):
        """
        Every event a client is shown renders to one line that parses back
        to exactly the kind and fields the protocol lists for it, in order,
        with the event's values; a direct conversation is named after the
        other party for each viewer.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            viewer = data.draw(viewers(event))
            expected = EXPECTED_LINES[type(event)](event, viewer)
            line = render_event(event, viewer)
            if expected is None:
                self.assertIsNone(line)
                return
            self.assertIsNotNone(line)
            self.assertFalse(has_control_characters(line), line)
            kind_name, expected_fields = expected
            self.assertEqual(parse_event_line(line, len(expected_fields)), (kind_name, expected_fields))

        for_every_kind(check)

    def test_internal_events_not_shown(self):
        """
        The internal events, and those only IRC shows, render to L{None}
        for every viewer.
        """
        for cls in INTERNAL + IRC_ONLY:

            @settings(max_examples=EXAMPLES_PER_KIND)
            @given(event_strategy(cls, any_room=True), IDS)
            def check(event: events.Event, viewer: int) -> None:
                """One example."""
                self.assertIsNone(render_event(event, viewer))

            check()

    def test_direct_conversation_names(self):
        """
        In a direct conversation between alice and bob, alice sees the room
        as C{@bob} and bob sees it as C{@alice}.
        """
        room = RoomRef(9, "", ((1, "alice"), (2, "bob")))
        event = MessageSent(room, 40, 1, "alice", 1234, "hi: there")
        self.assertEqual(render_event(event, 1), "MESSAGE:@bob:40:alice:1234:hi: there")
        self.assertEqual(render_event(event, 2), "MESSAGE:@alice:40:alice:1234:hi: there")

    def test_variant_same_for_everyone_outside_direct_conversations(self):
        """
        An event not about a direct conversation has one variant for every
        viewer.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            room = getattr(event, "room", None)
            if isinstance(room, RoomRef) and room.is_direct:
                return
            first, second = data.draw(IDS), data.draw(IDS)
            self.assertEqual(event_variant(event, first), event_variant(event, second))

        for_every_kind(check)

    def test_variant_differs_in_direct_conversations(self):
        """
        An event about a direct conversation has a different variant for
        each party (each sees the room under another name).
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            room = event.room
            if not room.is_direct:
                return
            (first, _), (second, _) = room.parties
            self.assertNotEqual(event_variant(event, first), event_variant(event, second))

        for_every_kind(check, kinds=DIRECT_CAPABLE + (ConversationOpened,))

    def test_same_variant_same_line(self):
        """
        Two viewers with the same variant get the same line (so a line is
        rendered once per variant); with different variants, a shown event's
        lines differ.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            first, second = data.draw(viewers(event)), data.draw(viewers(event))
            if event_variant(event, first) == event_variant(event, second):
                self.assertEqual(render_event(event, first), render_event(event, second))
            elif type(event) not in INTERNAL + IRC_ONLY:
                self.assertNotEqual(render_event(event, first), render_event(event, second))

        for_every_kind(check)


class AudienceTests(SynchronousTestCase):
    """
    L{events.Event.audience} of every kind.
    """

    def test_audiences(self):
        """
        Room events are for the room; membership events for the room and
        the user; a direct message and a conversation for both parties;
        invitation events for the right party; presence for the members of the user's rooms, not the user;
        account events for the user; the trigger's membership events for
        nobody.
        """

        def check(event: events.Event, data: st.DataObject) -> None:
            """One example."""
            self.assertEqual(event.audience(), EXPECTED_AUDIENCES[type(event)](event))

        for_every_kind(check, lambda cls: event_strategy(cls, any_room=True))

    def test_membership_direction(self):
        """
        A membership event says whether the user joins or leaves.
        """
        room = RoomRef(1, "general")
        joining = [RoomCreated(room, 2), MemberAdded(room, 2), UserJoined(room, 2, "bob")]
        leaving = [
            MemberRemoved(room, 2),
            UserLeft(room, 2, "bob"),
            UserKicked(room, 2, "bob", "alice", ""),
            UserBanned(room, 2, "bob", "alice", "spam"),
        ]
        self.assertEqual([e.joins for e in joining], [True] * len(joining))
        self.assertEqual([e.joins for e in leaving], [False] * len(leaving))
        for event in joining + leaving:
            self.assertIsInstance(event, events.MembershipEvent)
