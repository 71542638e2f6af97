"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} (and the revocation, keyring,
throttle and lease interfaces) and passes the same contract suite, in the source
tree's C{tests/storecontract.py}.
"""

from twisted_keycard.store._changes import IStoreChanges
from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.store._records import IssuedKeycard, Revocation

__all__ = [
    "IKeycardStore",
    "IKeyringStore",
    "ILeaseStore",
    "IRevocationStore",
    "IStoreChanges",
    "IThrottleStore",
    "IssuedKeycard",
    "MemoryStore",
    "Revocation",
]
