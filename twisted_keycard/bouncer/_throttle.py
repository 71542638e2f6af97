"""
Counting failed logins and refusing further attempts past the limits.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._policy import Throttle
from twisted_keycard.error import KeycardDenied
from twisted_keycard.store._interfaces import IThrottleStore

TOO_MANY = "too many failed logins; try again later"


def keys(account: str | None, address: str | None) -> list[str]:
    found = []
    if account is not None:
        found.append(f"account:{account}")
    if address is not None:
        found.append(f"address:{address}")
    return found


@attrs.define
class Throttler:
    """
    Applies a L{Throttle} with counts kept in an L{IThrottleStore}.
    """

    store: IThrottleStore
    clock: IReactorTime
    limits: Throttle
    log = Logger()

    async def check(self, account: str | None, address: str | None) -> None:
        """
        @raise KeycardDenied: if the account or the address is over its
            limit in the current window.
        """
        wanted = keys(account, address)
        if not wanted:
            return
        since = self.clock.seconds() - self.limits.window
        counts = await self.store.failuresSince(wanted, since)
        over = (
            account is not None
            and counts[f"account:{account}"] >= self.limits.perAccount
        ) or (
            address is not None
            and counts[f"address:{address}"] >= self.limits.perAddress
        )
        if over:
            self.log.info(
                "throttled a login for {account} from {address}",
                account=printable(account),
                address=printable(address),
            )
            raise KeycardDenied(TOO_MANY)

    async def failed(self, account: str | None, address: str | None) -> None:
        """
        Count one failure against the account and the address.
        """
        wanted = keys(account, address)
        if wanted:
            await self.store.recordFailure(wanted, self.clock.seconds())
