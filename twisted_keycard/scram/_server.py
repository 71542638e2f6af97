"""
The bouncer's side of SCRAM-SHA-256: a twisted.cred checker that also
primes the challenge, from verifiers in PostgreSQL's format.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from twisted_keycard._entriesfile import ParsedEntries, WatchedEntries, parseLines
from twisted_keycard._fileversion import RunInThread
from twisted_keycard.error import ProtocolError
from twisted_keycard.keycard._interfaces import IChallenger, IExchange
from twisted_keycard.keycard._keycard import Keycard
from twisted_keycard.keycard._selfverifying import requestVerified
from twisted_keycard.scram._binding import checkOffer
from twisted_keycard.scram._crypto import KEY_BYTES, hmacSha256
from twisted_keycard.scram._exchange import ISCRAMExchange, SCRAMExchange
from twisted_keycard.scram._keycard import SCRAMKeycard
from twisted_keycard.scram._messages import ClientFirst, ServerFirst, b64, checkNonce
from twisted_keycard.scram._verifier import DEFAULT_ITERATIONS, SALT_BYTES, Verifier

#: Random bytes the server adds to the client's nonce.
SERVER_NONCE_BYTES = 18


@implementer(ICredentialsChecker, IChallenger)
class SCRAMVerifiers:
    """
    Primes and checks SCRAM-SHA-256 exchanges against stored verifiers.

    For an unknown user it primes a mock exchange: a salt stable per user
    name (from a secret key) and as long as real salts, the default
    iteration count, the same work at the check, and the same failure as a
    wrong password.
    """

    credentialInterfaces = (ISCRAMExchange,)
    keycardClasses = (SCRAMKeycard,)

    def __init__(
        self,
        verifiers: Mapping[str, Verifier],
        *,
        iterations: int = DEFAULT_ITERATIONS,
        mockKey: bytes | None = None,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
        nonceFactory: Callable[[], str] | None = None,
    ) -> None:
        """
        @param verifiers: verifiers by user name.
        @param iterations: the iteration count of mock exchanges; make it
            that of most real verifiers.
        @param mockKey: the secret the mock salts are made from; random by
            default, so mock salts change when the server restarts.
        @param randomBytes: the source of random bytes.
        @param nonceFactory: makes the server's part of the nonce; by
            default base64 of 18 bytes from C{randomBytes}.
        """
        self._verifiers: WatchedEntries[Verifier] = WatchedEntries(verifiers)
        self.iterations = iterations
        self._mockKey = mockKey if mockKey is not None else secrets.token_bytes(32)
        self._random = randomBytes
        self._nonce = nonceFactory or self._randomNonce

    def __repr__(self) -> str:
        return f"<SCRAMVerifiers of {len(self._verifiers)} users>"

    @classmethod
    def fromFile(
        cls,
        path: str | os.PathLike[str],
        *,
        iterations: int = DEFAULT_ITERATIONS,
        mockKey: bytes | None = None,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
    ) -> SCRAMVerifiers:
        """
        Read C{name:SCRAM-SHA-256$...} lines (see L{parseVerifiers}).  The
        file is read again, in a thread, when it changes (see
        L{WatchedEntries}; C{clock} and C{runInThread} as there); bad lines
        are left out and logged.

        @raise OSError: if the file cannot be read.
        @raise ValueError: if it is not UTF-8 text.
        """
        verifiers = cls(
            {}, iterations=iterations, mockKey=mockKey, randomBytes=randomBytes
        )
        verifiers._verifiers = WatchedEntries(
            {}, path, parseVerifiers, clock=clock, runInThread=runInThread
        )
        return verifiers

    def _randomNonce(self) -> str:
        return b64(self._random(SERVER_NONCE_BYTES))

    def _mock(self, username: str) -> Verifier:
        salt = hmacSha256(self._mockKey, username.encode("utf-8"))[:SALT_BYTES]
        return Verifier(
            iterations=self.iterations,
            salt=salt,
            storedKey=self._random(KEY_BYTES),
            serverKey=self._random(KEY_BYTES),
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

        def found(_: object) -> tuple[Verifier, bool]:
            verifier = self._verifiers.get(username)
            if verifier is None:
                return self._mock(username), False
            return verifier, True

        return self._verifiers.ready().addCallback(found)

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange, once a changed verifiers file is read again
        (see L{_prime}).
        """
        return self._verifiers.ready().addCallback(lambda _: self._prime(keycard))

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
            first = ClientFirst.parse(keycard.clientFirst)
            checkOffer(first.gs2Header, keycard.channelBindings)
            verifier = self._verifiers.get(first.username)
            known = verifier is not None
            if verifier is None:
                verifier = self._mock(first.username)
            nonce = checkNonce(first.nonce + self._nonce())
        except Exception as e:
            return fail(e)
        serverFirst = ServerFirst(nonce, verifier.salt, verifier.iterations)
        return succeed(SCRAMExchange(first, serverFirst, verifier, known))

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
            raise ValueError(f"user {name!r} appears twice")
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
