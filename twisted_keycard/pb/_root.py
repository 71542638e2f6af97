"""
The server side of a PB login with keycards: a PB root that forwards each
client's keycards to a bouncer and logs it in through the application's
portal; the lifecycle of each client's connection to it; the root object
each client sees; renewal of its clients' keycards; a root over an
application's own portal; and PB's stock login on the same port, for a
migration.

The lifecycle of one client's connection to a C{KeycardRoot} is an Automat
machine (L{ClientConnection}): what the connection holds, and what to do
with a keycard or an avatar that arrives after the client has gone or been
told to go.

States:

  - B{connected}: no keycard held (one may be on its way: issued by the
    bouncer, its avatar being produced by the realm).
  - B{logged in}: the client holds at least one keycard.
  - B{expiring}: the bouncer expired a keycard the client holds (or one
    whose avatar is on its way); the connection is being closed.
  - B{gone}: the connection is lost; the bouncer drops its exchanges in
    progress, every avatar is logged out and every keycard removed from the
    bouncer, and whatever arrives late is undone at once.

Transitions (inputs are the methods of L{ConnectionInputs}):

  - connected, logged in loop on C{keycardIssued} and C{avatarFailed};
  - connected, logged in --avatarReady--> logged in;
  - connected, logged in --expire--> expiring, closing the transport;
  - connected, logged in, expiring --connectionLost--> gone;
  - expiring and gone loop on the other inputs: C{keycardIssued} answers
    C{False}, and an avatar that arrives is logged out and its keycard
    removed at once.

A login takes two inputs, once its keycard is issued: C{keycardIssued},
then C{avatarReady} or C{avatarFailed}.  The rounds of an exchange before
it take none; the root reads L{ConnectionCore.closing} to refuse them on a
connection that is going.
"""

from __future__ import annotations

import contextlib
import hmac
import math
import secrets
from collections.abc import Callable, Collection, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from hashlib import md5
from inspect import iscoroutine
from typing import Any, Protocol, TypeVar

import attrs
from automat import TypeMachineBuilder
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import (
    Anonymous,
    IUsernameHashedPassword,
    IUsernamePassword,
)
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime, ISSLTransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.spread import pb
from twisted.spread.flavors import IPBRoot, NoSuchMethod
from twisted.spread.interfaces import IJellyable
from zope.interface import implementer

from twisted_keycard._files import runNow
from twisted_keycard._printable import printable
from twisted_keycard.bouncer import (
    Bouncer,
    IBouncer,
    IBouncerMetrics,
    IRequester,
    NoMetrics,
    Reservation,
    SeatQueue,
    Throttler,
    failureReason,
    waitForSeat,
)
from twisted_keycard.error import (
    InsecureTransport,
    KeycardDenied,
    KeycardRefused,
    MalformedMessage,
    SeatQueued,
)
from twisted_keycard.keycard import (
    ADDRESS_LENGTH,
    NAME_LENGTH,
    IChallenger,
    Keycard,
    KeycardState,
    Step,
    channelBindings,
    normalizeAddress,
)
from twisted_keycard.pb._broker import REFUSED, KeycardBroker, passedOn
from twisted_keycard.scram import CheckPasswordSCRAM
from twisted_keycard.store import IKeycardStore, MemoryStore
from twisted_keycard.tokens import QueueTicket

#: What a realm gives to log an avatar out.
Logout = Callable[[], object]


class ConnectionInputs(Protocol):
    """
    The events in the life of one client connection.
    """

    def keycardIssued(self, keycardId: str) -> bool:
        """
        The bouncer issued keycard C{keycardId}; the realm is asked next.

        @return: C{False} if the connection is going: the keycard is removed
            from the bouncer, and the login is over.
        """

    def avatarReady(self, keycardId: str, logout: Logout) -> bool:
        """
        The realm produced the avatar for keycard C{keycardId}.

        @return: C{True} if the client now holds the keycard; C{False} if
            the connection is going, in which case the avatar was logged out
            and the keycard removed.
        """

    def avatarFailed(self, keycardId: str) -> None:
        """
        The realm failed to produce the avatar for keycard C{keycardId}: the
        keycard is removed from the bouncer.
        """

    def expire(self, keycardId: str) -> None:
        """
        The bouncer expired keycard C{keycardId}, held or on its way: drop
        the client.
        """

    def connectionLost(self) -> None:
        """
        The connection is gone: log out and remove what it held.
        """


@dataclass
class ConnectionCore:
    """
    What the machine of one connection works with.

    @ivar holders: the root's map from keycard ids to the connections that
        hold them, shared by every connection of one root; a keycard is in
        it from its issue until its removal or expiry.
    @ivar closing: whether the connection is going (expiring or gone): no
        new exchange is started on it.
    @ivar producing: the keycards whose avatars the realm is producing.
    @ivar held: the logouts of the avatars the client holds, by keycard id.
    @ivar expired: the keycards the bouncer expired, not to be removed again.
    @ivar exchanges: the exchanges waiting for the client's answer, by the
        number the client was given: the keycard kept on this side, the
        client's mind and the flags of its first message.
    @ivar nextExchange: the number the last exchange was given.
    """

    broker: pb.Broker
    bouncer: IBouncer
    holders: dict[str, ConnectionInputs]
    log: Logger
    closing: bool = False
    producing: set[str] = field(default_factory=set)
    held: dict[str, Logout] = field(default_factory=dict)
    expired: set[str] = field(default_factory=set)
    exchanges: dict[int, tuple[Keycard, object, int]] = field(default_factory=dict)
    nextExchange: int = 0

    def keycardCount(self) -> int:
        """
        The keycards this connection holds or is being given.
        """
        return len(self.held) + len(self.producing)

    def loggedIn(self) -> None:
        """
        The client holds a keycard: the broker stops treating it as a
        stranger (see L{KeycardBroker.loggedIn}).
        """
        if isinstance(self.broker, KeycardBroker):
            self.broker.loggedIn()

    def drop(self, keycardId: str) -> None:
        """
        Close the connection, because the bouncer expired C{keycardId}.
        """
        transport = self.broker.transport
        if transport is None:
            return
        peer = transport.getPeer()
        self.log.info(
            "dropping {peer}: keycard {keycardId} expired",
            peer=printable(getattr(peer, "host", peer)),
            keycardId=printable(keycardId),
        )
        transport.loseConnection()

    def release(self, keycardId: str, logout: Logout | None) -> None:
        """
        Log an avatar out, if there is one, and remove its keycard from the
        bouncer unless the bouncer expired it.
        """
        self.producing.discard(keycardId)
        self.holders.pop(keycardId, None)
        if logout is not None:
            try:
                logout()
            except Exception:
                self.log.failure(
                    "logout of keycard {keycardId} failed",
                    keycardId=printable(keycardId),
                )
        if keycardId in self.expired:
            return
        self.bouncer.removeKeycardId(keycardId).addErrback(
            self._removeFailed, keycardId
        )

    def _removeFailed(self, failure: Failure, keycardId: str) -> None:
        # The bouncer expires the keycard by itself in the end: a warning.
        self.log.warn(
            "could not tell the bouncer that the client of keycard {keycardId}"
            " left: {error}",
            keycardId=printable(keycardId),
            error=printable(failure.getErrorMessage()),
        )


def _makeMachine() -> Callable[[ConnectionCore], ConnectionInputs]:
    machine = TypeMachineBuilder(ConnectionInputs, ConnectionCore)
    Connected = machine.state("Connected")
    LoggedIn = machine.state("LoggedIn")
    Expiring = machine.state("Expiring")
    Gone = machine.state("Gone")

    @Connected.upon(ConnectionInputs.keycardIssued).loop()
    @LoggedIn.upon(ConnectionInputs.keycardIssued).loop()
    def issued(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> bool:
        s.producing.add(keycardId)
        s.holders[keycardId] = c
        return True

    @Connected.upon(ConnectionInputs.avatarReady).to(LoggedIn)
    @LoggedIn.upon(ConnectionInputs.avatarReady).loop()
    def ready(
        c: ConnectionInputs, s: ConnectionCore, keycardId: str, logout: Logout
    ) -> bool:
        s.producing.discard(keycardId)
        s.held[keycardId] = logout
        s.loggedIn()
        return True

    @Connected.upon(ConnectionInputs.avatarFailed).loop()
    @LoggedIn.upon(ConnectionInputs.avatarFailed).loop()
    def failed(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.release(keycardId, None)

    @Connected.upon(ConnectionInputs.expire).to(Expiring)
    @LoggedIn.upon(ConnectionInputs.expire).to(Expiring)
    def expire(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.closing = True
        s.expired.add(keycardId)
        s.holders.pop(keycardId, None)
        s.drop(keycardId)

    @Connected.upon(ConnectionInputs.connectionLost).to(Gone)
    @LoggedIn.upon(ConnectionInputs.connectionLost).to(Gone)
    @Expiring.upon(ConnectionInputs.connectionLost).to(Gone)
    def lost(c: ConnectionInputs, s: ConnectionCore) -> None:
        s.closing = True
        s.exchanges.clear()
        s.bouncer.connectionLost(s.broker)
        held, s.held = s.held, {}
        for keycardId, logout in held.items():
            s.release(keycardId, logout)

    # Going or gone: what arrives late is undone.

    @Expiring.upon(ConnectionInputs.keycardIssued).loop()
    @Gone.upon(ConnectionInputs.keycardIssued).loop()
    def issuedTooLate(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> bool:
        s.release(keycardId, None)
        return False

    @Expiring.upon(ConnectionInputs.avatarReady).loop()
    @Gone.upon(ConnectionInputs.avatarReady).loop()
    def readyTooLate(
        c: ConnectionInputs, s: ConnectionCore, keycardId: str, logout: Logout
    ) -> bool:
        s.release(keycardId, logout)
        return False

    @Expiring.upon(ConnectionInputs.avatarFailed).loop()
    @Gone.upon(ConnectionInputs.avatarFailed).loop()
    def failedTooLate(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.release(keycardId, None)

    @Expiring.upon(ConnectionInputs.expire).loop()
    @Gone.upon(ConnectionInputs.expire).loop()
    def expireAgain(c: ConnectionInputs, s: ConnectionCore, keycardId: str) -> None:
        s.expired.add(keycardId)
        s.holders.pop(keycardId, None)

    Gone.upon(ConnectionInputs.connectionLost).loop().returns(None)

    return machine.build()


#: Builds the machine of one connection around its L{ConnectionCore}.
ConnectionMachine = _makeMachine()


@attrs.frozen
class ClientConnection:
    """
    One client connection of a C{KeycardRoot}: its machine, to feed events
    to, and its core, to read what it holds.
    """

    core: ConnectionCore
    inputs: ConnectionInputs

    @classmethod
    def new(
        cls,
        broker: pb.Broker,
        bouncer: IBouncer,
        holders: dict[str, ConnectionInputs],
        log: Logger,
    ) -> ClientConnection:
        """
        The lifecycle of a new connection, in state B{connected}.

        @param holders: see L{ConnectionCore.holders}.
        @param log: where its decisions are logged.
        """
        core = ConnectionCore(broker, bouncer, holders, log)
        return cls(core, ConnectionMachine(core))


def peerAddress(broker: pb.Broker) -> str | None:
    """
    The client's address as this side of the connection sees it: the host
    of an IP peer (normalized: an IPv4 peer of a dual-stack listener is its
    IPv4 address), else a bounded string form of the peer address.
    """
    transport = broker.transport
    if transport is None:
        return None
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return normalizeAddress(host)[:ADDRESS_LENGTH]
    return str(peer)[:ADDRESS_LENGTH]


_R = TypeVar("_R", bound="KeycardRoot")


def portalCheckers(
    portal: Portal, *, key: bytes | None = None
) -> list[ICredentialsChecker]:
    """
    The checkers of C{portal} a bouncer can use: those that are keycard
    challengers already, as they are, and the one for
    L{IUsernamePassword} behind a L{CheckPasswordSCRAM}.

    @param key: the server key the SCRAM salts are made from (see
        L{CheckPasswordSCRAM}).
    @raise ValueError: if the portal has none of these.
    """
    found: list[ICredentialsChecker] = []
    for checker in portal.checkers.values():
        if IChallenger.providedBy(checker) and checker not in found:
            found.append(checker)
    passwords = portal.checkers.get(IUsernamePassword)
    if passwords is not None and not IChallenger.providedBy(passwords):
        found.append(CheckPasswordSCRAM(passwords, key=key))
    if not found:
        raise ValueError(
            "the portal has no checker of keycards nor of IUsernamePassword"
        )
    return found


def rootFromPortal(
    rootClass: type[_R],
    portal: Portal,
    *,
    clock: IReactorTime,
    key: bytes | None = None,
    store: IKeycardStore | None = None,
    requesterName: str = "requester",
    bouncerOptions: Mapping[str, Any] | None = None,
    **options: Any,
) -> _R:
    """
    A root over an application's portal, with a bouncer of its own built
    from the portal's checkers (see L{portalCheckers}).

    @param clock: the bouncer's and the root's clock.
    @param key: the server key the SCRAM salts are made from; random by
        default, or the mock secret of a store that keeps one when it is
        handed to the checkers.
    @param store: the bouncer's store; a L{MemoryStore} by default.
    @param bouncerOptions: further keyword arguments for L{Bouncer}
        (C{duration}, C{maxLifetime}, C{throttle}, ...).
    @param options: further keyword arguments for the root
        (C{renewEvery}, C{stockLogin}, ...).
    @raise ValueError: if the portal has no checker a bouncer can use.
    """
    bouncer = Bouncer(
        portalCheckers(portal, key=key),
        store if store is not None else MemoryStore(),
        clock=clock,
        **dict(bouncerOptions or {}),
    )
    return rootClass(bouncer, portal, requesterName, clock=clock, **options)


#: What a stock PB client is told when the root takes keycards only.
KEYCARDS_ONLY = "this server takes keycards only"

#: What a client of keycard protocol 1 (C{login(keycard, mind)}) is told.
PROTOCOL_1 = (
    "this server speaks keycard protocol 2: upgrade the client to"
    " twisted-keycard 0.2 or later"
)

#: The methods of PB's own root object.
STOCK_METHODS = frozenset(["login", "loginAnonymous"])

#: The first element of each answer of protocol 2 (see L{KeycardRoot.login}):
#: PB sends these words in two bytes each.
CHALLENGE = b"challenge"
LOGGED_IN = b"logged_in"
KINDS = b"kinds"
#: The answer to a login that asked to wait and found its seat pool full
#: (C{(QUEUED, ticket, place, waiting)}), and to C{seat} once the client's
#: turn has come (C{(TURN, place, waiting)}).
QUEUED = b"queued"
TURN = b"turn"

#: Flags a client sets in its first message, for what it wants back on
#: success beyond the perspective and the kind's proof.
DETAILS = 1  # the keycard's id, avatar id and expiry
TOKEN = 2  # and the token, if the bouncer issues them
WAIT = 4  # to be queued rather than refused when the seat pool is full
#: The first value after the mind is the client's queue ticket (bytes), from
#: an earlier login that was queued: its place, kept within the grace.
TICKET = 8

#: The name of the method a waiting client's listener takes its place with:
#: C{place(place, waiting)}, sent when either changes.
PLACE = "place"

#: Exchanges one connection may have waiting for its answer at once; a new
#: one pushes out the oldest (which its bouncer has likely expired).
MAX_EXCHANGES_PER_CONNECTION = 8


def isStockLogin(message: str, args: object, kw: object) -> bool:
    """
    Whether a call on the root object is PB's own login rather than a
    keycard's: C{loginAnonymous(mind)}, or C{login(username)} with a name
    and nothing else.
    """
    if message == "loginAnonymous":
        return True
    return (
        message == "login"
        and isinstance(args, tuple | list)
        and len(args) == 1
        and isinstance(args[0], bytes | str)
        and not kw
    )


def _refused(failure: Failure) -> Failure:
    """
    A wrong password as a L{KeycardRefused}: an L{UnauthorizedLogin} that
    PB sends without logging a traceback.
    """
    failure.trap(UnauthorizedLogin)
    if failure.check(KeycardRefused, KeycardDenied):
        return failure
    return Failure(KeycardRefused())


def _stockAvatar(broker: pb.Broker, login: Any) -> Any:
    """
    What a stock login answers once the portal gives an avatar, as PB's own
    does: a referenceable avatar, logged out once when the connection ends;
    and the client is no longer a stranger to a L{KeycardBroker}.
    """
    _, avatar, logout = login
    if not IJellyable.providedBy(avatar):
        avatar = pb.AsReferenceable(avatar, "perspective")
    once = [logout]

    def logoutOnce() -> None:
        if once:
            once.pop()()

    broker._localCleanup[avatar.processUniqueID()] = logoutOnce
    broker.notifyOnDisconnect(logoutOnce)
    if isinstance(broker, KeycardBroker):
        broker.loggedIn()
    return avatar


#: The kind of a stock PB login in the bouncer's metrics and the audit log.
STOCK_KIND = "pb-md5"

#: The line a root logs when it is built with C{stockLogin=True}.
STOCK_WARNING = (
    "stock PB login is on (stockLogin=True) for requester {requesterName}:"
    " it takes PB's MD5 challenge-response, which a captured login lets"
    " anyone crack offline at MD5's speed (far faster than a SCRAM"
    " transcript), with no channel binding and no keycard to revoke{unthrottled};"
    " turn it off once every client takes keycards"
)

#: What L{STOCK_WARNING} adds when the bouncer lends no throttle.
UNTHROTTLED = ", and guesses are not limited (the bouncer has no throttle)"


@implementer(IUsernameHashedPassword, pb.IUsernameMD5Password)
class _StockChallenge(pb.Referenceable):
    """
    PB's own challenge and response (an MD5 of the password's MD5 and a
    random challenge), checked by the portal's checkers through a
    L{StockLogin}.

    A challenge takes one response: a second is refused unchecked, as
    keycard challenges are single use.

    @ivar checked: whether a checker compared the response (or L{mock}
        did the same work).
    """

    def __init__(
        self, stock: StockLogin, broker: pb.Broker, username: bytes, challenge: bytes
    ) -> None:
        self._stock = stock
        self.broker = broker
        self.username = username
        self.challenge = challenge
        self.response = b""
        self.answered = False
        self.checked = False

    def remote_respond(self, response: bytes, mind: object) -> Deferred[Any]:
        if self.answered:
            return fail(passedOn(UnauthorizedLogin()))
        self.answered = True
        if not isinstance(response, bytes):
            response = b""
        self.response = response
        return (
            Deferred.fromCoroutine(self._stock.respond(self, mind))
            .addErrback(_stockRefused)
            .addErrback(_passRealmRefusal)
        )

    # MD5 is stock PB's own protocol, kept for the clients of a migration.

    def checkPassword(self, password: bytes) -> bool:
        return self.checkMD5Password(md5(password).digest())  # noqa: S324

    def checkMD5Password(self, md5Password: bytes) -> bool:
        self.checked = True
        correct = md5(md5Password + self.challenge).digest()  # noqa: S324
        return hmac.compare_digest(self.response, correct)

    def mock(self, password: bytes) -> Deferred[None]:
        """
        Do a check's work against C{password}, a password nobody has, in
        the steps twisted.cred's checkers take for a known user (the check
        in a C{maybeDeferred}, a refusal returned by a callback): for a user
        the checker refused without a check.

        @return: a L{Deferred} that fails with L{UnauthorizedLogin} once
            the work is done (at once if a check was done already).
        """
        if self.checked:
            return fail(UnauthorizedLogin())
        return maybeDeferred(self.checkPassword, password).addCallback(_mockRefused)


def _mockRefused(matched: bool) -> Failure:
    # As twisted.cred's checkers refuse a wrong password.
    return Failure(UnauthorizedLogin())


class StockLogin:
    """
    PB's own root object's C{login(username)} and C{loginAnonymous(mind)},
    answered over an application's portal (its checkers and its realm)
    under the rules of keycard logins: throttled per account and per
    address group with the bouncer's L{Throttler} (when it is a
    L{Bouncer} that throttles; a stock login counts against the same
    account as a keycard login of that name), counted in its metrics as
    kind L{STOCK_KIND}, and logged in one line each, with the same
    C{login.refused} and C{login.denied} events as keycard logins and a
    C{login.stock} event for a success.  An unknown user's response is
    checked against a mock password, with the same MD5 work as a known
    user's, and refused alike.

    A wrong password or an unknown user is refused as stock PB refuses
    it, with an L{UnauthorizedLogin} without a message, so that stock
    clients (C{buildbot sendchange}) say what they say for a bad password;
    a throttled login is a L{KeycardDenied}, which says why.

    The MD5 challenge-response is stock PB's, as weak as it was: see
    L{STOCK_WARNING}, logged once when it is made.
    """

    log = Logger()

    def __init__(self, portal: Portal, bouncer: IBouncer, requesterName: str) -> None:
        """
        @param portal: the checkers of the MD5 response (those of
            L{pb.IUsernameMD5Password} or L{IUsernameHashedPassword}), and
            the realm of the avatars.
        @param bouncer: a L{Bouncer} lends its throttler and its metrics;
            another L{IBouncer} (a remote one) neither.
        @param requesterName: set in the log lines, as in keycards.
        """
        self.portal = portal
        self.requesterName = requesterName
        self.throttler: Throttler | None = None
        self.metrics: IBouncerMetrics = NoMetrics()
        if isinstance(bouncer, Bouncer):
            self.throttler = bouncer.throttler
            self.metrics = bouncer.metrics
        #: What an unknown user's response is checked against.
        self._mockPassword = secrets.token_bytes(16)
        self.log.warn(
            STOCK_WARNING,
            requesterName=printable(requesterName),
            unthrottled="" if self.throttler is not None else UNTHROTTLED,
            event="stock.on",
        )

    def call(self, broker: pb.Broker, message: str, args: Sequence[Any]) -> Any:
        """
        Answer C{login(username)} with PB's C{(challenge, challenger)}, or
        C{loginAnonymous(mind)} with an avatar.
        """
        if message == "loginAnonymous":
            (mind,) = args
            d = self.portal.login(Anonymous(), mind, pb.IPerspective)
            return d.addCallback(lambda login: _stockAvatar(broker, login)).addErrback(
                _refused
            )
        (username,) = args
        if isinstance(username, str):
            username = username.encode("utf-8")
        challenge: bytes = pb.challenge()
        return challenge, _StockChallenge(self, broker, username, challenge)

    async def respond(self, challenge: _StockChallenge, mind: object) -> Any:
        """
        Check a response: throttled first, then checked by the portal's
        checker, then the avatar from its realm.

        @return: the avatar, referenceable, as PB's own root gives it.
        @raise KeycardDenied: if the account or the address is throttled.
        @raise KeycardRefused: for a wrong response or an unknown user.
        """
        account = challenge.username.decode("utf-8", "replace")[:NAME_LENGTH]
        address = peerAddress(challenge.broker)
        reservation = None
        failed = False
        try:
            if self.throttler is not None:
                reservation = await self.throttler.reserve(account, address)
            checked: Any = await self._check(challenge)
        except KeycardDenied as e:
            self._failed("login.denied", e, account, address)
            raise
        except UnauthorizedLogin as e:
            failed = True
            self._failed("login.refused", e, account, address)
            raise KeycardRefused() from None
        except Exception:
            self.metrics.loginFailed(STOCK_KIND, "error")
            self.log.failure("checking a stock PB login failed")
            raise KeycardDenied("the bouncer failed; try again later") from None
        finally:
            await self._settle(reservation, failed)
        self.metrics.loginSucceeded(STOCK_KIND)
        avatarId = (
            checked.decode("utf-8", "replace")
            if isinstance(checked, bytes)
            else str(checked)
        )
        self.log.info(
            "{line}",
            line=f"stock PB login of {printable(avatarId)} via"
            f" {printable(self.requesterName)} from {printable(address)}"
            f" ({STOCK_KIND} for {printable(account)}), no keycard",
            event="login.stock",
            avatarId=printable(avatarId),
            account=printable(account),
            keycardType=STOCK_KIND,
            requesterName=printable(self.requesterName),
            address=printable(address),
        )
        try:
            login: Any = await maybeDeferred(
                self.portal.realm.requestAvatar, checked, mind, pb.IPerspective
            )
        except Exception as e:
            self.log.info(
                "realm refused avatar {avatarId}: {error}",
                avatarId=printable(avatarId),
                error=printable(f"{type(e).__name__}: {e}"),
            )
            raise RealmRefusal(e) from None
        return _stockAvatar(challenge.broker, login)

    async def _check(self, challenge: _StockChallenge) -> object:
        """
        The avatar id the portal's checker gives for the response; a
        refusal without a check (an unknown user) is made after the same
        MD5 work against the mock password.

        @raise UnauthorizedLogin: if the checker refuses, or the portal has
            no checker of MD5 responses.
        """
        checker = None
        for iface in (pb.IUsernameMD5Password, IUsernameHashedPassword):
            checker = self.portal.checkers.get(iface)
            if checker is not None:
                break
        try:
            if checker is None:
                raise UnauthorizedLogin("the portal has no checker of MD5 responses")
            return await maybeDeferred(checker.requestAvatarId, challenge)
        except UnauthorizedLogin as refusal:
            with contextlib.suppress(UnauthorizedLogin):
                await challenge.mock(self._mockPassword)
            raise refusal

    def _failed(
        self, event: str, error: Exception, account: str, address: str | None
    ) -> None:
        """
        Count a failed stock login and log it, as the bouncer does for a
        keycard's.
        """
        self.metrics.loginFailed(STOCK_KIND, failureReason(error))
        verb = "refused" if event == "login.refused" else "denied"
        self.log.info(
            "keycard " + verb + ": {reason} ({keycardType} for {account}"
            " via {requesterName} from {address})",
            event=event,
            reason=printable(str(error) or type(error).__name__),
            account=printable(account),
            keycardType=STOCK_KIND,
            requesterName=printable(self.requesterName),
            address=printable(address),
        )

    async def _settle(self, reservation: Reservation | None, failed: bool) -> None:
        if self.throttler is None or reservation is None:
            return
        try:
            await self.throttler.settle(reservation, failed)
        except Exception:
            self.log.failure("counting a login with the throttle failed")


def _utf8(text: str | None) -> bytes | None:
    return None if text is None else text.encode("utf-8")


class _KeycardLogin(pb.Referenceable):
    """
    The root object one client sees.
    """

    def __init__(self, root: KeycardRoot, broker: pb.Broker) -> None:
        self._root = root
        self._broker = broker

    def remoteMessageReceived(
        self, broker: pb.Broker, message: str, args: object, kw: object
    ) -> object:
        """
        Take C{keycardClasses()}, C{login(kind, flags, mind, *message)} or
        C{answer(exchange, *message)} (see L{KeycardRoot.login}), or PB's
        own login when the root allows it, after checking the name and the
        shape of the arguments, so that a stranger's bad call is a
        L{MalformedMessage} with a fixed message: no traceback in the log,
        no line that repeats the arguments.
        """
        if message not in _LOGIN_METHODS:
            raise MalformedMessage(REFUSED) from NoSuchMethod(repr(message[:40]))
        args = broker.unserialize(args)
        kw = broker.unserialize(kw)
        if isStockLogin(message, args, kw):
            stock = self._root.stock
            if stock is None:
                raise KeycardRefused(KEYCARDS_ONLY)
            assert isinstance(args, tuple | list)
            return broker.serialize(stock.call(broker, message, args), self.perspective)
        if kw or type(args) not in (tuple, list):
            raise MalformedMessage(REFUSED)
        assert isinstance(args, tuple | list)
        root = self._root
        if message == "keycardClasses" and not args:
            result: object = root.kindsFor(broker)
        elif message == "login" and len(args) >= 3:
            kind, flags, mind = args[:3]
            if type(kind) is not bytes or type(flags) is not int:
                raise MalformedMessage(REFUSED)
            result = root.login(broker, kind, flags, mind, args[3:])
        elif message == "answer" and args and type(args[0]) is int:
            result = root.answer(broker, args[0], args[1:])
        elif (
            message == "seat"
            and len(args) == 1
            and (args[0] is None or isinstance(args[0], pb.RemoteReference))
        ):
            result = root.seat(broker, args[0])
        elif message == "leaveQueue" and not args:
            result = root.leaveQueue(broker)
        elif message == "login" and len(args) == 2 and isinstance(args[0], Keycard):
            raise KeycardRefused(PROTOCOL_1)
        else:
            raise MalformedMessage(REFUSED)
        return broker.serialize(result, self.perspective)


class RealmRefusal(Exception):
    """
    Carries what the realm raised out of L{KeycardRoot.login}, logged once
    already, to be sent to the client as it is.

    @ivar error: the realm's error.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


def _passRealmRefusal(failure: Failure) -> Failure:
    value = failure.value
    if isinstance(value, RealmRefusal):
        return passedOn(value.error)
    return failure


def _stockRefused(failure: Failure) -> Failure:
    """
    A stock login's L{KeycardRefused} (a wrong password, an unknown user;
    not a denial) as stock PB's own refusal: an L{UnauthorizedLogin} with
    no message, so that stock clients (C{buildbot sendchange}, C{buildbot
    try}) print their usual failure for a bad password.  It is passed on
    (see L{passedOn}): sent without a traceback in the log, as keycard
    refusals are.
    """
    if type(failure.value) is KeycardRefused:
        return passedOn(UnauthorizedLogin())
    return failure


#: The methods a client may call on the root object.
#: Why a login is denied while the bouncer takes no kind yet.
NOT_READY = "the bouncer is not reachable yet; try again later"

_LOGIN_METHODS = (
    frozenset(["keycardClasses", "login", "answer", "seat", "leaveQueue"])
    | STOCK_METHODS
)

#: Why C{seat} is refused by a requester whose bouncer keeps no seat queue
#: (or is remote).
NO_QUEUE = "this bouncer keeps no seat queue"
#: Why C{seat} is refused on a connection where no login was queued.
NOT_QUEUED = "no login of this connection waits for a seat"


#: The part of the shortest held keycard's duration between two renewals,
#: by default: a keycard renewed late by a slow bouncer still has two
#: thirds of its duration left.
RENEW_FRACTION = 1 / 3


def checkRenewEvery(renewEvery: float | None) -> None:
    """
    @raise ValueError: unless C{renewEvery} is C{None} or a positive, finite
        number of seconds.
    """
    if renewEvery is not None and not (math.isfinite(renewEvery) and renewEvery > 0):
        raise ValueError("renewEvery must be a positive number of seconds")


class Renewal:
    """
    Renews, every C{every} seconds (by default a third of the shortest
    duration among them), every keycard that a requester's clients hold.
    Its one timer runs only while a keycard is held.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        requesterName: str,
        clock: Callable[[], IReactorTime],
        held: Collection[str],
        every: float | None = None,
    ) -> None:
        """
        @param clock: gives the clock that times renewals, when first
            needed.
        @param held: the ids of the keycards the clients hold, kept up to
            date by the requester.
        @param every: seconds between renewals; C{None} for a third of the
            shortest duration the bouncer gave the held keycards.
        """
        checkRenewEvery(every)
        self._bouncer = bouncer
        self._requesterName = requesterName
        self._clock = clock
        self._held = held
        self._every = every
        #: The durations of the held keycards, by id (pruned at each renewal).
        self._durations: dict[str, float] = {}
        #: The shortest duration of a held keycard, as last known.
        self._shortest: float | None = None
        self._call: IDelayedCall | None = None
        self._renewing = False

    def period(self) -> float | None:
        """
        Seconds from one renewal to the next; C{None} when no held keycard
        has a known duration.
        """
        if self._every is not None:
            return self._every
        if self._shortest is None:
            return None
        return self._shortest * RENEW_FRACTION

    def issued(self, keycardId: str, duration: float | None) -> None:
        """
        A client was given keycard C{keycardId}, valid for C{duration}
        seconds: renew it while the client holds it.
        """
        if duration is not None and math.isfinite(duration) and duration > 0:
            self._durations[keycardId] = duration
            if self._shortest is None or duration < self._shortest:
                self._shortest = duration
        self._schedule()

    def released(self) -> None:
        """
        Keycards left their clients: once none is held, stop the timer.
        """
        if self._held:
            return
        self._durations.clear()
        self._shortest = None
        if self._call is not None:
            self._call.cancel()
            self._call = None

    def _schedule(self) -> None:
        """
        Set the timer for the next renewal, or bring it forward for a
        keycard with a shorter duration.
        """
        period = self.period()
        if period is None or self._renewing or not self._held:
            return
        clock = self._clock()
        if self._call is not None:
            if self._call.getTime() <= clock.seconds() + period:
                return
            self._call.cancel()
        self._call = clock.callLater(period, self._tick)

    def _tick(self) -> None:
        self._call = None
        held = list(self._held)
        if not held:
            return
        # Forget the durations of keycards no longer held.
        self._durations = {k: self._durations[k] for k in held if k in self._durations}
        self._shortest = min(self._durations.values(), default=None)
        self._renewing = True
        Deferred.fromCoroutine(self._renew(held))

    async def _renew(self, keycardIds: list[str]) -> None:
        try:
            await self._bouncer.keepAlive(self._requesterName, keycardIds)
        except Exception as e:
            # The keycards keep the rest of their duration; the next
            # renewal may reach the bouncer.
            self.log.warn(
                "could not renew {count} keycard(s): {error}",
                count=len(keycardIds),
                error=printable(str(e)),
            )
        finally:
            self._renewing = False
            self._schedule()


#: The name under which a client's broker answers heartbeats (see
#: L{Heartbeat}); a client that does not know it answers with an error,
#: which is an answer all the same.
HEARTBEAT_NAME = "keycard.heartbeat"

#: Heartbeats a client may leave unanswered in a row before it is dropped.
HEARTBEAT_MISSES = 3


def checkHeartbeat(every: float | None) -> None:
    """
    @raise ValueError: unless C{every} is C{None} or a positive, finite
        number of seconds.
    """
    if every is not None and not (math.isfinite(every) and every > 0):
        raise ValueError("heartbeat must be a positive number of seconds")


class HeartbeatAnswerer(pb.Referenceable):
    """
    What a keycard client's broker exposes as L{HEARTBEAT_NAME}: it answers
    a server's heartbeat by itself, with no application code.
    """

    def remote_ping(self) -> None:
        return None


class Heartbeat:
    """
    Pings the connections whose clients hold keycards every C{every}
    seconds, and drops (aborts) a connection that has answered nothing for
    L{HEARTBEAT_MISSES} of them, so that the keycard and the seat of a client
    that vanished without closing its connection (a frozen host, a lost NAT
    mapping) are freed then: otherwise the root renews its keycards for as
    long as the connection stays open, up to the bouncer's C{maxLifetime}.

    A ping is a PB call of C{ping} on the object named L{HEARTBEAT_NAME}:
    a keycard client's broker answers it (L{HeartbeatAnswerer}); any other
    PB broker answers it with an C{Invalid Object ID} error, which counts
    as an answer too, since only a live broker sends one.  A connection
    that never answers holds at most L{HEARTBEAT_MISSES} pings waiting.  One
    timer sends the pings, running only while a connection is watched; each
    watched connection has its deadline, moved on by each answer.
    """

    log = Logger()

    def __init__(
        self,
        every: float,
        clock: Callable[[], IReactorTime],
        requesterName: str,
        held: Callable[[pb.Broker], Collection[str]],
    ) -> None:
        """
        @param every: seconds between two pings of one connection.
        @param clock: gives the clock that times the pings, when first
            needed.
        @param requesterName: the requester's name, for the audit line.
        @param held: the keycard ids a connection's client holds, for the
            audit line.
        @raise ValueError: for an C{every} that is not a positive number.
        """
        checkHeartbeat(every)
        self.every = every
        self._clock = clock
        self._requesterName = requesterName
        self._held = held
        #: The watched connections, with the call that drops each one.
        self._deadlines: dict[pb.Broker, IDelayedCall] = {}
        self._call: IDelayedCall | None = None

    @property
    def silence(self) -> float:
        """
        Seconds without an answer after which a connection is dropped.
        """
        return self.every * HEARTBEAT_MISSES

    def watching(self) -> int:
        """
        The number of connections watched now.
        """
        return len(self._deadlines)

    def watch(self, broker: pb.Broker) -> None:
        """
        Ping C{broker}'s client from now on, until L{forget}.
        """
        if broker in self._deadlines or broker.disconnected:
            return
        clock = self._clock()
        self._deadlines[broker] = clock.callLater(self.silence, self._drop, broker)
        if self._call is None:
            self._call = clock.callLater(self.every, self._tick)

    def forget(self, broker: pb.Broker) -> None:
        """
        Stop pinging C{broker}: its connection is gone.
        """
        deadline = self._deadlines.pop(broker, None)
        if deadline is not None and deadline.active():
            deadline.cancel()
        if not self._deadlines and self._call is not None:
            self._call.cancel()
            self._call = None

    def _tick(self) -> None:
        self._call = None
        for broker in list(self._deadlines):
            self._ping(broker)
        if self._deadlines:
            self._call = self._clock().callLater(self.every, self._tick)

    def _ping(self, broker: pb.Broker) -> None:
        try:
            d = broker.remoteForName(HEARTBEAT_NAME).callRemote("ping")
        except pb.DeadReferenceError:
            return
        d.addCallbacks(
            lambda _: self._answered(broker),
            lambda f: None if f.check(pb.PBConnectionLost) else self._answered(broker),
        )

    def _answered(self, broker: pb.Broker) -> None:
        deadline = self._deadlines.get(broker)
        if deadline is not None and deadline.active():
            deadline.reset(self.silence)

    def _drop(self, broker: pb.Broker) -> None:
        self._deadlines.pop(broker, None)
        if not self._deadlines and self._call is not None:
            self._call.cancel()
            self._call = None
        transport: Any = broker.transport
        if transport is None or broker.disconnected:
            return
        keycardIds = sorted(self._held(broker))
        address = peerAddress(broker)
        # A client waiting for a seat holds none yet.
        holding = printable(", ".join(keycardIds)) if keycardIds else "no keycard"
        self.log.info(
            "{line}",
            line=f"dropped the client from {printable(address)} via"
            f" {printable(self._requesterName)} holding"
            f" {holding}: no answer to"
            f" {HEARTBEAT_MISSES} heartbeats in {self.silence:g} s",
            event="keycard.dropped",
            keycardIds=[printable(k) for k in keycardIds],
            requesterName=printable(self._requesterName),
            address=printable(address),
            silence=self.silence,
        )
        transport.abortConnection()


def _tell(listener: pb.RemoteReference, moved: tuple[int, int]) -> None:
    """
    Tell a waiting client its place; a client gone hears nothing.
    """
    try:
        listener.callRemote(PLACE, *moved).addErrback(lambda _: None)
    except pb.DeadReferenceError:
        return


#: Keycards one connection may hold at once, by default.
MAX_KEYCARDS_PER_CONNECTION = 16


@implementer(IPBRoot, IRequester)
class KeycardRoot:
    """
    A PB root object (for L{KeycardServerFactory} or L{pb.PBServerFactory})
    that logs clients in with keycards.

    It sets each keycard's C{address} from the connection's peer, its
    C{channelBindings} from this side of the connection's TLS, and its
    C{requesterName}, forwards it to the bouncer, and on success asks the
    portal's realm for the avatar.  It drops a client whose keycard the
    bouncer expires, and removes the keycard when the client goes, even
    when the avatar arrives after that (see L{ClientConnection}).  While a
    client stays connected, its keycards are renewed (see L{Renewal}); with
    a C{heartbeat}, a client that holds a keycard and stops answering is
    dropped (see L{Heartbeat}).

    @ivar heartbeat: what pings the clients holding keycards, or C{None}
        without a C{heartbeat}.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        portal: Portal,
        requesterName: str = "requester",
        *,
        maxKeycardsPerConnection: int = MAX_KEYCARDS_PER_CONNECTION,
        clock: IReactorTime | None = None,
        renew: bool = True,
        renewEvery: float | None = None,
        stockLogin: bool = False,
        heartbeat: float | None = None,
    ) -> None:
        """
        @param bouncer: checks the keycards; it is told to call this root
            back when it expires keycards issued through it.
        @param clock: times renewals, and dropping a client after its
            refusal is sent (for keycard kinds that ask for it); the
            bouncer's C{clock} if it has one, else the global reactor.
        @param portal: the application's portal: its realm gives the
            avatars; its checkers are used only by C{stockLogin} (the
            bouncer checks keycards; see L{fromPortal} for a bouncer over
            the portal's checkers).
        @param requesterName: this requester's name, set in every keycard.
        @param renew: renew the keycards of connected clients through the
            bouncer's C{keepAlive}, so that a session ends only when the
            client leaves, its keycard is revoked or expired by the bouncer,
            or the bouncer's C{maxLifetime} ends; without it, every session
            ends when its keycard's duration does.
        @param renewEvery: seconds between renewals; C{None} for a third of
            the shortest duration among the held keycards.
        @param stockLogin: answer a stock PB client's C{login(username)}
            as PB's own root does, through C{portal}'s checkers (for a
            migration: old and new clients on one port), under the
            bouncer's throttle, metrics and audit log (see L{StockLogin}),
            with a warning in the log when the root is made; by default it
            is refused with a L{KeycardRefused}.
        @param heartbeat: seconds between two pings of each connection
            whose client holds a keycard; one that answers none for
            L{HEARTBEAT_MISSES} of them is dropped, and its keycards (and
            seats) removed.  C{None} (the default) pings no one: a client
            that vanished without closing its connection keeps its keycard
            while the connection stays open (renewed, with C{renew}) or
            until it expires.
        @raise ValueError: for a C{renewEvery} or a C{heartbeat} that is not
            a positive number.
        """
        checkRenewEvery(renewEvery)
        checkHeartbeat(heartbeat)
        if clock is None:
            clock = getattr(bouncer, "clock", None)
        self.bouncer = bouncer
        self.portal = portal
        self.requesterName = requesterName
        self.maxKeycardsPerConnection = maxKeycardsPerConnection
        self.stockLogin = stockLogin
        #: PB's own login, when C{stockLogin}.
        self.stock: StockLogin | None = None
        if stockLogin:
            self.stock = StockLogin(portal, bouncer, requesterName)
        self._clock = clock
        #: Keycard ids issued through this root, to the connections holding them.
        self._holders: dict[str, ConnectionInputs] = {}
        self._connections: dict[pb.Broker, ClientConnection] = {}
        #: The channel binding data of TLS connections, once computed.
        self._bindings: dict[pb.Broker, Mapping[str, bytes]] = {}
        #: The bouncer's keycard classes by kind, for the classes below.
        self._kinds: dict[bytes, type[Keycard]] = {}
        self._kindsOf: Sequence[type[Keycard]] | None = None
        self._renewal: Renewal | None = None
        if renew:
            self._renewal = Renewal(
                bouncer, requesterName, self._reactor, self._holders, renewEvery
            )
        #: The queue ticket of each connection's client, once a login of it
        #: was queued.
        self._tickets: dict[pb.Broker, QueueTicket] = {}
        #: The connections whose client waits in C{seat} now.
        self._waiting: set[pb.Broker] = set()
        self.heartbeat: Heartbeat | None = None
        if heartbeat is not None:
            self.heartbeat = Heartbeat(
                heartbeat, self._reactor, requesterName, self._heldBy
            )
        bouncer.registerRequester(requesterName, self)

    @classmethod
    def fromPortal(
        cls,
        portal: Portal,
        *,
        clock: IReactorTime,
        key: bytes | None = None,
        store: IKeycardStore | None = None,
        requesterName: str = "requester",
        bouncerOptions: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> KeycardRoot:
        """
        A root over an application's portal, its realm and its checkers,
        with a bouncer of its own: see L{rootFromPortal}.
        """
        return rootFromPortal(
            cls,
            portal,
            clock=clock,
            key=key,
            store=store,
            requesterName=requesterName,
            bouncerOptions=bouncerOptions,
            **options,
        )

    def _reactor(self) -> IReactorTime:
        clock = self._clock
        if clock is None:
            from twisted.internet import reactor  # the outermost default

            clock = reactor
        assert clock is not None
        return clock

    def _released(self) -> None:
        if self._renewal is not None:
            self._renewal.released()

    def rootObject(self, broker: pb.Broker) -> _KeycardLogin:
        self._connectionFor(broker)
        return _KeycardLogin(self, broker)

    def keycardIds(self) -> list[str]:
        """
        The ids of the keycards held by connected clients, including those
        whose avatars the realm is still producing.
        """
        return list(self._holders)

    def _connectionFor(self, broker: pb.Broker) -> ClientConnection:
        """
        The lifecycle of C{broker}'s connection, begun on first use.
        """
        connection = self._connections.get(broker)
        if connection is None:
            connection = ClientConnection.new(
                broker, self.bouncer, self._holders, self.log
            )
            if broker.disconnected:
                connection.inputs.connectionLost()
                return connection
            self._connections[broker] = connection
            broker.notifyOnDisconnect(lambda: self._clientGone(broker))
        return connection

    def _bindingsOf(self, broker: pb.Broker) -> Mapping[str, bytes] | None:
        """
        The channel binding data of C{broker}'s connection as this side
        computes it (see L{channelBindings}), computed once; C{None} without
        TLS.
        """
        bindings = self._bindings.get(broker)
        if bindings is None:
            transport = broker.transport
            bindings = channelBindings(transport, asServer=True)
            # Without TLS there never will be any; with it, once the
            # handshake is done.
            known = bindings or not ISSLTransport.providedBy(transport)
            if known and broker in self._connections:
                self._bindings[broker] = bindings
        return bindings or None

    def _heldBy(self, broker: pb.Broker) -> Collection[str]:
        connection = self._connections.get(broker)
        return () if connection is None else list(connection.core.held)

    def _clientGone(self, broker: pb.Broker) -> None:
        if self.heartbeat is not None:
            self.heartbeat.forget(broker)
        self._bindings.pop(broker, None)
        self._tickets.pop(broker, None)
        connection = self._connections.pop(broker, None)
        if connection is not None:
            connection.inputs.connectionLost()
            self._released()

    def kindsFor(self, broker: pb.Broker) -> list[str]:
        """
        The kinds of keycards the bouncer takes (each class's C{kind}), in
        its order; over TLS, each kind that binds its exchange to the
        channel is followed by the kind of its C{channelBoundType}.

        @raise KeycardDenied: if the bouncer takes no kind at all yet (a
            L{twisted_keycard.remote.RemoteBouncer} that has not reached its
            bouncer), so that a client is told to try again rather than that
            its kinds are not taken.
        """
        classes = self.bouncer.keycardClasses
        if not classes:
            # A remote bouncer not reached yet: it has told no kinds.
            raise KeycardDenied(NOT_READY)
        bound = self._bindingsOf(broker) is not None
        kinds = []
        for cls in classes:
            kinds.append(cls.kind)
            if bound and cls.channelBoundType is not None:
                kinds.append(cls.channelBoundType.removeprefix("twisted_keycard."))
        return kinds

    def _kindClass(self, kind: bytes) -> type[Keycard] | None:
        """
        The class of the keycards of C{kind} the bouncer takes, if any.
        """
        classes = self.bouncer.keycardClasses
        if self._kindsOf is not classes:
            self._kinds = {cls.kind.encode("utf-8"): cls for cls in classes}
            self._kindsOf = classes
        return self._kinds.get(kind)

    def login(
        self,
        broker: pb.Broker,
        kind: bytes,
        flags: int,
        mind: object,
        message: Sequence[object],
    ) -> Any:
        """
        A client's first message of an exchange of C{kind}: the kind's
        L{Step.FIRST} values.  C{flags} asks for more than the perspective
        on success (L{DETAILS}, L{TOKEN}); C{mind} is passed to the realm
        on success, whichever message ends the exchange.

        As PB's remote methods may, this answers at once when nothing on
        the way waits (a bouncer on a memory store, say), and with a
        L{Deferred} otherwise; a failure is always a failed L{Deferred}.

        @return: the answer, or a L{Deferred} firing with it:
            C{(CHALLENGE, exchange, *challenge)} while the exchange goes on
            (the client answers with L{answer}), C{(LOGGED_IN, perspective,
            *proof)} on success, followed by C{details} when C{flags} asks
            for them (C{(keycard id, avatar id, expiry, token or None,
            requester name, bouncer name)}), and C{(KINDS, kinds)} for a
            first message the bouncer cannot take (a kind it does not take,
            or channel binding this connection cannot give), C{kinds} as
            L{kindsFor} lists them; a failure is L{KeycardRefused},
            L{KeycardDenied} or L{InvalidKeycard}, or what the realm raised,
            sent as it is.
        """
        return self._now(self._first(broker, kind, flags, mind, message))

    def answer(
        self, broker: pb.Broker, exchange: int, message: Sequence[object]
    ) -> Any:
        """
        A client's answer to the challenge of its exchange number
        C{exchange}: the kind's L{Step.ANSWER} values.

        @return: as L{login}, but never C{KINDS}.
        """
        return self._now(self._answer(broker, exchange, message))

    def _now(self, message: Coroutine[Any, Any, Any]) -> Any:
        """
        Run the work of a client's message (L{_first} or L{_answer}) as far
        as it goes at once (see L{runNow}).

        @return: the answer, if it is ready (for PB to send at once, with no
            L{Deferred} made for it); else a L{Deferred} of it, whose
            failures are as L{login} says.
        """
        result = runNow(message)
        if isinstance(result, Deferred):
            result.addErrback(_passRealmRefusal)
        return result

    async def _first(
        self,
        broker: pb.Broker,
        kind: bytes,
        flags: int,
        mind: object,
        message: Sequence[object],
    ) -> Any:
        connection = self._connectionFor(broker)
        presented = None
        if flags & TICKET:
            if not message or type(message[0]) is not bytes:
                raise MalformedMessage(REFUSED)
            presented, message = message[0], message[1:]
        cls = self._kindClass(kind)
        if cls is None:
            # The client learns the kinds from this answer, not from a
            # round trip of its own (see KeycardClientFactory.login).
            return (KINDS, self.kindsFor(broker))
        keycard = cls()
        keycard.takeMessage(Step.FIRST, message)
        bindings = self._bindingsOf(broker)
        if keycard.bindsChannel() and bindings is None:
            return (KINDS, self.kindsFor(broker))
        if connection.core.keycardCount() >= self.maxKeycardsPerConnection:
            raise KeycardDenied("too many keycards on this connection")
        if keycard.carriesSecret() and not ISSLTransport.providedBy(broker.transport):
            self._note(broker, "refused a keycard with a secret over TCP from {peer}")
            raise InsecureTransport(f"{type(keycard).__name__} needs TLS")
        keycard.address = peerAddress(broker)
        keycard.requesterName = self.requesterName
        keycard.channelBindings = bindings
        # A token is signed only for a client that asked for it.
        keycard.wantsToken = 1 if flags & TOKEN else 0
        if flags & WAIT:
            ticket = self._tickets.get(broker)
            queue = getattr(self.bouncer, "seatQueue", None)
            if presented is not None and isinstance(queue, SeatQueue):
                ticket = await queue.verify(presented.decode("ascii", "replace"))
            waitForSeat(keycard, ticket)
        return await self._round(broker, connection, keycard, mind, flags)

    async def _answer(
        self, broker: pb.Broker, exchange: int, message: Sequence[object]
    ) -> Any:
        connection = self._connectionFor(broker)
        waiting = connection.core.exchanges.pop(exchange, None)
        if waiting is None:
            self._note(broker, "refused an answer to no exchange from {peer}")
            raise KeycardRefused()
        keycard, mind, flags = waiting
        keycard.takeMessage(Step.ANSWER, message)
        return await self._round(broker, connection, keycard, mind, flags)

    async def _round(
        self,
        broker: pb.Broker,
        connection: ClientConnection,
        keycard: Keycard,
        mind: object,
        flags: int,
    ) -> Any:
        """
        Hand one message of an exchange to the bouncer, and answer the
        client with the challenge, or with the avatar from the realm.
        """
        if connection.core.closing:
            raise KeycardRefused()
        try:
            result: Keycard = await self.bouncer.authenticate(keycard, broker)
        except SeatQueued as e:
            if not flags & WAIT or e.ticket is None:
                raise
            self._tickets[broker] = await self._seatQueue().verify(e.ticket)
            # Authenticated, and queued: no longer a stranger's connection.
            if isinstance(broker, KeycardBroker):
                broker.loggedIn()
            return (QUEUED, e.ticket.encode("ascii"), e.place, e.waiting)
        except KeycardRefused:
            if getattr(type(keycard), "dropOnRefusal", False):
                self._dropSoon(broker)
            raise
        keycard.adopt(result)
        inputs = connection.inputs
        if keycard.state is not KeycardState.AUTHENTICATED:
            exchanges = connection.core.exchanges
            if len(exchanges) >= MAX_EXCHANGES_PER_CONNECTION:
                del exchanges[next(iter(exchanges))]
            number = connection.core.nextExchange = connection.core.nextExchange + 1
            exchanges[number] = (keycard, mind, flags)
            return (CHALLENGE, number, *keycard.message(Step.CHALLENGE))
        keycardId = keycard.id
        assert keycardId is not None and keycard.avatarId is not None
        # Seated: the connection's queue ticket, if any, is spent.
        self._tickets.pop(broker, None)
        if not inputs.keycardIssued(keycardId):
            raise KeycardRefused()
        if self._renewal is not None:
            self._renewal.issued(keycardId, keycard.duration)
        try:
            # twisted.cred types avatar ids as bytes; ours are text.
            avatarId: Any = keycard.avatarId
            login: Any = self.portal.realm.requestAvatar(
                avatarId, mind, pb.IPerspective
            )
            if isinstance(login, Deferred) or iscoroutine(login):
                # A realm that waits (twisted.cred's own Portal does not
                # take a coroutine; this root does).
                login = await login
            _, avatar, logout = login
        except Exception as e:
            # The realm's refusal (LoginFailed, pb.Error, Buildbot's
            # "duplicate worker"...), for the client to read as it is.
            self.log.info(
                "realm refused avatar {avatarId}: {error}",
                avatarId=printable(keycard.avatarId),
                error=printable(f"{type(e).__name__}: {e}"),
            )
            inputs.avatarFailed(keycardId)
            self._released()
            raise RealmRefusal(e) from None
        if not inputs.avatarReady(keycardId, logout):
            self._released()
            raise KeycardRefused()
        if self.heartbeat is not None:
            self.heartbeat.watch(broker)
        if not IJellyable.providedBy(avatar):
            avatar = pb.AsReferenceable(avatar, "perspective")
        proof = keycard.message(Step.PROOF)
        if not flags & (DETAILS | TOKEN):
            return (LOGGED_IN, avatar, *proof)
        token = keycard.token
        details = (
            keycardId.encode("ascii"),
            keycard.avatarId.encode("utf-8"),
            keycard.expires,
            None if token is None else token.encode("ascii"),
            _utf8(keycard.requesterName),
            _utf8(keycard.bouncerName),
        )
        return (LOGGED_IN, avatar, *proof, details)

    def _seatQueue(self) -> SeatQueue:
        """
        @raise KeycardDenied: if the bouncer keeps no seat queue here.
        """
        queue = getattr(self.bouncer, "seatQueue", None)
        if not isinstance(queue, SeatQueue):
            raise KeycardDenied(NO_QUEUE)
        return queue

    def seat(
        self, broker: pb.Broker, listener: pb.RemoteReference | None
    ) -> Deferred[Any]:
        """
        The client of a login queued on this connection waits for its seat:
        its place is renewed every follow interval of the bouncer while it
        waits, and C{listener}'s L{PLACE} method is told each new C{(place,
        waiting)}.  A client that comes back (on a new connection, or after
        a bouncer restart) logs in again with its ticket (L{TICKET}) within
        the grace, and keeps its place.

        @return: a L{Deferred} firing with C{(TURN, place, waiting)} once
            the client is at the head of the queue and a seat is free: it
            then logs in again (with L{WAIT} and L{TICKET}) to take it; or
            failing with L{KeycardDenied} if no login of this connection was
            queued, while it already waits, or without a queue, or with
            L{twisted_keycard.error.QuotaExceeded} once its place lapsed.
        """
        return Deferred.fromCoroutine(self._seat(broker, listener))

    async def _seat(
        self, broker: pb.Broker, listener: pb.RemoteReference | None
    ) -> Any:
        queue = self._seatQueue()
        ticket = self._tickets.get(broker)
        if ticket is None:
            raise KeycardDenied(NOT_QUEUED)
        if broker in self._waiting:
            raise KeycardDenied("this connection already waits for a seat")
        self._waiting.add(broker)
        queue.waitStarted(broker, ticket)
        if self.heartbeat is not None:
            # A waiting client answers pings as a holder does: a frozen one
            # is dropped (its place lapses after the grace), a live one is
            # never idle.
            self.heartbeat.watch(broker)
        try:
            told: tuple[int, int] | None = None
            while True:
                moved, free = await self._look(queue, ticket)
                if broker.disconnected:
                    raise KeycardDenied("the client left")
                if moved != told:
                    told = moved
                    if listener is not None:
                        _tell(listener, moved)
                if free:
                    return (TURN, *moved)
                await queue.pause()
                if broker.disconnected:
                    raise KeycardDenied("the client left")
        finally:
            queue.waitEnded(broker)
            self._waiting.discard(broker)

    async def _look(
        self, queue: SeatQueue, ticket: QueueTicket
    ) -> tuple[tuple[int, int], bool]:
        """
        Renew a waiting client's place: its place and the number waiting,
        and whether it is at the head with a seat free.

        @raise QuotaExceeded: if its place lapsed.
        @raise KeycardDenied: if the store failed (logged here).
        """
        try:
            moved = await queue.renew(ticket)
            return moved, moved[0] == 1 and await queue.seatFree()
        except KeycardDenied:
            raise
        except Exception:
            self.log.failure("following a place in the seat queue failed")
            raise KeycardDenied("the bouncer failed; try again later") from None

    def leaveQueue(self, broker: pb.Broker) -> Deferred[bool]:
        """
        The client of a login queued on this connection gives its place up
        (it waited long enough).

        @return: a L{Deferred} firing with whether it was queued.
        """
        queue = self._seatQueue()
        ticket = self._tickets.pop(broker, None)
        if ticket is None:
            return succeed(False)
        return Deferred.fromCoroutine(queue.leave(ticket))

    def _dropSoon(self, broker: pb.Broker) -> None:
        """
        Drop the client once the refusal has been written.
        """
        clock = self._reactor()
        transport = broker.transport
        if transport is not None:
            self._note(broker, "dropping {peer} after a refusal")
            clock.callLater(0, transport.loseConnection)

    def _note(self, broker: pb.Broker, format: str) -> None:
        """
        Log a line about a client's refused request; through a
        L{KeycardBroker}, rationed per client address.
        """
        if isinstance(broker, KeycardBroker):
            broker.note(format)
        else:
            self.log.info(format, peer=printable(peerAddress(broker)))

    def expireKeycardIds(self, keycardIds: Sequence[str]) -> None:
        """
        Drop the clients that hold these keycards.
        """
        for keycardId in keycardIds:
            connection = self._holders.get(keycardId)
            if connection is not None:
                connection.expire(keycardId)
        self._released()
