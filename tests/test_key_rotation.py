"""
Tests that running bouncers follow a key rotation made elsewhere within the
follow interval: they sign with the new key, and end the old keys' grace by
their own clock.  Two bouncers share one store and a L{Clock}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardRefused, MemoryStore
from twisted_keycard.bouncer import TokenPolicy, Upkeep
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.store.sqlite._store import SQLiteStore
from twisted_keycard.tokens import KeyringHolder, TokenKeycard, verify

from ._passphrase import PassphraseAnswerer, PassphraseChecker, PassphraseKeycard

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

START = 1_800_000_000.0
FOLLOW = 1.0
GRACE = 30.0


class _RotationFollowed(_Base):
    """
    Mixed into a test case whose C{makeStore} gives the shared store.
    """

    def makeStore(self) -> Any:
        raise NotImplementedError()

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = self.makeStore()
        self.one = self.bouncer("one")
        self.two = self.bouncer("two")

    def bouncer(self, name: str) -> Bouncer:
        bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            self.store,
            clock=self.clock,
            name=name,
            tokens=TokenPolicy(),
            upkeep=Upkeep(followInterval=FOLLOW),
        )
        bouncer.startService()
        self.addCleanup(bouncer.stopService)
        self.successResultOf(bouncer.started)
        return bouncer

    def login(self, bouncer: Bouncer) -> str:
        first = PassphraseKeycard(username="alice", address="192.0.2.1")
        challenged = self.successResultOf(bouncer.authenticate(first))
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        token = self.successResultOf(bouncer.authenticate(answered)).token
        assert token is not None
        return token

    def present(self, bouncer: Bouncer, token: str) -> Deferred[Keycard]:
        return bouncer.authenticate(TokenKeycard(presented=token, address="192.0.2.1"))

    def kidOf(self, token: str) -> str:
        keyring = self.successResultOf(self.store.loadKeyring())
        return verify(token, keyring, self.clock.seconds()).kid

    def rotate(self, grace: float = GRACE) -> str:
        """
        Rotate as C{keycard keys rotate} does: from outside both bouncers.
        """
        holder = KeyringHolder(self.store, self.clock)
        fresh = self.successResultOf(Deferred.fromCoroutine(holder.rotate(grace)))
        return fresh.kid

    def test_signWithNewKey(self) -> None:
        """
        Within a follow interval of a rotation, every bouncer signs with the
        new key.
        """
        old = self.kidOf(self.login(self.one))
        new = self.rotate()
        self.assertNotEqual(new, old)
        self.clock.advance(FOLLOW)
        self.assertEqual(self.kidOf(self.login(self.one)), new)
        self.assertEqual(self.kidOf(self.login(self.two)), new)

    def test_graceEndsByClock(self) -> None:
        """
        A token signed with the old key is taken during the grace, by the
        bouncer that issued it too, and refused once the grace ends, with
        no other change in the store.
        """
        token = self.login(self.one)
        self.rotate()
        self.clock.advance(FOLLOW)
        self.successResultOf(self.present(self.one, token))
        self.clock.advance(GRACE - FOLLOW)
        self.successResultOf(self.present(self.two, token))
        self.clock.advance(0.5)
        self.failureResultOf(self.present(self.one, token), KeycardRefused)
        self.failureResultOf(self.present(self.two, token), KeycardRefused)

    def test_rotationByBouncer(self) -> None:
        """
        A bouncer that rotates signs with its new key at once; the other
        follows within the interval.
        """
        assert self.one.keys is not None
        fresh = self.successResultOf(
            Deferred.fromCoroutine(self.one.keys.rotate(GRACE))
        )
        self.assertEqual(self.kidOf(self.login(self.one)), fresh.kid)
        self.clock.advance(FOLLOW)
        self.assertEqual(self.kidOf(self.login(self.two)), fresh.kid)
        self.assertEqual(self.kidOf(self.login(self.one)), fresh.kid)

    def test_noReloadWithoutChange(self) -> None:
        """
        With no rotation, following reads only the keyring's version (once
        the bouncer that made the keyring read it back).
        """
        self.clock.advance(FOLLOW)

        def loadedAt() -> list[float]:
            return [b.keys._lastReload for b in (self.one, self.two) if b.keys]

        before = loadedAt()
        self.clock.advance(FOLLOW * 5)
        self.assertEqual(loadedAt(), before)
        self.rotate()
        self.clock.advance(FOLLOW)
        self.assertEqual(loadedAt(), [self.clock.seconds()] * 2)


class MemoryRotationTests(_RotationFollowed, SynchronousTestCase):
    def makeStore(self) -> MemoryStore:
        return MemoryStore()


class SQLiteRotationTests(_RotationFollowed, SynchronousTestCase):
    def makeStore(self) -> SQLiteStore:
        store = SQLiteStore(self.mktemp(), threaded=False)
        self.addCleanup(store.close)
        return store
