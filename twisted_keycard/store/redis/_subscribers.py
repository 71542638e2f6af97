"""
The subscribers to a Redis store's changes (L{IStoreChanges}): told of the
revocations and keyring saves other processes publish, and of reconnections.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.logger import Logger

from twisted_keycard.store._changes import KEYRING, RECONNECTED, REVOKED


class Subscribers:
    """
    The callbacks of L{IStoreChanges.subscribe}, called with each change
    the store's connection hears.
    """

    def __init__(self, log: Logger) -> None:
        """
        @param log: the store's, where a failing subscriber is logged.
        """
        self.log = log
        self._callbacks: list[Callable[[str], object]] = []

    def subscribe(self, callback: Callable[[str], object]) -> Callable[[], None]:
        """
        Call C{callback} with each change; see L{IStoreChanges.subscribe}.

        @return: a function that stops the calls.
        """
        self._callbacks.append(callback)

        def cancel() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return cancel

    def changed(self, kind: str) -> None:
        """
        Tell every subscriber of a change the connection heard: C{kind} is
        C{"revoked"}, C{"keyring"}, or anything else for a reconnection.
        """
        notice = {"revoked": REVOKED, "keyring": KEYRING}.get(kind, RECONNECTED)
        for callback in list(self._callbacks):
            try:
                callback(notice)
            except Exception:
                self.log.failure("a store change subscriber failed")
