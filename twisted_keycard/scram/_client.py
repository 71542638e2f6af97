"""
The client's side of SCRAM-SHA-256: the answerer, and its cache of the keys
derived from one password (RFC 5802, section 5.1), so that a client that
logs in again does not pay for the key derivation again.
"""

from __future__ import annotations

import hmac
from collections.abc import Sequence
from os import urandom

from zope.interface import implementer

from twisted_keycard.error import ProtocolError, ServerAuthenticationFailed
from twisted_keycard.keycard import (
    BINDING_TYPES,
    ClientChannel,
    IChannelBindingAnswerer,
    Keycard,
)
from twisted_keycard.scram._messages import (
    MODES,
    NOT_TEXT,
    PREFER,
    ClientFinal,
    ClientFirst,
    SCRAMKeycard,
    authMessage,
    b64,
    bindingAttribute,
    checkNonce,
    checkUserName,
    clientHeader,
    clientKey,
    hmacSha256,
    saltedPassword,
    serverKey,
    sha256,
    xor,
)
from twisted_keycard.scram._server import DEFAULT_ITERATIONS

#: Salts whose keys a L{SCRAMKeyCache} remembers, at most.
CACHE_SIZE = 16


class SCRAMKeyCache:
    """
    Remembers the client and server keys derived from a password for a salt
    and iteration count, the oldest forgotten first.  Share one among the
    answerers of one password; keep it as secret as the password.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        """
        @param size: how many salts to remember, at least 1.
        """
        if size < 1:
            raise ValueError("a key cache holds at least one entry")
        self._size = size
        self._keys: dict[tuple[bytes, int], tuple[bytes, bytes]] = {}
        #: The salt and iteration count keys were last asked for, which a
        #: client names in its next first message (see
        #: L{SCRAMKeycard.saltHint}).
        self.lastUsed: tuple[bytes, int] | None = None

    def __repr__(self) -> str:
        return f"<SCRAMKeyCache of {len(self._keys)}>"

    def keys(self, password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
        """
        The client key and the server key of C{password} for this salt and
        iteration count.

        @raise ValueError: if the password is not text (a lone surrogate).
        """
        found = self._keys.get((salt, iterations))
        if found is None:
            salted = saltedPassword(password, salt, iterations)
            found = clientKey(salted), serverKey(salted)
            if len(self._keys) >= self._size:
                self._keys.pop(next(iter(self._keys)))
            self._keys[(salt, iterations)] = found
        self.lastUsed = (salt, iterations)
        return found


#: Random bytes in the client's nonce (144 bits, 24 characters of base64).
CLIENT_NONCE_BYTES = 18

#: The largest iteration count accepted by default: far above what servers
#: use, far below what would keep the client busy for minutes.
MAX_ITERATIONS = 1_000_000


def _text(value: object, what: str) -> str:
    """
    C{value} as text: a C{str} as it is, C{bytes} decoded as UTF-8.

    @raise ValueError: for bytes that are not UTF-8, or anything else; the
        message names C{what}, never the value.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"the {what} is not UTF-8") from None
    raise ValueError(f"the {what} must be str or UTF-8 bytes")


@implementer(IChannelBindingAnswerer)
class SCRAMAnswerer:
    """
    Logs in as C{username} with a password that never leaves the client,
    and checks the server's signature, so the login is mutual.  It refuses
    a challenge that does not extend its nonce or asks for an absurd
    iteration count.  Over TLS it binds the exchange to the connection
    (SCRAM-SHA-256-PLUS, see L{twisted_keycard.scram._messages}), so a relay
    in between is caught.
    """

    keycardClass = SCRAMKeycard

    def __init__(
        self,
        username: str | bytes,
        password: str | bytes,
        *,
        minIterations: int = DEFAULT_ITERATIONS,
        maxIterations: int = MAX_ITERATIONS,
        nonce: str | None = None,
        cache: SCRAMKeyCache | None = None,
        channelBinding: str = PREFER,
        bindingTypes: Sequence[str] = BINDING_TYPES,
    ) -> None:
        """
        @param username: the user name; C{bytes} are read as UTF-8.
        @param password: the password; C{bytes} are read as UTF-8 (as
            twisted.cred's C{UsernamePassword} holds them).
        @param minIterations: the smallest iteration count accepted.
        @param maxIterations: the largest iteration count accepted.
        @param nonce: a fixed client nonce, for test vectors only; 18 random
            bytes in base64 by default, new for each exchange.
        @param cache: keys derived earlier from this same password; a new
            answerer with its own cache by default.
        @param channelBinding: C{"prefer"}: bind to the TLS connection when
            the server can; C{"require"}: refuse to log in without binding;
            C{"disable"}: never bind.
        @param bindingTypes: the channel binding types to use, preferred
            first (C{"tls-exporter"} exists over TLS 1.3 only).
        @raise ValueError: for a user name or password that is not text
            (nor UTF-8 bytes), a user name SCRAM cannot carry, a bad nonce, or
            an unknown channel binding mode or type.
        """
        username = _text(username, "user name")
        password = _text(password, "password")
        if channelBinding not in MODES:
            raise ValueError(f"channelBinding must be one of {MODES}")
        if not set(bindingTypes) <= set(BINDING_TYPES):
            raise ValueError(f"channel binding types are among {BINDING_TYPES}")
        try:
            checkUserName(username)
            if nonce is not None:
                checkNonce(nonce)
        except ProtocolError as e:
            raise ValueError(str(e)) from None
        self.username = username
        self._password = password
        self.minIterations = minIterations
        self.maxIterations = maxIterations
        self._nonce = nonce
        self._cache = cache if cache is not None else SCRAMKeyCache(1)
        self.channelBinding = channelBinding
        self.bindingTypes = tuple(bindingTypes)
        self._first: ClientFirst | None = None
        self._bindingData = b""
        self._expected: bytes | None = None

    def __repr__(self) -> str:
        return f"<SCRAMAnswerer {self.username!r}>"

    def start(self) -> SCRAMKeycard:
        """
        Begin a new exchange over a connection it knows nothing of, so
        without channel binding.

        @return: a L{SCRAMKeycard} holding the client-first message.
        @raise ProtocolError: if channel binding is required.
        """
        return self.startBound(None)

    def startBound(self, channel: ClientChannel | None) -> SCRAMKeycard:
        """
        Begin a new exchange over a connection: bound to it (C{p=}) if it
        has channel binding data and the server did not say it cannot bind,
        C{y} if the server said so, C{n} without binding data.

        @return: a L{SCRAMKeycard} holding the client-first message.
        @raise ProtocolError: if channel binding is required and cannot be
            used.
        """
        header, data = clientHeader(channel, self.channelBinding, self.bindingTypes)
        nonce = self._nonce
        if nonce is None:
            nonce = b64(urandom(CLIENT_NONCE_BYTES))
        self._first = ClientFirst(header, self.username, nonce)
        self._bindingData = data
        self._expected = None
        keycard = SCRAMKeycard(saltHint=self._cache.lastUsed)
        keycard.setClientFirst(self._first)
        return keycard

    def answer(self, keycard: Keycard) -> Keycard:
        """
        Answer the server-first message with the client-final one.

        @return: C{keycard}, with C{clientFinal} set.
        @raise ProtocolError: if no exchange is started or it was answered
            already, or the challenge is malformed, does not extend our
            nonce, or asks for an iteration count out of bounds.
        """
        first = self._first
        if first is None or self._expected is not None:
            raise ProtocolError("no SCRAM challenge expected")
        if not isinstance(keycard, SCRAMKeycard):
            raise ProtocolError("not a SCRAM keycard")
        serverFirst = keycard.parsedServerFirst()
        nonce = serverFirst.nonce
        if not nonce.startswith(first.nonce) or len(nonce) <= len(first.nonce):
            raise ProtocolError("the server's nonce does not extend ours")
        if not self.minIterations <= serverFirst.iterations <= self.maxIterations:
            raise ProtocolError(
                f"refusing an iteration count of {serverFirst.iterations}"
                f" (accepted: {self.minIterations} to {self.maxIterations})"
            )
        try:
            key, server = self._cache.keys(
                self._password, serverFirst.salt, serverFirst.iterations
            )
        except ValueError:
            raise ProtocolError(NOT_TEXT) from None
        binding = bindingAttribute(first.gs2Header, self._bindingData)
        withoutProof = f"c={binding},r={nonce}"
        assert keycard.serverFirst is not None
        message = authMessage(first, keycard.serverFirst, withoutProof)
        proof = xor(key, hmacSha256(sha256(key), message))
        self._expected = hmacSha256(server, message)
        keycard.setClientFinal(ClientFinal(binding, nonce, proof))
        return keycard

    def finish(self, keycard: Keycard) -> None:
        """
        Check the server's signature in the server-final message; the
        exchange is over either way.

        @raise ServerAuthenticationFailed: if there is no exchange to finish,
            or the server sent no signature, an error, or a wrong signature.
        """
        expected, self._expected, self._first = self._expected, None, None
        if expected is None or not isinstance(keycard, SCRAMKeycard):
            raise ServerAuthenticationFailed("the server skipped the SCRAM exchange")
        if keycard.serverFinal is None:
            raise ServerAuthenticationFailed("the server sent no signature")
        try:
            final = keycard.parsedServerFinal()
        except ProtocolError as e:
            raise ServerAuthenticationFailed(str(e)) from None
        if final.signature is None:
            raise ServerAuthenticationFailed(
                f"the server reported an error: {final.error}"
            )
        if not hmac.compare_digest(final.signature, expected):
            raise ServerAuthenticationFailed("the server's signature is wrong")
