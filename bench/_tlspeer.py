"""
The two sides of P1t, each run as its own process: P1's servers and
clients (see L{bench._pbpeer}) over verified TLS.

    python -m bench._tlspeer server stock|embedded CERTS
    python -m bench._tlspeer client ours|stock PORT CONCURRENCY new|persistent
        COUNT FIRST CERTS [barrier]

C{CERTS} is a directory made by L{makeCertificates}: a throwaway CA
(C{ca.pem}, which the clients trust) and the server's key and certificate
for C{localhost}, signed by it (C{server.pem}).  Both servers listen with
TLS on C{127.0.0.1} with that certificate (Twisted's C{ssl:} server
endpoint); both clients connect with C{optionsForClientTLS("localhost",
trustRoot=CA)} over a TCP endpoint bound to the worker's source address
(what the C{tls:} endpoint does, less its name resolution), so each checks
the server's chain and name.

The C{ours} client logs each user in once, untimed, with SCRAM
(C{KeycardClientFactory.loginWithKeycard([SCRAMAnswerer(...)])}, bound to
the TLS channel, from C{127.0.0.FIRST}) and keeps the token its keycard
carries; each timed login is C{KeycardClientFactory.login([TokenAnswerer(
token)])} with the user's token, the same one every time (tokens are not
bound to an address by default, so any worker may present it).  The
C{stock} client logs each user in once, untimed, too, then with
C{PBClientFactory.login(UsernamePassword)} each time.  Layouts, barrier
and the JSON line are those of L{bench._pbpeer}.
"""

from __future__ import annotations

import datetime
import ipaddress
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import ssl, task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ClientEndpoint,
    wrapClientTLS,
)

from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.tokens import TokenAnswerer

from ._pbpeer import (
    BACKLOG,
    LOGIN_TIMEOUT,
    Client,
    OursFactory,
    StockFactory,
    client,
    embeddedFactory,
    sourceAddress,
    stockFactory,
    user,
)

#: The name the server's certificate is for, and the clients ask for.
HOSTNAME = "localhost"


def makeCertificates(directory: Path) -> None:
    """
    Write a throwaway CA (C{ca.pem}) and a server key and certificate for
    L{HOSTNAME} and 127.0.0.1 signed by it (C{server.pem}) to C{directory}.
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = (now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1))
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keycard bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(caKey, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOSTNAME)]))
        .issuer_name(caName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(valid[0])
        .not_valid_after(valid[1])
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(HOSTNAME),
                    x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "ca.pem").write_bytes(ca.public_bytes(pem))
    (directory / "server.pem").write_bytes(
        key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        + certificate.public_bytes(pem)
    )


async def server(reactor: Any, side: str, certs: Path) -> None:
    factory = stockFactory() if side == "stock" else embeddedFactory(reactor, {})
    options = ssl.PrivateCertificate.loadPEM(
        (certs / "server.pem").read_text()
    ).options()
    port = await SSL4ServerEndpoint(
        reactor, 0, options, backlog=BACKLOG, interface="127.0.0.1"
    ).listen(factory)
    print(port.getHost().port, flush=True)
    await Deferred()


class TLSClient(Client):
    """
    One client process's logins over verified TLS: C{ours} logs each user
    in with SCRAM first (its untimed login), keeping the token, then with
    that token; C{stock} with its password each time.
    """

    def __init__(
        self, reactor: Any, side: str, port: int, first: int, certs: Path
    ) -> None:
        super().__init__(reactor, side, port, first)
        self.options = ssl.optionsForClientTLS(
            HOSTNAME,
            trustRoot=ssl.Certificate.loadPEM((certs / "ca.pem").read_text()),
        )
        #: Each user's token, from its untimed SCRAM login.
        self.tokens: dict[str, str] = {}

    async def connect(self, worker: int) -> Any:
        factory = OursFactory() if self.side == "ours" else StockFactory()
        source = sourceAddress(self.first, worker)
        endpoint = wrapClientTLS(
            self.options,
            TCP4ClientEndpoint(
                self.reactor,
                "127.0.0.1",
                self.port,
                timeout=60,
                bindAddress=(source, 0),
            ),
        )
        await endpoint.connect(factory)
        return factory

    async def login(self, factory: Any, i: int) -> None:
        if self.side == "stock":
            await super().login(factory, i)
            return
        name, password = user(i)
        token = self.tokens.get(name)
        start = time.perf_counter()
        try:
            if token is None:
                d = factory.loginWithKeycard([SCRAMAnswerer(name, password)])
                done = await d.addTimeout(LOGIN_TIMEOUT, self.reactor)
                if done.keycard.token is None:
                    raise RuntimeError("the SCRAM login's keycard carries no token")
                self.tokens[name] = done.keycard.token
            else:
                d = factory.login([TokenAnswerer(token)])
                await d.addTimeout(LOGIN_TIMEOUT, self.reactor)
            self.latencies.append((time.perf_counter() - start) * 1000)
        except Exception as e:
            self.failures.append(repr(e)[:200])


def main(argv: list[str]) -> None:
    role, side = argv[0], argv[1]
    if role == "server":
        certs = Path(argv[2])
        task.react(lambda reactor: ensureDeferred(server(reactor, side, certs)))
    else:
        port, concurrency, mode, count, first = (
            int(argv[2]),
            int(argv[3]),
            argv[4],
            int(argv[5]),
            int(argv[6]),
        )
        certs = Path(argv[7])
        barrier = argv[8:] == ["barrier"]
        task.react(
            lambda reactor: ensureDeferred(
                client(
                    TLSClient(reactor, side, port, first, certs),
                    concurrency,
                    mode,
                    count,
                    barrier,
                )
            )
        )


if __name__ == "__main__":
    main(sys.argv[1:])
