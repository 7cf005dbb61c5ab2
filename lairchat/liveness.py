# -*- test-case-name: tests.test_liveness -*-
"""
Liveness of client sockets: TCP keepalive, so the kernel notices a peer
that vanished while the connection was idle, and C{TCP_USER_TIMEOUT}, so it
notices one that vanished while output waited for an acknowledgement.
Either way the connection is closed and its user shown offline within
minutes, and a telnet user never has to answer anything: the probes are
TCP's, below the protocol.
"""

import socket
from typing import Any

_KEEPIDLE = getattr(socket, "TCP_KEEPIDLE", None) or getattr(socket, "TCP_KEEPALIVE", None)
"""The option for the idle time before the first probe (C{TCP_KEEPALIVE} on macOS)."""


def client_socket(transport: Any) -> socket.socket | None:
    """
    The TCP socket under a transport, through any wrapping (TLS wraps the
    TCP transport in a protocol whose handle is no socket), or L{None}
    (a test transport, a Unix socket...).
    """
    for _ in range(8):
        if transport is None:
            return None
        get_handle = getattr(transport, "getHandle", None)
        if get_handle is not None:
            try:
                handle = get_handle()
            except Exception:
                handle = None
            if isinstance(handle, socket.socket):
                return handle if handle.family in (socket.AF_INET, socket.AF_INET6) else None
        transport = getattr(transport, "transport", None)
    return None


def keep_alive(transport: Any, idle: int = 60, interval: int = 10, count: int = 6,
               user_timeout: float = 120.0) -> dict[str, int]:
    """
    Set keepalive and the user timeout on the TCP socket under
    C{transport}: the first probe after C{idle} seconds of silence, then
    one every C{interval} seconds, the connection dropped after C{count}
    unanswered ones; output unacknowledged for C{user_timeout} seconds
    drops it too.  C{idle} 0 leaves keepalive off, C{user_timeout} 0 leaves
    the system's.  Options the platform lacks are skipped, as is a transport
    with no TCP socket.

    @return: the options set, by name, with their values.
    """
    sock = client_socket(transport)
    if sock is None:
        return {}
    wanted: list[tuple[int, int | None, str, int]] = []
    if idle > 0:
        wanted += [
            (socket.SOL_SOCKET, socket.SO_KEEPALIVE, "SO_KEEPALIVE", 1),
            (socket.IPPROTO_TCP, _KEEPIDLE, "TCP_KEEPIDLE", int(idle)),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPINTVL", None), "TCP_KEEPINTVL", int(interval)),
            (socket.IPPROTO_TCP, getattr(socket, "TCP_KEEPCNT", None), "TCP_KEEPCNT", int(count)),
        ]
    if user_timeout > 0:
        wanted.append((socket.IPPROTO_TCP, getattr(socket, "TCP_USER_TIMEOUT", None), "TCP_USER_TIMEOUT",
                       int(user_timeout * 1000)))
    applied = {}
    for level, option, name, value in wanted:
        if option is None:
            continue
        try:
            sock.setsockopt(level, option, value)
        except OSError:
            continue
        applied[name] = value
    return applied
