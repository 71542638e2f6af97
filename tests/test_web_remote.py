"""
The web guard in front of a bouncer in another process (L{RemoteBouncer}),
in memory: a SCRAM-over-HTTP login and a token go through the remote
bouncer, and its revocation comes back to drop the guard's login.
"""

from __future__ import annotations

from typing import Any

from treq.testing import StubTreq
from twisted.cred.portal import Portal
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardRoot, KeycardServerFactory, MemoryStore
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.error import KeycardRefused
from twisted_keycard.remote import BouncerRealm, RemoteBouncer
from twisted_keycard.scram import SCRAMVerifiers, Verifier
from twisted_keycard.web import KeycardGuard, KeycardHTTPClient

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._web import PASSWORD, WebRealm, application

PORT = 8800
APP = "https://example.com/app"


class RemoteGuardTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.bouncer = Bouncer(
            [
                SCRAMVerifiers({"alice": Verifier.fromPassword(PASSWORD)}),
                PassphraseChecker({"web": "requester-secret"}),
            ],
            MemoryStore(),
            clock=self.reactor,
            tokens=TokenPolicy(),
        )
        realm = BouncerRealm(self.bouncer, {"web"}, self.reactor, requesterTimeout=30)
        root = KeycardRoot(self.bouncer, Portal(realm), "service")
        self.reactor.listenTCP(PORT, KeycardServerFactory(root))
        self.remote = RemoteBouncer(
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
            [PassphraseAnswerer("web", "requester-secret")],
            clock=self.reactor,
        )
        self.remote.startService()
        self.addCleanup(self.remote.stopService)
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        assert pump is not None
        self.pump: IOPump = pump
        self.pump.flush()
        self.guard = KeycardGuard(self.remote, clock=self.reactor)
        self.stub = StubTreq(application(self.guard, WebRealm()))

    def settle(self, d: Any) -> None:
        for _ in range(50):
            self.pump.flush()
            self.stub.flush()
            if d.called:
                return

    def result(self, d: Any) -> Any:
        self.settle(d)
        return self.successResultOf(d)

    def test_scramAndTokenThroughRemoteBouncer(self) -> None:
        client = KeycardHTTPClient(self.stub, username="alice", password=PASSWORD)
        response = self.result(client.get(APP))
        self.assertEqual(
            self.result(response.content()), b"hello, alice (SCRAM-SHA-256)"
        )
        grant = self.result(client.fetchToken("https://example.com/token"))
        response = self.result(client.get(APP))
        self.assertEqual(self.result(response.content()), b"hello, alice (Bearer)")
        (held,) = [r for r in self.bouncer.held.values() if r.avatarId == "alice"]
        self.assertEqual((held.requesterName, held.parentId), ("web", grant.keycardId))
        self.assertEqual(self.guard.keycardIds(), [held.keycardId])

        self.result(self.bouncer.revokeKeycardIds([grant.keycardId]))
        self.assertEqual(self.guard.keycardIds(), [])
        tokenOnly = KeycardHTTPClient(self.stub, token=grant.token)
        refused = tokenOnly.get(APP)
        self.settle(refused)
        self.failureResultOf(refused, KeycardRefused)
