"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} (and the revocation, keyring and
throttle interfaces) and passes the same contract suite, in the source
tree's C{tests/storecontract.py}.
"""

from twisted_keycard.store._interfaces import (
    IKeycardStore,
    IKeyringStore,
    IRevocationStore,
    IThrottleStore,
)
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.store._records import IssuedKeycard, Revocation

__all__ = [
    "IKeycardStore",
    "IKeyringStore",
    "IRevocationStore",
    "IThrottleStore",
    "IssuedKeycard",
    "MemoryStore",
    "Revocation",
]
