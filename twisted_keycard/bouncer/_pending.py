"""
The bouncer's table of exchanges in progress: single use, expiring, bound
to the connection they came on, and bounded in number per connection, per
client address group and in all, with a fair share of the places for each
address group.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._policy import ExchangeLimits
from twisted_keycard.bouncer._throttle import Reservation
from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard._address import addressGroup
from twisted_keycard.keycard._interfaces import IExchange

BUSY = "too many logins in progress; try again later"


@attrs.define(eq=False)
class PendingExchange:
    """
    One exchange in progress, with what its answer must match: the keycard's
    class, the client's address, the requester and the connection.

    @ivar exchange: set once the challenge is sent and the bouncer waits for
        the answer; C{None} while the first message is being handled.
    @ivar reservation: the throttle's reservation, held by the table while
        the bouncer waits for the answer.
    """

    keycardType: str
    address: str | None
    requesterName: str | None
    connection: Hashable | None
    deadline: float
    group: str | None = None
    exchange: IExchange | None = None
    account: str | None = None
    reservation: Reservation | None = None


@attrs.define
class _GroupSizes:
    """
    The number of entries of each address group, with the largest group
    found in constant time (sizes change by one at a time).
    """

    _sizes: dict[str | None, int] = attrs.field(factory=dict)
    _bySize: dict[int, dict[str | None, None]] = attrs.field(factory=dict)
    _largest: int = 0

    def __getitem__(self, group: str | None) -> int:
        return self._sizes.get(group, 0)

    def add(self, group: str | None, change: int) -> None:
        old = self._sizes.get(group, 0)
        new = old + change
        if old:
            bucket = self._bySize[old]
            del bucket[group]
            if not bucket:
                del self._bySize[old]
        if new:
            self._sizes[group] = new
            self._bySize.setdefault(new, {})[group] = None
        else:
            del self._sizes[group]
        if new > self._largest:
            self._largest = new
        while self._largest and self._largest not in self._bySize:
            self._largest -= 1

    def largest(self) -> tuple[str | None, int]:
        """
        A group of the largest size, and that size (C{0} when empty).
        """
        if not self._largest:
            return None, 0
        return next(iter(self._bySize[self._largest])), self._largest


@attrs.define
class PendingExchanges:
    """
    Exchanges in progress, by keycard id.

    Entries are kept in the order they were made, and all live equally long,
    so the oldest are at the front: L{purge} drops the expired ones in time
    proportional to their number, with no timer.

    @ivar onDrop: called with each entry dropped before it was taken: timed
        out, abandoned by its connection, or giving its place to another
        address group.
    """

    clock: IReactorTime
    limits: ExchangeLimits
    onDrop: Callable[[PendingExchange], object] = lambda entry: None
    _entries: OrderedDict[str, PendingExchange] = attrs.field(factory=OrderedDict)
    _byGroup: dict[str | None, OrderedDict[str, None]] = attrs.field(factory=dict)
    _byConnection: dict[Hashable, dict[str, None]] = attrs.field(factory=dict)
    _sizes: _GroupSizes = attrs.field(factory=_GroupSizes)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, keycardId: object) -> bool:
        return keycardId in self._entries

    def onConnection(self, connection: Hashable) -> int:
        """
        The number of exchanges in progress on C{connection}.
        """
        return len(self._byConnection.get(connection, ()))

    def reserve(
        self,
        keycardId: str,
        keycardType: str,
        address: str | None,
        requesterName: str | None,
        connection: Hashable | None = None,
    ) -> PendingExchange:
        """
        Take a place for a new exchange, when the table is full the place of
        the oldest exchange of the largest address group, if that group is
        larger than this client's.

        @raise KeycardDenied: if there are too many exchanges in progress on
            this connection, from this address group, or in all.
        """
        self.purge()
        limits = self.limits
        group = addressGroup(address)
        if (
            connection is not None
            and self.onConnection(connection) >= limits.maxPendingPerConnection
        ) or self._sizes[group] >= limits.maxPendingPerAddress:
            raise KeycardDenied(BUSY)
        if len(self._entries) >= limits.maxPending:
            largest, size = self._sizes.largest()
            if self._sizes[group] >= size:
                raise KeycardDenied(BUSY)
            oldest = next(iter(self._byGroup[largest]))
            self._drop(oldest)
        entry = PendingExchange(
            keycardType,
            address,
            requesterName,
            connection,
            self.clock.seconds() + limits.timeout,
            group,
        )
        self._entries[keycardId] = entry
        self._byGroup.setdefault(group, OrderedDict())[keycardId] = None
        self._sizes.add(group, 1)
        if connection is not None:
            self._byConnection.setdefault(connection, {})[keycardId] = None
        return entry

    def take(self, keycardId: str) -> PendingExchange | None:
        """
        Remove and return the exchange for this id, if it is there and has
        not expired.  An exchange can be taken only once.
        """
        self.purge()
        entry = self._entries.pop(keycardId, None)
        if entry is not None:
            self._release(keycardId, entry)
        return entry

    def abandon(self, connection: Hashable) -> int:
        """
        Drop the exchanges in progress on a connection that is gone.

        @return: the number dropped.
        """
        ids = list(self._byConnection.get(connection, ()))
        for keycardId in ids:
            self._drop(keycardId)
        return len(ids)

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
            self._drop(keycardId)

    def _drop(self, keycardId: str) -> None:
        entry = self._entries.pop(keycardId)
        self._release(keycardId, entry)
        self.onDrop(entry)

    def _release(self, keycardId: str, entry: PendingExchange) -> None:
        group = self._byGroup[entry.group]
        del group[keycardId]
        if not group:
            del self._byGroup[entry.group]
        self._sizes.add(entry.group, -1)
        if entry.connection is not None:
            ids = self._byConnection[entry.connection]
            del ids[keycardId]
            if not ids:
                del self._byConnection[entry.connection]
