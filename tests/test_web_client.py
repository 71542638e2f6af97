"""
SCRAM-SHA-256 over HTTP (RFC 7804) and the treq client helper, in memory:
the handshake with the project's own SCRAM messages and with scramp's,
refusals, the server's proof checked, the exchange bound to the client
address, and Bearer tokens fetched and presented.
"""

from __future__ import annotations

import base64
from typing import Any

import scramp
from treq.testing import StubTreq
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource, Resource

from twisted_keycard.error import (
    KeycardDenied,
    KeycardRefused,
    ServerAuthenticationFailed,
)
from twisted_keycard.web import GuardOptions, KeycardHTTPClient, ProxyTrust

from ._web import PASSWORD, Reply, application
from .test_web_guard import APP, GuardTestCase


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(text: str) -> str:
    return base64.b64decode(text).decode()


def params(value: str) -> dict[str, str]:
    _, _, rest = value.partition(" ")
    pairs = [p.strip().partition("=") for p in rest.split(",")]
    return {name: value for name, _, value in pairs}


class SCRAMOverHTTPTests(GuardTestCase):
    def scrampLogin(
        self, user: str, password: str, final: dict[str, str] | None = None
    ) -> tuple[scramp.ScramClient, Reply, Reply]:
        """
        Log in with scramp's client, by hand, as RFC 7804 shows.
        """
        client = scramp.ScramClient(["SCRAM-SHA-256"], user, password)
        first = self.get(
            Authorization=f"SCRAM-SHA-256 data={b64(client.get_client_first())}"
        )
        self.assertEqual(first.code, 401)
        (challenge,) = [
            c for c in first.header("WWW-Authenticate") if c.startswith("SCRAM")
        ]
        sid, data = params(challenge)["sid"], params(challenge)["data"]
        client.set_server_first(unb64(data))
        proof = b64(client.get_client_final())
        second = self.get(
            **(final or {}), Authorization=f"SCRAM-SHA-256 sid={sid}, data={proof}"
        )
        return client, first, second

    def test_scrampInterop(self) -> None:
        """
        A scramp client logs in; it checks the server's signature in
        Authentication-Info; the keycard ends with the request.
        """
        client, _, reply = self.scrampLogin("alice", PASSWORD)
        self.assertEqual(
            (reply.code, reply.body), (200, b"hello, alice (SCRAM-SHA-256)")
        )
        (info,) = reply.header("Authentication-Info")
        client.set_server_final(unb64(params("x " + info)["data"]))
        self.assertEqual(self.app.bouncer.held, {})
        self.assertEqual(self.app.guard.keycardIds(), [])

    def test_unknownAndWrongAlike(self) -> None:
        """
        The challenge of an unknown user looks like a real one, and the
        final refusal is byte-identical to a wrong password's.
        """
        _, firstWrong, wrong = self.scrampLogin("alice", "wrong")
        _, firstUnknown, unknown = self.scrampLogin("mallory", "wrong")
        self.assertEqual(wrong.code, 401)
        self.assertEqual(wrong.shape(), unknown.shape())
        self.assertEqual(firstWrong.code, firstUnknown.code)

    def test_sidBoundToAddress(self) -> None:
        """
        The exchange (sid) answered from another client address is refused.
        """
        self.app = self.makeApp(GuardOptions(proxies=ProxyTrust(["127.0.0.1/32"])))
        _, _, reply = self.scrampLogin(
            "alice", PASSWORD, final={"X-Forwarded-For": "192.0.2.9"}
        )
        self.assertEqual(reply.code, 401)

    def test_sidSingleUse(self) -> None:
        client = scramp.ScramClient(["SCRAM-SHA-256"], "alice", PASSWORD)
        first = self.get(
            Authorization=f"SCRAM-SHA-256 data={b64(client.get_client_first())}"
        )
        (challenge,) = [
            c for c in first.header("WWW-Authenticate") if c.startswith("SCRAM")
        ]
        sid = params(challenge)["sid"]
        client.set_server_first(unb64(params(challenge)["data"]))
        header = f"SCRAM-SHA-256 sid={sid}, data={b64(client.get_client_final())}"
        self.assertEqual(self.get(Authorization=header).code, 200)
        self.assertEqual(self.get(Authorization=header).code, 401)

    def test_channelBindingRefused(self) -> None:
        """
        RFC 7804 has no -PLUS: a client-first asking for channel binding is
        refused.
        """
        first = "p=tls-exporter,,n=alice,r=abcdefghijklmnop"
        reply = self.get(Authorization=f"SCRAM-SHA-256 data={b64(first)}")
        self.assertEqual(reply.code, 401)
        self.assertNotIn("sid=", " ".join(reply.header("WWW-Authenticate")))


class _NoProof(Resource):
    """
    The application, with every Authentication-Info header dropped: an
    impostor that does not know the verifier.
    """

    def __init__(self, inner: IResource) -> None:
        super().__init__()
        self.inner = inner

    def getChildWithDefault(self, path: bytes, request: IRequest) -> Any:
        setHeader = request.setHeader

        def filtered(name: bytes, value: bytes) -> None:
            if name.lower() != b"authentication-info":
                setHeader(name, value)

        request.setHeader = filtered  # type: ignore[method-assign]
        return self.inner.getChildWithDefault(path, request)


class ClientTests(GuardTestCase):
    def client(self, **kwargs: Any) -> tuple[KeycardHTTPClient, StubTreq]:
        stub = StubTreq(application(self.app.guard, self.app.realm))
        return KeycardHTTPClient(stub, **kwargs), stub

    def body(self, d: Any) -> bytes:
        response = self.successResultOf(d)
        content: bytes = self.successResultOf(response.content())
        return content

    def test_scram(self) -> None:
        client, _ = self.client(username="alice", password=PASSWORD)
        self.assertEqual(self.body(client.get(APP)), b"hello, alice (SCRAM-SHA-256)")

    def test_refused(self) -> None:
        for user in ["alice", "mallory"]:
            client, _ = self.client(username=user, password="wrong")
            self.failureResultOf(client.get(APP), KeycardRefused)

    def test_throttled(self) -> None:
        from twisted_keycard.bouncer import Throttle

        self.app = self.makeApp(throttle=Throttle(perAccount=1, perAddress=100))
        client, _ = self.client(username="alice", password="wrong")
        self.failureResultOf(client.get(APP), KeycardRefused)
        self.failureResultOf(client.get(APP), KeycardDenied)

    def test_serverMustProveItself(self) -> None:
        """
        A server whose answer lacks a valid Authentication-Info fails the
        login on the client, even with a 200.
        """
        stub = StubTreq(_NoProof(application(self.app.guard, self.app.realm)))
        client = KeycardHTTPClient(stub, username="alice", password=PASSWORD)
        self.failureResultOf(client.get(APP), ServerAuthenticationFailed)

    def test_fetchTokenThenBearer(self) -> None:
        """
        fetchToken logs in with SCRAM at /token; later requests carry the
        token, and the password is no longer needed.
        """
        client, _ = self.client(username="alice", password=PASSWORD)
        grant = self.successResultOf(client.fetchToken("https://example.com/token"))
        self.assertEqual(grant.avatarId, "alice")
        bearerOnly = KeycardHTTPClient(client.http, token=grant.token)
        self.assertEqual(self.body(bearerOnly.get(APP)), b"hello, alice (Bearer)")

    def test_revokedTokenFallsBackToSCRAM(self) -> None:
        client, _ = self.client(username="alice", password=PASSWORD)
        grant = self.successResultOf(client.fetchToken("https://example.com/token"))
        self.successResultOf(self.app.bouncer.revokeKeycardIds([grant.keycardId]))
        self.assertEqual(self.body(client.get(APP)), b"hello, alice (SCRAM-SHA-256)")
        tokenOnly = KeycardHTTPClient(client.http, token=grant.token)
        self.failureResultOf(tokenOnly.get(APP), KeycardRefused)
