"""
Tests for L{twisted_keycard.keycard._keycard}: what a keycard accepts from the wire.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import ISSLTransport, ITransport
from twisted.internet.protocol import Protocol
from twisted.internet.testing import StringTransport
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import directlyProvides

from twisted_keycard import InsecureTransport, InvalidKeycard, Keycard, KeycardState
from twisted_keycard.keycard._keycard import keycardClassFor, registerKeycard, wireField

from ._passphrase import PassphraseKeycard
from ._tls import Identity, tlsPair, unverified


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SecretKeycard(Keycard):
    keycardType = "twisted_keycard.tests.secret"

    password: str | None = wireField(str, 64, secret=True)


def roundTrip(
    keycard: Keycard, transport: ITransport | None = None, isClient: bool = True
) -> object:
    """
    Jelly a keycard as a broker would send it and unjelly it as the peer's
    broker would receive it; a client's broker sends toward the bouncer.
    """
    broker = pb.Broker(isClient=isClient)
    broker.makeConnection(transport or StringTransport())
    return broker.unserialize(broker.serialize(keycard))


def tlsClient(identity: Identity, options: object) -> ITransport:
    """
    The client end of a TLS connection, in memory, to a server with
    C{identity}, after the handshake.
    """
    _, client, pump = tlsPair(Protocol(), identity.serverOptions(), Protocol(), options)
    pump.flush()
    return client


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class ValidatedKeycard(Keycard):
    keycardType = "twisted_keycard.tests.validated"

    code: str | None = wireField(str, 8)

    @code.validator
    def _digits(self, attribute: object, value: str | None) -> None:
        if value is not None and not value.isdigit():
            raise ValueError("digits only")


class KeycardWireTests(SynchronousTestCase):
    def blank(self) -> PassphraseKeycard:
        return PassphraseKeycard.__new__(PassphraseKeycard)

    def test_roundTrip(self) -> None:
        """
        A keycard sent back toward the client arrives as a new object with
        the fields the bouncer and the requester set, not those the client
        wrote.
        """
        keycard = PassphraseKeycard(
            username="alice",
            id="abc",
            state=KeycardState.AUTHENTICATED,
            expires=5,
            requesterName="r",
            address="192.0.2.1",
            challenge="c",
        )
        copy = roundTrip(keycard, isClient=False)
        assert isinstance(copy, PassphraseKeycard)
        self.assertIsNot(copy, keycard)
        self.assertEqual(
            (copy.id, copy.state, copy.expires, copy.requesterName, copy.challenge),
            ("abc", KeycardState.AUTHENTICATED, 5.0, "r", "c"),
        )
        self.assertEqual((copy.username, copy.address), (None, None))

    def test_towardBouncer(self) -> None:
        """
        A keycard sent toward the bouncer carries the fields the client and
        the requester write, and not those the bouncer writes.
        """
        keycard = PassphraseKeycard(
            username="alice",
            id="abc",
            requesterName="r",
            address="192.0.2.1",
            challenge="c",
            response="x",
            avatarId="admin",
            expires=5,
        )
        copy = roundTrip(keycard)
        assert isinstance(copy, PassphraseKeycard)
        self.assertEqual(
            (copy.username, copy.id, copy.requesterName, copy.address, copy.response),
            ("alice", "abc", "r", "192.0.2.1", "x"),
        )
        self.assertEqual((copy.challenge, copy.avatarId, copy.expires), (None,) * 3)

    def test_attrsValidatorsRun(self) -> None:
        """
        A keycard class's own attrs validators run on the fields a peer
        sends, as they do on local assignment.
        """
        copy = roundTrip(ValidatedKeycard(code="42"))
        assert isinstance(copy, ValidatedKeycard)
        self.assertEqual(copy.code, "42")
        blank = ValidatedKeycard.__new__(ValidatedKeycard)
        self.assertRaises(ValueError, blank.setCopyableState, b'{"code":"4x"}')

    def test_defaultsLeftOut(self) -> None:
        """
        Fields at their default are not sent: a new keycard packs to the
        fields its client set.
        """
        keycard = PassphraseKeycard(username="alice")
        self.assertEqual(keycard.stateToward(True), b'{"username":"alice"}')
        self.assertEqual(keycard.stateToward(False), b"{}")
        self.assertEqual(keycard.getStateToCopy(), b'{"username":"alice"}')

    def test_registered(self) -> None:
        self.assertIs(keycardClassFor(PassphraseKeycard.keycardType), PassphraseKeycard)
        self.assertEqual(
            PassphraseKeycard().getTypeToCopy(), b"twisted_keycard.tests.passphrase"
        )

    def test_registerTwice(self) -> None:
        @attrs.define(slots=False, eq=False, kw_only=True)
        class Thief(Keycard):
            keycardType = PassphraseKeycard.keycardType

        self.assertRaises(ValueError, registerKeycard, Thief)
        self.assertIs(keycardClassFor(PassphraseKeycard.keycardType), PassphraseKeycard)

    def test_missingFieldsDefault(self) -> None:
        keycard = self.blank()
        keycard.setCopyableState({"username": "bob"})
        self.assertEqual(keycard.username, "bob")
        self.assertIsNone(keycard.id)
        self.assertIs(keycard.state, KeycardState.REQUESTING)

    def test_packed(self) -> None:
        keycard = self.blank()
        keycard.setCopyableState(b'{"username":"bob","duration":5}')
        self.assertEqual((keycard.username, keycard.duration), ("bob", 5.0))

    def test_packedMalformed(self) -> None:
        self.assertInvalid(b"{not json", "not a JSON object")
        self.assertInvalid(b"\xff", "not a JSON object")
        self.assertInvalid(b'{"duration": NaN}', "not a JSON object")
        self.assertInvalid(b"[1, 2]", "must be a dictionary")
        self.assertInvalid(b'{"username": ["a"]}', "must be str")
        self.assertInvalid(b'{"username":"' + b"x" * 20000 + b'"}', "longer than 16384")

    def test_loneSurrogate(self) -> None:
        """
        A lone surrogate, which JSON can carry but which is not text, is
        taken as U+FFFD: the field is text any encoder takes, and names no
        real account.
        """
        keycard = self.blank()
        keycard.setCopyableState(b'{"username":"al\\ud800ice","challenge":"\\udfff"}')
        self.assertEqual(keycard.username, "al\ufffdice")
        self.assertEqual(keycard.challenge, "\ufffd")
        keycard.setCopyableState({"username": "\U0001f600 \u00e9"})
        self.assertEqual(keycard.username, "\U0001f600 \u00e9")

    def test_bytesKeys(self) -> None:
        keycard = self.blank()
        keycard.setCopyableState({b"username": "bob"})
        self.assertEqual(keycard.username, "bob")

    def assertInvalid(self, state: object, message: str) -> None:
        keycard = PassphraseKeycard(username="kept")
        error = self.assertRaises(InvalidKeycard, keycard.setCopyableState, state)
        self.assertIn(message, str(error))
        self.assertEqual(keycard.username, "kept")

    def test_extraField(self) -> None:
        self.assertInvalid(
            {"username": "bob", "__class__": "x"}, "no field '__class__'"
        )

    def test_notADict(self) -> None:
        self.assertInvalid(["username", "bob"], "must be a dictionary")

    def test_wrongType(self) -> None:
        self.assertInvalid({"username": b"bob"}, "must be str")
        self.assertInvalid({"expires": "soon"}, "must be float")
        self.assertInvalid({"expires": True}, "must be float")

    def test_oversized(self) -> None:
        self.assertInvalid({"username": "b" * 65}, "longer than 64")
        self.assertInvalid({"token": "t" * 4097}, "longer than 4096")

    def test_notFinite(self) -> None:
        self.assertInvalid({"duration": float("nan")}, "finite")
        self.assertInvalid({"expires": float("inf")}, "finite")

    def test_badState(self) -> None:
        self.assertInvalid({"state": "ROOT"}, "cannot take")

    def test_hugeFieldName(self) -> None:
        """
        The error repeats at most a short prefix of a peer's field name.
        """
        keycard = self.blank()
        error = self.assertRaises(
            InvalidKeycard, keycard.setCopyableState, {"x" * 10000: 1}
        )
        self.assertLess(len(str(error)), 100)

    def test_secretNeedsVerifiedTLS(self) -> None:
        """
        A keycard with a secret field set is sent toward the bouncer only
        over TLS whose server the client verified: not without TLS, not over
        TLS that checks nothing or only the certificate chain, nor over a
        transport that merely says it is TLS.
        """
        keycard = SecretKeycard(password="hunter2")
        self.assertRaises(InsecureTransport, roundTrip, keycard)
        said = StringTransport()
        directlyProvides(said, ISSLTransport)
        identity = Identity.make()
        for transport in [
            said,
            tlsClient(identity, unverified()),
            tlsClient(identity, identity.chainOnly()),
        ]:
            error = self.assertRaises(InsecureTransport, roundTrip, keycard, transport)
            self.assertIn("trustRoots=", str(error))
        copy = roundTrip(keycard, tlsClient(identity, identity.verifying()))
        assert isinstance(copy, SecretKeycard)
        self.assertEqual(copy.password, "hunter2")
        self.assertIsInstance(roundTrip(SecretKeycard()), SecretKeycard)

    def test_secretNotInRepr(self) -> None:
        self.assertNotIn("hunter2", repr(SecretKeycard(password="hunter2")))

    def test_noPasswordFieldInShippedKeycards(self) -> None:
        """
        Only the password keycard carries a password, and its field is
        secret, so it never crosses PB without TLS (test_secretNeedsTLS).
        """
        import twisted_keycard.keycard._keycard as module
        import twisted_keycard.passwords  # noqa: F401 - registers its keycard

        for tag, cls in module._registry.items():
            if tag.startswith("twisted_keycard.tests."):
                continue
            secret = [n for n, w in cls.wireFields().items() if w.secret]
            expected = ["password"] if tag == "twisted_keycard.password" else []
            self.assertEqual(secret, expected, tag)

    def test_secretsNeverSentBack(self) -> None:
        """
        Every shipped keycard's secret fields are written by the client, so
        an answer toward the client never carries them, even over TLS.
        """
        from twisted_keycard.passwords import PasswordKeycard

        for cls in self.shippedClasses():
            for name, wire in cls.wireFields().items():
                if wire.secret:
                    self.assertEqual(wire.setBy, "client", f"{cls} {name}")
        transport = StringTransport()
        directlyProvides(transport, ISSLTransport)
        keycard = PasswordKeycard(username="alice", password="hunter2", id="x")
        copy = roundTrip(keycard, transport, isClient=False)
        assert isinstance(copy, PasswordKeycard)
        self.assertEqual((copy.id, copy.username, copy.password), ("x", None, None))

    def test_everyKindFieldHasAWriter(self) -> None:
        """
        Each shipped kind says who writes each of its own fields, so that
        neither side echoes what the other wrote.
        """
        common = set(Keycard.wireFields())
        for cls in self.shippedClasses():
            for name, wire in cls.wireFields().items():
                if name not in common:
                    self.assertIn(wire.setBy, ("client", "bouncer"), f"{cls} {name}")

    def shippedClasses(self) -> list[type[Keycard]]:
        import twisted_keycard.hmackeys
        import twisted_keycard.keycard._keycard as module
        import twisted_keycard.passwords
        import twisted_keycard.scram
        import twisted_keycard.srp
        import twisted_keycard.sshkeys
        import twisted_keycard.tokens  # noqa: F401 - each registers its kind

        classes = [
            cls
            for tag, cls in module._registry.items()
            if not tag.startswith("twisted_keycard.tests.")
        ]
        self.assertEqual(len(classes), 6)
        return classes
