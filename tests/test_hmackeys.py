"""
Tests for L{twisted_keycard.hmackeys}: HMAC pre-shared key keycards.
"""

from __future__ import annotations

import os
import secrets
from base64 import b64encode
from pathlib import Path

from twisted.cred import strcred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.hmackeys import (
    HMACAnswerer,
    HMACExchange,
    HMACKeycard,
    HMACKeys,
    parseKeys,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from ._threads import inline

KEY = secrets.token_bytes(32)


class HMACExchangeTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keys = HMACKeys({"sensor-1": KEY})

    def exchange(self, answerer: HMACAnswerer) -> tuple[HMACKeycard, HMACExchange]:
        keycard = answerer.start()
        assert isinstance(keycard, HMACKeycard)
        keycard.id, keycard.requesterName = "kid", "r1"
        exchange = self.successResultOf(self.keys.prime(keycard))
        assert isinstance(exchange, HMACExchange)
        exchange.challenge(keycard)
        return keycard, exchange

    def test_interfaces(self) -> None:
        self.assertTrue(verifyObject(IChallenger, self.keys))
        self.assertTrue(verifyObject(IAnswerer, HMACAnswerer("a", KEY)))

    def test_success(self) -> None:
        answerer = HMACAnswerer("sensor-1", KEY)
        keycard, exchange = self.exchange(answerer)
        exchange.answer(answerer.answer(keycard))
        self.assertEqual(
            self.successResultOf(self.keys.requestAvatarId(exchange)), "sensor-1"
        )

    def test_wrongKey(self) -> None:
        answerer = HMACAnswerer("sensor-1", secrets.token_bytes(32))
        keycard, exchange = self.exchange(answerer)
        exchange.answer(answerer.answer(keycard))
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)

    def test_unknownSameShape(self) -> None:
        known, _ = self.exchange(HMACAnswerer("sensor-1", KEY))
        unknown, exchange = self.exchange(HMACAnswerer("nobody", KEY))
        assert known.nonce and unknown.nonce
        self.assertEqual(len(known.nonce), len(unknown.nonce))
        exchange.answer(HMACAnswerer("nobody", KEY).answer(unknown))
        failure = self.failureResultOf(
            self.keys.requestAvatarId(exchange), KeycardRefused
        )
        self.assertEqual(failure.getErrorMessage(), KeycardRefused.MESSAGE)

    def test_tamperedNonce(self) -> None:
        """
        A client that answers another nonce than the bouncer's is refused:
        the bouncer checks against the nonce it kept.
        """
        answerer = HMACAnswerer("sensor-1", KEY)
        keycard, exchange = self.exchange(answerer)
        keycard.nonce = "AAAA" + (keycard.nonce or "")[4:]
        exchange.answer(answerer.answer(keycard))
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)

    def test_nonASCIIMac(self) -> None:
        """
        A MAC that is not ASCII text is refused like a wrong one, not an
        error of the bouncer.
        """
        answerer = HMACAnswerer("sensor-1", KEY)
        keycard, exchange = self.exchange(answerer)
        keycard.mac = "\u00e9" * 44
        exchange.answer(keycard)
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)

    def test_replay(self) -> None:
        """
        A MAC made for one exchange does not pass another.
        """
        answerer = HMACAnswerer("sensor-1", KEY)
        first, firstExchange = self.exchange(answerer)
        answerer.answer(first)
        second, exchange = self.exchange(answerer)
        second.mac = first.mac
        exchange.answer(second)
        self.failureResultOf(self.keys.requestAvatarId(exchange), KeycardRefused)
        firstExchange.answer(first)
        self.successResultOf(self.keys.requestAvatarId(firstExchange))

    def test_keyFile(self) -> None:
        encoded = b64encode(KEY).decode()
        self.assertEqual(
            parseKeys(f"# sensors\nsensor-1:{encoded}\n\n").strict(), {"sensor-1": KEY}
        )
        for bad in [
            "sensor-1",
            f":{encoded}",
            "s:not base64!",
            f"s:{b64encode(b'short').decode()}",
        ]:
            error = self.assertRaises(
                ValueError, lambda t: parseKeys(t).strict(), f"ok:{encoded}\n{bad}\n"
            )
            self.assertIn("line 2", str(error))
            self.assertNotIn(encoded, str(error))

    def test_strcred(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"sensor-1:{b64encode(KEY).decode()}\n")
        checker = strcred.makeChecker(f"hmac:{path}")
        self.assertIsInstance(checker, HMACKeys)

    def test_keyFileReplacedSameSizeAndTime(self) -> None:
        """
        A key replaced by a file of the same size and modification time is
        refused from then on (issue 12, item 14: it stayed valid).
        """
        path = Path(self.mktemp())
        path.write_text(f"sensor-1:{b64encode(KEY).decode()}\n")
        keys = HMACKeys.fromFile(path, clock=Clock(), runInThread=inline)
        before = os.stat(path)
        newer = path.with_name("newer")
        newer.write_text(f"sensor-1:{b64encode(secrets.token_bytes(32)).decode()}\n")
        os.utime(newer, ns=(before.st_atime_ns, before.st_mtime_ns))
        os.replace(newer, path)
        answerer = HMACAnswerer("sensor-1", KEY)
        keycard = answerer.start()
        keycard.id = "kid"
        exchange = self.successResultOf(keys.prime(keycard))
        exchange.challenge(keycard)
        exchange.answer(answerer.answer(keycard))
        self.failureResultOf(keys.requestAvatarId(exchange), KeycardRefused)

    def test_keyNotInRepr(self) -> None:
        self.assertNotIn(repr(KEY), repr(HMACAnswerer("a", KEY)))


class HMACOverPBTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.server = KeycardTestServer.build(
            [HMACKeys({"sensor-1": KEY})], AvatarRealm()
        )

    def test_login(self) -> None:
        connection = self.server.connect()
        login = self.successResultOf(
            connection.loginWithKeycard([HMACAnswerer("sensor-1", KEY)])
        )
        self.assertIs(login.keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(login.keycard.avatarId, "sensor-1")

    def test_mismatchDropsConnection(self) -> None:
        connection = self.server.connect()
        d = connection.login([HMACAnswerer("sensor-1", secrets.token_bytes(32))])
        self.failureResultOf(d, KeycardRefused)
        connection.flush()
        self.assertFalse(connection.connected)
