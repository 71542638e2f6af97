"""
Tests for L{twisted_keycard.sshkeys.SSHAgentAnswerer} against an agent in
memory that answers as OpenSSH's does (the real C{ssh-agent} is driven by
C{tests/test_sshagent.py}): every key type's signature checks as the
bouncer checks it, a login over PB waits for the agent's answer and tries
the agent's keys in turn, L{KeycardClientService} logs in with one, and
what a broken or old agent does is one clear error.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Callable
from typing import Any

import attrs
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization.ssh import (
    SSHCertificateBuilder,
    SSHCertificateType,
)
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IProtocol,
    IProtocolFactory,
    IStreamClientEndpoint,
)
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import IAnswerer, KeycardClientService, KeycardLogin
from twisted_keycard.sshkeys import (
    SK_ED25519,
    AgentError,
    AgentKey,
    PrivateKey,
    SSHAgentAnswerer,
    SSHKeys,
    agentAnswerers,
    agentSign,
    listAgentKeys,
    readAuthorizedKeys,
    verifyWith,
)
from twisted_keycard.testing import KeycardTestServer

from ._realm import AvatarRealm
from .test_pb_clientservice import MemoryEndpoint
from .test_sshkeys import skLine, skSign


@attrs.frozen
class SoftSecurityKey:
    """
    A FIDO security key made in software: signs as an authenticator does,
    touched (flag 1).
    """

    key: ed25519.Ed25519PrivateKey

    def sign(self, data: bytes) -> bytes:
        return skSign(self.key, data)


AnyKey = PrivateKey | SoftSecurityKey


def publicLine(key: AnyKey) -> str:
    if isinstance(key, SoftSecurityKey):
        return skLine(key.key)
    return (
        key.public_key()
        .public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        .decode()
    )


def sshString(*parts: bytes) -> bytes:
    return b"".join(struct.pack(">I", len(p)) + p for p in parts)


def mpint(value: int) -> bytes:
    return value.to_bytes(value.bit_length() // 8 + 1, "big")


def opensshSignature(key: AnyKey, data: bytes, flags: int) -> bytes:
    """
    What OpenSSH's agent answers a sign request with: the SSH signature
    blob.
    """
    if isinstance(key, SoftSecurityKey):
        signed = key.sign(data)
        return sshString(SK_ED25519.encode(), signed[:64]) + signed[64:]
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return sshString(b"ssh-ed25519", key.sign(data))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return sshString(b"ecdsa-sha2-nistp256", sshString(mpint(r), mpint(s)))
    if flags & 2:
        return sshString(
            b"rsa-sha2-256", key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        )
    return sshString(b"ssh-rsa", key.sign(data, padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303


class MemoryAgent(Int32StringReceiver):
    """
    An SSH agent holding C{keys}, as OpenSSH's answers.
    """

    def __init__(self, agent: AgentState) -> None:
        self.agent = agent

    def stringReceived(self, string: bytes) -> None:
        self.agent.requests.append(string[0])
        if self.agent.answer is not None:
            self.sendString(self.agent.answer(string))
            return
        if string[0] == 11:
            listed = b"".join(
                sshString(AgentKey.fromLine(publicLine(k)).blob, c.encode())
                for k, c in self.agent.keys
            )
            answer = bytes([12]) + struct.pack(">I", len(self.agent.keys)) + listed
        else:
            blob, data, flags = _signRequest(string)
            held = [k for k, _ in self.agent.keys if _blobOf(k) == blob]
            if not held:
                answer = bytes([5])
            else:
                answer = bytes([14]) + sshString(opensshSignature(held[0], data, flags))
        self.sendString(answer)


def _blobOf(key: AnyKey) -> bytes:
    return AgentKey.fromLine(publicLine(key)).blob


def _signRequest(string: bytes) -> tuple[bytes, bytes, int]:
    (n,) = struct.unpack_from(">I", string, 1)
    blob = string[5 : 5 + n]
    (m,) = struct.unpack_from(">I", string, 5 + n)
    data = string[9 + n : 9 + n + m]
    (flags,) = struct.unpack_from(">I", string, 9 + n + m)
    return blob, data, flags


@attrs.define
class AgentState:
    keys: list[tuple[AnyKey, str]]
    requests: list[int] = attrs.field(factory=list)
    answer: Callable[[bytes], bytes] | None = None


class _Direct(StringTransport):
    """
    A transport that delivers what is written to its peer at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.peer: IProtocol | None = None
        self.mine: IProtocol | None = None

    def write(self, data: bytes) -> None:
        assert self.peer is not None
        self.peer.dataReceived(data)

    def loseConnection(self) -> None:
        if self.disconnecting:
            return
        self.disconnecting = True
        assert self.mine is not None and self.peer is not None
        self.mine.connectionLost(Failure(ConnectionDone()))
        self.peer.connectionLost(Failure(ConnectionDone()))


@implementer(IStreamClientEndpoint)
@attrs.define
class AgentEndpoint:
    """
    Connects to a L{MemoryAgent}, each connection delivered at once.
    """

    agent: AgentState

    def connect(self, factory: IProtocolFactory) -> Deferred[Any]:
        client = factory.buildProtocol(None)  # type: ignore[arg-type]
        server = MemoryAgent(self.agent)
        assert client is not None
        clientSide, serverSide = _Direct(), _Direct()
        clientSide.peer, clientSide.mine = server, client
        serverSide.peer, serverSide.mine = client, server
        server.makeConnection(serverSide)
        client.makeConnection(clientSide)
        return succeed(client)


ED = ed25519.Ed25519PrivateKey.generate()
EC = ec.generate_private_key(ec.SECP256R1())
RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)


class AgentProtocolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.agent = AgentState([(ED, "ed"), (EC, "ec"), (RSA, "rsa")])
        self.endpoint = AgentEndpoint(self.agent)

    def test_everyKeyType(self) -> None:
        """
        The agent's Ed25519, ECDSA and RSA (asked for rsa-sha2-256)
        signatures check as the bouncer checks signatures.
        """
        keys, skipped = self.successResultOf(
            Deferred.fromCoroutine(listAgentKeys(self.endpoint))
        )
        self.assertEqual([k.comment for k in keys], ["ed", "ec", "rsa"])
        self.assertEqual(skipped, [])
        for key in keys:
            signature = self.successResultOf(
                Deferred.fromCoroutine(agentSign(self.endpoint, key, b"context"))
            )
            self.assertTrue(verifyWith(key.key, signature, b"context"), key)

    def test_oldAgent(self) -> None:
        """
        An agent that signs RSA with SHA-1 (it ignores the flag) is named
        as such, not taken for a wrong key.
        """
        key = AgentKey.fromLine(publicLine(RSA))
        self.agent.answer = lambda request: (
            bytes([14]) + sshString(opensshSignature(RSA, _signRequest(request)[1], 0))
        )
        failure = self.failureResultOf(
            Deferred.fromCoroutine(agentSign(self.endpoint, key, b"x")), AgentError
        )
        self.assertIn("signed with ssh-rsa, not rsa-sha2-256", str(failure.value))

    def test_brokenAgent(self) -> None:
        """
        A refusal, a truncated list, an answer too long and a closed
        connection are each an L{AgentError}.
        """
        key = AgentKey.fromLine(publicLine(ed25519.Ed25519PrivateKey.generate()))
        failure = self.failureResultOf(
            Deferred.fromCoroutine(agentSign(self.endpoint, key, b"x")), AgentError
        )
        self.assertIn("the SSH agent refused to sign", str(failure.value))
        for answer, reason in [
            (bytes([12]) + struct.pack(">I", 1) + b"\0\0\0\x09ab", "truncated"),
            (bytes([12]) + struct.pack(">I", 10**6), "lists more than 1024 keys"),
            (bytes([5]), "refused to list its keys"),
        ]:
            self.agent.answer = lambda request, answer=answer: answer
            failure = self.failureResultOf(
                Deferred.fromCoroutine(listAgentKeys(self.endpoint)), AgentError
            )
            self.assertIn(reason, str(failure.value))
        self.agent.answer = lambda request: b"\0" * (300 * 1024)
        failure = self.failureResultOf(
            Deferred.fromCoroutine(listAgentKeys(self.endpoint)), AgentError
        )
        self.assertIn("too long", str(failure.value))

    def test_keyLines(self) -> None:
        """
        L{AgentKey.fromLine} reads a C{.pub} line; FIDO keys and ECDSA
        curves the bouncer cannot check from an agent are refused saying
        why.
        """
        key = AgentKey.fromLine(publicLine(ED) + " alice@laptop")
        self.assertEqual(key.comment, "alice@laptop")
        self.assertIsNone(key.certificate)
        sk = sshString(b"sk-ecdsa-sha2-nistp256@openssh.com", b"nistp256", b"ssh:")
        for line, reason in [
            (
                publicLine(ec.generate_private_key(ec.SECP384R1())),
                "only nistp256 ECDSA keys work from an agent",
            ),
            (
                "sk-ecdsa-sha2-nistp256@openssh.com " + base64.b64encode(sk).decode(),
                "(a FIDO security key) cannot sign keycard logins (only sk-ssh-ed25519",
            ),
            ("ssh-ed25519", "not an OpenSSH public key line"),
        ]:
            error = self.assertRaises(ValueError, AgentKey.fromLine, line)
            self.assertIn(reason, str(error))


class AgentLoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.agent = AgentState([(ED, "ed"), (EC, "ec")])
        self.endpoint = AgentEndpoint(self.agent)
        self.server = KeycardTestServer.build(
            [SSHKeys(readAuthorizedKeys(f"alice {publicLine(EC)}\n"))], AvatarRealm()
        )

    def test_loginOverPB(self) -> None:
        """
        The agent's keys are tried in turn over one connection: Ed25519
        (not alice's) is refused, ECDSA logs in; each answer is the agent's
        Deferred, which the PB client waits for.
        """
        answerers = self.successResultOf(
            Deferred.fromCoroutine(agentAnswerers("alice", self.endpoint))
        )
        verifyObject(IAnswerer, answerers[0])
        self.assertEqual([a.key.comment for a in answerers], ["ed", "ec"])
        login = self.successResultOf(
            self.server.connect().loginWithKeycard(list(answerers))
        )
        self.assertEqual(login.keycard.avatarId, "alice")
        # listed once, then a signature from each key
        self.assertEqual(self.agent.requests, [11, 13, 13])

    def test_onlyKeysGiven(self) -> None:
        """
        With a C{.pub}'s key, only the agent's identities of that key are
        used; none held is an error naming why.
        """
        only = (AgentKey.fromLine(publicLine(EC)),)
        answerers = self.successResultOf(
            Deferred.fromCoroutine(agentAnswerers("alice", self.endpoint, only))
        )
        self.assertEqual([a.key.comment for a in answerers], ["ec"])
        other = (AgentKey.fromLine(publicLine(RSA)),)
        failure = self.failureResultOf(
            Deferred.fromCoroutine(agentAnswerers("alice", self.endpoint, other)),
            AgentError,
        )
        self.assertIn("the SSH agent holds none of the given keys", str(failure.value))

    def test_certificateGiven(self) -> None:
        """
        A certificate given for a key the agent holds alone is presented
        with the agent's signature: the CA's line logs in.
        """
        ca = ed25519.Ed25519PrivateKey.generate()
        certificate = (
            SSHCertificateBuilder()
            .public_key(ED.public_key())
            .serial(1)
            .type(SSHCertificateType.USER)
            .key_id(b"carol")
            .valid_principals([b"carol"])
            .valid_after(0)
            .valid_before(2**40)
            .sign(ca)
        )
        line = certificate.public_bytes().decode()
        self.server = KeycardTestServer.build(
            [SSHKeys(readAuthorizedKeys(f"carol cert-authority {publicLine(ca)}\n"))],
            AvatarRealm(),
        )
        only = (AgentKey.fromLine(line),)
        answerers = self.successResultOf(
            Deferred.fromCoroutine(agentAnswerers("carol", self.endpoint, only))
        )
        self.assertEqual([a.key.certificate for a in answerers], [line, None])
        login = self.successResultOf(
            self.server.connect().loginWithKeycard(answerers[:1])
        )
        self.assertEqual(login.keycard.avatarId, "carol")

    def test_securityKey(self) -> None:
        """
        A FIDO security key the agent holds (it signs with the
        authenticator's flags and counter after the signature) logs in
        against its C{sk-ssh-ed25519@openssh.com} line.
        """
        sk = SoftSecurityKey(ed25519.Ed25519PrivateKey.generate())
        self.agent.keys = [(sk, "token")]
        self.server = KeycardTestServer.build(
            [SSHKeys(readAuthorizedKeys(f"dana {publicLine(sk)}\n"))], AvatarRealm()
        )
        answerers = self.successResultOf(
            Deferred.fromCoroutine(agentAnswerers("dana", self.endpoint))
        )
        self.assertEqual([a.key.comment for a in answerers], ["token"])
        login = self.successResultOf(
            self.server.connect().loginWithKeycard(list(answerers))
        )
        self.assertEqual(login.keycard.avatarId, "dana")

    def test_clientService(self) -> None:
        """
        L{KeycardClientService} logs in with an answerer made from a
        C{.pub} line, no round trip to the agent before the login.
        """
        endpoint = MemoryEndpoint(self.server)
        logins: list[KeycardLogin] = []
        answerer = SSHAgentAnswerer(
            "alice", AgentKey.fromLine(publicLine(EC)), self.endpoint
        )
        service = KeycardClientService(
            endpoint, [answerer], logins.append, clock=self.server.clock
        )
        service.startService()
        endpoint.flush()
        [login] = logins
        self.assertEqual(login.keycard.avatarId, "alice")
        self.assertEqual(self.agent.requests, [13])
        stopped = service.stopService()
        endpoint.flush()
        self.successResultOf(stopped)
