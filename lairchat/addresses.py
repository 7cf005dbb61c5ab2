# -*- test-case-name: tests.test_addresses -*-
"""
Client addresses: the address a connection comes from, and the trusted
networks (C{--exempt-network}) whose addresses no per-address limit, flood
control or block applies to.
"""

import ipaddress
from typing import Any

from attrs import field, frozen

UNKNOWN_ADDRESS = "unknown"
"""The address of a connection whose peer has no IP address (a Unix socket, a test transport)."""


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """
    A network from CIDR notation (C{10.0.0.0/8}, C{::1/128}); a bare address
    is a network of one.

    @raise ValueError: C{text} is no network.
    """
    return ipaddress.ip_network(text.strip(), strict=False)


def _networks(value: Any) -> tuple:
    """Networks from networks or their CIDR texts."""
    return tuple(parse_network(v) if isinstance(v, str) else v for v in value)


@frozen
class Networks:
    """
    A set of networks, asked whether an address is in one of them.  An
    address that is not an IP address (L{UNKNOWN_ADDRESS}) is in none.
    """

    networks: tuple = field(default=(), converter=_networks)

    def __contains__(self, address: object) -> bool:
        """Whether C{address} (a text IP address) lies in one of the networks."""
        if not self.networks or not isinstance(address, str):
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)

    def __bool__(self) -> bool:
        """Whether there is any network."""
        return bool(self.networks)


def peer_address(transport: Any) -> str:
    """
    The IP address a transport's peer connects from, as text (IPv4-mapped
    IPv6 addresses as IPv4), or L{UNKNOWN_ADDRESS}.
    """
    try:
        peer = transport.getPeer()
    except Exception:
        return UNKNOWN_ADDRESS
    return address_of(peer)


def address_of(addr: Any) -> str:
    """
    The IP address of an L{IAddress} (what a factory's C{buildProtocol}
    gets), as text (IPv4-mapped IPv6 addresses as IPv4), or
    L{UNKNOWN_ADDRESS}.
    """
    host = getattr(addr, "host", None)
    if not isinstance(host, str):
        return UNKNOWN_ADDRESS
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return UNKNOWN_ADDRESS
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return str(ip)
