"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} (and the revocation, keyring,
throttle and lease interfaces) and passes the same contract suite, in the source
tree's C{tests/storecontract.py}.
"""

from twisted_keycard.store._interfaces import (
    FAILED,
    STARTED,
    SUCCEEDED,
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    IssuedKeycard,
    IStoreChanges,
    IStoreHealth,
    IThrottleStore,
    Revocation,
    ThrottleEvent,
    ThrottleShare,
)
from twisted_keycard.store._memory import MemoryStore

__all__ = [
    "FAILED",
    "STARTED",
    "SUCCEEDED",
    "IKeycardStore",
    "IKeyringStore",
    "ILeaseStore",
    "IRevocationStore",
    "IStoreChanges",
    "IStoreHealth",
    "IThrottleStore",
    "IssuedKeycard",
    "MemoryStore",
    "Revocation",
    "ThrottleEvent",
    "ThrottleShare",
]
