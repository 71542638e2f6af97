"""
The client side of a PB login with keycards: a L{pb.PBClientFactory} that
logs in with answerers, and the login it runs over a server's root object,
each answerer's kind in turn, answering challenges in a bounded loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, fail
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.spread import pb

from twisted_keycard.bouncer import TICKET_REFUSED
from twisted_keycard.error import (
    InsecureTransport,
    InvalidKeycard,
    KeycardDenied,
    KeycardError,
    KeycardRefused,
    MalformedMessage,
    ProtocolError,
    QuotaExceeded,
    TooManyRounds,
)
from twisted_keycard.keycard import (
    ClientChannel,
    IAnswerer,
    IChannelBindingAnswerer,
    Keycard,
    KeycardState,
    Step,
    channelBindings,
    checkSendable,
    kindName,
)
from twisted_keycard.pb._broker import KeycardBroker
from twisted_keycard.pb._root import (
    CHALLENGE,
    DETAILS,
    HEARTBEAT_NAME,
    KINDS,
    LOGGED_IN,
    NO_QUEUE,
    QUEUED,
    TICKET,
    TOKEN,
    TURN,
    WAIT,
    HeartbeatAnswerer,
)
from twisted_keycard.tokens import MAX_TICKET

__all__ = ["KeycardClientFactory", "KeycardLogin", "keycardLogin", "refuseProtocol1"]


#: Challenge rounds a client answers at most in one exchange, by default.
MAX_ROUNDS = 4

#: Keycard protocol 1 (twisted-keycard 0.1) named this library's own kinds
#: by their type tags, which protocol 2 lists without this prefix: a server
#: that lists a kind with it speaks protocol 1.
PROTOCOL_1_PREFIX = "twisted_keycard."

#: Errors a server may send that are turned back into local exceptions.
_REMOTE_ERRORS: tuple[type[Exception], ...] = (
    KeycardRefused,
    KeycardDenied,
    InvalidKeycard,
    MalformedMessage,
    InsecureTransport,
)


class _RemoteFailure(Exception):
    """
    Carries a server's error that is none of ours (the realm's) through the
    login coroutine, so that the caller gets the failure PB copied, whose
    C{check} knows the server's classes by name.
    """

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.getErrorMessage())
        self.failure = failure


def localError(failure: Failure) -> Failure:
    """
    Turn a copied remote keycard error into the local exception class, and
    any other copied error into a L{_RemoteFailure}.
    """
    for cls in _REMOTE_ERRORS:
        if failure.check(cls):
            return Failure(cls(failure.getErrorMessage()))
    if isinstance(failure, pb.CopiedFailure):
        return Failure(_RemoteFailure(failure))
    return failure


def _remoteFailure(failure: Failure) -> Failure:
    """
    The server's own failure, out of its L{_RemoteFailure}.
    """
    value = failure.value
    if isinstance(value, _RemoteFailure):
        return value.failure
    return failure


@attrs.frozen
class KeycardLogin:
    """
    The result of a successful login.

    @ivar perspective: the avatar's L{pb.RemoteReference}.
    @ivar keycard: the AUTHENTICATED keycard: its C{id}, C{avatarId},
        C{expires}.
    """

    perspective: pb.RemoteReference
    keycard: Keycard


def keycardLogin(
    root: pb.RemoteReference,
    answerers: Sequence[IAnswerer],
    mind: object = None,
    *,
    askServer: bool = False,
    maxRounds: int = MAX_ROUNDS,
    waitForSeat: float | None = None,
    onPlace: Callable[[int, int], object] | None = None,
    seatTicket: str | None = None,
    onTicket: Callable[[str | None], object] | None = None,
    clock: IReactorTime | None = None,
) -> Deferred[KeycardLogin]:
    """
    Log in over a root object you already have (from your own factory, one
    per connection) with the first keycard kind the server accepts, as
    L{KeycardClientFactory.login} does: the first kind is sent at once, and
    a server that does not take it answers with the kinds it takes.

    @param root: the server's root object (a L{KeycardRoot}'s), for
        instance C{broker.remoteForName("root")} in a factory's
        C{clientConnectionMade}.
    @param answerers: the keycard kinds to try, in order.
    @param mind: passed to the server's realm.
    @param askServer: first ask which kinds the server takes
        (C{keycardClasses}, one round trip more), and try only those.
    @param maxRounds: challenge rounds answered at most per kind; past them
        the connection is closed.
    @param waitForSeat: see L{KeycardClientFactory.login}.
    @param onPlace: see L{KeycardClientFactory.login}.
    @param seatTicket: see L{KeycardClientFactory.login}.
    @param onTicket: told the queue ticket each time it changes while the
        login waits for a seat, and C{None} once it has none (the seat
        granted, or given up): keep it to pass as C{seatTicket} after a
        lost connection.
    @param clock: times the wait for a seat; the global reactor by default.
    @return: a L{Deferred} firing with a L{KeycardLogin}, or failing with
        the last kind's error (L{KeycardRefused} when refused,
        L{KeycardDenied} when denied for now, L{ServerAuthenticationFailed}
        when the server could not prove itself, which also closes the
        connection, or an error the server's realm raised, as it is).
    """
    wait = _SeatWait.make(waitForSeat, onPlace, seatTicket, clock, onTicket)
    return Deferred.fromCoroutine(
        _loginOrWait(
            root, list(answerers), mind, askServer, maxRounds, DETAILS | TOKEN, wait
        )
    ).addErrback(_remoteFailure)


async def _loginOrWait(
    root: pb.RemoteReference,
    answerers: list[IAnswerer],
    mind: object,
    askServer: bool,
    maxRounds: int,
    flags: int,
    wait: _SeatWait | None,
) -> KeycardLogin:
    """
    Log in, waiting for a seat if C{wait} says so.
    """
    if wait is None:
        return await _login(root, answerers, mind, askServer, maxRounds, flags)
    return await wait.login(root, answerers, mind, askServer, maxRounds, flags)


def _disconnect(root: pb.RemoteReference) -> None:
    """
    Close the connection C{root} came on.
    """
    transport = root.broker.transport
    if transport is not None:
        transport.loseConnection()


async def _login(
    root: pb.RemoteReference,
    answerers: list[IAnswerer],
    mind: object,
    askServer: bool,
    maxRounds: int,
    flags: int,
    ticket: str | None = None,
) -> KeycardLogin:
    offered: list[str] | None = None
    if askServer:
        offered = _kinds(await root.callRemote("keycardClasses").addErrback(localError))
    bindings = {}
    if any(IChannelBindingAnswerer.providedBy(a) for a in answerers):
        bindings = channelBindings(root.broker.transport, asServer=False)
    last: Exception | None = None
    # Each answerer once, and the one the server answered with its kinds
    # once more: the kinds are learned at most once.
    index = 0
    while index < len(answerers):
        answerer = answerers[index]
        kind = answerer.keycardClass
        if offered is not None and kind.kind not in offered:
            index += 1
            continue
        serverBinds = None
        if offered is not None:
            bound = kind.channelBoundType
            serverBinds = bound is not None and kindName(bound) in offered
        channel = ClientChannel(bindings, serverBinds)
        try:
            return await _exchange(
                root, answerer, channel, mind, maxRounds, flags, ticket
            )
        except _ServerKinds as e:
            if offered is None:
                offered = e.kinds
                continue
            last = ProtocolError("the server sent its keycard kinds again")
        except (KeycardRefused, ProtocolError) as e:
            last = e
        except MalformedMessage:
            # A protocol 1 server cannot take a protocol 2 login at all:
            # its kinds tell (one more round trip, on this error only).
            if offered is None:
                await _refuseProtocol1(root)
            raise
        index += 1
    if last is None:
        raise KeycardRefused("the server takes none of these keycard kinds")
    raise last


async def _exchange(
    root: pb.RemoteReference,
    answerer: IAnswerer,
    channel: ClientChannel,
    mind: object,
    maxRounds: int,
    flags: int,
    ticket: str | None = None,
) -> KeycardLogin:
    """
    One exchange of the answerer's kind (keycard protocol 2): the first
    message, then an answer to each challenge, at most C{maxRounds}.

    @param ticket: a queue ticket to present (with L{TICKET}).
    """
    keycard: Keycard
    if IChannelBindingAnswerer.providedBy(answerer):
        keycard = answerer.startBound(channel)
    else:
        keycard = answerer.start()
    transport = root.broker.transport
    checkSendable(keycard, transport, True)
    kind = keycard.kind.encode("utf-8")
    message = keycard.message(Step.FIRST)
    if ticket is not None:
        flags |= TICKET
        message = (ticket.encode("ascii"), *message)
    call = root.callRemote("login", kind, flags, mind, *message)
    for round in range(maxRounds + 1):
        answer = _unpack(await call.addErrback(localError), first=round == 0)
        if answer[0] == LOGGED_IN:
            return _loggedIn(root, answerer, keycard, answer, bool(flags))
        if round == maxRounds:
            break
        _take(keycard, Step.CHALLENGE, answer[2:])
        keycard.state = KeycardState.REQUESTING
        answered = answerer.answer(keycard)
        if isinstance(answered, Deferred):
            # An answerer that asks another process (an SSH agent).
            answered = await answered
        keycard = answered
        checkSendable(keycard, transport, True)
        message = keycard.message(Step.ANSWER)
        call = root.callRemote("answer", answer[1], *message)
    _disconnect(root)
    raise TooManyRounds(f"the server asked for more than {maxRounds} rounds")


def _loggedIn(
    root: pb.RemoteReference,
    answerer: IAnswerer,
    keycard: Keycard,
    answer: tuple[Any, ...],
    withDetails: bool,
) -> KeycardLogin:
    """
    The server's answer on success: check its proof, and take the details
    it sent last (the keycard's id, avatar id, expiry and token) if asked.
    """
    perspective, proof = answer[1], answer[2:]
    if withDetails:
        if not proof:
            raise ProtocolError("malformed login answer: no keycard details")
        (
            keycard.id,
            keycard.avatarId,
            keycard.expires,
            keycard.token,
            keycard.requesterName,
            keycard.bouncerName,
        ) = _details(proof[-1])
        proof = proof[:-1]
    _take(keycard, Step.PROOF, proof)
    keycard.state = KeycardState.AUTHENTICATED
    try:
        answerer.finish(keycard)
    except KeycardError:
        _disconnect(root)
        raise
    return KeycardLogin(perspective, keycard)


def _take(keycard: Keycard, step: Step, values: tuple[Any, ...]) -> None:
    """
    Take the server's message, as a L{ProtocolError} if it is malformed.
    """
    try:
        keycard.takeMessage(step, values)
    except InvalidKeycard as e:
        raise ProtocolError(f"malformed {step.value}: {e}") from None


class _ServerKinds(Exception):
    """
    The server answered a first message with the keycard kinds it takes.
    """

    def __init__(self, kinds: list[str]) -> None:
        super().__init__("the server answered with its keycard kinds")
        self.kinds = kinds


#: Kinds a server lists, at most (each kind and its channel-bound one).
MAX_KINDS = 256


def _kinds(value: object) -> list[str]:
    """
    Check the shape of a server's list of keycard kinds.

    @raise KeycardRefused: if the server speaks keycard protocol 1
        (L{refuseProtocol1}).
    """
    if not (
        isinstance(value, list | tuple)
        and len(value) <= MAX_KINDS
        and all(isinstance(kind, str) for kind in value)
    ):
        raise ProtocolError("the server's list of keycard kinds is malformed")
    refuseProtocol1(value)
    return list(value)


def refuseProtocol1(kinds: Sequence[str]) -> None:
    """
    Refuse to log in to a server of keycard protocol 1 (twisted-keycard
    0.1), which cannot take this client's messages, saying so rather than
    that it takes none of the client's kinds.

    @param kinds: the kinds the server listed (its C{keycardClasses()}).
    @raise KeycardRefused: if they are a protocol 1 server's.
    """
    if any(kind.startswith(PROTOCOL_1_PREFIX) for kind in kinds):
        raise KeycardRefused(
            "the server speaks keycard protocol 1 (twisted-keycard 0.1);"
            " this client speaks protocol 2: upgrade the server to"
            " twisted-keycard 0.2 or later"
        )


async def _refuseProtocol1(root: pb.RemoteReference) -> None:
    """
    Ask the server's kinds after it refused a first message as malformed,
    and refuse to go on if it speaks keycard protocol 1.
    """
    try:
        kinds = await root.callRemote("keycardClasses")
    except Exception:
        return
    if isinstance(kinds, list | tuple) and all(isinstance(k, str) for k in kinds):
        refuseProtocol1(kinds)


def _details(
    value: object,
) -> tuple[str, str, float, str | None, str | None, str | None]:
    """
    Check the details a server sent with its answer on success: the
    keycard's id, avatar id, expiry, token, requester and bouncer.
    """
    if not (isinstance(value, tuple | list) and len(value) == 6):
        raise ProtocolError("malformed keycard details")
    keycardId, avatarId, expires, token, requesterName, bouncerName = value
    texts = (keycardId, avatarId, token, requesterName, bouncerName)
    if type(expires) not in (int, float) or not all(
        text is None or type(text) is bytes for text in texts
    ):
        raise ProtocolError("malformed keycard details")
    if keycardId is None or avatarId is None:
        raise ProtocolError("malformed keycard details")
    try:
        return (
            keycardId.decode("ascii"),
            avatarId.decode("utf-8"),
            float(expires),
            None if token is None else token.decode("ascii"),
            None if requesterName is None else requesterName.decode("utf-8"),
            None if bouncerName is None else bouncerName.decode("utf-8"),
        )
    except UnicodeDecodeError:
        raise ProtocolError("malformed keycard details") from None


class _Queued(Exception):
    """
    The server queued the login for a seat: its ticket and place.
    """

    def __init__(self, ticket: str, place: int, waiting: int) -> None:
        super().__init__(ticket, place, waiting)
        self.ticket = ticket
        self.place = place
        self.waiting = waiting


#: Places and queue lengths a server may tell, at most.
MAX_PLACE = 2**31


def _places(values: Sequence[object]) -> tuple[int, int]:
    """
    A place and a queue length the server told, checked.
    """
    if len(values) != 2:
        raise ProtocolError("malformed place in the queue")
    place, waiting = values
    if not (
        type(place) is int
        and type(waiting) is int
        and 1 <= place <= waiting <= MAX_PLACE
    ):
        raise ProtocolError("malformed place in the queue")
    return place, waiting


def _queued(result: Sequence[object]) -> _Queued:
    ticket = result[1]
    if type(ticket) is not bytes or len(ticket) > MAX_TICKET or not ticket.isascii():
        raise ProtocolError("malformed queue ticket")
    return _Queued(ticket.decode("ascii"), *_places(result[2:]))


class _PlaceListener(pb.Referenceable):
    """
    What a waiting client gives the server to be told its place by.
    """

    def __init__(self, onPlace: Callable[[int, int], object] | None) -> None:
        self._onPlace = onPlace

    def remote_place(self, place: object, waiting: object) -> None:
        told = _places([place, waiting])
        if self._onPlace is not None:
            self._onPlace(*told)


def _unpack(result: object, first: bool) -> tuple[Any, ...]:
    """
    Check the shape of the server's answer to C{login} or C{answer}.

    @param first: whether it answers an exchange's first message, which
        the server may answer with its kinds.
    @return: C{(CHALLENGE, exchange, *challenge)} or C{(LOGGED_IN,
        perspective, *proof[, details])}.
    @raise _ServerKinds: for C{(KINDS, kinds)} to a first message.
    @raise _Queued: for C{(QUEUED, ticket, place, waiting)}: the login
        asked to wait, and was queued for a seat.
    """
    if not (isinstance(result, tuple | list) and result):
        raise ProtocolError("malformed login answer")
    tag = result[0]
    if tag == KINDS and first and len(result) == 2:
        raise _ServerKinds(_kinds(result[1]))
    if tag == QUEUED and len(result) == 4:
        raise _queued(result)
    if tag == CHALLENGE and len(result) >= 2 and type(result[1]) is int:
        return tuple(result)
    if tag == LOGGED_IN and len(result) >= 2:
        if not isinstance(result[1], pb.RemoteReference):
            raise ProtocolError("login answer holds no perspective")
        return tuple(result)
    raise ProtocolError("malformed login answer")


class KeycardClientFactory(pb.PBClientFactory):
    """
    A L{pb.PBClientFactory} that logs in with keycards.  Its brokers
    answer a server's heartbeats by themselves (see the C{heartbeat} of
    L{twisted_keycard.pb.KeycardRoot}).
    """

    protocol = KeycardBroker

    def __init__(self, clock: IReactorTime | None = None) -> None:
        """
        @param clock: times a login's wait for a seat; the global reactor
            by default.
        """
        super().__init__()
        #: Why the last connection ended before its root object came.
        self._lost: Failure | None = None
        self.clock = clock
        #: The queue ticket of the last login that waited for a seat, while
        #: it waits, or once its connection was lost while it waited: pass
        #: it as C{seatTicket} to the next login (on a new connection) to
        #: keep the place.  C{None} once it got its seat or gave up.
        self.seatTicket: str | None = None

    def buildProtocol(self, addr: object) -> pb.Broker:
        self._lost = None
        broker: pb.Broker = super().buildProtocol(addr)
        # The server's heartbeats are answered here, by the broker.
        broker.setNameForLocal(HEARTBEAT_NAME, HeartbeatAnswerer())
        return broker

    def getRootObject(self) -> Deferred[Any]:
        """
        The server's root object; if the connection already ended without
        one (the server refused it), the failure it ended with.
        """
        if self._lost is not None and self._broker is None:
            return fail(self._lost)
        d: Deferred[Any] = super().getRootObject()
        return d

    def disconnect(self) -> None:
        """
        Close the connection, if there is one.
        """
        super().disconnect()

    def brokerLost(self, broker: pb.Broker, reason: Failure) -> None:
        """
        A connection ended: fail whoever still waits for its root object
        (a TLS handshake refused, a server that hung up), so that no login
        waits forever; with L{KeycardDenied} and the server's reason if the
        server refused the connection (too many from this address).
        """
        if self._broker is None or self._broker is broker:
            refusal = getattr(broker, "refusal", None)
            if refusal is not None:
                reason = Failure(KeycardDenied(refusal))
            if self._broker is None:
                self._lost = reason
            self._failAll(reason)

    def login(
        self,
        answerers: Sequence[IAnswerer],
        client: object = None,
        *,
        askServer: bool = False,
        maxRounds: int = MAX_ROUNDS,
        waitForSeat: float | None = None,
        onPlace: Callable[[int, int], object] | None = None,
        seatTicket: str | None = None,
    ) -> Deferred[pb.RemoteReference]:
        """
        Log in with the first keycard kind the server accepts.  An answerer
        that can bind its exchange to the connection's TLS
        (L{IChannelBindingAnswerer}) is told the connection's channel
        binding data and whether the server said it binds that kind.

        The first kind is sent at once: a server that does not take it (or
        cannot bind it to the channel) answers with the kinds it takes, and
        the client goes on with the first of its own that the server
        listed, so a login costs no round trip of its own to learn them.

        @param answerers: the keycard kinds to try, in order.
        @param client: the mind, passed to the server's realm.
        @param askServer: first ask which kinds the server takes
            (C{keycardClasses}, one round trip more), and try only those.
        @param maxRounds: challenge rounds answered at most per kind.
        @param waitForSeat: seconds to wait for a seat if the server's seat
            pool is full and it keeps a queue: the login is queued rather
            than refused, told its place (C{onPlace}) as it moves, and logs
            in once its turn comes; past the time it gives its place up and
            fails with L{QuotaExceeded}.  C{None} (the default) waits for
            nothing: a full pool refuses the login.
        @param onPlace: called with C{(place, waiting)} each time the place
            or the queue's length changes, 1 for the head.
        @param seatTicket: a queue ticket from an earlier login (see
            L{seatTicket}), whose place to take back: after a dropped
            connection or a bouncer restart, within the server's grace.
        @return: a L{Deferred} firing with the perspective, or failing with
            the last kind's error (L{KeycardRefused} when refused).
        """
        d = Deferred.fromCoroutine(
            self._login(
                list(answerers),
                client,
                askServer,
                maxRounds,
                0,
                _SeatWait.make(
                    waitForSeat, onPlace, seatTicket, self.clock, self._keepTicket
                ),
            )
        ).addErrback(_remoteFailure)
        return d.addCallback(lambda result: result.perspective)

    def loginWithKeycard(
        self,
        answerers: Sequence[IAnswerer],
        client: object = None,
        *,
        askServer: bool = False,
        maxRounds: int = MAX_ROUNDS,
        waitForSeat: float | None = None,
        onPlace: Callable[[int, int], object] | None = None,
        seatTicket: str | None = None,
    ) -> Deferred[KeycardLogin]:
        """
        Like L{login}, but fires with a L{KeycardLogin} that also holds the
        authenticated keycard: its id, avatar id, expiry and token, which
        the server sends only when asked (L{login} does not ask).
        """
        return Deferred.fromCoroutine(
            self._login(
                list(answerers),
                client,
                askServer,
                maxRounds,
                DETAILS | TOKEN,
                _SeatWait.make(
                    waitForSeat, onPlace, seatTicket, self.clock, self._keepTicket
                ),
            )
        ).addErrback(_remoteFailure)

    async def _login(
        self,
        answerers: list[IAnswerer],
        mind: object,
        askServer: bool,
        maxRounds: int,
        flags: int,
        wait: _SeatWait | None = None,
    ) -> KeycardLogin:
        root: pb.RemoteReference = await self.getRootObject()
        return await _loginOrWait(
            root, answerers, mind, askServer, maxRounds, flags, wait
        )

    def _keepTicket(self, ticket: str | None) -> None:
        self.seatTicket = ticket


@attrs.define
class _SeatWait:
    """
    A login that waits for a seat: queued, told its place, and logged in
    once its turn comes (see L{KeycardClientFactory.login}).
    """

    seconds: float
    onPlace: Callable[[int, int], object] | None
    ticket: str | None
    #: Times the wait; the global reactor if C{None}.
    clock: IReactorTime | None
    #: Told each new ticket, and C{None} once there is none.
    keep: Callable[[str | None], object]
    #: The place last told, so that each is told once.
    _told: tuple[int, int] | None = None

    @classmethod
    def make(
        cls,
        seconds: float | None,
        onPlace: Callable[[int, int], object] | None,
        ticket: str | None,
        clock: IReactorTime | None,
        keep: Callable[[str | None], object] | None,
    ) -> _SeatWait | None:
        """
        @raise ValueError: for a C{seconds} that is not positive.
        """
        if seconds is None:
            return None
        if not seconds > 0:
            raise ValueError("waitForSeat must be a positive number of seconds")
        return cls(seconds, onPlace, ticket, clock, keep or (lambda ticket: None))

    async def login(
        self,
        root: pb.RemoteReference,
        answerers: list[IAnswerer],
        mind: object,
        askServer: bool,
        maxRounds: int,
        flags: int,
    ) -> KeycardLogin:
        """
        Log in over C{root}, waiting for a seat (see L{run}).
        """

        def login(ticket: str | None) -> Deferred[KeycardLogin]:
            return Deferred.fromCoroutine(
                _login(
                    root, answerers, mind, askServer, maxRounds, flags | WAIT, ticket
                )
            )

        clock = self.clock
        if clock is None:
            from twisted.internet import reactor

            clock = reactor
        assert clock is not None
        return await self.run(root, clock, login, self.keep)

    def _tell(self, place: int, waiting: int) -> None:
        if self.onPlace is not None and self._told != (place, waiting):
            self._told = (place, waiting)
            self.onPlace(place, waiting)

    async def run(
        self,
        root: pb.RemoteReference,
        clock: IReactorTime,
        login: Callable[[str | None], Deferred[KeycardLogin]],
        keep: Callable[[str | None], object],
    ) -> KeycardLogin:
        """
        Log in, queued while the pool is full: wait for the turn, log in
        again with the ticket, until a login gets its seat or the time is
        up.
        """
        deadline = clock.seconds() + self.seconds
        listener = _PlaceListener(self._tell)
        ticket = self.ticket
        while True:
            try:
                result = await login(ticket)
            except _Queued as queued:
                ticket = queued.ticket
                keep(ticket)
                self._tell(queued.place, queued.waiting)
            except KeycardRefused as e:
                if ticket is None or str(e) != TICKET_REFUSED:
                    raise
                # Another store's ticket, or an expired one: queue afresh.
                ticket = None
                keep(None)
                continue
            else:
                keep(None)
                return result
            call = root.callRemote("seat", listener)
            timer = clock.callLater(max(deadline - clock.seconds(), 0.0), call.cancel)
            try:
                answer = await call.addErrback(localError)
            except CancelledError:
                await _leave(root)
                keep(None)
                told = self._told
                shown = "" if told is None else f": place {told[0]} of {told[1]}"
                raise QuotaExceeded(
                    f"no seat within {self.seconds:g} s{shown}", "wait"
                ) from None
            except KeycardDenied as e:
                if str(e) == NO_QUEUE:
                    raise
                # The place lapsed, or the bouncer failed: log in again with
                # the ticket, which keeps the place if it is still queued
                # and else queues it again, at the tail.
                continue
            finally:
                if timer.active():
                    timer.cancel()
            if not (isinstance(answer, tuple | list) and answer and answer[0] == TURN):
                raise ProtocolError("malformed answer to seat")
            self._tell(*_places(answer[1:]))


async def _leave(root: pb.RemoteReference) -> None:
    """
    Give a place up; the server may be gone already.
    """
    try:
        await root.callRemote("leaveQueue")
    except Exception:
        return
