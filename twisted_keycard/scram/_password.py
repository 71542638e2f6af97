"""
SCRAM-SHA-256 and plain passwords meeting halfway: plain passwords checked
against SCRAM-SHA-256 verifiers, for requesters that receive a password
(an HTTP guard taking Basic), and SCRAM-SHA-256 over a twisted.cred
checker that holds passwords and checks them (the C{fromPortal} path).
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Callable
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from twisted_keycard._hashpool import HashPool, IHashPool
from twisted_keycard._mocks import IMockSecretTaker, mockBytes, mockSubkey
from twisted_keycard.error import KeycardDenied, KeycardRefused, ProtocolError
from twisted_keycard.keycard import IChallenger, IExchange, Keycard, addressGroup
from twisted_keycard.passwords import (
    IPasswordExchange,
    PasswordExchange,
    PasswordKeycard,
)
from twisted_keycard.scram._messages import (
    KEY_BYTES,
    SCRAMKeycard,
    ServerFirst,
    b64,
    checkNonce,
    checkOffer,
    clientKey,
    saltedPassword,
    sha256,
)
from twisted_keycard.scram._server import (
    DEFAULT_ITERATIONS,
    SALT_BYTES,
    SERVER_NONCE_BYTES,
    SCRAMExchange,
    SCRAMVerifiers,
    Verifier,
)


def storedKeyMatches(password: str, verifier: Verifier) -> bool:
    """
    Whether C{password} gives the verifier's C{StoredKey}: the PBKDF2 a
    SCRAM client does, then C{H(ClientKey)}, compared in constant time.
    Blocking (PBKDF2): run it in a thread.

    A password that is not text (a lone surrogate) matches nothing, after
    the same work.
    """
    try:
        salted = saltedPassword(password, verifier.salt, verifier.iterations)
    except ValueError:
        saltedPassword("", verifier.salt, verifier.iterations)
        return False
    return hmac.compare_digest(sha256(clientKey(salted)), verifier.storedKey)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else value


@implementer(ICredentialsChecker, IChallenger)
class SCRAMPasswordChecker:
    """
    Checks L{PasswordKeycard}s (and twisted.cred's L{IUsernamePassword})
    against L{SCRAMVerifiers}.

    An unknown user is checked against the mock verifier the SCRAM
    exchange would use (same salt length and iteration count), with the
    same PBKDF2 work and the same refusal as a wrong password.  The PBKDF2
    runs in a L{HashPool}, bounded and shared fairly among address groups,
    as L{twisted_keycard.passwords.PasswordFile}'s hashes do.
    """

    credentialInterfaces = (IUsernamePassword, IPasswordExchange)
    keycardClasses = (PasswordKeycard,)

    def __init__(
        self,
        verifiers: SCRAMVerifiers,
        *,
        hashPool: IHashPool | None = None,
    ) -> None:
        """
        @param verifiers: the verifiers, also used for SCRAM logins.
        @param hashPool: runs the PBKDF2 off the reactor thread, bounded;
            by default a L{HashPool} of its own on the global reactor.
        """
        self.verifiers = verifiers
        #: The pool the PBKDF2 runs in; set it to share one among checkers.
        self.hashPool: IHashPool = HashPool() if hashPool is None else hashPool

    def __repr__(self) -> str:
        return f"<SCRAMPasswordChecker of {self.verifiers!r}>"

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        return PasswordExchange.of(keycard)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        @return: a L{Deferred} firing with the user name, or failing with
            L{KeycardRefused} for a wrong password or an unknown user, or
            with L{KeycardDenied} at once when the hash pool is full.
        """
        return Deferred.fromCoroutine(self._check(credentials))

    async def _check(self, credentials: Any) -> str:
        username = _text(credentials.username)
        password = _text(credentials.password)
        verifier, known = await self.verifiers.verifierFor(username)
        key = addressGroup(getattr(credentials, "address", None))
        good = await self.hashPool.run(key, storedKeyMatches, password, verifier)
        if not (good and known):
            raise KeycardRefused()
        return username


class IPasswordSCRAMExchange(IExchange):
    """
    A SCRAM-SHA-256 exchange whose keys come from a password a checker
    holds: the credentials a L{CheckPasswordSCRAM} checks.
    """


@implementer(IPasswordSCRAMExchange)
class PasswordSCRAMExchange(SCRAMExchange):
    """
    A L{SCRAMExchange} primed without a verifier: its C{verifier} is set by
    L{SCRAMProof.checkPassword}, from the password the checker holds.
    """


@implementer(IUsernamePassword)
class SCRAMProof:
    """
    What a password checker is handed: the user name, and a
    C{checkPassword} that derives the SCRAM keys from the stored password
    and checks the client's proof against them.  It has no C{password} to
    give: reading it refuses the login.

    @ivar checked: whether the client's proof was checked (against the
        stored password or a mock one).
    @ivar matched: whether it matched a stored password.
    """

    def __init__(
        self,
        exchange: PasswordSCRAMExchange,
        onPasswordRead: Callable[[], None],
        randomBytes: Callable[[int], bytes],
    ) -> None:
        self._exchange = exchange
        self._onPasswordRead = onPasswordRead
        self._random = randomBytes
        self.username: bytes = exchange.username.encode("utf-8")
        self.checked = False
        self.matched = False

    def __repr__(self) -> str:
        return f"<SCRAMProof for {self._exchange.username!r}>"

    @property
    def password(self) -> bytes:
        """
        @raise UnauthorizedLogin: always: SCRAM never sends the password.
        """
        self._onPasswordRead()
        raise UnauthorizedLogin("SCRAM sends no password to compare")

    def checkPassword(self, password: bytes | str) -> bool:
        """
        Check the client's proof against C{password}, the password the
        checker holds for this user; once, later calls answer C{False}.
        """
        if self.checked:
            return False
        if isinstance(password, bytes):
            try:
                password = password.decode("utf-8")
            except UnicodeDecodeError:
                self.mock()
                return False
        if not isinstance(password, str):
            self.mock()
            return False
        exchange = self._exchange
        salt, iterations = exchange.serverFirst.salt, exchange.serverFirst.iterations
        try:
            exchange.verifier = Verifier.fromPassword(password, iterations, salt)
        except ValueError:
            # A stored password that is not text can never be proved.
            self.mock()
            return False
        exchange.known = True
        self.checked = True
        try:
            self.matched = exchange.verify()
        except ProtocolError:
            self.matched = False
        return self.matched

    def mock(self) -> None:
        """
        Do the work of a check against a password nobody knows, which then
        fails: for a user the checker refused without asking for a check.
        """
        if self.checked:
            return
        self.checked = True
        exchange = self._exchange
        serverFirst = exchange.serverFirst
        unknown = b64(self._random(KEY_BYTES))
        exchange.verifier = Verifier.fromPassword(
            unknown, serverFirst.iterations, serverFirst.salt
        )
        exchange.known = False
        with contextlib.suppress(ProtocolError):
            exchange.verify()


@implementer(ICredentialsChecker, IChallenger, IMockSecretTaker)
class CheckPasswordSCRAM:
    """
    Primes SCRAM-SHA-256 exchanges and checks them with a password
    checker's C{requestAvatarId}, passing it a L{SCRAMProof}.

    A user's salt is made from the server key and the user name, so known
    and unknown users show the same kind of challenge; an unknown user the
    checker refuses without a check gets the same key derivation, after the
    refusal, from a mock password of printable ASCII: a stored password of
    ASCII takes the same steps whatever its length (see
    L{twisted_keycard.scram._messages.normalize}).  The checker's own work
    (looking the user up) may still take a different time for known and
    unknown users, and so may a stored password with other characters
    (SASLprep'd character by character).

    @ivar checker: the password checker.
    """

    credentialInterfaces = (IPasswordSCRAMExchange,)
    keycardClasses = (SCRAMKeycard,)
    log = Logger()

    def __init__(
        self,
        checker: ICredentialsChecker,
        *,
        key: bytes | None = None,
        iterations: int = DEFAULT_ITERATIONS,
        randomBytes: Callable[[int], bytes] = secrets.token_bytes,
    ) -> None:
        """
        @param checker: a checker of L{IUsernamePassword} that calls
            C{checkPassword} with the password it holds.
        @param key: the server key salts are made from (at least 16
            bytes); random by default, so salts change when the server
            restarts, unless the bouncer's store hands its own (see
            L{setMockSecret}).
        @param iterations: the PBKDF2 iteration count of every user.
        @param randomBytes: the source of random bytes.
        @raise ValueError: for a checker that does not take
            L{IUsernamePassword}, a key under 16 bytes, or an iteration
            count under 1.
        """
        if IUsernamePassword not in getattr(checker, "credentialInterfaces", ()):
            raise ValueError(f"{checker!r} does not check IUsernamePassword")
        if iterations < 1:
            raise ValueError("iterations must be positive")
        self.checker = checker
        self.iterations = iterations
        self._random = randomBytes
        self._warned = False
        self.setMockSecret(key if key is not None else secrets.token_bytes(32))

    def __repr__(self) -> str:
        return f"<CheckPasswordSCRAM over {self.checker!r}>"

    def setMockSecret(self, secret: bytes) -> None:
        """
        Make salts from C{secret} from now on: the secret a bouncer's store
        keeps, so that a user's salt outlives a restart.

        @raise ValueError: if C{secret} is shorter than 16 bytes.
        """
        self._saltKey = mockSubkey(secret, b"SCRAM-SHA-256 checkPassword salt")

    def prime(self, keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange from the client-first message, with the user's
        derived salt and the fixed iteration count.

        @return: a L{Deferred} firing with a L{PasswordSCRAMExchange}, or
            failing with L{ProtocolError} for a malformed message or a
            channel binding the connection cannot give.
        """
        try:
            if not isinstance(keycard, SCRAMKeycard):
                raise ProtocolError("not a SCRAM keycard")
            first = keycard.parsedClientFirst()
            checkOffer(first.gs2Header, keycard.channelBindings)
            salt = mockBytes(self._saltKey, first.username, SALT_BYTES)
            nonce = checkNonce(first.nonce + b64(self._random(SERVER_NONCE_BYTES)))
        except Exception as e:
            return fail(e)
        # Keys nobody knows, until the checker hands over a password.
        placeholder = Verifier(
            iterations=self.iterations,
            salt=salt,
            storedKey=self._random(KEY_BYTES),
            serverKey=self._random(KEY_BYTES),
        )
        serverFirst = ServerFirst(nonce, salt, self.iterations)
        return succeed(PasswordSCRAMExchange(first, serverFirst, placeholder, False))

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        """
        Check an answered exchange through the password checker.

        @return: a L{Deferred} firing with the checker's avatar id, or
            failing with L{KeycardRefused} when the checker refuses or
            accepts without a matching proof, or with the checker's own
            error for anything else.
        """
        if not isinstance(credentials, PasswordSCRAMExchange):
            return fail(KeycardRefused())
        proof = SCRAMProof(credentials, self._passwordRead, self._random)

        def checked(avatarId: object) -> object:
            if not proof.matched:
                # A checker that accepted without a check (or after a
                # failed one) proves nothing.
                proof.mock()
                raise KeycardRefused()
            return avatarId

        def refused(failure: Any) -> Any:
            failure.trap(UnauthorizedLogin)
            proof.mock()
            if failure.check(KeycardDenied):
                return failure
            raise KeycardRefused()

        return maybeDeferred(self.checker.requestAvatarId, proof).addCallbacks(
            checked, refused
        )

    def _passwordRead(self) -> None:
        if not self._warned:
            self._warned = True
            self.log.warn(
                "{checker} reads the password instead of calling checkPassword:"
                " it cannot back SCRAM logins, and refuses them all",
                checker=repr(self.checker),
            )
