"""
Signing with keys held by an SSH agent (OpenSSH's C{ssh-agent}, or any
agent that speaks its protocol over the UNIX socket named by
C{SSH_AUTH_SOCK}), so that no program but the agent reads the private key.

The agent protocol (draft-miller-ssh-agent) is small: a message is a
32-bit length and that many bytes, the first of which is its type.  Only
two requests are made: the list of identities, and a signature.  Each is
made on a connection of its own, so a long-running client outlives an
agent that restarts.
"""

from __future__ import annotations

import os
import struct
from base64 import b64decode, b64encode
from collections.abc import Sequence

import attrs
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificate,
    load_ssh_public_identity,
)
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorUNIX, IStreamClientEndpoint
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from twisted_keycard.error import (
    KeycardError,
    ProtocolError,
    ServerAuthenticationFailed,
)
from twisted_keycard.keycard import IAnswerer, Keycard
from twisted_keycard.sshkeys._authorizedkeys import (
    CERT_SUFFIX,
    SK_ED25519,
    PublicKey,
    SecurityKey,
    checkKeyType,
)
from twisted_keycard.sshkeys._keys import SSHKeycard, context

# Message types (draft-miller-ssh-agent, section 5.1).
_FAILURE = 5
_REQUEST_IDENTITIES = 11
_IDENTITIES_ANSWER = 12
_SIGN_REQUEST = 13
_SIGN_RESPONSE = 14
#: Sign with RSA and SHA-256 (rsa-sha2-256), what the bouncer checks.
_RSA_SHA2_256 = 2

#: The longest answer taken from an agent, in bytes.
MAX_AGENT_MESSAGE = 256 * 1024
#: The most identities taken from an agent's list.
MAX_AGENT_KEYS = 1024


class AgentError(KeycardError):
    """
    Raised when the SSH agent cannot be reached, refuses to sign, or
    answers with something that is not its protocol; the message says
    which, in one line.
    """


def _string(data: bytes, offset: int) -> tuple[bytes, int]:
    """
    The SSH C{string} at C{offset} of C{data}, and the offset after it.

    @raise AgentError: if C{data} ends before it.
    """
    if offset + 4 > len(data):
        raise AgentError("the SSH agent's answer is truncated")
    (length,) = struct.unpack_from(">I", data, offset)
    end = offset + 4 + length
    if end > len(data):
        raise AgentError("the SSH agent's answer is truncated")
    return data[offset + 4 : end], end


def _encode(*strings: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(s)) + s for s in strings)


class _AgentProtocol(Int32StringReceiver):
    """
    One request and its answer, on a connection of its own.
    """

    MAX_LENGTH = MAX_AGENT_MESSAGE

    def __init__(self) -> None:
        self._answer: Deferred[bytes] | None = Deferred()

    def ask(self, message: bytes) -> Deferred[bytes]:
        answer = self._answer
        assert answer is not None
        self.sendString(message)  # type: ignore[no-untyped-call]
        return answer

    def _fire(self, result: bytes | AgentError) -> None:
        answer, self._answer = self._answer, None
        if answer is None:
            return
        if self.transport is not None:
            self.transport.loseConnection()
        if isinstance(result, AgentError):
            answer.errback(result)
        else:
            answer.callback(result)

    def stringReceived(self, string: bytes) -> None:
        self._fire(string)

    def lengthLimitExceeded(self, length: int) -> None:
        self._fire(AgentError("the SSH agent's answer is too long"))

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self._fire(AgentError("the SSH agent closed the connection"))


async def _ask(endpoint: IStreamClientEndpoint, message: bytes) -> bytes:
    try:
        protocol: _AgentProtocol = await connectProtocol(  # type: ignore[no-untyped-call]
            endpoint, _AgentProtocol()
        )
    except Exception as e:
        raise AgentError(f"cannot reach the SSH agent: {e}") from None
    answer: bytes = await protocol.ask(message)
    if not answer:
        raise AgentError("the SSH agent sent an empty answer")
    return answer


def agentEndpoint(
    reactor: IReactorUNIX, path: str | None = None
) -> IStreamClientEndpoint:
    """
    The endpoint of the agent at C{path}, by default C{$SSH_AUTH_SOCK}.

    @raise AgentError: when no path is given and C{SSH_AUTH_SOCK} is not
        set, or nothing is at the path.
    """
    if path is None:
        path = os.environ.get("SSH_AUTH_SOCK") or None
    if path is None:
        raise AgentError(
            "no SSH agent: SSH_AUTH_SOCK is not set (start ssh-agent and ssh-add"
            " your key, or give --key-file PRIVATE-KEY)"
        )
    # Twisted's connect to a missing UNIX socket fails in the reactor, not
    # in the Deferred: checked first.
    if not os.path.exists(path):
        raise AgentError(f"no SSH agent at {path} (SSH_AUTH_SOCK): it is not running")
    endpoint: IStreamClientEndpoint = UNIXClientEndpoint(  # type: ignore[no-untyped-call]
        reactor, path
    )
    return endpoint


@attrs.frozen
class AgentKey:
    """
    A key an agent holds, as it lists it.

    @ivar blob: the key (or certificate) in SSH wire form, which names it
        in a signature request.
    @ivar comment: the agent's comment (often the key file's name).
    @ivar key: the public key that signs.
    @ivar certificate: the OpenSSH certificate of C{key}, in one-line form,
        when the identity is one.
    """

    blob: bytes = attrs.field(repr=False)
    comment: str
    key: PublicKey = attrs.field(repr=False)
    certificate: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def fromBlob(cls, blob: bytes, comment: str = "") -> AgentKey:
        """
        @raise ValueError: for a key the bouncer cannot check a signature of
            made by an agent (saying why).
        """
        keyType = _string(blob, 0)[0].decode("ascii", "replace")
        return cls.fromLine(f"{keyType} {b64encode(blob).decode('ascii')}", comment)

    @classmethod
    def fromLine(cls, line: str | bytes, comment: str = "") -> AgentKey:
        """
        The agent's key of a public key or certificate file (C{KEY.pub},
        C{KEY-cert.pub}).

        @raise ValueError: for what is not such a line, or a key the
            bouncer cannot check an agent's signature of.
        """
        text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
        parts = text.split()
        if len(parts) < 2:
            raise ValueError("not an OpenSSH public key line")
        keyType = parts[0]
        if keyType == SK_ED25519:
            try:
                blob = b64decode(parts[1], validate=True)
            except ValueError:
                raise ValueError("not an OpenSSH public key line") from None
            security = SecurityKey.fromBlob(blob)
            return cls(blob, comment or " ".join(parts[2:]), security)
        if keyType.startswith("sk-"):
            raise ValueError(
                f"{keyType} (a FIDO security key) cannot sign keycard logins"
                f" (only {SK_ED25519} ones)"
            )
        try:
            identity = load_ssh_public_identity(f"{keyType} {parts[1]}".encode())
        except UnsupportedAlgorithm:
            raise ValueError(f"{keyType} keys are not taken") from None
        except (ValueError, TypeError, IndexError):
            raise ValueError("not an OpenSSH public key line") from None
        certificate = None
        if isinstance(identity, SSHCertificate):
            certificate = identity.public_bytes().decode("ascii")
            key = checkKeyType(identity.public_key())
            blob = _blob(identity)
        else:
            key = checkKeyType(identity)
            blob = _blob(key)
        if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name != "secp256r1":
            raise ValueError(
                f"an agent signs {key.curve.name} ECDSA keys with a hash the"
                " bouncer does not check (only nistp256 ECDSA keys work from"
                " an agent)"
            )
        return cls(
            blob, comment or (parts[2] if len(parts) > 2 else ""), key, certificate
        )

    def sameKey(self, other: AgentKey) -> bool:
        """
        Whether C{other} signs with this key (as a key or certificate).
        """
        return _blob(self.key) == _blob(other.key)


def _blob(identity: PublicKey | SSHCertificate) -> bytes:
    if isinstance(identity, SecurityKey):
        return identity.blob()
    if isinstance(identity, SSHCertificate):
        line = identity.public_bytes()
    else:
        line = identity.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    return b64decode(line.split()[1])


async def listAgentKeys(
    endpoint: IStreamClientEndpoint,
) -> tuple[list[AgentKey], list[str]]:
    """
    The agent's identities the bouncer can check a signature of, in the
    agent's order.

    @return: those keys, and a line for each identity left out saying why.
    @raise AgentError: if the agent cannot be asked.
    """
    answer = await _ask(endpoint, bytes([_REQUEST_IDENTITIES]))
    if answer[0] != _IDENTITIES_ANSWER:
        raise AgentError("the SSH agent refused to list its keys")
    if len(answer) < 5:
        raise AgentError("the SSH agent's answer is truncated")
    (count,) = struct.unpack_from(">I", answer, 1)
    if count > MAX_AGENT_KEYS:
        raise AgentError(f"the SSH agent lists more than {MAX_AGENT_KEYS} keys")
    keys: list[AgentKey] = []
    skipped: list[str] = []
    offset = 5
    for _ in range(count):
        blob, offset = _string(answer, offset)
        rawComment, offset = _string(answer, offset)
        comment = rawComment.decode("utf-8", "replace")
        try:
            keys.append(AgentKey.fromBlob(blob, comment))
        except ValueError as e:
            skipped.append(f"{comment or 'a key'}: {e}")
    return keys, skipped


async def agentSign(
    endpoint: IStreamClientEndpoint, key: AgentKey, message: bytes
) -> bytes:
    """
    The agent's signature of C{message} with C{key}, in the form
    L{twisted_keycard.sshkeys.signWith} gives (and the bouncer checks).

    @raise AgentError: if the agent refuses (it does not hold the key, or
        its user declined) or signs with an algorithm the bouncer does not
        check.
    """
    flags = _RSA_SHA2_256 if isinstance(key.key, rsa.RSAPublicKey) else 0
    request = (
        bytes([_SIGN_REQUEST]) + _encode(key.blob, message) + struct.pack(">I", flags)
    )
    answer = await _ask(endpoint, request)
    if answer[0] != _SIGN_RESPONSE:
        raise AgentError(
            f"the SSH agent refused to sign with {key.comment or 'the key'}"
            " (is it loaded? ssh-add -l lists the agent's keys)"
        )
    blob, _ = _string(answer, 1)
    return signatureOf(key.key, blob)


def signatureOf(key: PublicKey, blob: bytes) -> bytes:
    """
    The signature of an SSH signature blob (C{string} algorithm, C{string}
    signature), as cryptography makes and checks it: raw for Ed25519 and
    RSA, DER for ECDSA.

    @raise AgentError: for a blob of another algorithm than the bouncer
        checks for C{key}.
    """
    algorithm, offset = _string(blob, 0)
    signature, offset = _string(blob, offset)
    if isinstance(key, SecurityKey):
        # The flags byte and the counter follow (OpenSSH's PROTOCOL.u2f).
        if algorithm != SK_ED25519.encode():
            raise AgentError(f"the SSH agent did not sign with {SK_ED25519}")
        if len(signature) != 64 or len(blob) != offset + 5:
            raise AgentError("the SSH agent's security key signature is malformed")
        return signature + blob[offset:]
    if isinstance(key, ed25519.Ed25519PublicKey):
        expected = b"ssh-ed25519"
    elif isinstance(key, ec.EllipticCurvePublicKey):
        expected = b"ecdsa-sha2-nistp256"
    else:
        expected = b"rsa-sha2-256"
    if algorithm != expected:
        name = algorithm.decode("ascii", "replace")
        raise AgentError(
            f"the SSH agent signed with {name}, not {expected.decode()}"
            " (is it too old for RSA SHA-2 signatures?)"
        )
    if isinstance(key, ec.EllipticCurvePublicKey):
        r, offset = _string(signature, 0)
        s, _ = _string(signature, offset)
        return encode_dss_signature(
            int.from_bytes(r, "big", signed=True), int.from_bytes(s, "big", signed=True)
        )
    if isinstance(key, rsa.RSAPublicKey):
        return signature.rjust((key.key_size + 7) // 8, b"\0")
    return signature


@implementer(IAnswerer)
class SSHAgentAnswerer:
    """
    The client side of a signature login, signed by an SSH agent: the
    private key never leaves the agent.  Its L{answer} returns a
    L{Deferred}, since the agent is asked over a connection.

    Make one with a key the agent lists (L{listAgentKeys}, or
    L{agentAnswerers}), or with L{AgentKey.fromLine} of the key's C{.pub}
    (or C{-cert.pub}) file, which needs no round trip::

        agent = agentEndpoint(reactor)
        key = AgentKey.fromLine(Path("~/.ssh/id_ed25519.pub").expanduser().read_text())
        KeycardClientService(endpoint, [SSHAgentAnswerer("alice", key, agent)], ...)
    """

    keycardClass = SSHKeycard

    def __init__(self, name: str, key: AgentKey, agent: IStreamClientEndpoint) -> None:
        """
        @param key: the agent's key to sign with; a certificate is presented
            with the login.
        @param agent: the agent's endpoint (L{agentEndpoint}).
        """
        self.name = name
        self.key = key
        self._agent = agent

    def __repr__(self) -> str:
        return f"<SSHAgentAnswerer {self.name!r} {self.key.comment!r}>"

    def start(self) -> Keycard:
        return SSHKeycard(name=self.name, certificate=self.key.certificate)

    def answer(self, keycard: Keycard) -> Deferred[Keycard]:
        if not isinstance(keycard, SSHKeycard) or not keycard.nonce or not keycard.id:
            raise ProtocolError("no challenge to answer")
        message = context(self.name, keycard.nonce, keycard.id, keycard.requesterName)

        async def sign() -> Keycard:
            signature = await agentSign(self._agent, self.key, message)
            keycard.signature = b64encode(signature).decode("ascii")
            return keycard

        return Deferred.fromCoroutine(sign())

    def finish(self, keycard: Keycard) -> None:
        if not isinstance(keycard, SSHKeycard):
            raise ServerAuthenticationFailed("the server answered with another kind")


async def agentAnswerers(
    name: str,
    agent: IStreamClientEndpoint,
    only: Sequence[AgentKey] = (),
) -> list[SSHAgentAnswerer]:
    """
    An answerer for each of the agent's keys, in the agent's order
    (certificates before plain keys), to log in with the first the bouncer
    takes.

    @param only: keep only the agent's identities that sign with one of
        these keys (read from C{.pub} files); a certificate among them
        (a C{-cert.pub}) is presented with its key even when the agent
        holds the key alone.
    @raise AgentError: if the agent cannot be asked, or holds no key that
        fits, saying why.
    """
    keys, skipped = await listAgentKeys(agent)
    if only:
        keys = [k for k in keys if any(k.sameKey(o) for o in only)]
        # A certificate given for a key the agent holds without it.
        keys += [
            attrs.evolve(k, certificate=o.certificate)
            for o in only
            if o.certificate is not None
            for k in keys
            if k.certificate is None
            and k.sameKey(o)
            and not any(h.certificate == o.certificate for h in keys)
        ]
    if not keys:
        why = "; ".join(skipped)
        what = "none of the given keys" if only else "no key a bouncer checks"
        raise AgentError(
            f"the SSH agent holds {what}"
            + (f" ({why})" if why else "")
            + " (ssh-add -l lists them)"
        )
    keys.sort(key=lambda k: k.certificate is None)
    return [SSHAgentAnswerer(name, k, agent) for k in keys]


def isPublicKeyFile(data: bytes) -> bool:
    """
    Whether C{data} is a public key or certificate line (a C{.pub} file),
    not a private key.
    """
    first = data.split(None, 1)[0] if data.strip() else b""
    text = first.decode("ascii", "replace")
    return text.startswith(("ssh-", "ecdsa-", "sk-")) or text.endswith(CERT_SUFFIX)
