"""
The pluggable roles of twisted-keycard, as zope interfaces, in one place.
Each is defined beside its role: L{twisted_keycard.keycard} (one kind's
exchange), L{twisted_keycard.bouncer} (the bouncer and its requesters) and
L{twisted_keycard.store}; L{IMockSecretTaker}, for checkers whose mock
challenges must be the same on every bouncer.
"""

from twisted_keycard._mocks import IMockSecretTaker
from twisted_keycard.bouncer import IBouncer, IBouncerMetrics, IRequester
from twisted_keycard.keycard import (
    IAnswerer,
    IChallenger,
    IChannelBindingAnswerer,
    IExchange,
)
from twisted_keycard.store import (
    IKeycardStore,
    IKeyringStore,
    ILeaseStore,
    IRevocationStore,
    ISeatQueue,
    IStoreHealth,
    IThrottleStore,
)

__all__ = [
    "IAnswerer",
    "IBouncer",
    "IBouncerMetrics",
    "IChallenger",
    "IChannelBindingAnswerer",
    "IExchange",
    "IKeycardStore",
    "IKeyringStore",
    "ILeaseStore",
    "IMockSecretTaker",
    "IRequester",
    "IRevocationStore",
    "ISeatQueue",
    "IStoreHealth",
    "IThrottleStore",
]
