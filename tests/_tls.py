"""
Real TLS without sockets, for unit tests: certificates made in memory, and
TLS connections (and a man in the middle) over L{twisted.test.iosim}.
"""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID
from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.spread.flavors import IPBRoot
from twisted.test.iosim import FakeTransport, IOPump, connect

from twisted_keycard.pb._client import KeycardClientFactory
from twisted_keycard.pb._serverfactory import KeycardServerFactory
from twisted_keycard.testing import KeycardTestConnection

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)


def makeCertificate(
    hostname: str = "localhost",
    *,
    key: Any = None,
    algorithm: Any = None,
) -> tuple[x509.Certificate, Any]:
    """
    A self-signed CA certificate naming C{hostname} (a DNS name, or an IP
    address), signed with C{algorithm} (SHA-256 by default; C{None} for an
    Ed25519 key).

    @return: the certificate and its private key.
    """
    if key is None:
        key = ec.generate_private_key(ec.SECP256R1())
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey):
        algorithm = hashes.SHA256()
    try:
        alt: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        alt = x509.DNSName(hostname)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([alt]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, algorithm)
    )
    return certificate, key


def rsaKey() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@attrs.frozen
class Identity:
    """
    A server's certificate and key, and the certificate clients trust.
    """

    certificate: x509.Certificate
    private: ssl.PrivateCertificate

    @classmethod
    def make(cls, hostname: str = "localhost", **options: Any) -> Identity:
        certificate, key = makeCertificate(hostname, **options)
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        keyPem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls(certificate, ssl.PrivateCertificate.loadPEM(keyPem + pem))

    @property
    def trust(self) -> ssl.Certificate:
        return ssl.Certificate(self.private.original)

    def serverOptions(self, *, tls12: bool = False) -> object:
        """
        Server options; TLS 1.2 at most if C{tls12}.
        """
        if tls12:
            return ssl.CertificateOptions(
                privateKey=self.private.privateKey.original,
                certificate=self.private.original,
                lowerMaximumSecurityTo=ssl.TLSVersion.TLSv1_2,
            )
        return self.private.options()

    def verifying(self, hostname: str = "localhost") -> object:
        """
        Client options that check this certificate and C{hostname}, as
        C{tls:HOST:PORT:trustRoots=...} does.
        """
        return ssl.optionsForClientTLS(hostname, trustRoot=self.trust)

    def chainOnly(self) -> ssl.CertificateOptions:
        """
        Client options that check the chain but no name, as an C{ssl:}
        endpoint with C{caCertsDir=} and no C{hostname=} does.
        """
        return ssl.CertificateOptions(verify=True, caCerts=[self.private.original])


def unverified() -> ssl.CertificateOptions:
    """
    Client options that check nothing, as a plain C{ssl:HOST:PORT} endpoint.
    """
    return ssl.CertificateOptions()


def tlsPair(
    server: Protocol,
    serverOptions: Any,
    client: Protocol,
    clientOptions: Any,
    clock: Clock | None = None,
    greet: bool = True,
) -> tuple[TLSMemoryBIOProtocol, TLSMemoryBIOProtocol, IOPump]:
    """
    Connect C{client} to C{server} over TLS in memory.

    @param greet: pump once now (the handshake); otherwise at the first
        pump.

    @return: the server's and the client's TLS protocols, and the pump.
    """
    clock = clock if clock is not None else Clock()
    serverTLS = _wrap(server, serverOptions, False, CLIENT, clock)
    clientTLS = _wrap(client, clientOptions, True, SERVER, clock)
    pump = connect(
        serverTLS,
        FakeTransport(serverTLS, True, SERVER, CLIENT),
        clientTLS,
        FakeTransport(clientTLS, False, CLIENT, SERVER),
        greet=greet,
        clock=clock,
    )
    return serverTLS, clientTLS, pump


class _Prebuilt(Factory):
    """
    Gives a protocol already built by its own factory, leaving its
    C{factory} alone (a PB broker talks to its own).
    """

    def __init__(self, protocol: Protocol) -> None:
        self._protocol = protocol

    def buildProtocol(self, addr: object) -> Protocol:
        return self._protocol


def _wrap(
    protocol: Protocol, options: Any, isClient: bool, peer: IPv4Address, clock: Clock
) -> TLSMemoryBIOProtocol:
    wrapped: TLSMemoryBIOProtocol = TLSMemoryBIOFactory(
        options, isClient, _Prebuilt(protocol), clock
    ).buildProtocol(peer)
    return wrapped


def connectTLS(
    root: IPBRoot, serverOptions: Any, clientOptions: Any, clock: Clock | None = None
) -> KeycardTestConnection:
    """
    Connect a new L{KeycardClientFactory} to a PB root over TLS, in memory.
    """
    clock = clock if clock is not None else Clock()
    serverBroker = KeycardServerFactory(root, clock=clock).buildProtocol(CLIENT)
    assert serverBroker is not None
    factory = KeycardClientFactory()
    clientBroker = factory.buildProtocol(SERVER)
    _, _, pump = tlsPair(
        serverBroker, serverOptions, clientBroker, clientOptions, clock
    )
    return KeycardTestConnection(factory, pump, serverBroker, clientBroker)


class _Relay(Protocol):
    """
    One side of a man in the middle: passes what it reads to the other
    side, and records it.
    """

    def __init__(self) -> None:
        self.other: _Relay | None = None
        self.seen = b""
        self.pending = b""

    def connectionMade(self) -> None:
        if self.pending:
            self.transport.write(self.pending)  # type: ignore[union-attr]
            self.pending = b""

    def dataReceived(self, data: bytes) -> None:
        self.seen += data
        assert self.other is not None
        self.other.send(data)

    def send(self, data: bytes) -> None:
        if self.transport is None:
            self.pending += data
        else:
            self.transport.write(data)


@attrs.define
class ManInTheMiddle:
    """
    A client connected to a relay that ends its TLS with its own certificate
    and opens another TLS connection to the real server, passing the
    plaintext between the two.

    @ivar fromClient: the plaintext the relay read from the client.
    """

    factory: KeycardClientFactory
    pumps: list[IOPump]
    clientSide: _Relay

    @classmethod
    def between(
        cls,
        root: IPBRoot,
        serverOptions: Any,
        relayOptions: Any,
        clientOptions: Any,
        clock: Clock | None = None,
    ) -> ManInTheMiddle:
        """
        @param relayOptions: the server options the relay presents to the
            client (its own certificate).
        """
        clock = clock if clock is not None else Clock()
        toClient, toServer = _Relay(), _Relay()
        toClient.other, toServer.other = toServer, toClient
        serverBroker = KeycardServerFactory(root, clock=clock).buildProtocol(CLIENT)
        assert serverBroker is not None
        _, _, upstream = tlsPair(
            serverBroker, serverOptions, toServer, unverified(), clock
        )
        factory = KeycardClientFactory()
        clientBroker = factory.buildProtocol(SERVER)
        _, _, downstream = tlsPair(
            toClient, relayOptions, clientBroker, clientOptions, clock, greet=False
        )
        return cls(factory, [downstream, upstream], toClient)

    @property
    def fromClient(self) -> bytes:
        return self.clientSide.seen

    def flush(self) -> None:
        for _ in range(1000):
            if not any([p.pump() for p in self.pumps]):  # noqa: C419 - every pump
                return
        raise AssertionError("still pumping")


__all__ = [
    "Identity",
    "ManInTheMiddle",
    "connectTLS",
    "makeCertificate",
    "rsaKey",
    "tlsPair",
    "unverified",
]
