"""
The web guard's parts: the Authorization header parser, challenges, the
client address behind proxies, the token expiry reader, and the limits
L{KeycardSite} puts on a request.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from twisted_keycard.error import ProtocolError
from twisted_keycard.tokens import SigningKey, TokenClaims, claimedExpiry, sign
from twisted_keycard.web import KeycardSite, ProxyTrust, SiteLimits
from twisted_keycard.web._http import (
    challenge,
    decodeBasic,
    decodeData,
    parseAuthorization,
    tokenExpires,
)


class HeaderTests(SynchronousTestCase):
    def test_token68(self) -> None:
        parsed = parseAuthorization(b"bearer kc1.abc_-.xyz")
        self.assertTrue(parsed.isScheme("Bearer"))
        self.assertEqual(parsed.token68, "kc1.abc_-.xyz")
        basic = parseAuthorization(b"Basic YWxpY2U6cGFzcw==")
        self.assertEqual(basic.token68, "YWxpY2U6cGFzcw==")

    def test_params(self) -> None:
        """
        Auth-params, bare (base64 with "/" and "=", as RFC 7804 writes
        them) or quoted, names folded to lower case.
        """
        parsed = parseAuthorization(
            b'SCRAM-SHA-256 SID=AbC-1, data=ab/c+d==, realm="a \\"b\\""'
        )
        self.assertEqual(
            dict(parsed.params), {"sid": "AbC-1", "data": "ab/c+d==", "realm": 'a "b"'}
        )

    def test_malformed(self) -> None:
        for value in [
            b"",
            b" x=",
            b"SCRAM-SHA-256 data=a, data=b",
            b"SCRAM-SHA-256 " + b", ".join(b"p%d=1" % i for i in range(9)),
            b"Bearer " + b"a" * 5000,
            "Basic é".encode(),
        ]:
            self.assertRaises(ProtocolError, parseAuthorization, value)

    def test_challenge(self) -> None:
        self.assertEqual(
            challenge("Bearer", [("realm", 'x"y'), ("error", "invalid_token")]),
            b'Bearer realm="x\\"y", error="invalid_token"',
        )
        self.assertEqual(
            challenge("SCRAM-SHA-256", [("sid", "s1"), ("data", "YQ==")]),
            b"SCRAM-SHA-256 sid=s1, data=YQ==",
        )

    def test_basicAndData(self) -> None:
        self.assertEqual(decodeBasic("YWxpY2U6cDpx"), ("alice", "p:q"))
        for bad in [None, "!!", "YWxpY2U=", "OnBhc3M="]:
            self.assertRaises(ProtocolError, decodeBasic, bad)
        # RFC 7804's examples end their messages with a newline.
        self.assertEqual(decodeData("bixuPXUK"), "n,n=u")
        self.assertRaises(ProtocolError, decodeData, "not base64")

    def test_tokenExpires(self) -> None:
        """
        The expiry a C{kc2} token states, to the millisecond (issue 27: it
        was read as a C{kc1} token's, a time in 1970).
        """
        now = 1_800_000_000.0
        token = sign(
            TokenClaims("k1", "alice", now, now + 3600.25, "b", "web"),
            SigningKey.generate(now),
        )
        self.assertEqual(tokenExpires(token), now + 3600.25)
        self.assertEqual(claimedExpiry(token), now + 3600.25)
        self.assertIsNone(tokenExpires("kc1.abc.!!!"))
        self.assertIsNone(tokenExpires("kc2.abc.!!!"))
        self.assertIsNone(tokenExpires("nonsense"))


class _Request(DummyRequest):
    def isSecure(self) -> bool:
        return False


def request(peer: str, **headers: str) -> Any:
    req = _Request([b""])
    req.client = IPv4Address("TCP", peer, 1234)
    for name, value in headers.items():
        req.requestHeaders.addRawHeader(name.replace("_", "-"), value)
    return req


class ProxyTrustTests(SynchronousTestCase):
    def test_untrusted(self) -> None:
        trust = ProxyTrust()
        req = request("198.51.100.1", X_Forwarded_For="192.0.2.1")
        self.assertEqual(trust.clientAddress(req), "198.51.100.1")
        req = request("198.51.100.1", X_Forwarded_Proto="https")
        self.assertFalse(trust.isSecure(req))

    def test_trusted(self) -> None:
        """
        Behind trusted proxies the client is the right-most address that is
        not a proxy; what the client wrote further left does not count.
        """
        trust = ProxyTrust(["10.0.0.0/8"])
        req = request("10.0.0.1", X_Forwarded_For="6.6.6.6, 192.0.2.1, 10.0.0.2")
        self.assertEqual(trust.clientAddress(req), "192.0.2.1")
        self.assertTrue(
            trust.isSecure(request("10.0.0.1", X_Forwarded_Proto="http, https"))
        )
        self.assertEqual(
            trust.clientAddress(request("10.0.0.1", X_Forwarded_For="junk")),
            "10.0.0.1",
        )

    def test_badNetwork(self) -> None:
        self.assertRaises(ValueError, ProxyTrust, ["not a network"])


class SiteLimitTests(SynchronousTestCase):
    def connect(self, limits: SiteLimits) -> tuple[StringTransport, object]:
        root = Resource()
        site = KeycardSite(root, limits)
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        assert channel is not None
        transport = StringTransport()
        channel.makeConnection(transport)
        self.addCleanup(channel.connectionLost, None)
        return transport, channel

    def test_bodyTooLarge(self) -> None:
        transport, channel = self.connect(SiteLimits(maxBody=10))
        channel.dataReceived(  # type: ignore[attr-defined]
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))
        self.assertTrue(transport.disconnecting)

    def test_chunkedTooLarge(self) -> None:
        transport, channel = self.connect(SiteLimits(maxBody=10))
        channel.dataReceived(  # type: ignore[attr-defined]
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"8\r\n12345678\r\n8\r\n12345678\r\n"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 413 "))

    def test_headersBounded(self) -> None:
        """
        Too many header lines, or too many bytes of them, or a line longer
        than the limit, get a 400, and the connection is closed.
        """
        line = b"X-A: " + b"a" * 100 + b"\r\n"
        for limits, head in [
            (SiteLimits(maxHeaders=3), b"".join(b"X-%d: 1\r\n" % i for i in range(4))),
            (SiteLimits(maxHeaderBytes=200), line * 2),
        ]:
            transport, channel = self.connect(limits)
            channel.dataReceived(  # type: ignore[attr-defined]
                b"GET / HTTP/1.1\r\nHost: x\r\n" + head + b"\r\n"
            )
            self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "), limits)
            self.assertTrue(transport.disconnecting)
        transport, channel = self.connect(SiteLimits(maxHeaderBytes=200))
        channel.dataReceived(  # type: ignore[attr-defined]
            b"GET / HTTP/1.1\r\nX-A: " + b"a" * 300
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertTrue(transport.disconnecting)

    def test_withinLimits(self) -> None:
        transport, channel = self.connect(SiteLimits(maxBody=10))
        channel.dataReceived(  # type: ignore[attr-defined]
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789"
        )
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 404 "))
