"""
The C{twistd lairchat} plugin: a lazy L{ServiceMaker}, so C{twistd --help}
does not import the server.
"""

from twisted.application.service import ServiceMaker

lairchat = ServiceMaker(
    "lairchat",
    "lairchat.tap",
    "A line-protocol chat server with rooms, direct messages and invitations",
    "lairchat",
)
