"""
The SCRAM-SHA-256 keycard and the four messages of RFC 5802, section 7,
parsed strictly and written canonically; the key derivations of section 3;
and channel binding (section 6): the GS2 header a client chooses and the
data a server compares.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

import attrs
from passlib.utils import saslprep

from twisted_keycard.error import InvalidKeycard, ProtocolError
from twisted_keycard.keycard import (
    BINDING_TYPES,
    ClientChannel,
    Keycard,
    Step,
    registerKeycard,
    wireField,
)

#: Bytes in a SHA-256 digest, so in every SCRAM-SHA-256 key and proof.
KEY_BYTES = 32


#: Why a password cannot be hashed: it holds a lone surrogate (as text read
#: with C{surrogateescape} from bytes that are not UTF-8 does).
NOT_TEXT = "the password is not UTF-8 text"


def saltedPassword(password: str, salt: bytes, iterations: int) -> bytes:
    """
    C{Hi(Normalize(password), salt, i)}: PBKDF2-HMAC-SHA256 of the
    password as L{normalize} prepares it.

    @raise ValueError: if the password is not text (a lone surrogate).
    """
    try:
        normal = normalize(password).encode("utf-8")
    except UnicodeEncodeError:
        # Python's message would show the character.
        raise ValueError(NOT_TEXT) from None
    return hashlib.pbkdf2_hmac("sha256", normal, salt, iterations)


def normalize(password: str) -> str:
    """
    C{Normalize(password)} as PostgreSQL does it (C{pg_saslprep} in its
    C{src/common/saslprep.c}, used by its server and by libpq): its
    SASLprep (RFC 4013), or the password as it is when SASLprep refuses
    it (a TAB, an emoji unassigned in Unicode 3.2, ...) or maps it to
    nothing, so that every password PostgreSQL takes has the keys
    PostgreSQL gives it.

    A password of ASCII is returned as it is, as PostgreSQL does, in a
    time that hardly depends on its length (SASLprep leaves printable
    ASCII unchanged, and refuses the control characters, which are then
    used as they are); others go through passlib's SASLprep, a few
    microseconds per character, which would show the length of a stored
    password in the time of a check.
    """
    if password.isascii():
        return password
    try:
        prepared: str = saslprep(password)
    except ValueError:
        # PostgreSQL: "if pg_saslprep fails, use the password as is".
        return password
    return prepared or password


def hmacSha256(key: bytes, message: bytes) -> bytes:
    """
    C{HMAC(key, message)} with SHA-256.
    """
    return hmac.digest(key, message, "sha256")


def sha256(data: bytes) -> bytes:
    """
    C{H(data)}.
    """
    return hashlib.sha256(data).digest()


def clientKey(salted: bytes) -> bytes:
    """
    C{ClientKey := HMAC(SaltedPassword, "Client Key")}.
    """
    return hmacSha256(salted, b"Client Key")


def serverKey(salted: bytes) -> bytes:
    """
    C{ServerKey := HMAC(SaltedPassword, "Server Key")}.
    """
    return hmacSha256(salted, b"Server Key")


def xor(a: bytes, b: bytes) -> bytes:
    """
    The exclusive or of two strings of the same length.

    @raise ValueError: if their lengths differ.
    """
    if len(a) != len(b):
        raise ValueError("xor of strings of different lengths")
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


#: The client does not bind.
NO_BINDING = "n,,"
#: The client could bind, but thinks the server cannot.
NOT_OFFERED = "y,,"

#: A client's channel binding modes, as libpq's C{channel_binding}: bind
#: when the server can, insist on binding, never bind.
PREFER = "prefer"
REQUIRE = "require"
DISABLE = "disable"
MODES = (PREFER, REQUIRE, DISABLE)

_CB_NAME = re.compile(r"[A-Za-z0-9.-]+\Z")


def gs2Header(flag: str) -> str:
    """
    The GS2 header of a client-first message from its first part, C{n},
    C{y} or C{p=<type>}, without authorization identity.

    @raise ProtocolError: for a malformed flag or a binding type this
        implementation does not compute.
    """
    if flag.startswith("p="):
        kind = flag[2:]
        if not _CB_NAME.match(kind):
            raise ProtocolError("malformed GS2 header")
        if kind not in BINDING_TYPES:
            raise ProtocolError("channel binding type not supported")
    elif flag not in ("n", "y"):
        raise ProtocolError("malformed GS2 header")
    return f"{flag},,"


def bindingType(header: str) -> str | None:
    """
    The channel binding type a GS2 header asks for, if any.
    """
    if header.startswith("p="):
        return header[2:].partition(",")[0]
    return None


def bindingAttribute(header: str, data: bytes = b"") -> str:
    """
    The C{c=} attribute: base64 of the GS2 header followed by the binding
    data (none unless the header is C{p=...}).
    """
    return binascii.b2a_base64(header.encode("ascii") + data, newline=False).decode()


def clientHeader(
    channel: ClientChannel | None, mode: str, types: Sequence[str]
) -> tuple[str, bytes]:
    """
    What a client sends over a connection: its GS2 header and the data its
    C{c=} attribute binds to.

    @param channel: the connection; C{None} when unknown (no binding).
    @param mode: one of L{MODES}.
    @param types: the binding types the client uses, preferred first.
    @raise ProtocolError: in mode L{REQUIRE}, when it cannot bind.
    """
    bindings = channel.bindings if channel is not None and mode != DISABLE else {}
    usable = [kind for kind in types if kind in bindings]
    if not usable:
        header = NO_BINDING
    elif channel is not None and channel.serverBinds is False:
        header = NOT_OFFERED
    else:
        return f"p={usable[0]},,", bindings[usable[0]]
    if mode == REQUIRE:
        raise ProtocolError("channel binding is required but cannot be used here")
    return header, b""


def checkOffer(header: str, bindings: Mapping[str, bytes] | None) -> None:
    """
    The server's check of a client-first GS2 header against the channel
    binding data its requester gave (RFC 5802, section 6).

    @raise ProtocolError: for a binding type this connection cannot give,
        or for C{y} when it can bind (the client was told it cannot: a
        downgrade).
    """
    kind = bindingType(header)
    if kind is not None and kind not in (bindings or {}):
        raise ProtocolError("channel binding type not available on this connection")
    if header == NOT_OFFERED and bindings:
        raise ProtocolError("channel binding downgrade: the server can bind")


def serverBinding(header: str, bindings: Mapping[str, bytes] | None) -> str:
    """
    The C{c=} attribute the server expects in the client-final message, from
    the binding data of the connection the message came on.

    @raise ProtocolError: if the header asks for a binding that connection
        cannot give.
    """
    kind = bindingType(header)
    if kind is None:
        return bindingAttribute(header)
    data = (bindings or {}).get(kind)
    if data is None:
        raise ProtocolError("channel binding type not available on this connection")
    return bindingAttribute(header, data)


#: Characters at most in a nonce (the client's, or the combined one).
MAX_NONCE = 256
#: Characters at most in an escaped user name (C{saslname}).
MAX_NAME = 256
#: Characters at most in a whole message.
MAX_MESSAGE = 1024
#: Characters at most of a server's error repeated in an exception.
MAX_ERROR = 64
#: Bytes at most of a salt on the wire (a verifier's salt is usually 16).
MAX_SALT = 128
#: The largest iteration count a message may carry.
MAX_COUNT = 2**31 - 1

_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
_SASLNAME = re.compile(r"(?:[^\x00-\x1f\x7f,=]|=2C|=3D)+\Z")
_ESCAPED = re.compile(r"=2C|=3D")
_ITERATIONS = re.compile(r"[1-9][0-9]{0,9}\Z")
_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?\Z")
_ATTRIBUTE = re.compile(r"[A-Za-z]=")
_ERROR = re.compile(r"[\x20-\x2b\x2d-\x7e]+\Z")


def b64(data: bytes) -> str:
    """
    Standard base64 with padding, as text.
    """
    return binascii.b2a_base64(data, newline=False).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """
    Decode canonical base64 (padded, standard alphabet, no stray bits).

    @param what: what the text is, for the error message.
    @raise ProtocolError: if C{text} is not canonical base64.
    """
    if not _B64.match(text):
        raise ProtocolError(f"{what} is not base64")
    # The pattern admits only the alphabet and well-placed padding.
    data = binascii.a2b_base64(text)
    if b64(data) != text:
        raise ProtocolError(f"{what} is not canonical base64")
    return data


def escapeName(name: str) -> str:
    """
    A user name as a SCRAM C{saslname}: C{=} as C{=3D}, C{,} as C{=2C}.
    """
    return name.replace("=", "=3D").replace(",", "=2C")


def unescapeName(saslname: str) -> str:
    """
    The user name a C{saslname} stands for.

    @raise ProtocolError: if it is empty, too long, has a control character,
        or a C{=} that does not start C{=2C} or C{=3D}.
    """
    if len(saslname) > MAX_NAME or not _SASLNAME.match(saslname):
        raise ProtocolError("malformed user name")
    return _ESCAPED.sub(lambda m: "," if m.group() == "=2C" else "=", saslname)


def checkUserName(name: str) -> str:
    """
    @return: C{name}, if SCRAM carries it as it is: SASLprep (RFC 5802,
        section 5.1) leaves it unchanged, so it holds no control, bidi,
        display-changing or unassigned character, and escaped it has 1 to
        L{MAX_NAME} characters.
    @raise ProtocolError: otherwise.
    """
    prepared: str | None = name
    if not (name.isascii() and name.isprintable()):
        # SASLprep leaves printable ASCII as it is: only the rest is asked.
        try:
            prepared = saslprep(name, "user name")
        except ValueError:
            prepared = None
    if prepared != name:
        raise ProtocolError(
            "a user name may not hold control, bidi or display-changing"
            " characters, or characters SASLprep changes"
        )
    if len(escapeName(name)) > MAX_NAME:
        raise ProtocolError("user name is too long")
    unescapeName(escapeName(name))
    return name


def checkNonce(nonce: str) -> str:
    """
    @return: C{nonce}, if it is 1 to L{MAX_NONCE} printable characters
        other than C{,}.
    @raise ProtocolError: otherwise.
    """
    if len(nonce) > MAX_NONCE or not _NONCE.match(nonce):
        raise ProtocolError("malformed nonce")
    return nonce


def _attributes(message: object, names: str, what: str) -> list[str]:
    """
    Split C{message} into its attribute values, which must be named by the
    letters of C{names} in that order, with nothing after them.

    @raise ProtocolError: if it is not so, naming C{what}.
    """
    if not isinstance(message, str):
        raise ProtocolError(f"no {what}")
    if len(message) > MAX_MESSAGE:
        raise ProtocolError(f"{what} is too long")
    parts = message.split(",")
    for part in parts:
        if part.startswith("m="):
            raise ProtocolError("SCRAM extensions are not supported")
    values = []
    for index, part in enumerate(parts):
        if index < len(names) and part[:1] == names[index] and part[1:2] == "=":
            values.append(part[2:])
            continue
        if _ATTRIBUTE.match(part) and part[0] not in names:
            raise ProtocolError("SCRAM extensions are not supported")
        if index >= len(names):
            raise ProtocolError(f"malformed {what}")
        raise ProtocolError(f"malformed {what}: expected {names[index]}=")
    if len(values) < len(names):
        raise ProtocolError(f"malformed {what}: expected {names[len(values)]}=")
    return values


@attrs.frozen
class ClientFirst:
    """
    The client's first message: C{n,,n=<saslname>,r=<nonce>}.

    @ivar gs2Header: the GS2 header: C{n,,}, C{y,,} or C{p=<type>,,}
        (see L{twisted_keycard.scram._messages}).
    @ivar username: the user name, unescaped.
    @ivar nonce: the client's nonce.
    """

    gs2Header: str
    username: str
    nonce: str

    @property
    def bare(self) -> str:
        """
        The message without its GS2 header, as it enters the AuthMessage.
        """
        return f"n={escapeName(self.username)},r={self.nonce}"

    def format(self) -> str:
        """
        The message as sent.
        """
        return self.gs2Header + self.bare

    @classmethod
    def parse(cls, message: object) -> ClientFirst:
        """
        @raise ProtocolError: if C{message} is malformed, asks for a channel
            binding type not supported or an authorization identity, or has
            extensions.
        """
        if not isinstance(message, str):
            raise ProtocolError("no client-first message")
        if len(message) > MAX_MESSAGE:
            raise ProtocolError("client-first message is too long")
        flag, sep, rest = message.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep and sep2):
            raise ProtocolError("malformed client-first message: no GS2 header")
        header = gs2Header(flag)
        if authzid:
            raise ProtocolError("authorization identities are not supported")
        saslname, nonce = _attributes(bare, "nr", "client-first message")
        return cls(header, unescapeName(saslname), checkNonce(nonce))


@attrs.frozen
class ServerFirst:
    """
    The server's first message: C{r=<nonce>,s=<salt>,i=<iterations>}.

    @ivar nonce: the combined nonce, the client's followed by the server's.
    @ivar salt: the salt, decoded.
    @ivar iterations: the PBKDF2 iteration count.
    """

    nonce: str
    salt: bytes
    iterations: int

    def format(self) -> str:
        """
        The message as sent.
        """
        return f"r={self.nonce},s={b64(self.salt)},i={self.iterations}"

    @classmethod
    def parse(cls, message: object) -> ServerFirst:
        """
        @raise ProtocolError: if C{message} is malformed or has extensions.
        """
        nonce, salt, iterations = _attributes(message, "rsi", "server-first message")
        if not _ITERATIONS.match(iterations):
            raise ProtocolError("malformed iteration count")
        raw = unb64(salt, "salt")
        if not raw:
            raise ProtocolError("empty salt")
        return cls(checkNonce(nonce), raw, int(iterations))


@attrs.frozen
class ClientFinal:
    """
    The client's final message: C{c=<channel binding>,r=<nonce>,p=<proof>}.

    @ivar channelBinding: the C{c=} attribute, base64 of the GS2 header and
        the channel binding data.
    @ivar nonce: the combined nonce.
    @ivar proof: the client proof, decoded.
    """

    channelBinding: str
    nonce: str
    proof: bytes = attrs.field(repr=False)

    @property
    def withoutProof(self) -> str:
        """
        The message without its proof, as it enters the AuthMessage.
        """
        return f"c={self.channelBinding},r={self.nonce}"

    def format(self) -> str:
        """
        The message as sent.
        """
        return f"{self.withoutProof},p={b64(self.proof)}"

    @classmethod
    def parse(cls, message: object) -> ClientFinal:
        """
        @raise ProtocolError: if C{message} is malformed or has extensions.
        """
        binding, nonce, proof = _attributes(message, "crp", "client-final message")
        unb64(binding, "channel binding")
        raw = unb64(proof, "proof")
        if len(raw) != KEY_BYTES:
            raise ProtocolError("the proof has the wrong length")
        return cls(binding, checkNonce(nonce), raw)


@attrs.frozen
class ServerFinal:
    """
    The server's final message: C{v=<server signature>} or C{e=<error>}.

    @ivar signature: the server signature, decoded; C{None} for an error.
    @ivar error: the server's error; C{None} for a signature.
    """

    signature: bytes | None = None
    error: str | None = None

    def format(self) -> str:
        """
        The message as sent.
        """
        if self.signature is not None:
            return "v=" + b64(self.signature)
        return f"e={self.error}"

    @classmethod
    def parse(cls, message: object) -> ServerFinal:
        """
        @raise ProtocolError: if C{message} is malformed or has extensions.
        """
        if isinstance(message, str) and message.startswith("e="):
            error = message[2:]
            if len(message) > MAX_MESSAGE or not _ERROR.match(error):
                raise ProtocolError("malformed server error")
            return cls(error=error[:MAX_ERROR])
        (verifier,) = _attributes(message, "v", "server-final message")
        signature = unb64(verifier, "server signature")
        if len(signature) != KEY_BYTES:
            raise ProtocolError("the server signature has the wrong length")
        return cls(signature=signature)


def authMessage(
    first: ClientFirst, serverFirst: ServerFirst | str, final: str
) -> bytes:
    """
    C{AuthMessage := client-first-message-bare "," server-first-message ","
    client-final-message-without-proof}, the text both sides sign.

    @param serverFirst: the server-first message, or its text as sent.
    """
    if not isinstance(serverFirst, str):
        serverFirst = serverFirst.format()
    return f"{first.bare},{serverFirst},{final}".encode()


_M = TypeVar("_M")
_Message = ClientFirst | ServerFirst | ClientFinal | ServerFinal


@registerKeycard
@attrs.define(slots=False, eq=False, kw_only=True)
class SCRAMKeycard(Keycard):
    """
    A keycard whose fields hold the standard SCRAM-SHA-256 messages of
    RFC 5802, so any SCRAM implementation can take either side.  It never
    carries a password.  Over TLS a requester lists C{channelBoundType}
    after it: the bouncer then checks channel binding (SCRAM-SHA-256-PLUS)
    against the C{channelBindings} the requester records.

    Over PB (protocol 2, see L{Step}) only the parts of each message the
    other side cannot rebuild travel: the client-first message; the
    server's part of the nonce, and the salt and iteration count unless the
    client named them as known (C{saltHint}); the client's proof; the
    server's signature.  Each side rebuilds the RFC 5802 texts, so the
    AuthMessage both sign is the standard one.

    @ivar clientFirst: the client-first message (GS2 header included).
    @ivar serverFirst: the server-first message.
    @ivar clientFinal: the client-final message.
    @ivar serverFinal: the server-final message.
    @ivar saltHint: the salt and iteration count the client derived its
        keys with last (from its L{SCRAMKeyCache
        <twisted_keycard.scram.SCRAMKeyCache>}), named in its first message
        so that a server whose verifier has them need not send them again;
        not a wire field of the keycard itself.
    """

    keycardType = "twisted_keycard.scram-sha-256"
    channelBoundType = "twisted_keycard.scram-sha-256-plus"

    clientFirst: str | None = wireField(str, MAX_MESSAGE, setBy="client")
    serverFirst: str | None = wireField(str, MAX_MESSAGE, setBy="bouncer")
    clientFinal: str | None = wireField(str, MAX_MESSAGE, setBy="client")
    serverFinal: str | None = wireField(str, MAX_MESSAGE, setBy="bouncer")
    saltHint: tuple[bytes, int] | None = attrs.field(default=None, repr=False)

    def bindsChannel(self) -> bool:
        """
        Whether the client-first message asks for channel binding (C{p=}).
        """
        return self.clientFirst is not None and self.clientFirst.startswith("p=")

    def account(self) -> str | None:
        """
        The user name in the client-first message, if it parses.
        """
        try:
            return self.parsedClientFirst().username
        except ProtocolError:
            return None

    def _parsed(self, name: str, parse: Callable[[object], _M]) -> _M:
        """
        The message of field C{name}, parsed once for the text it holds.

        @raise ProtocolError: if it does not parse.
        """
        text = getattr(self, name)
        cached = self.__dict__.get("_parsed_" + name)
        if cached is not None and cached[0] is text:
            found: _M = cached[1]
            return found
        message = parse(text)
        self.__dict__["_parsed_" + name] = (text, message)
        return message

    def _set(self, name: str, message: _Message, text: str | None = None) -> None:
        """
        Write a message into field C{name}, keeping it parsed.
        """
        if text is None:
            text = message.format()
        setattr(self, name, text)
        self.__dict__["_parsed_" + name] = (text, message)

    def parsedClientFirst(self) -> ClientFirst:
        """
        The client-first message, parsed once for the text it holds (the
        bouncer reads it for the account and again to start the exchange).

        @raise ProtocolError: if it does not parse.
        """
        return self._parsed("clientFirst", ClientFirst.parse)

    def parsedServerFirst(self) -> ServerFirst:
        """
        The server-first message, parsed once for the text it holds.

        @raise ProtocolError: if it does not parse.
        """
        return self._parsed("serverFirst", ServerFirst.parse)

    def parsedClientFinal(self) -> ClientFinal:
        """
        The client-final message, parsed once for the text it holds.

        @raise ProtocolError: if it does not parse.
        """
        return self._parsed("clientFinal", ClientFinal.parse)

    def parsedServerFinal(self) -> ServerFinal:
        """
        The server-final message, parsed once for the text it holds.

        @raise ProtocolError: if it does not parse.
        """
        return self._parsed("serverFinal", ServerFinal.parse)

    def setClientFirst(self, message: ClientFirst) -> None:
        """
        Write the client-first message, keeping it parsed.
        """
        self._set("clientFirst", message)

    def setServerFirst(self, message: ServerFirst) -> None:
        """
        Write the server-first message, keeping it parsed.
        """
        self._set("serverFirst", message)

    def setClientFinal(self, message: ClientFinal) -> None:
        """
        Write the client-final message, keeping it parsed.
        """
        self._set("clientFinal", message)

    def setServerFinal(self, message: ServerFinal) -> None:
        """
        Write the server-final message, keeping it parsed.
        """
        self._set("serverFinal", message)

    def message(self, step: Step) -> tuple[object, ...]:
        """
        What this side sends at C{step}: C{(client-first[, salt,
        iterations])}; C{(nonce suffix[, salt, iterations])}; C{(proof,)};
        C{(signature,)}.

        @raise ProtocolError: if the message of the step is missing or
            malformed.
        """
        if step is Step.FIRST:
            if self.clientFirst is None:
                raise ProtocolError("no client-first message")
            first = self.clientFirst.encode("utf-8")
            hint = self.saltHint
            return (first,) if hint is None else (first, *hint)
        if step is Step.CHALLENGE:
            serverFirst = self.parsedServerFirst()
            suffix = serverFirst.nonce[len(self.parsedClientFirst().nonce) :]
            known = (serverFirst.salt, serverFirst.iterations)
            if known == self.saltHint:
                return (suffix.encode("ascii"),)
            return (suffix.encode("ascii"), *known)
        if step is Step.ANSWER:
            return (self.parsedClientFinal().proof,)
        signature = self.parsedServerFinal().signature
        return () if signature is None else (signature,)

    def takeMessage(self, step: Step, values: object) -> None:
        """
        Take what the other side sent at C{step} (see L{message}) and
        rebuild the RFC 5802 message it stands for.

        @raise InvalidKeycard: for values of the wrong number, type or
            size.
        """
        if type(values) not in (tuple, list):
            raise InvalidKeycard(f"a {step.value} message is a sequence")
        assert isinstance(values, tuple | list)
        try:
            if step is Step.FIRST:
                self._takeFirst(*values)
            elif step is Step.CHALLENGE:
                self._takeChallenge(*values)
            elif step is Step.ANSWER:
                self._takeAnswer(*values)
            else:
                self._takeProof(*values)
        except TypeError:
            raise InvalidKeycard(
                f"a SCRAM {step.value} message has the wrong number of values"
            ) from None

    def _takeFirst(
        self, first: object, salt: object = None, iterations: object = None
    ) -> None:
        text = self.wireFields()["clientFirst"].fromPB("clientFirst", first)
        hint = None
        if salt is not None or iterations is not None:
            hint = (_salt(salt), _count(iterations))
        self.clientFirst = text  # type: ignore[assignment]
        self.saltHint = hint

    def _takeChallenge(
        self, suffix: object, salt: object = None, iterations: object = None
    ) -> None:
        if type(suffix) is not bytes or not 0 < len(suffix) <= MAX_NONCE:
            raise InvalidKeycard("the server's nonce is not 1 to 256 bytes")
        if salt is None and iterations is None:
            if self.saltHint is None:
                raise InvalidKeycard("the server left out a salt it was not told")
            known = self.saltHint
        else:
            known = (_salt(salt), _count(iterations))
        try:
            nonce = checkNonce(self.parsedClientFirst().nonce + suffix.decode("ascii"))
        except (ProtocolError, UnicodeDecodeError):
            raise InvalidKeycard("the server's nonce is not printable") from None
        self.setServerFirst(ServerFirst(nonce, known[0], known[1]))

    def _takeAnswer(self, proof: object) -> None:
        if type(proof) is not bytes or len(proof) != KEY_BYTES:
            raise InvalidKeycard("the proof is not 32 bytes")
        try:
            header = self.parsedClientFirst().gs2Header
            nonce = self.parsedServerFirst().nonce
        except ProtocolError:
            raise InvalidKeycard("no exchange to answer") from None
        kind = bindingType(header)
        data = b"" if kind is None else (self.channelBindings or {}).get(kind, b"")
        self.setClientFinal(ClientFinal(bindingAttribute(header, data), nonce, proof))

    def _takeProof(self, signature: object = None) -> None:
        if signature is None:
            self.serverFinal = None
            return
        if type(signature) is not bytes or len(signature) != KEY_BYTES:
            raise InvalidKeycard("the server signature is not 32 bytes")
        self.setServerFinal(ServerFinal(signature=signature))


def _salt(value: object) -> bytes:
    if type(value) is not bytes or not 0 < len(value) <= MAX_SALT:
        raise InvalidKeycard(f"a salt is 1 to {MAX_SALT} bytes")
    return value


def _count(value: object) -> int:
    if type(value) is not int or not 0 < value <= MAX_COUNT:
        raise InvalidKeycard("an iteration count is a positive 32-bit integer")
    return value
