"""
The bouncer's table of exchanges waiting for an answer: single use,
expiring, and bounded in number, in total and per client address.
"""

from __future__ import annotations

from collections import OrderedDict

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard._interfaces import IExchange

BUSY = "too many logins in progress; try again later"


@attrs.define
class PendingExchange:
    """
    One exchange waiting for the client's answer, with what the answer must
    match: the keycard's class, the client's address and the requester.
    """

    keycardType: str
    address: str | None
    requesterName: str | None
    deadline: float
    exchange: IExchange | None = None
    account: str | None = None


@attrs.define
class PendingExchanges:
    """
    Exchanges in progress, by keycard id.

    Entries are kept in the order they were made, and all live equally long,
    so the oldest are at the front: L{purge} drops the expired ones in time
    proportional to their number, with no timer.
    """

    clock: IReactorTime
    timeout: float
    maxTotal: int
    maxPerAddress: int
    _entries: OrderedDict[str, PendingExchange] = attrs.field(factory=OrderedDict)
    _perAddress: dict[str | None, int] = attrs.field(factory=dict)

    def __len__(self) -> int:
        return len(self._entries)

    def reserve(
        self,
        keycardId: str,
        keycardType: str,
        address: str | None,
        requesterName: str | None,
    ) -> PendingExchange:
        """
        Take a place for a new exchange.

        @raise KeycardDenied: if there are too many exchanges in progress in
            all or from this address.
        """
        self.purge()
        held = self._perAddress.get(address, 0)
        if len(self._entries) >= self.maxTotal or held >= self.maxPerAddress:
            raise KeycardDenied(BUSY)
        entry = PendingExchange(
            keycardType, address, requesterName, self.clock.seconds() + self.timeout
        )
        self._entries[keycardId] = entry
        self._perAddress[address] = held + 1
        return entry

    def take(self, keycardId: str) -> PendingExchange | None:
        """
        Remove and return the exchange for this id, if it is there and has
        not expired.  An exchange can be taken only once.
        """
        self.purge()
        entry = self._entries.pop(keycardId, None)
        if entry is not None:
            self._release(entry)
        return entry

    def purge(self) -> None:
        """
        Drop the exchanges whose time is up.
        """
        now = self.clock.seconds()
        entries = self._entries
        while entries:
            keycardId, entry = next(iter(entries.items()))
            if entry.deadline > now:
                break
            del entries[keycardId]
            self._release(entry)

    def _release(self, entry: PendingExchange) -> None:
        left = self._perAddress[entry.address] - 1
        if left:
            self._perAddress[entry.address] = left
        else:
            del self._perAddress[entry.address]
