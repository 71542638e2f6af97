"""
The bouncer's side of SCRAM-SHA-256: what a server keeps of a password (a
verifier, in PostgreSQL's format), one exchange with what it sent kept on
its side, and a twisted.cred checker that holds the verifiers and also
primes the exchanges, mock ones for unknown users.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs
from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._files import (
    ParsedEntries,
    RunInThread,
    WatchedEntries,
    parseLines,
)
from twisted_keycard._mocks import (
    IMockSecretTaker,
    WithMocks,
    mockBytes,
    mocksOf,
    mockSubkey,
    mostCommon,
)
from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard import (
    ExchangeLifecycle,
    ExchangeState,
    ExchangeStep,
    IChallenger,
    IExchange,
    Keycard,
    requestVerified,
)
from twisted_keycard.scram._messages import (
    KEY_BYTES,
    ClientFinal,
    ClientFirst,
    SCRAMKeycard,
    ServerFinal,
    ServerFirst,
    authMessage,
    b64,
    checkNonce,
    checkOffer,
    clientKey,
    hmacSha256,
    saltedPassword,
    serverBinding,
    serverKey,
    sha256,
    unb64,
    xor,
)

MECHANISM = "SCRAM-SHA-256"
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 16

_FORMAT = f"{MECHANISM}$<iterations>:<salt>$<StoredKey>:<ServerKey>"
_VERIFIER = re.compile(
    re.escape(MECHANISM) + r"\$([1-9][0-9]{0,9}):([^$:]*)\$([^$:]*):([^$:]*)\Z"
)


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be positive")


def _nonEmpty(
    instance: object, attribute: attrs.Attribute[bytes], value: bytes
) -> None:
    if not value:
        raise ValueError(f"{attribute.name} must not be empty")


def _key(instance: object, attribute: attrs.Attribute[bytes], value: bytes) -> None:
    if len(value) != KEY_BYTES:
        raise ValueError(f"{attribute.name} must be {KEY_BYTES} bytes")


@attrs.frozen
class Verifier:
    """
    What the server keeps of a password: enough to check a proof and to sign
    its own answer, but not enough to log in.

    @ivar iterations: the PBKDF2 iteration count.
    @ivar salt: the salt.
    @ivar storedKey: C{H(ClientKey)}.
    @ivar serverKey: C{HMAC(SaltedPassword, "Server Key")}.
    """

    iterations: int = attrs.field(
        validator=[attrs.validators.instance_of(int), _positive]
    )
    salt: bytes = attrs.field(
        validator=[attrs.validators.instance_of(bytes), _nonEmpty]
    )
    storedKey: bytes = attrs.field(
        repr=False, validator=[attrs.validators.instance_of(bytes), _key]
    )
    serverKey: bytes = attrs.field(
        repr=False, validator=[attrs.validators.instance_of(bytes), _key]
    )

    @classmethod
    def fromPassword(
        cls,
        password: str,
        iterations: int = DEFAULT_ITERATIONS,
        salt: bytes | None = None,
    ) -> Verifier:
        """
        Make a verifier from a password, with a fresh random 16-byte salt
        unless one is given.

        @raise ValueError: for a non-positive iteration count, an empty salt,
            or a password that is not text (a lone surrogate).  A password
            SASLprep refuses is used as it is, as PostgreSQL does (see
            L{twisted_keycard.scram._messages.normalize}).
        """
        if iterations < 1:
            raise ValueError("iterations must be positive")
        if salt is None:
            salt = secrets.token_bytes(SALT_BYTES)
        elif not salt:
            raise ValueError("salt must not be empty")
        salted = saltedPassword(password, salt, iterations)
        return cls(
            iterations=iterations,
            salt=salt,
            storedKey=sha256(clientKey(salted)),
            serverKey=serverKey(salted),
        )

    @classmethod
    def fromString(cls, text: str) -> Verifier:
        """
        Read C{SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>}, the
        base64 fields as PostgreSQL writes them.

        @raise ValueError: if C{text} is not such a verifier; the message
            says what is wrong without repeating C{text}.
        """
        match = _VERIFIER.match(text.strip())
        if match is None:
            raise ValueError(f"not a SCRAM-SHA-256 verifier (expected {_FORMAT})")
        iterations, salt, stored, server = match.groups()
        try:
            return cls(
                iterations=int(iterations),
                salt=unb64(salt, "the salt"),
                storedKey=unb64(stored, "StoredKey"),
                serverKey=unb64(server, "ServerKey"),
            )
        except (ProtocolError, ValueError) as e:
            raise ValueError(f"bad SCRAM-SHA-256 verifier: {e}") from None

    def toString(self) -> str:
        """
        This verifier in PostgreSQL's format.
        """
        return (
            f"{MECHANISM}${self.iterations}:{b64(self.salt)}"
            f"${b64(self.storedKey)}:{b64(self.serverKey)}"
        )


class ISCRAMExchange(IExchange):
    """
    A SCRAM-SHA-256 exchange on the bouncer's side: the credentials a
    L{twisted_keycard.scram.SCRAMVerifiers} checks.
    """


def _scram(keycard: Keycard) -> SCRAMKeycard:
    if not isinstance(keycard, SCRAMKeycard):
        raise ProtocolError("not a SCRAM keycard")
    return keycard


@implementer(ISCRAMExchange)
@attrs.define(eq=False)
class SCRAMExchange:
    """
    Everything the bouncer sent and must compare later.  Nothing the client
    sends after its first message replaces any of it.

    @ivar first: the client's first message, as the bouncer parsed it.
    @ivar serverFirst: the challenge.
    @ivar verifier: the user's verifier, or random keys for a mock exchange.
    @ivar known: whether the user exists; a mock exchange does the same work
        and then fails.
    @ivar lifecycle: the guard that takes each step once, in order.
    """

    first: ClientFirst
    serverFirst: ServerFirst
    verifier: Verifier = attrs.field(repr=False)
    known: bool = attrs.field(repr=False)
    lifecycle: ExchangeLifecycle = attrs.field(factory=ExchangeLifecycle, init=False)
    _final: ClientFinal | None = attrs.field(default=None, repr=False)
    _serverFirstText: str | None = attrs.field(default=None, repr=False)
    _serverSignature: bytes | None = attrs.field(default=None, repr=False)

    @property
    def state(self) -> ExchangeState:
        """
        Where the exchange is: an L{ExchangeState}.
        """
        return self.lifecycle.state

    @property
    def username(self) -> str:
        """
        The user name the client gave.
        """
        return self.first.username

    def challenge(self, keycard: Keycard) -> bool:
        """
        Write the server-first message into the keycard.

        @return: C{True}: the client must answer.
        """
        with self.lifecycle.step(ExchangeStep.CHALLENGE):
            scram = _scram(keycard)
            scram.setServerFirst(self.serverFirst)
            self._serverFirstText = scram.serverFirst
        return True

    def answer(self, keycard: Keycard) -> None:
        """
        Take the client-final message, the only field the client wrote that
        is read from the keycard; the channel binding data it must carry
        comes from the requester (C{channelBindings}), for the connection
        this message came on.

        @raise ProtocolError: if it is malformed, out of order, for another
            exchange (its nonce differs), or bound to another channel than
            the requester's (a relay in between).
        """
        with self.lifecycle.step(ExchangeStep.ANSWER):
            final = _scram(keycard).parsedClientFinal()
            binding = serverBinding(self.first.gs2Header, keycard.channelBindings)
            if not hmac.compare_digest(final.channelBinding, binding):
                raise ProtocolError("channel binding does not match")
            if not hmac.compare_digest(final.nonce, self.serverFirst.nonce):
                raise ProtocolError("nonce does not match")
            self._final = final

    def verify(self) -> bool:
        """
        Check the client's proof against the stored key, once.  The same
        work is done for a mock exchange, which then fails.

        @return: whether the proof is right and the user exists.
        @raise ProtocolError: if the exchange is not answered, or was
            checked already.
        """
        return self.lifecycle.verify(self._check)

    def _check(self) -> bool:
        assert self._final is not None
        serverFirst = self._serverFirstText or self.serverFirst
        message = authMessage(self.first, serverFirst, self._final.withoutProof)
        signature = hmacSha256(self.verifier.storedKey, message)
        recovered = sha256(xor(self._final.proof, signature))
        good = hmac.compare_digest(recovered, self.verifier.storedKey)
        if not (good and self.known):
            return False
        self._serverSignature = hmacSha256(self.verifier.serverKey, message)
        return True

    def conclude(self, keycard: Keycard) -> None:
        """
        Write the server-final message (the server's signature) into the
        keycard, after a successful check.

        @raise ProtocolError: if the check did not succeed, or the exchange
            was concluded already.
        """
        with self.lifecycle.step(ExchangeStep.CONCLUDE):
            assert self._serverSignature is not None
            _scram(keycard).setServerFinal(ServerFinal(signature=self._serverSignature))


#: Random bytes the server adds to the client's nonce (120 bits, 20
#: characters of base64).
SERVER_NONCE_BYTES = 15


@attrs.frozen
class MockShape:
    """
    What a mock challenge shows besides its salt: the iteration count and
    salt length most verifiers of the file have.
    """

    iterations: int = DEFAULT_ITERATIONS
    saltLength: int = SALT_BYTES

    @classmethod
    def of(cls, verifiers: Iterable[Verifier], iterations: int | None) -> MockShape:
        """
        The shape most C{verifiers} have (the default for none), with
        C{iterations} instead of theirs if given.
        """
        found = mostCommon(
            ((v.iterations, len(v.salt)) for v in verifiers),
            (DEFAULT_ITERATIONS, SALT_BYTES),
        )
        return cls(found[0] if iterations is None else iterations, found[1])


@implementer(ICredentialsChecker, IChallenger, IMockSecretTaker)
class SCRAMVerifiers:
    """
    Primes and checks SCRAM-SHA-256 exchanges against stored verifiers.

    For an unknown user it primes a mock exchange: a salt stable per user
    name (made from the mock secret), the iteration count and salt length
    of most real verifiers, the same work at the priming and at the check,
    and the same failure as a wrong password.
    """

    credentialInterfaces = (ISCRAMExchange,)
    keycardClasses = (SCRAMKeycard,)

    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        *,
        iterations: int | None = None,
        mockKey: bytes | None = None,
        randomBytes: Callable[[int], bytes] = os.urandom,
        nonceFactory: Callable[[], str] | None = None,
    ) -> None:
        """
        @param verifiers: verifiers by user name.
        @param iterations: the iteration count of mock exchanges; by
            default that of most verifiers (of the file, as read now).
        @param mockKey: the mock secret (see L{setMockSecret}); random by
            default, so mock salts change when the server restarts.
        @param randomBytes: the source of random bytes.
        @param nonceFactory: makes the server's part of the nonce; by
            default base64 of L{SERVER_NONCE_BYTES} bytes from
            C{randomBytes}.
        """
        self._verifiers: WatchedEntries[Verifier] = WatchedEntries(verifiers)
        self._iterations = iterations
        self._shape = MockShape.of(verifiers.values(), iterations)
        self.setMockSecret(mockKey if mockKey is not None else secrets.token_bytes(32))
        self._random = randomBytes
        self._nonce = nonceFactory or self._randomNonce
        # A mock exchange's keys: nobody knows them, and it fails anyway.
        self._mockKeys = (randomBytes(KEY_BYTES), randomBytes(KEY_BYTES))
        #: The verifier of every mock exchange: its keys are the mock keys,
        #: its salt and iteration count are not used (the challenge shows
        #: the name's mock salt and the shape's count).
        self._mockVerifier = Verifier(
            iterations=DEFAULT_ITERATIONS,
            salt=bytes(SALT_BYTES),
            storedKey=self._mockKeys[0],
            serverKey=self._mockKeys[1],
        )

    def __repr__(self) -> str:
        return f"<SCRAMVerifiers of {len(self._verifiers)} users>"

    @classmethod
    def fromFile(
        cls,
        path: str | os.PathLike[str],
        *,
        iterations: int | None = None,
        mockKey: bytes | None = None,
        randomBytes: Callable[[int], bytes] = os.urandom,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> SCRAMVerifiers:
        """
        Read C{name:SCRAM-SHA-256$...} lines (see L{parseVerifiers}).  The
        file is read again, in a thread, when it changes (see
        L{WatchedEntries}; C{clock} and C{runInThread} as there); bad lines
        are left out and logged.  Mock exchanges follow the file's most
        common iteration count and salt length.

        @raise OSError: if the file cannot be read.
        @raise ValueError: if it is not UTF-8 text.
        """
        verifiers = cls(
            {}, iterations=iterations, mockKey=mockKey, randomBytes=randomBytes
        )
        verifiers._verifiers = WatchedEntries(
            {}, path, verifiers._parse, clock=clock, runInThread=runInThread
        )
        return verifiers

    def _parse(self, text: str) -> ParsedEntries[Verifier]:
        parsed = parseVerifiers(text)
        shape = MockShape.of(parsed.entries.values(), self._iterations)
        return ParsedEntries(WithMocks(parsed.entries, shape), parsed.problems)

    def setMockSecret(self, secret: bytes) -> None:
        """
        Make mock salts from C{secret} from now on: bouncers given the same
        secret (L{twisted_keycard.store} keeps one) show one salt for a
        name.

        @raise ValueError: if C{secret} is shorter than 16 bytes.
        """
        self._mockKey = mockSubkey(secret, b"SCRAM-SHA-256 salt")

    def _randomNonce(self) -> str:
        return b64(self._random(SERVER_NONCE_BYTES))

    def _mock(self, username: str) -> Verifier:
        shape = mocksOf(self._verifiers.current(), self._shape)
        storedKey, serverKey = self._mockKeys
        return Verifier(
            iterations=shape.iterations,
            salt=mockBytes(self._mockKey, username, shape.saltLength),
            storedKey=storedKey,
            serverKey=serverKey,
        )

    def verifierFor(self, username: str) -> Deferred[tuple[Verifier, bool]]:
        """
        The verifier of C{username}, once a changed verifiers file is read
        again: for checking a plain password against it (see
        L{twisted_keycard.scram.SCRAMPasswordChecker}).

        @return: a L{Deferred} firing with the verifier and C{True}, or for an
            unknown user with the mock verifier a mock exchange would use
            (same salt length and iteration count, random keys) and C{False}.
        """

        def found() -> Deferred[tuple[Verifier, bool]]:
            verifier = self._verifiers.current().get(username)
            if verifier is None:
                return succeed((self._mock(username), False))
            return succeed((verifier, True))

        return self._verifiers.whenCurrent(found)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed verifiers file is read again
        (see L{_prime}).
        """
        return self._verifiers.whenCurrent(lambda: self._prime(keycard))

    def _prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange from the client-first message.

        @return: a L{Deferred} firing with a L{SCRAMExchange} (a mock one for
            an unknown user), or failing with L{ProtocolError} for a
            malformed message or a channel binding the requester's
            connection cannot give (or a C{y} header where it can).
        """
        try:
            if not isinstance(keycard, SCRAMKeycard):
                raise ProtocolError("not a SCRAM keycard")
            first = keycard.parsedClientFirst()
            checkOffer(first.gs2Header, keycard.channelBindings)
            found = self._verifiers.current().get(first.username)
            # Made for every name, so a known one costs the same work.
            shape = mocksOf(self._verifiers.current(), self._shape)
            salt = mockBytes(self._mockKey, first.username, shape.saltLength)
            nonce = checkNonce(first.nonce + self._nonce())
        except Exception as e:
            return fail(e)
        if found is None:
            serverFirst = ServerFirst(nonce, salt, shape.iterations)
            return succeed(SCRAMExchange(first, serverFirst, self._mockVerifier, False))
        serverFirst = ServerFirst(nonce, found.salt, found.iterations)
        return succeed(SCRAMExchange(first, serverFirst, found, True))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        Check an answered exchange, once.

        @return: a L{Deferred} firing with the user name (a C{str}), or failing with
            L{KeycardRefused} for a wrong proof or an unknown user, or with
            L{ProtocolError} for an exchange not answered or checked already.
        """
        return requestVerified(credentials, SCRAMExchange, lambda e: e.username)


def parseVerifiers(text: str) -> ParsedEntries[Verifier]:
    """
    Parse the lines of a verifiers file, C{name:SCRAM-SHA-256$...}, split at
    the first C{:}; blank lines and C{#} comments are skipped, and so are
    bad lines.  A name given twice is left out altogether: which of its
    verifiers holds is for the administrator to say.

    @return: the verifiers, and a problem naming the line number of each
        bad line or repeated name, never the verifier.
    """
    verifiers: dict[str, Verifier] = {}
    repeated: set[str] = set()

    def add(line: str) -> None:
        name, sep, verifier = line.strip().partition(":")
        if not sep or not name:
            raise ValueError("expected name:SCRAM-SHA-256$...")
        if name in verifiers or name in repeated:
            repeated.add(name)
            raise ValueError(
                f"user {name!r} is on more than one line: none of them is taken"
            )
        try:
            verifiers[name] = Verifier.fromString(verifier)
        except ValueError:
            raise ValueError("not a SCRAM-SHA-256 verifier") from None

    problems = parseLines(text, add)
    for name in repeated:
        verifiers.pop(name, None)
    return ParsedEntries(verifiers, problems)


def readVerifiers(text: str) -> dict[str, Verifier]:
    """
    Parse the lines of a verifiers file (see L{parseVerifiers}).

    @raise ValueError: naming the line number of a bad line or a repeated
        name, never the verifier.
    """
    return parseVerifiers(text).strict()
