"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} and passes the same contract suite
(L{twisted_keycard.testing.KeycardStoreContract}).
"""

from ._memory import MemoryStore
from ._record import IssuedKeycard, Revocation
from .interfaces import IKeycardStore, IKeyringStore, IRevocationStore, IThrottleStore

__all__ = [
    "IKeycardStore",
    "IKeyringStore",
    "IRevocationStore",
    "IThrottleStore",
    "IssuedKeycard",
    "MemoryStore",
    "Revocation",
]
