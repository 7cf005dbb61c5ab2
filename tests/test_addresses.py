"""
Tests for L{lairchat.addresses}: trusted networks and peer addresses.
"""

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from lairchat.addresses import UNKNOWN_ADDRESS, Networks, parse_network, peer_address


class NetworksTests(SynchronousTestCase):
    """L{Networks} says which addresses lie in its networks."""

    def test_inside_and_outside(self) -> None:
        """An address in a listed network is in; one outside is not."""
        networks = Networks(("10.0.0.0/8", "::1/128"))
        self.assertIn("10.1.2.3", networks)
        self.assertIn("::1", networks)
        self.assertNotIn("11.0.0.1", networks)
        self.assertNotIn("::2", networks)

    def test_mapped(self) -> None:
        """An IPv4-mapped IPv6 address is taken as its IPv4 address."""
        self.assertIn("::ffff:127.0.0.5", Networks(("127.0.0.0/8",)))

    def test_not_an_address(self) -> None:
        """Something that is no IP address is in no network."""
        networks = Networks(("0.0.0.0/0",))
        self.assertNotIn(UNKNOWN_ADDRESS, networks)
        self.assertNotIn(None, networks)

    def test_empty(self) -> None:
        """No networks: nothing is in, and the set is false."""
        self.assertFalse(Networks())
        self.assertNotIn("127.0.0.1", Networks())

    def test_bad_network(self) -> None:
        """A text that is no network is refused."""
        self.assertRaises(ValueError, parse_network, "10.0.0.0/33")
        self.assertRaises(ValueError, parse_network, "lair")

    @given(st.ip_addresses(v=4))
    def test_whole_internet(self, ip) -> None:
        """Every IPv4 address is in 0.0.0.0/0 and in its own /32."""
        self.assertIn(str(ip), Networks(("0.0.0.0/0",)))
        self.assertIn(str(ip), Networks((f"{ip}/32",)))


class PeerAddressTests(SynchronousTestCase):
    """L{peer_address} names where a connection comes from."""

    def test_ipv4(self) -> None:
        """A TCP peer's host."""
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.7", 5000))
        self.assertEqual(peer_address(transport), "127.0.0.7")

    def test_ipv6_mapped(self) -> None:
        """An IPv4-mapped IPv6 peer is named by its IPv4 address."""
        transport = StringTransport(peerAddress=IPv6Address("TCP", "::ffff:10.0.0.1", 5000))
        self.assertEqual(peer_address(transport), "10.0.0.1")

    def test_unix(self) -> None:
        """A peer with no IP address is unknown."""
        transport = StringTransport(peerAddress=UNIXAddress(None))
        self.assertEqual(peer_address(transport), UNKNOWN_ADDRESS)


class ConnectionAddressTests(SynchronousTestCase):
    """A connection knows the address it comes from and whether it is trusted."""

    def connect(self, host: str, exempt: tuple = ()):
        """A L{ChatProtocol} connected from C{host} over a store double."""
        from attrs import evolve
        from twisted.internet.task import Clock

        from lairchat.addresses import Networks
        from lairchat.context import Config, ServerContext
        from lairchat.protocol import ChatFactory

        server = ServerContext(evolve(Config(), exempt_networks=Networks(exempt)), store=None, clock=Clock(),
                               passwords=None)
        protocol = ChatFactory(server).buildProtocol(None)
        protocol.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", host, 4000)))
        return protocol

    def test_address(self) -> None:
        """The connection's address is its peer's; untrusted by default."""
        protocol = self.connect("127.0.0.9")
        self.assertEqual(protocol.address, "127.0.0.9")
        self.assertFalse(protocol.exempt)

    def test_exempt(self) -> None:
        """A peer in an exempt network is trusted."""
        self.assertTrue(self.connect("10.1.1.1", ("10.0.0.0/8",)).exempt)
