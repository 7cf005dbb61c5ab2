"""
Tests for L{lairchat.irc.history}'s parsing and the history lines of
L{lairchat.irc.render} without a database: selectors, limits, times, and
stored messages shown as they were live.  What reads the database is
tested end to end in L{tests.test_irc_history_e2e}.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat.events import RoomRef
from lairchat.irc.history import CHATHISTORY_MAX, after, before, parse_limit, parse_selector
from lairchat.irc.render import parse_time_tag, render_event, stored_message_event, time_tag
from lairchat.irc.replies import Numeric
from lairchat.models import Message

MS = st.integers(min_value=0, max_value=253_402_300_799_999)
"""Epoch milliseconds up to the end of year 9999."""


class SelectorTests(SynchronousTestCase):
    """msgid=, timestamp=, * and limits."""

    @given(MS)
    def test_time_round_trip(self, ms):
        """A time tag reads back as the milliseconds it was written from."""
        self.assertEqual(parse_time_tag(time_tag(ms)), ms)
        self.assertEqual(parse_selector(f"timestamp={time_tag(ms)}"), ("timestamp", ms))

    def test_times(self):
        """Finer fractions are cut to the millisecond; a time must be UTC."""
        self.assertEqual(parse_time_tag("1970-01-01T00:00:01.0019Z"), 1001)
        self.assertEqual(parse_time_tag("1970-01-01T00:00:01Z"), 1000)
        for bad in ("1970-01-01T00:00:01", "1970-01-01T00:00:01+01:00", "yesterday", ""):
            self.assertRaises(ValueError, parse_time_tag, bad)

    def test_selectors(self):
        """msgid=<id>; * only where allowed; anything else is INVALID_PARAMS."""
        self.assertEqual(parse_selector("msgid=42"), ("msgid", 42))
        self.assertIsNone(parse_selector("*", star=True))
        for bad in ("*", "msgid=", "msgid=x", "msgid=-1", "msgid=٣", "timestamp=now", "id=4", "42"):
            with self.assertRaises(Numeric) as caught:
                parse_selector(bad)
            self.assertEqual(caught.exception.params[:2], ("CHATHISTORY", "INVALID_PARAMS"))

    @given(st.text(max_size=6))
    def test_selector_refusals(self, text):
        """Any text is a selector or INVALID_PARAMS, never another error."""
        try:
            parse_selector(text, star=True)
        except Numeric as refusal:
            self.assertEqual(refusal.params[1], "INVALID_PARAMS")

    def test_limits(self):
        """A count, cut to the most; 0 is the most."""
        self.assertEqual(parse_limit("5"), 5)
        self.assertEqual(parse_limit("0"), CHATHISTORY_MAX)
        self.assertEqual(parse_limit(str(CHATHISTORY_MAX + 1)), CHATHISTORY_MAX)
        for bad in ("", "-1", "x", "1.5"):
            self.assertRaises(Numeric, parse_limit, bad)

    def test_bounds(self):
        """Bounds are exclusive; the inclusive one of AROUND is one lower."""
        self.assertEqual(after(("msgid", 7)), {"after_id": 7})
        self.assertEqual(after(("msgid", 7), inclusive=True), {"after_id": 6})
        self.assertEqual(after(("timestamp", 1000), inclusive=True), {"after_ms": 999})
        self.assertEqual(before(("timestamp", 1000)), {"before_ms": 1000})
        self.assertEqual((after(None), before(None)), ({}, {}))


class StoredMessageTests(SynchronousTestCase):
    """Stored messages render as their live events did."""

    def test_channel_and_reply(self):
        """A message and a reply of a room, with msgid, time and +draft/reply."""
        room = RoomRef(3, "lounge")
        caps = frozenset({"message-tags", "server-time"})
        plain = Message(10, 3, 2, "bob", "/me waves", 0, 1000)
        reply = Message(11, 3, 2, "bob", "yes", 10, 2000)
        lines = [render_event(stored_message_event(m, room), 1, "alice", "srv", caps)[0] for m in (plain, reply)]
        self.assertEqual([(m.source, m.params, m.tags) for m in lines], [
            ("bob!bob@srv", ("#lounge", "\x01ACTION waves\x01"), {"msgid": "10", "time": "1970-01-01T00:00:01.000Z"}),
            ("bob!bob@srv", ("#lounge", "yes"),
             {"msgid": "11", "time": "1970-01-01T00:00:02.000Z", "+draft/reply": "10"}),
        ])

    def test_direct(self):
        """A conversation's message is addressed as it was: to the recipient; an anonymised sender is *."""
        room = RoomRef(4, "", ((1, "alice"), (2, "bob")))
        mine = Message(12, 4, 1, "alice", "hi", 0, 1000)
        theirs = Message(13, 4, None, "", "gone", 0, 1000)
        shown = [render_event(stored_message_event(m, room), 1, "alice", "srv", frozenset())[0] for m in (mine, theirs)]
        self.assertEqual([(m.source, m.params) for m in shown],
                         [("alice!alice@srv", ("bob", "hi")), ("*!*@srv", ("alice", "gone"))])
