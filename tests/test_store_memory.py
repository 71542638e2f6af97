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
    RevocationStoreContract,
    ThrottleStoreContract,
)


class MemoryStoreTests(
    KeycardStoreContract,
    KeycardStoreLimitsContract,
    RevocationStoreContract,
    KeyringStoreContract,
    ThrottleStoreContract,
    SynchronousTestCase,
):
    def makeStore(self) -> IKeycardStore:
        return MemoryStore()
