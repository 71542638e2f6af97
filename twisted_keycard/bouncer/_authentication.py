"""
One keycard message through its exchange: refused or throttled, begun
(primed and challenged), continued (answered), checked, and on success
issued and held.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable

import attrs
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from twisted_keycard._isotime import isoTime
from twisted_keycard._printable import printable
from twisted_keycard.bouncer._challengers import Challengers
from twisted_keycard.bouncer._held import HeldKeycards
from twisted_keycard.bouncer._issuer import Issuer
from twisted_keycard.bouncer._metrics import (
    IBouncerMetrics,
    NoMetrics,
    failureReason,
    kindName,
)
from twisted_keycard.bouncer._pending import PendingExchange, PendingExchanges
from twisted_keycard.bouncer._refusal import Refusal
from twisted_keycard.bouncer._throttle import Reservation, Throttler
from twisted_keycard.error import KeycardDenied, KeycardRefused, ProtocolError
from twisted_keycard.keycard._interfaces import IExchange
from twisted_keycard.keycard._keycard import Keycard, KeycardState
from twisted_keycard.tokens._format import TokenClaims


@attrs.define
class _Attempt:
    """
    What one message of an exchange is about, for throttling.

    @ivar reservation: the throttle's reservation while this message owns
        it, to settle when the message is handled.
    """

    account: str | None = None
    reservation: Reservation | None = None


@attrs.define
class Authentication:
    """
    The bouncer's handling of keycard messages, from the parts that keep
    its state.

    @ivar bouncerName: set in every keycard checked.
    @ivar newId: makes keycard ids.
    @ivar metrics: told each login's outcome.
    """

    bouncerName: str
    challengers: Challengers
    pending: PendingExchanges
    throttler: Throttler | None
    issuer: Issuer
    held: HeldKeycards
    newId: Callable[[], str]
    metrics: IBouncerMetrics = attrs.field(factory=NoMetrics)
    log = Logger()

    async def authenticate(
        self, keycard: Keycard, connection: Hashable | None = None
    ) -> Keycard:
        """
        Take one message of an exchange (see L{IBouncer.authenticate}).
        """
        attempt = _Attempt()
        try:
            if not isinstance(keycard, Keycard):
                raise Refusal("not a keycard", "kind")
            if not self.challengers.takes(keycard.keycardType):
                raise Refusal("keycard class not taken here", "kind")
            if keycard.state is not KeycardState.REQUESTING:
                raise Refusal(f"keycard sent in state {keycard.state.name}", "state")
            # Whatever the client claims in the fields the bouncer sets is
            # dropped before anything reads it.
            keycard.avatarId = keycard.token = None
            keycard.duration = keycard.expires = None
            keycard.bouncerName = self.bouncerName
            if keycard.id is None:
                result = await self._begin(keycard, attempt, connection)
            else:
                result = await self._continue(keycard, attempt, connection)
        except KeycardDenied as e:
            # Before UnauthorizedLogin, which a denial also is.
            self.metrics.loginFailed(self._kind(keycard), failureReason(e))
            self._audit("login.denied", keycard, attempt, str(e))
            await self._settle(attempt, None, False)
            raise
        except (Refusal, ProtocolError, UnauthorizedLogin) as e:
            self.metrics.loginFailed(self._kind(keycard), failureReason(e))
            self._audit("login.refused", keycard, attempt, str(e) or type(e).__name__)
            keycard.state = KeycardState.REFUSED
            await self._settle(attempt, getattr(keycard, "address", None), True)
            raise KeycardRefused() from None
        except Exception:
            # A bug or a failing store: logged here, never sent to the peer.
            self.metrics.loginFailed(self._kind(keycard), "error")
            self.log.failure("checking a keycard failed")
            await self._settle(attempt, None, False)
            raise KeycardDenied("the bouncer failed; try again later") from None
        await self._settle(attempt, None, False)
        return result

    async def _settle(
        self, attempt: _Attempt, address: str | None, failed: bool
    ) -> None:
        """
        Count the end of a message's work with the throttle: settle the
        reservation it owns, or count a refusal that had none.  A failing
        store is logged, never sent to the peer.
        """
        throttler = self.throttler
        if throttler is None:
            return
        try:
            if attempt.reservation is not None:
                await throttler.settle(attempt.reservation, failed)
            elif failed:
                await throttler.failed(attempt.account, address)
        except Exception:
            self.log.failure("counting a login with the throttle failed")

    def dropped(self, entry: PendingExchange) -> None:
        """
        An exchange was dropped unanswered (timed out, abandoned by its
        connection, or pushed out by another address group): a failure.
        """
        if self.throttler is not None and entry.reservation is not None:
            self.throttler.abandoned(entry.reservation)

    def abandon(self, connection: Hashable) -> None:
        """
        The connection is gone: drop its exchanges in progress.
        """
        self.pending.abandon(connection)

    async def _begin(
        self, keycard: Keycard, attempt: _Attempt, connection: Hashable | None
    ) -> Keycard:
        attempt.account = keycard.account()
        keycardId = self.newId()
        # The place is taken before anything waits, so that exchanges of a
        # connection count against its limit from their first message.
        entry = self.pending.reserve(
            keycardId,
            keycard.keycardType,
            keycard.address,
            keycard.requesterName,
            connection,
        )
        waiting = False
        try:
            if self.throttler is not None:
                attempt.reservation = await self.throttler.reserve(
                    attempt.account, keycard.address
                )
                self._stillPending(keycardId)
            challenger = self.challengers.challenger(keycard.keycardType)
            exchange: IExchange = await maybeDeferred(challenger.prime, keycard)
            self._stillPending(keycardId)
            keycard.id = keycardId
            if not exchange.challenge(keycard):
                # One message: checked now, still counted as in progress.
                return await self._check(keycard, exchange, attempt)
            entry.exchange = exchange
            entry.account = attempt.account
            entry.reservation, attempt.reservation = attempt.reservation, None
            waiting = True
            return keycard
        finally:
            if not waiting:
                self.pending.take(keycardId)

    def _stillPending(self, keycardId: str) -> None:
        """
        @raise Refusal: if the exchange was dropped while the bouncer waited
            (its connection went, or another address group took its place).
        """
        if keycardId not in self.pending:
            raise Refusal("exchange dropped before its challenge was sent", "busy")

    async def _continue(
        self, keycard: Keycard, attempt: _Attempt, connection: Hashable | None
    ) -> Keycard:
        assert keycard.id is not None
        entry = self.pending.take(keycard.id)
        if entry is None or entry.exchange is None:
            raise Refusal("unknown, used or expired keycard id", "unknown-id")
        attempt.account = entry.account
        attempt.reservation = entry.reservation
        if (entry.keycardType, entry.address, entry.requesterName) != (
            keycard.keycardType,
            keycard.address,
            keycard.requesterName,
        ) or (entry.connection is not None and entry.connection != connection):
            raise Refusal("keycard id presented by another client", "other-client")
        entry.exchange.answer(keycard)
        return await self._check(keycard, entry.exchange, attempt)

    async def _check(
        self, keycard: Keycard, exchange: IExchange, attempt: _Attempt
    ) -> Keycard:
        checker = self.challengers.checkerFor(exchange)
        if checker is None:
            raise Refusal("no checker for these credentials", "checker")
        checked: object = await maybeDeferred(checker.requestAvatarId, exchange)
        avatarId = checked.decode("utf-8") if isinstance(checked, bytes) else checked
        if not isinstance(avatarId, str):
            raise Refusal("checker gave no avatar id", "checker")
        exchange.conclude(keycard)
        parent = getattr(exchange, "parentToken", None)
        if not isinstance(parent, TokenClaims):
            parent = None
        record, token = await self.issuer.issue(keycard, avatarId, parent)
        self.held.hold(record)
        keycard.state = KeycardState.AUTHENTICATED
        keycard.avatarId = avatarId
        keycard.duration = record.duration
        keycard.expires = record.expires
        keycard.token = token
        self.metrics.loginSucceeded(self._kind(keycard))
        self.log.info(
            "keycard {keycardId} issued to {avatarId} via {requesterName}"
            " from {address} ({keycardType} for {account}), expires {expires}",
            event="login.issued",
            keycardId=record.keycardId,
            avatarId=printable(avatarId),
            account=printable(_account(keycard, attempt)),
            keycardType=printable(record.keycardType),
            requesterName=printable(record.requesterName),
            address=printable(record.address),
            expires=isoTime(record.expires),
        )
        return keycard

    def _kind(self, keycard: object) -> str:
        """
        The keycard's type, for the metrics, if this bouncer takes it; else
        C{"other"}, so that a peer cannot make up labels.
        """
        if isinstance(keycard, Keycard) and self.challengers.takes(keycard.keycardType):
            return kindName(keycard.keycardType)
        return "other"

    def _audit(
        self, event: str, keycard: object, attempt: _Attempt, reason: str
    ) -> None:
        """
        Log a refusal or a denial: its stable C{event} name, the reason,
        and the account tried, kind, requester and address, all escaped.
        """
        verb = "refused" if event == "login.refused" else "denied"
        self.log.info(
            "keycard " + verb + ": {reason} ({keycardType} for {account}"
            " via {requesterName} from {address})",
            event=event,
            reason=printable(reason),
            account=printable(_account(keycard, attempt)),
            keycardType=printable(
                getattr(keycard, "keycardType", type(keycard).__name__)
            ),
            requesterName=printable(getattr(keycard, "requesterName", None)),
            address=printable(getattr(keycard, "address", None)),
        )


def _account(keycard: object, attempt: _Attempt) -> str | None:
    """
    The account a refused message tried: the exchange's, or else the one
    the keycard names.
    """
    if attempt.account is not None or not isinstance(keycard, Keycard):
        return attempt.account
    try:
        return keycard.account()
    except Exception:
        return None
