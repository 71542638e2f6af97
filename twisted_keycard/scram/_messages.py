"""
The four SCRAM messages of RFC 5802, parsed strictly and formatted.
"""

from __future__ import annotations

import binascii
import re
from base64 import b64decode, b64encode

import attrs

from ..error import ProtocolError

#: Characters at most in a nonce, a user name, or a whole message.
MAX_NONCE = 256
MAX_NAME = 256
MAX_MESSAGE = 1024

_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+\Z")
_B64 = re.compile(r"[A-Za-z0-9+/]*={0,2}\Z")


def b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


def unb64(text: str, what: str) -> bytes:
    """
    Decode strict base64.

    @raise ProtocolError: if C{text} is not canonical base64.
    """
    if not _B64.match(text) or len(text) % 4:
        raise ProtocolError(f"{what} is not base64")
    try:
        return b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{what} is not base64") from None


def escapeName(name: str) -> str:
    """
    A user name as a SCRAM C{saslname}.
    """
    return name.replace("=", "=3D").replace(",", "=2C")


def unescapeName(saslname: str) -> str:
    """
    @raise ProtocolError: for a C{=} that does not start C{=2C} or C{=3D}.
    """
    if "=" in saslname.replace("=2C", "").replace("=3D", ""):
        raise ProtocolError("malformed user name")
    return saslname.replace("=2C", ",").replace("=3D", "=")


def checkNonce(nonce: str) -> str:
    if len(nonce) > MAX_NONCE or not _NONCE.match(nonce):
        raise ProtocolError("malformed nonce")
    return nonce


def _attributes(message: str, names: str, what: str) -> list[str]:
    """
    Split C{message} into its attribute values, which must be named
    C{names} in that order, with nothing after them.
    """
    if not isinstance(message, str) or len(message) > MAX_MESSAGE:
        raise ProtocolError(f"malformed {what}")
    parts = message.split(",")
    if len(parts) != len(names):
        raise ProtocolError(f"malformed {what}")
    values = []
    for part, name in zip(parts, names, strict=True):
        if part[:2] != name + "=":
            raise ProtocolError(f"malformed {what}")
        values.append(part[2:])
    return values


@attrs.frozen
class ClientFirst:
    """
    The client's first message.

    @ivar gs2Header: the GS2 header, C{n,,} or C{y,,}.
    @ivar username: the unescaped user name.
    @ivar nonce: the client nonce.
    """

    gs2Header: str
    username: str
    nonce: str

    @property
    def bare(self) -> str:
        return f"n={escapeName(self.username)},r={self.nonce}"

    def format(self) -> str:
        return self.gs2Header + self.bare

    @classmethod
    def parse(cls, message: object) -> ClientFirst:
        if not isinstance(message, str) or len(message) > MAX_MESSAGE:
            raise ProtocolError("malformed client-first message")
        flag, sep, rest = message.partition(",")
        authzid, sep2, bare = rest.partition(",")
        if not (sep and sep2):
            raise ProtocolError("malformed client-first message")
        if flag.startswith("p="):
            raise ProtocolError("channel binding is not supported here")
        if flag not in ("n", "y") or authzid:
            raise ProtocolError("malformed GS2 header")
        saslname, nonce = _attributes(bare, "nr", "client-first message")
        if not saslname or len(saslname) > MAX_NAME:
            raise ProtocolError("malformed user name")
        return cls(f"{flag},,", unescapeName(saslname), checkNonce(nonce))


@attrs.frozen
class ServerFirst:
    nonce: str
    salt: bytes
    iterations: int

    def format(self) -> str:
        return f"r={self.nonce},s={b64(self.salt)},i={self.iterations}"

    @classmethod
    def parse(cls, message: object) -> ServerFirst:
        nonce, salt, iterations = _attributes(message, "rsi", "server-first message")  # type: ignore[arg-type]
        if not iterations.isdigit() or len(iterations) > 10:
            raise ProtocolError("malformed iteration count")
        raw = unb64(salt, "salt")
        if not raw:
            raise ProtocolError("empty salt")
        return cls(checkNonce(nonce), raw, int(iterations))


@attrs.frozen
class ClientFinal:
    channelBinding: str
    nonce: str
    proof: bytes

    @property
    def withoutProof(self) -> str:
        return f"c={self.channelBinding},r={self.nonce}"

    def format(self) -> str:
        return f"{self.withoutProof},p={b64(self.proof)}"

    @classmethod
    def parse(cls, message: object) -> ClientFinal:
        binding, nonce, proof = _attributes(message, "crp", "client-final message")  # type: ignore[arg-type]
        unb64(binding, "channel binding")
        return cls(binding, checkNonce(nonce), unb64(proof, "proof"))


def parseServerFinal(message: object) -> bytes:
    """
    The server signature of a server-final message.

    @raise ProtocolError: if it is malformed or an error (C{e=...}).
    """
    if isinstance(message, str) and message.startswith("e="):
        raise ProtocolError(f"the server reported an error: {message[2:60]}")
    (verifier,) = _attributes(message, "v", "server-final message")  # type: ignore[arg-type]
    return unb64(verifier, "server signature")
