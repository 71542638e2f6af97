"""
Stores of issued keycards.

Every backend provides L{IKeycardStore} (and the revocation, keyring and
throttle interfaces) and passes the same contract suite, in the source
tree's C{tests/storecontract.py}.
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
