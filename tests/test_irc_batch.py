"""
Tests for L{lairchat.irc.batch}: batches and labeled responses as lines.
"""

import itertools

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from lairchat.irc.batch import batch, batch_for, labeled
from lairchat.irc.message import message, parse, serialize

SERVER = "irc.test"


def lines_of(count: int) -> list:
    """C{count} distinct numeric lines."""
    return [message("NOTICE", "alice", f"line {n}", source=SERVER) for n in range(count)]


class BatchTests(SynchronousTestCase):
    """BATCH +ref / lines tagged batch=ref / BATCH -ref."""

    def test_batch(self):
        """The opening line has the type and parameters; the lines keep their own tags."""
        inner = [message("PRIVMSG", "#a", "hi", source="bob", tags={"msgid": "7"})]
        self.assertEqual([serialize(m) for m in batch("r1", "chathistory", ["#a"], inner, SERVER)],
                         [f":{SERVER} BATCH +r1 chathistory #a",
                          "@msgid=7;batch=r1 :bob PRIVMSG #a :hi",
                          f":{SERVER} BATCH -r1"])

    def test_batch_only_with_cap(self):
        """A client without the batch capability reads the lines bare."""
        refs = iter(["x"])
        self.assertEqual(batch_for({"message-tags"}, lambda: next(refs), "chathistory", [], lines_of(2), SERVER),
                         lines_of(2))
        self.assertEqual(batch_for({"batch"}, lambda: next(refs), "chathistory", [], lines_of(1), SERVER)[0],
                         message("BATCH", "+x", "chathistory", source=SERVER))

    def test_nested(self):
        """A batch inside a labeled response: its BATCH lines carry the outer reference."""
        refs = itertools.count(1)
        inner = batch("in", "chathistory", ["#a"], lines_of(1), SERVER)
        out = labeled("L", inner, {"batch"}, lambda: f"out{next(refs)}", SERVER)
        self.assertEqual([(m.command, m.params[0], m.tags) for m in out],
                         [("BATCH", "+out1", {"label": "L"}), ("BATCH", "+in", {"batch": "out1"}),
                          ("NOTICE", "alice", {"batch": "in"}), ("BATCH", "-in", {"batch": "out1"}),
                          ("BATCH", "-out1", {})])

    @given(st.integers(min_value=0, max_value=6), st.text(alphabet="ab;\\ =x", min_size=1, max_size=8),
           st.booleans())
    def test_labeled(self, count, label, with_batch):
        """Whatever the reply, exactly one line carries the label, and it survives the wire."""
        caps = {"batch"} if with_batch else set()
        out = [parse(serialize(m)) for m in labeled(label, lines_of(count), caps, lambda: "r", SERVER)]
        self.assertEqual([m.tags.get("label") for m in out].count(label), 1)
        self.assertEqual(out[0].tags["label"], label)
        if count == 0:
            self.assertEqual([m.command for m in out], ["ACK"])
        elif count == 1 or not with_batch:
            self.assertEqual(len(out), count)
        else:
            self.assertEqual(len(out), count + 2)
            self.assertTrue(all(m.tags.get("batch") == "r" for m in out[1:-1]))
