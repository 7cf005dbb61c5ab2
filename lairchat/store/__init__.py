# -*- test-case-name: tests.test_store -*-
"""
All of lairchat's SQL, one module per aggregate, each a small class over the
shared L{Database}.  L{Store} gathers them; L{IStore} is the seam commands
depend on.
"""

import sys
from pathlib import Path

from zope.interface import Attribute, Interface, implementer

from lairchat.store.audit import AuditStore
from lairchat.store.blocks import BlockStore
from lairchat.store.conversations import ConversationStore
from lairchat.store.database import Database
from lairchat.store.events import EventLog
from lairchat.store.invitations import InvitationStore
from lairchat.store.logins import LoginThrottleStore
from lairchat.store.messages import MessageStore
from lairchat.store.rooms import RoomStore
from lairchat.store.sessions import SessionStore
from lairchat.store.stats import StatsStore
from lairchat.store.users import UserStore


class IStore(Interface):
    """The persistence seam: one attribute per aggregate."""

    db = Attribute("the L{Database}")
    users = Attribute("the L{UserStore}")
    sessions = Attribute("the L{SessionStore}")
    audit = Attribute("the L{AuditStore}")
    rooms = Attribute("the L{RoomStore}")
    messages = Attribute("the L{MessageStore}")
    conversations = Attribute("the L{ConversationStore} (direct-message rooms)")
    invitations = Attribute("the L{InvitationStore}")
    stats = Attribute("the L{StatsStore}")
    events = Attribute("the L{EventLog}: events, nodes and who is online where")
    blocks = Attribute("the L{BlockStore}: addresses refused by intrusion detection or an admin")
    logins = Attribute("the L{LoginThrottleStore}: failed logins by account and address")


@implementer(IStore)
class Store:
    """Every aggregate's store over one L{Database}."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.users = UserStore(db)
        self.sessions = SessionStore(db)
        self.audit = AuditStore(db)
        self.rooms = RoomStore(db)
        self.messages = MessageStore(db)
        self.conversations = ConversationStore(db)
        self.invitations = InvitationStore(db)
        self.stats = StatsStore(db)
        self.events = EventLog(db)
        self.blocks = BlockStore(db)
        self.logins = LoginThrottleStore(db)


def schema_path() -> Path:
    """
    Where C{schema.sql} is: beside the package in a source tree, or in the
    installed C{share/lairchat}.
    """
    candidates = [
        Path(__file__).resolve().parents[2] / "schema.sql",
        Path(sys.prefix) / "share" / "lairchat" / "schema.sql",
    ]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("schema.sql is not installed")


def schema_text() -> str:
    """The whole schema."""
    return schema_path().read_text(encoding="utf-8")


__all__ = ["Database", "IStore", "Store", "schema_path", "schema_text"]
