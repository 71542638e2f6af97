"""
Counting failed logins and refusing further attempts past the limits.

A login takes a reservation when it starts, which counts as a failure until
it is settled: as a success (forgotten) or as a failure (kept).  So logins
started together count against the limits at once, and cannot race the
throttle.
"""

from __future__ import annotations

import secrets

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._policy import Throttle
from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard._address import addressGroup
from twisted_keycard.store._interfaces import IThrottleStore

TOO_MANY = "too many failed logins; try again later"


def keys(account: str | None, address: str | None) -> list[str]:
    """
    The keys failures are counted under: the account, and the client's
    address group (an IPv4 address, or an IPv6 /64).
    """
    found = []
    if account is not None:
        found.append(f"account:{account}")
    group = addressGroup(address)
    if group is not None:
        found.append(f"address:{group}")
    return found


@attrs.define(eq=False)
class Reservation:
    """
    One login in progress, counted as a failure until it is settled.

    @ivar id: the reservation's id in the store.
    @ivar settled: whether it was settled (it is settled once).
    """

    id: str
    settled: bool = False


@attrs.define
class Throttler:
    """
    Applies a L{Throttle} with counts kept in an L{IThrottleStore}.
    """

    store: IThrottleStore
    clock: IReactorTime
    limits: Throttle
    log = Logger()

    def _limits(self, account: str | None, address: str | None) -> dict[str, int]:
        limits = {}
        for key in keys(account, address):
            isAccount = key.startswith("account:")
            limits[key] = (
                self.limits.perAccount if isAccount else self.limits.perAddress
            )
        return limits

    async def reserve(
        self, account: str | None, address: str | None
    ) -> Reservation | None:
        """
        Count a login that starts now against the account and the address.

        @return: the reservation to settle when the login ends, or C{None}
            if there is nothing to count it against.
        @raise KeycardDenied: if the account or the address is at its limit
            in the current window, counting the logins in progress.
        """
        limits = self._limits(account, address)
        if not limits:
            return None
        reservation = Reservation(secrets.token_hex(16))
        now = self.clock.seconds()
        taken = await self.store.reserve(
            reservation.id, limits, now - self.limits.window, now
        )
        if not taken:
            self.log.info(
                "throttled a login for {account} from {address}",
                account=printable(account),
                address=printable(address),
            )
            raise KeycardDenied(TOO_MANY)
        return reservation

    async def settle(self, reservation: Reservation, failed: bool) -> None:
        """
        End a login: a failure stays counted, a success is forgotten.  A
        reservation is settled once; later calls do nothing.
        """
        if reservation.settled:
            return
        reservation.settled = True
        await self.store.settle(reservation.id, failed)

    def abandoned(self, reservation: Reservation) -> None:
        """
        Settle as a failure the reservation of an exchange left unanswered,
        without waiting: from code that cannot wait.
        """
        if reservation.settled:
            return
        reservation.settled = True
        self.store.settle(reservation.id, True).addErrback(
            lambda f: self.log.failure("settling an abandoned login failed", f)
        )

    async def failed(self, account: str | None, address: str | None) -> None:
        """
        Count one failure against the account and the address, for a
        refusal that had no reservation.
        """
        wanted = keys(account, address)
        if wanted:
            await self.store.recordFailure(wanted, self.clock.seconds())
