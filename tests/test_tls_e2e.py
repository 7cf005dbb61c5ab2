"""
The server over TLS: an C{ssl:} endpoint in C{--port} serves the same
protocol, encrypted.
"""

import datetime
import os
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import reactor, ssl
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.trial.unittest import TestCase

from lairchat.tap import LairchatService
from tests.support import TEST_CONFIG, LineClient, fresh_database, test_dsn


def self_signed(directory: str) -> tuple[str, str]:
    """Write a throwaway key and certificate for 127.0.0.1; return their paths."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = os.path.join(directory, "key.pem"), os.path.join(directory, "cert.pem")
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(cert_path, "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


class TLSEndToEndTests(TestCase):
    """REGISTER and WHOAMI through an ssl: endpoint."""

    async def test_register_over_tls(self):
        """The greeting, a registration and a WHOAMI work over TLS."""
        await fresh_database(self)
        key, cert = self_signed(tempfile.mkdtemp(prefix="lairchat-tls-"))
        service = LairchatService(
            TEST_CONFIG, [f"ssl:0:interface=127.0.0.1:privateKey={key}:certKey={cert}"],
            dsn=test_dsn(), pool_size=2, stop_reactor_on_failure=False,
        )
        service.startService()
        self.addCleanup(service.stopService)
        await service.ready
        port = service.ports[0].getHost().port
        client = LineClient()
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port, ssl.CertificateOptions(verify=False))
        await connectProtocol(endpoint, client)
        self.addCleanup(client.close)
        self.assertTrue((await client.line()).startswith("WELCOME:lairchat:"))
        await client.line()
        reply = await client.request("REGISTER:alice:correct horse 9")
        self.assertTrue(reply[0].startswith("OK:REGISTER:alice:"), reply)
        self.assertEqual(await client.request("WHOAMI"), ["OK:WHOAMI:alice:user"])
