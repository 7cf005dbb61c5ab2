"""
Tests for L{lairchat.irc.render}: every event renders to lines that can be
written and read back, messages keep their text both ways, and the tags
follow the viewer's capabilities.  The option C{--irc-port} is tested here
too, beside the front end it turns on.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from lairchat import events, validation
from lairchat.irc.message import parse, serialize
from lairchat.irc.render import ROLE_MODES, irc_text, plain_text, render_event, time_tag, variant
from lairchat.tap import Options, makeService

ROOM = events.RoomRef(7, "lounge")
DIRECT = events.RoomRef(9, "", ((1, "alice"), (2, "bob")))
CAPS = frozenset({"message-tags", "server-time"})

TEXTS = st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=200).filter(
    lambda t: t.strip())
"""Message texts as the core accepts them (no control characters)."""

EVERY_EVENT = [
    events.MessageSent(ROOM, 1, 2, "bob", 1000, "hi"),
    events.MessageSent(DIRECT, 1, 2, "bob", 1000, "hi"),
    events.ReplySent(ROOM, 2, 1, 2, "bob", 1000, "re"),
    events.DirectMessageSent(9, 3, 2, "bob", 1, "alice", 1000, "psst"),
    events.MessageEdited(ROOM, 1, "bob", 1000, "hi!"),
    events.MessageDeleted(ROOM, 1, "bob"),
    events.ReactionAdded(ROOM, 1, "bob", "👍"),
    events.ReactionRemoved(DIRECT, 1, "bob", "👍"),
    events.RoomCreated(ROOM, 1),
    events.ConversationOpened(DIRECT),
    events.MemberAdded(ROOM, 1),
    events.MemberRemoved(ROOM, 1),
    events.UserJoined(ROOM, 2, "bob"),
    events.UserLeft(ROOM, 2, "bob"),
    events.UserKicked(ROOM, 2, "bob", "carol", "spam"),
    events.UserBanned(ROOM, 2, "bob", "carol", ""),
    events.RoleChanged(ROOM, 2, "bob", "moderator", "carol"),
    events.RoleChanged(ROOM, 2, "bob", "guest", "carol"),
    events.TopicChanged(ROOM, "carol", "new topic"),
    events.InvitationReceived(5, 1, "carol", "secret", "member", 0, "come in"),
    events.InvitationAccepted(5, 1, "bob", "secret"),
    events.InvitationDeclined(5, 1, "bob", "secret"),
    events.InvitationRevoked(5, 1, "secret", "carol"),
    events.InvitationExpired(5, 3, 1, "secret"),
    events.InvitationReminder(5, 1, "secret", 0),
    events.PresenceChanged(2, "bob", True, (7,)),
    events.AccountSuspended(1, "abuse"),
    events.SessionsRevoked(1, 4),
    events.ServerRoleChanged(1, "admin"),
    events.Notice(1, "hello"),
    events.UserQuit(2, "bob", "Quit: bye", (7,)),
    events.UserRenamed(2, "bob", "robert", (7,)),
]
"""One event of every kind."""

NOT_SHOWN = (events.RoomCreated, events.ConversationOpened, events.MemberAdded, events.MemberRemoved,
             events.PresenceChanged, events.ServerRoleChanged)
"""Events IRC shows nothing for."""


def lines(event: events.Event, caps: frozenset = CAPS) -> list[str]:
    """The serialized lines of an event for alice (id 1)."""
    return [serialize(m) for m in render_event(event, 1, "alice", "irc.test", caps)]


class RenderTests(SynchronousTestCase):
    """Each event kind's lines."""

    def test_every_event(self):
        """Every kind renders to lines that parse back, or to nothing for those IRC has no word for."""
        self.assertEqual(len({type(e) for e in EVERY_EVENT}), len(events.EVENT_TYPES))
        for event in EVERY_EVENT:
            rendered = lines(event)
            if isinstance(event, NOT_SHOWN):
                self.assertEqual(rendered, [], event)
                continue
            self.assertTrue(rendered, event)
            for line in rendered:
                self.assertEqual(serialize(parse(line)), line)

    def test_examples(self):
        """The IRC words of the main events."""
        self.assertEqual(lines(events.UserJoined(ROOM, 2, "bob")), [":bob!bob@irc.test JOIN #lounge"])
        self.assertEqual(lines(events.UserKicked(ROOM, 2, "bob", "carol", "spam")),
                         [":carol!carol@irc.test KICK #lounge bob :spam"])
        self.assertEqual(lines(events.UserBanned(ROOM, 2, "bob", "carol", "")),
                         [":carol!carol@irc.test MODE #lounge +b bob!*@*",
                          ":carol!carol@irc.test KICK #lounge bob :banned"])
        self.assertEqual(lines(events.TopicChanged(ROOM, "carol", "t")), [":carol!carol@irc.test TOPIC #lounge :t"])
        self.assertEqual(lines(events.RoleChanged(ROOM, 2, "bob", "moderator", "carol")),
                         [":carol!carol@irc.test MODE #lounge -qav+o bob bob bob bob"])
        self.assertEqual(lines(events.MessageSent(DIRECT, 1, 2, "bob", 1000, "hi"), frozenset()),
                         [":bob!bob@irc.test PRIVMSG alice :hi"])
        self.assertEqual(lines(events.ReplySent(ROOM, 2, 1, 2, "bob", 1000, "re"))[0],
                         "@msgid=2;time=1970-01-01T00:00:01.000Z;+draft/reply=1 :bob!bob@irc.test PRIVMSG #lounge :re")

    def test_notices_and_quits(self):
        """
        A message sent as a notice is a C{NOTICE} again (in a room, in a
        direct conversation, as a direct message); a guest's quit is one
        C{QUIT}, and the C{UserLeft} of each room it leaves so is shown as
        nothing; a guest's new nick is a C{NICK} from the old mask.
        """
        none = frozenset()
        self.assertEqual(lines(events.MessageSent(ROOM, 1, 2, "bob", 1000, "hi", notice=True), none),
                         [":bob!bob@irc.test NOTICE #lounge :hi"])
        self.assertEqual(lines(events.MessageSent(DIRECT, 1, 2, "bob", 1000, "hi", notice=True), none),
                         [":bob!bob@irc.test NOTICE alice :hi"])
        self.assertEqual(lines(events.DirectMessageSent(9, 3, 2, "bob", 1, "alice", 1000, "psst", notice=True), none),
                         [":bob!bob@irc.test NOTICE alice :psst"])
        self.assertEqual(lines(events.DirectMessageSent(9, 3, 2, "bob", 1, "alice", 1000, "psst"), none),
                         [":bob!bob@irc.test PRIVMSG alice :psst"])
        self.assertEqual(lines(events.UserQuit(2, "bob", "Quit: bye", (7, 8))), [":bob!bob@irc.test QUIT :Quit: bye"])
        self.assertEqual(lines(events.UserLeft(ROOM, 2, "bob", quitting=True)), [])
        self.assertEqual(lines(events.UserLeft(ROOM, 2, "bob")), [":bob!bob@irc.test PART #lounge"])
        self.assertEqual(lines(events.UserRenamed(2, "bob", "robert", (7,))), [":bob!bob@irc.test NICK robert"])

    def test_roles(self):
        """Four roles have a prefix; guests have none."""
        self.assertEqual([r for r, _, _ in ROLE_MODES], [r for r in validation.ROLES if r != "guest"])

    def test_variants(self):
        """Room events are rendered once for every viewer with the same tag caps; user events per viewer."""
        room_event = events.MessageSent(ROOM, 1, 2, "bob", 1000, "hi")
        self.assertEqual(variant(room_event, 1, CAPS | {"echo-message"}), variant(room_event, 3, CAPS))
        self.assertNotEqual(variant(room_event, 1, CAPS), variant(room_event, 1, frozenset()))
        notice = events.Notice(1, "x")
        self.assertNotEqual(variant(notice, 1, CAPS), variant(notice, 3, CAPS))

    def test_time_tag(self):
        """Milliseconds, UTC, Z."""
        self.assertEqual(time_tag(1_700_000_000_123), "2023-11-14T22:13:20.123Z")


class TextTests(SynchronousTestCase):
    """Message text between IRC and the core."""

    @given(TEXTS)
    def test_round_trip(self, text):
        """What the core stores comes back from IRC unchanged, actions included."""
        self.assertEqual(plain_text(irc_text(text)), text)
        self.assertEqual(validation.text(plain_text(irc_text(text))), text)

    @given(TEXTS)
    def test_rendered_message_parses(self, text):
        """A message of any text is one line that parses back to its IRC text."""
        [line] = lines(events.MessageSent(ROOM, 1, 2, "bob", 1000, text))
        self.assertEqual(parse(line).params, ("#lounge", irc_text(text)))

    def test_formatting_stripped(self):
        """Colours and bold go; other CTCP is no message."""
        self.assertEqual(plain_text("\x02bold\x02 \x0304,12red\x03 plain\x0f"), "bold red plain")
        self.assertEqual(plain_text("\x01ACTION waves\x01"), "/me waves")
        self.assertIsNone(plain_text("\x01VERSION\x01"))


class OptionTests(SynchronousTestCase):
    """C{--irc-port}."""

    def test_irc_port(self):
        """Repeatable, off by default, handed to the service."""
        options = Options()
        options.parseOptions(["--dsn", "dbname=x"])
        self.assertEqual(options["irc-port"], [])
        options = Options()
        options.parseOptions(["--irc-port", "tcp:6667", "--irc-port", "tcp:6668", "--dsn", "dbname=x"])
        self.assertEqual(makeService(options).irc_endpoints, ["tcp:6667", "tcp:6668"])

    def test_bad_irc_port(self):
        """An endpoint that is none is a usage error naming the option."""
        options = Options()
        with self.assertRaises(usage.UsageError) as caught:
            options.parseOptions(["--irc-port", "nonsense:1"])
        self.assertIn("--irc-port", str(caught.exception))
