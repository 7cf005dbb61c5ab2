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
from lairchat.irc.render import (
    ISUPPORT_PREFIX, RENDER_CAPS, ROLE_MODES, irc_text, plain_text, prefixes, render_event, time_tag, variant,
)
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
    events.TagsSent(ROOM, "t01", 2, "bob", "+typing=active"),
    events.InvitationReceived(5, 1, "carol", "secret", "member", 0, "come in"),
    events.InvitationAccepted(5, 1, "bob", "secret"),
    events.InvitationDeclined(5, 1, "bob", "secret"),
    events.InvitationRevoked(5, 1, "secret", "carol"),
    events.InvitationExpired(5, 3, 1, "secret"),
    events.InvitationReminder(5, 1, "secret", 0),
    events.PresenceChanged(2, "bob", True, (7,)),
    events.AwayChanged(2, "bob", "lunch", (7,)),
    events.GuestLoggedIn(2, "bob", "robert", (7,)),
    events.AccountSuspended(1, "abuse"),
    events.SessionsRevoked(1, 4),
    events.ServerRoleChanged(1, "admin"),
    events.Notice(1, "hello"),
    events.UserQuit(2, "bob", "Quit: bye", (7,)),
    events.UserRenamed(2, "bob", "robert", (7,)),
    events.ReadMarkerMoved(1, ROOM, 1, 1000),
]
"""One event of every kind."""

NOT_SHOWN = (events.RoomCreated, events.ConversationOpened, events.MemberAdded, events.MemberRemoved,
             events.PresenceChanged, events.ServerRoleChanged)
"""Events IRC shows nothing for."""


ALL_CAPS = frozenset(RENDER_CAPS)
"""Every capability that changes how events look."""


def lines(event: events.Event, caps: frozenset = CAPS, realname_of=None) -> list[str]:
    """The serialized lines of an event for alice (id 1)."""
    return [serialize(m) for m in render_event(event, 1, "alice", "irc.test", caps, realname_of)]


class RenderTests(SynchronousTestCase):
    """Each event kind's lines."""

    def test_every_event(self):
        """Every kind renders to lines that parse back, or to nothing for those IRC has no word for."""
        self.assertEqual(len({type(e) for e in EVERY_EVENT}), len(events.EVENT_TYPES))
        for event in EVERY_EVENT:
            rendered = lines(event, ALL_CAPS)
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

    def test_read_marker(self):
        """
        A moved read marker is C{MARKREAD} of the channel, or of the other
        party's nick in a direct conversation, at the message's time, for a
        viewer with C{draft/read-marker}; nothing for others.
        """
        caps = frozenset({"draft/read-marker"})
        self.assertEqual(lines(events.ReadMarkerMoved(1, ROOM, 4, 1000), caps),
                         [":irc.test MARKREAD #lounge timestamp=1970-01-01T00:00:01.000Z"])
        self.assertEqual(lines(events.ReadMarkerMoved(1, DIRECT, 4, 2000), caps),
                         [":irc.test MARKREAD bob timestamp=1970-01-01T00:00:02.000Z"])
        self.assertEqual(lines(events.ReadMarkerMoved(1, ROOM, 4, 1000), CAPS), [])

    def test_roles(self):
        """
        Owners and admins are channel operators (C{@}), moderators halfops
        (C{%}); members and guests have no prefix.
        """
        self.assertEqual({role: prefixes(role) for role in validation.ROLES},
                         {"owner": "@", "admin": "@", "moderator": "%", "member": "", "guest": ""})
        self.assertEqual(ISUPPORT_PREFIX, "(oh)@%")
        self.assertEqual({mode for _, mode, _ in ROLE_MODES}, {"o", "h"})

    def test_role_changes(self):
        """
        A role change is the MODE between the two roles' modes (none when
        they show alike), then a notice naming the lairchat role.
        """
        def change(previous: str, role: str) -> list[str]:
            return lines(events.RoleChanged(ROOM, 2, "bob", role, "carol", previous))

        notice = ":irc.test NOTICE #lounge :carol made bob {} of #lounge"
        mode = ":carol!carol@irc.test MODE #lounge {}"
        self.assertEqual(change("member", "moderator"), [mode.format("+h bob"), notice.format("moderator")])
        self.assertEqual(change("moderator", "admin"), [mode.format("-h+o bob bob"), notice.format("admin")])
        self.assertEqual(change("admin", "owner"), [notice.format("owner")])
        self.assertEqual(change("owner", "member"), [mode.format("-o bob"), notice.format("member")])
        self.assertEqual(change("guest", "member"), [notice.format("member")])
        # not knowing the previous role, every other role mode is taken off
        self.assertEqual(change("", "moderator"), [mode.format("-o+h bob bob"), notice.format("moderator")])
        self.assertEqual(change("", "member"), [mode.format("-oh bob bob"), notice.format("member")])

    def test_client_tags(self):
        """Client-only tags go to viewers with message-tags only, beside the server's tags."""
        sent = events.MessageSent(ROOM, 5, 2, "bob", 1000, "hi", client_tags="+baz=bat")
        [tagged] = lines(sent)
        self.assertEqual(parse(tagged).tags, {"msgid": "5", "time": "1970-01-01T00:00:01.000Z", "+baz": "bat"})
        [timed] = lines(sent, frozenset({"server-time"}))
        self.assertEqual(parse(timed).tags, {"time": "1970-01-01T00:00:01.000Z"})
        self.assertEqual(lines(sent, frozenset()), [":bob!bob@irc.test PRIVMSG #lounge :hi"])
        direct = events.DirectMessageSent(9, 3, 2, "bob", 1, "alice", 1000, "psst", client_tags="+x=y")
        self.assertEqual(parse(lines(direct)[0]).tags["+x"], "y")

    def test_reply_keeps_the_clients_reply_tag(self):
        """A reply shows the message the client answered when it named one, else the thread's root."""
        [line] = lines(events.ReplySent(ROOM, 9, 1, 2, "bob", 1000, "re", client_tags="+draft/reply=7"))
        self.assertEqual(parse(line).tags["+draft/reply"], "7")
        [line] = lines(events.ReplySent(ROOM, 9, 1, 2, "bob", 1000, "re"))
        self.assertEqual(parse(line).tags["+draft/reply"], "1")

    def test_account_tag(self):
        """With account-tag, lines from an account carry it; a guest's carry none."""
        caps = frozenset({"account-tag"})
        [line] = lines(events.MessageSent(ROOM, 5, 2, "bob", 1000, "hi"), caps)
        self.assertEqual(parse(line).tags, {"account": "bob"})
        [line] = lines(events.MessageSent(ROOM, 5, 2, "bob", 1000, "hi", guest=True), caps)
        self.assertEqual(parse(line).tags, {})
        invite = lines(events.InvitationReceived(5, 1, "carol", "secret", "member", 0, ""), caps)[0]
        self.assertEqual(parse(invite).tags, {"account": "carol"})
        [line] = lines(events.MessageSent(ROOM, 5, 2, "bob", 1000, "hi"), frozenset())
        self.assertEqual(parse(line).tags, {})

    def test_tagmsg(self):
        """Tags sent alone are a TAGMSG with its msgid, for viewers with message-tags only."""
        sent = events.TagsSent(ROOM, "t0a", 2, "bob", "+typing=active")
        self.assertEqual(lines(sent), ["@+typing=active;msgid=t0a :bob!bob@irc.test TAGMSG #lounge"])
        self.assertEqual(lines(sent, frozenset({"server-time", "away-notify"})), [])
        to_alice = events.TagsSent(DIRECT, "t0b", 2, "bob", "+typing=active")
        self.assertEqual(parse(lines(to_alice)[0]).params, ("alice",))

    def test_reactions(self):
        """
        A reaction is a TAGMSG with +draft/react and +draft/reply for
        viewers with message-tags, a notice for the others; taking one
        back is always a notice.
        """
        added = events.ReactionAdded(ROOM, 5, "bob", "👍")
        self.assertEqual(lines(added), ["@+draft/react=👍;+draft/reply=5 :bob!bob@irc.test TAGMSG #lounge"])
        self.assertEqual(lines(added, frozenset()), [":irc.test NOTICE #lounge :bob reacted 👍 to message 5"])
        removed = events.ReactionRemoved(ROOM, 5, "bob", "👍")
        self.assertEqual(lines(removed), [":irc.test NOTICE #lounge :bob took back 👍 on message 5"])

    def test_redaction(self):
        """A deletion is REDACT (with its reason) for draft/message-redaction, a notice otherwise."""
        caps = frozenset({"draft/message-redaction"})
        self.assertEqual(lines(events.MessageDeleted(ROOM, 5, "bob", "oops"), caps),
                         [":bob!bob@irc.test REDACT #lounge 5 oops"])
        self.assertEqual(lines(events.MessageDeleted(DIRECT, 5, "bob"), caps), [":bob!bob@irc.test REDACT alice 5"])
        self.assertEqual(lines(events.MessageDeleted(ROOM, 5, "bob", "oops")),
                         [":irc.test NOTICE #lounge :bob deleted message 5"])

    def test_extended_join(self):
        """
        With extended-join a JOIN names the account (C{*} for a guest) and
        the real name (when known here, else the nick); with away-notify,
        an away joiner's AWAY follows.
        """
        caps = frozenset({"extended-join"})
        joined = events.UserJoined(ROOM, 2, "bob")
        self.assertEqual(lines(joined, caps, {2: "Bob B"}.get), [":bob!bob@irc.test JOIN #lounge bob :Bob B"])
        self.assertEqual(lines(joined, caps), [":bob!bob@irc.test JOIN #lounge bob bob"])
        self.assertEqual(lines(events.UserJoined(ROOM, 2, "bob", guest=True), caps),
                         [":bob!bob@irc.test JOIN #lounge * bob"])
        away = events.UserJoined(ROOM, 2, "bob", away="lunch")
        self.assertEqual(lines(away, frozenset({"away-notify"})),
                         [":bob!bob@irc.test JOIN #lounge", ":bob!bob@irc.test AWAY lunch"])
        self.assertEqual(lines(away, frozenset()), [":bob!bob@irc.test JOIN #lounge"])

    def test_away_and_account_notify(self):
        """AWAY with away-notify, ACCOUNT with account-notify; nothing without them."""
        caps = frozenset({"away-notify", "account-notify"})
        self.assertEqual(lines(events.AwayChanged(2, "bob", "gone fishing", (7,)), caps),
                         [":bob!bob@irc.test AWAY :gone fishing"])
        self.assertEqual(lines(events.AwayChanged(2, "bob", "", (7,)), caps), [":bob!bob@irc.test AWAY"])
        self.assertEqual(lines(events.GuestLoggedIn(2, "bob", "robert", (7,)), caps),
                         [":bob!bob@irc.test ACCOUNT robert"])
        self.assertEqual(lines(events.AwayChanged(2, "bob", "x", (7,))), [])
        self.assertEqual(lines(events.GuestLoggedIn(2, "bob", "robert", (7,))), [])

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
