# -*- test-case-name: tests.test_tcp_output -*-
"""
Writing to a client's TCP socket at once.

A Twisted transport buffers every write and sends it on the reactor's next
turn: it asks the poller to watch the socket for writing, and once the
socket is writable it sends and asks the poller to stop watching.  That is
two poller changes and a trip through the reactor per write, which is
most of what a write costs when a batch of events goes out as one write to
each of a room's members.  L{write_at_once} sends on the socket itself
when nothing of the connection is queued before it (the usual case: the
socket takes what it is given), and leaves to the transport only what
the socket did not take, so the bytes still leave in the order they were
written.
"""

from typing import Any

from twisted.internet import tcp


def write_at_once(transport: Any, data: bytes) -> None:
    """
    Write C{data} to C{transport}; on a plain TCP connection with nothing
    buffered (nothing written before it still waits, the connection is
    not closing or aborted, and no TLS was started on it), send it on the
    socket now and buffer only what the socket did not take.  Any other
    transport (TLS, a test's C{StringTransport}), a socket error, or a
    transport that lacks what this relies on gets a plain
    C{transport.write}, which keeps the order and reports the error the
    usual way.
    """
    if type(transport) is tcp.Server:
        try:
            ready = (transport.connected and not transport.disconnecting and not transport._aborting
                     and not transport._writeDisconnecting and not transport.TLS
                     and not transport._tempDataLen and not transport.dataBuffer)
        except AttributeError:  # a Twisted without these: its own write path
            ready = False
        if ready:
            # the socket's own send (Python retries it when interrupted):
            # Twisted's writeSomeData adds a memoryview and a retry loop
            # per write, a fair share of a write's cost when a batch of
            # events goes out to each of a room's members
            try:
                sent = transport.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                sent = -1  # the transport's own write meets the error and reports it
            if sent >= 0:
                if sent == len(data):
                    return
                data = data[sent:]
    transport.write(data)
