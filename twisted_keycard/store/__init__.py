"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} (and the revocation, keyring,
throttle, lease and seat queue interfaces) and passes the same contract
suite, in the source tree's C{tests/storecontract.py}.
"""

from twisted_keycard.store._interfaces import (
    FAILED,
    KEYRING,
    RECONNECTED,
    REVOKED,
    SEAT,
    STARTED,
    SUCCEEDED,
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IssuedKeycard,
    IStoreChanges,
    IStoreHealth,
    IThrottleStore,
    QueueLimits,
    Revocation,
    SeatWaiter,
    ThrottleEvent,
    ThrottleShare,
)
from twisted_keycard.store._memory import MemoryStore

__all__ = [
    "FAILED",
    "KEYRING",
    "RECONNECTED",
    "REVOKED",
    "SEAT",
    "STARTED",
    "SUCCEEDED",
    "IKeycardStore",
    "IKeyringStore",
    "ILeaseStore",
    "IRevocationStore",
    "ISeatQueue",
    "IStoreChanges",
    "IStoreHealth",
    "IThrottleStore",
    "IssuedKeycard",
    "MemoryStore",
    "QueueLimits",
    "Revocation",
    "SeatWaiter",
    "ThrottleEvent",
    "ThrottleShare",
]
