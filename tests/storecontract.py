"""
The contract every L{IKeycardStore} backend passes: mix
L{KeycardStoreContract} into a trial test case that defines L{makeStore}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from zope.interface.verify import verifyObject

from twisted_keycard import IKeycardStore, IssuedKeycard

if TYPE_CHECKING:
    from twisted.trial.unittest import SynchronousTestCase

    _Base = SynchronousTestCase
else:
    _Base = object


def record(keycardId: str, **changes: Any) -> IssuedKeycard:
    fields: dict[str, Any] = {
        "keycardId": keycardId,
        "avatarId": "alice",
        "requesterName": "r1",
        "bouncerName": "b1",
        "keycardType": "twisted_keycard.scram-sha-256",
        "address": "192.0.2.1",
        "issued": 100.0,
        "duration": 60.0,
        "expires": 160.0,
    }
    fields.update(changes)
    return IssuedKeycard(**fields)


class KeycardStoreContract(_Base):
    """
    Tests that every keycard store must pass.  Backends whose methods fire
    later (a database) must override L{resultOf} to wait for them.
    """

    def makeStore(self) -> IKeycardStore:
        raise NotImplementedError(f"{type(self).__name__} must define makeStore")

    def resultOf(self, d: Deferred[Any]) -> Any:
        return self.successResultOf(d)

    def setUp(self) -> None:
        self.store = self.makeStore()

    def test_interface(self) -> None:
        self.assertTrue(verifyObject(IKeycardStore, self.store))

    def test_addGet(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(self.resultOf(self.store.get("k1")), record("k1"))
        self.assertIsNone(self.resultOf(self.store.get("k2")))

    def test_addTwice(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.failureResultOf(self.store.add(record("k1", avatarId="bob")), KeyError)
        self.assertEqual(self.resultOf(self.store.get("k1")), record("k1"))

    def test_remove(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(self.resultOf(self.store.remove("k1")), record("k1"))
        self.assertIsNone(self.resultOf(self.store.remove("k1")))
        self.assertIsNone(self.resultOf(self.store.get("k1")))
        self.assertEqual(self.resultOf(self.store.byAvatar("alice")), [])

    def test_renew(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.assertEqual(
            self.resultOf(self.store.renew("k1", 500.0)), record("k1", expires=500.0)
        )
        self.assertEqual(
            self.resultOf(self.store.get("k1")), record("k1", expires=500.0)
        )
        self.assertIsNone(self.resultOf(self.store.renew("k2", 500.0)))

    def test_byAvatar(self) -> None:
        self.resultOf(self.store.add(record("k2")))
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k3", avatarId="bob")))
        self.assertEqual(
            self.resultOf(self.store.byAvatar("alice")), [record("k1"), record("k2")]
        )
        self.assertEqual(self.resultOf(self.store.byAvatar("carol")), [])

    def test_byRequester(self) -> None:
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k2", requesterName="r2")))
        self.resultOf(self.store.add(record("k3", requesterName=None)))
        self.assertEqual(
            self.resultOf(self.store.byRequester("r2")),
            [record("k2", requesterName="r2")],
        )

    def test_expiredBefore(self) -> None:
        self.resultOf(self.store.add(record("k1", expires=150.0)))
        self.resultOf(self.store.add(record("k2", expires=160.0)))
        self.resultOf(self.store.add(record("k3", expires=170.0)))
        self.assertEqual(
            [r.keycardId for r in self.resultOf(self.store.expiredBefore(160.0))],
            ["k1", "k2"],
        )

    def test_count(self) -> None:
        self.assertEqual(self.resultOf(self.store.count()), 0)
        self.resultOf(self.store.add(record("k1")))
        self.resultOf(self.store.add(record("k2")))
        self.assertEqual(self.resultOf(self.store.count()), 2)
