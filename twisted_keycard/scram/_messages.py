"""
The four SCRAM messages of RFC 5802, section 7, parsed strictly and
formatted.

Parsing refuses anything this implementation does not speak (channel
binding types other than C{tls-exporter} and C{tls-server-end-point},
authorization identities, extensions) and anything over a length
limit, with a L{ProtocolError} whose message is short and echoes nothing a
peer sent, except the text of a server's C{e=} error, which is checked first.
"""

from __future__ import annotations

import binascii
import re

import attrs
from passlib.utils import saslprep

from twisted_keycard.error import ProtocolError
from twisted_keycard.scram._binding import gs2Header
from twisted_keycard.scram._crypto import KEY_BYTES

#: Characters at most in a nonce (the client's, or the combined one).
MAX_NONCE = 256
#: Characters at most in an escaped user name (C{saslname}).
MAX_NAME = 256
#: Characters at most in a whole message.
MAX_MESSAGE = 1024
#: Characters at most of a server's error repeated in an exception.
MAX_ERROR = 64

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
        (see L{twisted_keycard.scram._binding}).
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


def authMessage(first: ClientFirst, serverFirst: ServerFirst, final: str) -> bytes:
    """
    C{AuthMessage := client-first-message-bare "," server-first-message ","
    client-final-message-without-proof}, the text both sides sign.
    """
    return ",".join([first.bare, serverFirst.format(), final]).encode("utf-8")
