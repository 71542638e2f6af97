"""
Tests for the SCRAM message parsers and formatters of
L{twisted_keycard.scram._messages}: strict parsing, every refusal a
L{ProtocolError}.
"""

from __future__ import annotations

from base64 import b64encode

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.error import ProtocolError
from twisted_keycard.scram import ClientFinal, ClientFirst, ServerFinal, ServerFirst
from twisted_keycard.scram._messages import (
    MAX_MESSAGE,
    MAX_NONCE,
    SCRAMKeycard,
    authMessage,
    escapeName,
    unb64,
    unescapeName,
)

NONCE = "rOprNGfwEbeRWgbNEkqO"
SERVER_NONCE = NONCE + "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
SALT = "W22ZaJ0SNY7soEsUEjb6gQ=="
PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
SIGNATURE = "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


class ClientFirstTests(SynchronousTestCase):
    """
    The client-first message.
    """

    def test_roundTrip(self) -> None:
        """
        A message parses into its parts and formats back to itself.
        """
        for message in [f"n,,n=user,r={NONCE}", f"y,,n=user,r={NONCE}"]:
            first = ClientFirst.parse(message)
            self.assertEqual(first.username, "user")
            self.assertEqual(first.nonce, NONCE)
            self.assertEqual(first.gs2Header, message[:3])
            self.assertEqual(first.format(), message)
            self.assertEqual(first.bare, message[3:])

    def test_escapedName(self) -> None:
        """
        C{=2C} and C{=3D} stand for C{,} and C{=}, and are written back.
        """
        first = ClientFirst.parse("n,,n=a=2Cb=3Dc=3D2C,r=abc")
        self.assertEqual(first.username, "a,b=c=2C")
        self.assertEqual(first.format(), "n,,n=a=2Cb=3Dc=3D2C,r=abc")
        self.assertEqual(first.bare, "n=a=2Cb=3Dc=3D2C,r=abc")

    def test_unicodeName(self) -> None:
        """
        A user name may be any UTF-8 text without control characters.
        """
        self.assertEqual(ClientFirst.parse("n,,n=zoë,r=abc").username, "zoë")

    def test_channelBindingTypes(self) -> None:
        """
        A client may ask for C{tls-exporter} or C{tls-server-end-point}
        channel binding; any other type (C{tls-unique}, which TLS 1.3 lacks)
        is refused, clearly, and so is a malformed one.
        """
        for kind in ["tls-exporter", "tls-server-end-point"]:
            first = ClientFirst.parse(f"p={kind},,n=user,r=abc")
            self.assertEqual(first.gs2Header, f"p={kind},,")
            self.assertEqual(first.format(), f"p={kind},,n=user,r=abc")
        with self.assertRaises(ProtocolError) as caught:
            ClientFirst.parse("p=tls-unique,,n=user,r=abc")
        self.assertIn("channel binding type not supported", str(caught.exception))
        for header in ["p=,,", "p=tls exporter,,", "p=a=b,,"]:
            with self.assertRaises(ProtocolError) as caught:
                ClientFirst.parse(header + "n=user,r=abc")
            self.assertIn("malformed GS2 header", str(caught.exception))

    def test_authzidRefused(self) -> None:
        """
        An authorization identity is refused.
        """
        with self.assertRaises(ProtocolError) as caught:
            ClientFirst.parse("n,a=admin,n=user,r=abc")
        self.assertIn("authorization", str(caught.exception))

    def test_extensionsRefused(self) -> None:
        """
        The mandatory extension C{m=} and any extra attribute are refused.
        """
        for bad in ["n,,m=ext,n=user,r=abc", "n,,n=user,r=abc,x=1"]:
            with self.assertRaises(ProtocolError) as caught:
                ClientFirst.parse(bad)
            self.assertIn("extensions", str(caught.exception))

    def test_badEscapes(self) -> None:
        """
        A C{=} that is not C{=2C} or C{=3D} is an error.
        """
        for name in ["a=b", "a=", "=", "a=2c", "a=3d", "=3=2CD", "a==2C", "=2"]:
            self.assertRaises(ProtocolError, ClientFirst.parse, f"n,,n={name},r=abc")

    def test_malformed(self) -> None:
        """
        Every kind of malformed client-first message is a L{ProtocolError}.
        """
        for bad in [
            None,
            42,
            b"n,,n=user,r=abc",
            "",
            "n,,",
            "n=user,r=abc",
            "x,,n=user,r=abc",
            "nn,,n=user,r=abc",
            "n,,n=,r=abc",
            "n,,n=user",
            "n,,n=user,r=",
            "n,,r=abc,n=user",
            "n,,n=user,r=abc,",
            "n,,n=us\x00er,r=abc",
            "n,,n=us\ter,r=abc",
            "n,,n=user,r=a b",
            "n,,n=user,r=ab,c",
            "n,,n=user,r=abc\x7f",
            "n,,n=user,r=abcé",
            "n,,N=user,r=abc",
            "n,,n=" + "u" * 257 + ",r=abc",
            "n,,n=user,r=" + "x" * (MAX_NONCE + 1),
            "n,,n=user,r=abc" + "x" * MAX_MESSAGE,
        ]:
            self.assertRaises(ProtocolError, ClientFirst.parse, bad)

    def test_longestNonce(self) -> None:
        """
        A nonce of L{MAX_NONCE} characters is taken.
        """
        nonce = "x" * MAX_NONCE
        self.assertEqual(ClientFirst.parse(f"n,,n=u,r={nonce}").nonce, nonce)


class ServerFirstTests(SynchronousTestCase):
    """
    The server-first message.
    """

    def test_roundTrip(self) -> None:
        message = f"r={SERVER_NONCE},s={SALT},i=4096"
        first = ServerFirst.parse(message)
        self.assertEqual(first.nonce, SERVER_NONCE)
        self.assertEqual(len(first.salt), 16)
        self.assertEqual(first.iterations, 4096)
        self.assertEqual(first.format(), message)

    def test_extensionsRefused(self) -> None:
        for bad in [
            f"m=x,r={SERVER_NONCE},s={SALT},i=4096",
            f"r={SERVER_NONCE},s={SALT},i=4096,x=y",
        ]:
            with self.assertRaises(ProtocolError) as caught:
                ServerFirst.parse(bad)
            self.assertIn("extensions", str(caught.exception))

    def test_malformed(self) -> None:
        for bad in [
            None,
            "",
            f"r={SERVER_NONCE},s={SALT}",
            f"r={SERVER_NONCE},i=4096,s={SALT}",
            f"s={SALT},r={SERVER_NONCE},i=4096",
            f"r={SERVER_NONCE},s={SALT},i=",
            f"r={SERVER_NONCE},s={SALT},i=x",
            f"r={SERVER_NONCE},s={SALT},i=0",
            f"r={SERVER_NONCE},s={SALT},i=04096",
            f"r={SERVER_NONCE},s={SALT},i=-1",
            f"r={SERVER_NONCE},s={SALT},i=4096.0",
            f"r={SERVER_NONCE},s={SALT},i= 4096",
            f"r={SERVER_NONCE},s={SALT},i=٤٠٩٦",
            f"r={SERVER_NONCE},s={SALT},i=12345678901",
            f"r={SERVER_NONCE},s=,i=4096",
            f"r={SERVER_NONCE},s=***,i=4096",
            f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ,i=4096",
            f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",
            f"r={SERVER_NONCE},s=W22Z aJ0SNY7soEsUEjb6gQ==,i=4096",
            f"r={SERVER_NONCE},s=W22Z_J0SNY7soEsUEjb6gQ==,i=4096",
            f"r={SERVER_NONCE},s=W22ZaJ0SNY7soEsUEjb6gR==,i=4096",
            f"r=,s={SALT},i=4096",
            f"r=a b,s={SALT},i=4096",
            f"r={'x' * (MAX_NONCE + 1)},s={SALT},i=4096",
            f"r={SERVER_NONCE},s={'A' * MAX_MESSAGE},i=4096",
        ]:
            self.assertRaises(ProtocolError, ServerFirst.parse, bad)


class ClientFinalTests(SynchronousTestCase):
    """
    The client-final message.
    """

    def test_roundTrip(self) -> None:
        message = f"c=biws,r={SERVER_NONCE},p={PROOF}"
        final = ClientFinal.parse(message)
        self.assertEqual(final.channelBinding, "biws")
        self.assertEqual(final.nonce, SERVER_NONCE)
        self.assertEqual(len(final.proof), 32)
        self.assertEqual(final.withoutProof, f"c=biws,r={SERVER_NONCE}")
        self.assertEqual(final.format(), message)

    def test_proofNotInRepr(self) -> None:
        final = ClientFinal.parse(f"c=biws,r={SERVER_NONCE},p={PROOF}")
        self.assertNotIn(PROOF, repr(final))
        self.assertNotIn(repr(final.proof), repr(final))

    def test_extensionsRefused(self) -> None:
        for bad in [
            f"c=biws,r={SERVER_NONCE},x=1,p={PROOF}",
            f"c=biws,r={SERVER_NONCE},m=1,p={PROOF}",
        ]:
            with self.assertRaises(ProtocolError) as caught:
                ClientFinal.parse(bad)
            self.assertIn("extensions", str(caught.exception))

    def test_malformed(self) -> None:
        short = b64encode(b"x" * 31).decode()
        for bad in [
            None,
            "",
            f"c=biws,r={SERVER_NONCE}",
            f"r={SERVER_NONCE},c=biws,p={PROOF}",
            f"c=biws,r={SERVER_NONCE},p=",
            f"c=biws,r={SERVER_NONCE},p={short}",
            f"c=biws,r={SERVER_NONCE},p={PROOF[:-1]}",
            f"c=biws,r={SERVER_NONCE},p=!{PROOF[1:]}",
            f"c=bi,r={SERVER_NONCE},p={PROOF}",
            f"c=b-ws,r={SERVER_NONCE},p={PROOF}",
            f"c=biws,r=,p={PROOF}",
            f"c=biws,r={SERVER_NONCE} ,p={PROOF}",
            f"c=biws,r={SERVER_NONCE},p={PROOF}" + " " * MAX_MESSAGE,
        ]:
            self.assertRaises(ProtocolError, ClientFinal.parse, bad)


class ServerFinalTests(SynchronousTestCase):
    """
    The server-final message.
    """

    def test_signature(self) -> None:
        final = ServerFinal.parse(f"v={SIGNATURE}")
        self.assertEqual(len(final.signature or b""), 32)
        self.assertIsNone(final.error)
        self.assertEqual(final.format(), f"v={SIGNATURE}")

    def test_error(self) -> None:
        final = ServerFinal.parse("e=invalid-proof")
        self.assertIsNone(final.signature)
        self.assertEqual(final.error, "invalid-proof")
        self.assertEqual(final.format(), "e=invalid-proof")

    def test_longErrorCut(self) -> None:
        """
        A long error is cut short, so it cannot flood a log line.
        """
        final = ServerFinal.parse("e=" + "x" * 500)
        self.assertEqual(final.error, "x" * 64)

    def test_malformed(self) -> None:
        for bad in [
            None,
            "",
            "v=",
            "e=",
            "e=a,b",
            "e=bad\x00",
            "e=" + "x" * MAX_MESSAGE,
            f"v={SIGNATURE[:-1]}",
            "v=" + b64encode(b"x" * 16).decode(),
            f"v={SIGNATURE},x=1",
            f"V={SIGNATURE}",
            f"m=1,v={SIGNATURE}",
        ]:
            self.assertRaises(ProtocolError, ServerFinal.parse, bad)


class HelperTests(SynchronousTestCase):
    """
    Name escaping, strict base64, and the AuthMessage.
    """

    def test_escapeRoundTrip(self) -> None:
        for name in ["user", "a,b", "a=b", "=2C", ",=,", "zoë"]:
            self.assertEqual(unescapeName(escapeName(name)), name)

    def test_unb64(self) -> None:
        self.assertEqual(unb64("", "x"), b"")
        self.assertEqual(unb64("YQ==", "x"), b"a")
        for bad in ["YQ", "YQ=", "YR==", "Y Q==", "YQ==\n", "-_==", "YQ==YQ=="]:
            self.assertRaises(ProtocolError, unb64, bad, "x")

    def test_authMessage(self) -> None:
        """
        The AuthMessage of the RFC 7677 exchange.
        """
        first = ClientFirst.parse(f"n,,n=user,r={NONCE}")
        serverFirst = ServerFirst.parse(f"r={SERVER_NONCE},s={SALT},i=4096")
        self.assertEqual(
            authMessage(first, serverFirst, f"c=biws,r={SERVER_NONCE}"),
            (
                f"n=user,r={NONCE},r={SERVER_NONCE},s={SALT},i=4096,"
                f"c=biws,r={SERVER_NONCE}"
            ).encode(),
        )


class ParsedClientFirstTests(SynchronousTestCase):
    """
    L{SCRAMKeycard.parsedClientFirst} parses the client-first message once
    for the text the keycard holds, for the account and the exchange alike.
    """

    def test_parsedOnce(self) -> None:
        """
        Asked twice for the same text, the keycard parses it once.
        """
        keycard = SCRAMKeycard(clientFirst=f"n,,n=user,r={NONCE}")
        calls: list[object] = []
        parse = ClientFirst.parse

        def counting(text: object) -> ClientFirst:
            calls.append(text)
            return parse(text)

        self.patch(ClientFirst, "parse", staticmethod(counting))
        self.assertEqual(keycard.account(), "user")
        self.assertEqual(keycard.parsedClientFirst().nonce, NONCE)
        self.assertEqual(len(calls), 1)

    def test_newText(self) -> None:
        """
        A keycard whose client-first message changes is parsed again: the
        answer is always that of the text it holds, and a malformed one
        raises L{ProtocolError} every time.
        """
        keycard = SCRAMKeycard(clientFirst=f"n,,n=user,r={NONCE}")
        self.assertEqual(keycard.parsedClientFirst().username, "user")
        keycard.clientFirst = f"n,,n=other,r={NONCE}"
        self.assertEqual(keycard.parsedClientFirst().username, "other")
        self.assertEqual(keycard.account(), "other")
        keycard.clientFirst = "n,,x"
        self.assertRaises(ProtocolError, keycard.parsedClientFirst)
        self.assertRaises(ProtocolError, keycard.parsedClientFirst)
        self.assertIsNone(keycard.account())
