"""
The checkers a bouncer hands credentials to, and the challengers among them
that start the exchange of each keycard class.
"""

from __future__ import annotations

from collections.abc import Iterable

from twisted.cred.checkers import ICredentialsChecker

from twisted_keycard.keycard._interfaces import IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard


class Challengers:
    """
    Checkers by the credentials they check, challengers by keycard type.

    @ivar keycardClasses: the keycard classes taken, in the checkers' order.
    """

    def __init__(self, checkers: Iterable[ICredentialsChecker]) -> None:
        """
        @raise ValueError: if two challengers claim one keycard class.
        """
        self.checkers = list(checkers)
        self._byType: dict[str, IChallenger] = {}
        classes: list[type[Keycard]] = []
        for checker in self.checkers:
            if not IChallenger.providedBy(checker):
                continue
            for cls in checker.keycardClasses:
                if cls.keycardType in self._byType:
                    raise ValueError(f"two challengers for {cls.keycardType}")
                self._byType[cls.keycardType] = checker
                classes.append(cls)
        self.keycardClasses = tuple(classes)

    def takes(self, keycardType: str) -> bool:
        return keycardType in self._byType

    def challenger(self, keycardType: str) -> IChallenger:
        """
        @raise KeyError: for a keycard type not taken.
        """
        return self._byType[keycardType]

    def checkerFor(self, exchange: IExchange) -> ICredentialsChecker | None:
        """
        The first checker for credentials such as C{exchange}, if any.
        """
        for checker in self.checkers:
            for iface in checker.credentialInterfaces:
                if iface.providedBy(exchange):
                    return checker
        return None
