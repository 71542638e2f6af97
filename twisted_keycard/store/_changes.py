"""
Push from a shared store: the optional interface of a store that tells its
processes at once when another one changes it, so that they need not wait
for their next poll.
"""

from __future__ import annotations

from collections.abc import Callable

from zope.interface import Interface

#: What a change notice names.
REVOKED = "revoked"
KEYRING = "keyring"
#: The store (re)connected: changes may have been missed meanwhile.
RECONNECTED = "reconnected"


class IStoreChanges(Interface):
    """
    A store that publishes its changes (revocations, keyring saves) to
    every process using it.  Notices carry no data: a process reads what
    changed as it does when it polls (L{IRevocationStore.revokedSince},
    L{IKeyringStore.keyringVersion}), so a notice lost or repeated changes
    nothing but the delay.
    """

    def subscribe(callback: Callable[[str], object]) -> Callable[[], None]:
        """
        Call C{callback} with L{REVOKED} or L{KEYRING} when any process
        changes those, and with L{RECONNECTED} once notices flow again
        after the store was unreachable (notices were missed meanwhile).

        @return: a function that cancels the subscription.
        """
