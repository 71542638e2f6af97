"""
L{MemoryStore} passes the store contract.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import IKeycardStore, MemoryStore

from .storecontract import (
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    KeyringStoreContract,
    LeaseStoreContract,
    RevocationStoreContract,
    SeatQueueContract,
    StoreHealthContract,
    ThrottleStoreContract,
)


class MemoryStoreTests(
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    RevocationStoreContract,
    KeyringStoreContract,
    ThrottleStoreContract,
    LeaseStoreContract,
    SeatQueueContract,
    StoreHealthContract,
    SynchronousTestCase,
):
    def makeStore(self) -> IKeycardStore:
        return MemoryStore()
