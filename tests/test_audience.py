"""
The token audience rule (issue 23, finding 3): the checker takes a token
only through a requester its audience names; a token policy writes in each
token the names it is meant for (L{TokenPolicy.audienceFor}); and every
face of a bouncer service, built in memory as the service builds it, takes
a token only where its audience names that face.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import treq
from treq.testing import RequestTraversalAgent
from twisted.cred.portal import Portal
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogEvent, formatEvent, globalLogPublisher
from twisted.test.iosim import ConnectionCompleter, IOPump
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.http_headers import Headers
from zope.interface import implementer

from twisted_keycard import (
    Bouncer,
    KeycardRefused,
    KeycardRoot,
    KeycardServerFactory,
    MemoryStore,
)
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.error import ProtocolError, SessionRefused
from twisted_keycard.pb import KeycardLogin
from twisted_keycard.remote import BouncerRealm, RemoteBouncer
from twisted_keycard.scram import (
    SCRAMAnswerer,
    SCRAMPasswordChecker,
    SCRAMVerifiers,
    Verifier,
)
from twisted_keycard.service import DataDir, Options
from twisted_keycard.sessions import (
    TicketGranter,
    TicketGrantingRealm,
    requestTicket,
)
from twisted_keycard.testing import KeycardTestConnection, connectToRoot
from twisted_keycard.tokens import (
    Keyring,
    KeyringHolder,
    RevocationMirror,
    TokenAnswerer,
    TokenChecker,
    TokenClaims,
    TokenExchange,
    sign,
    verify,
)
from twisted_keycard.web import GuardOptions, KeycardGuard, httpFace

from ._realm import AvatarRealm
from ._web import inlinePool
from .test_sessions_granter import Listener
from .test_tokens_bouncer import TokenLogins

START = 1_800_000_000.0
NOT_FOR_HERE = "token not for this requester"


class CheckerAudienceTests(SynchronousTestCase):
    """
    L{TokenChecker}'s audience rule, on both its paths: answered from a
    followed mirror of the revocations, and asking the store.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.store = MemoryStore()
        self.keyring = Keyring.generate(START)
        self.store.saveKeyring(self.keyring)
        keys = KeyringHolder(self.store, self.clock)
        self.successResultOf(Deferred.fromCoroutine(keys.load()))
        mirror = RevocationMirror(self.clock)
        mirror.followed = True
        mirror.readAt = self.clock.seconds()
        self.checkers = [
            TokenChecker(self.store, keys, self.clock, mirror=mirror),
            TokenChecker(self.store, keys, self.clock),
        ]

    def token(self, **claims: Any) -> str:
        values: dict[str, Any] = {
            "keycardId": "k1",
            "avatarId": "alice",
            "issued": START,
            "expires": START + 60,
            "bouncerName": "b1",
            "requesterName": "app1",
        }
        values.update(claims)
        return sign(TokenClaims(**values), self.keyring.signing)

    def takenThrough(self, token: str, requesterName: str | None) -> bool:
        """
        Whether both checkers take C{token} through C{requesterName}; a
        refusal must say why, for the bouncer's log.
        """
        results = []
        for checker in self.checkers:
            exchange = TokenExchange(token, "192.0.2.1", requesterName)
            d = checker.requestAvatarId(exchange)
            results.append(d)
        taken = []
        for d in results:
            failures: list[Any] = []
            d.addErrback(failures.append)
            if failures:
                failures[0].trap(ProtocolError)
                self.assertEqual(failures[0].getErrorMessage(), NOT_FOR_HERE)
                taken.append(False)
            else:
                self.assertEqual(self.successResultOf(d), "alice")
                taken.append(True)
        self.assertEqual(taken[0], taken[1], "the two paths disagree")
        return taken[0]

    def test_ownRequesterOnly(self) -> None:
        """
        A token whose audience is its requester's name is taken through
        that requester only: not through another, nor a name that differs
        by case or a suffix, nor through no requester.
        """
        token = self.token(audience=("app1",))
        self.assertTrue(self.takenThrough(token, "app1"))
        for other in ("app2", "App1", "app1/http", "app", "", "keycard-bouncer", None):
            self.assertFalse(self.takenThrough(token, other), other)

    def test_defaultAudience(self) -> None:
        """
        A token signed with no audience given names its requester.
        """
        token = self.token()
        self.assertTrue(self.takenThrough(token, "app1"))
        self.assertFalse(self.takenThrough(token, "app2"))

    def test_severalAudiences(self) -> None:
        """
        A token for several names is taken through each, and no other.
        """
        token = self.token(audience=("app1", "app2"))
        self.assertTrue(self.takenThrough(token, "app1"))
        self.assertTrue(self.takenThrough(token, "app2"))
        self.assertFalse(self.takenThrough(token, "app3"))

    def test_audienceNotRequester(self) -> None:
        """
        The audience decides, not the requester the token came through: a
        token issued through C{app1} for C{app2} only is refused through
        C{app1}.
        """
        token = self.token(audience=("app2",))
        self.assertFalse(self.takenThrough(token, "app1"))
        self.assertTrue(self.takenThrough(token, "app2"))

    def test_noAudience(self) -> None:
        """
        A token issued through no requester, with no audience, is taken
        only where no requester stands in front of the bouncer.
        """
        token = self.token(requesterName=None)
        self.assertTrue(self.takenThrough(token, None))
        self.assertFalse(self.takenThrough(token, "app1"))
        self.assertFalse(self.takenThrough(token, ""))


class AudienceForTests(SynchronousTestCase):
    """
    L{TokenPolicy.audienceFor}: the audience written in a token.
    """

    def test_default(self) -> None:
        self.assertEqual(TokenPolicy().audienceFor("app1"), ("app1",))
        self.assertEqual(TokenPolicy().audienceFor(None), ())

    def test_audiences(self) -> None:
        """
        Configured audiences are added to every token, after its requester.
        """
        policy = TokenPolicy(audiences={"app3", "app2"})
        self.assertEqual(policy.audienceFor("app1"), ("app1", "app2", "app3"))
        self.assertEqual(policy.audienceFor("app2"), ("app2", "app3"))
        self.assertEqual(policy.audienceFor(None), ("app2", "app3"))

    def test_groups(self) -> None:
        """
        A group's names are added only to the tokens issued through one of
        them.
        """
        faces = {"kb", "kb/http", "kb/tickets"}
        policy = TokenPolicy(groups=[faces, {"app1", "app2"}])
        self.assertEqual(policy.audienceFor("kb/http"), ("kb/http", "kb", "kb/tickets"))
        self.assertEqual(policy.audienceFor("app1"), ("app1", "app2"))
        self.assertEqual(policy.audienceFor("app3"), ("app3",))
        self.assertEqual(policy.audienceFor(None), ())

    def test_parentNarrows(self) -> None:
        """
        A token issued for another names none of the names that one did
        not: a chain of token logins reaches no new face.
        """
        policy = TokenPolicy(groups=[{"kb", "kb/http", "kb/tickets"}])
        self.assertEqual(policy.audienceFor("kb", ("kb", "kb/http")), ("kb", "kb/http"))
        self.assertEqual(policy.audienceFor("kb", ("kb",)), ("kb",))

    def test_groupsOfNames(self) -> None:
        """
        A string is not a group of names (it would be one of letters).
        """
        self.assertRaises(TypeError, TokenPolicy, groups="kb")
        self.assertRaises(TypeError, TokenPolicy, groups=["kb"])
        self.assertEqual(TokenPolicy(groups=[["a", "b"]]).groups, ({"a", "b"},))


#: Passwords of the service's users: alice, and the requesters and service
#: that log in to it.
PASSWORDS = {
    "alice": "alice's password",
    "app1": "app1's secret",
    "app2": "app2's secret",
    "chat": "chat's password",
}
PORT = 4321
#: The service's requester name, and its faces' audience names.
PB, HTTP, TICKETS = "keycard-bouncer", "keycard-bouncer/http", "keycard-bouncer/tickets"
APPS = ("app1", "app2")
#: Where a token issued at each face (rows) is taken (columns), with the
#: service's defaults.
EXPECTED = {
    PB: {PB, HTTP, TICKETS},
    HTTP: {PB, HTTP, TICKETS},
    "app1": {"app1"},
    "app2": {"app2"},
}


class ServiceFaces(SynchronousTestCase):
    """
    The bouncer service's faces, wired as the service wires them, in
    memory on a L{MemoryReactorClock}, with the token policy the service
    makes of its options: its PB face (with ticket granting for the
    service C{chat}), its HTTP face, and two application requesters C{app1}
    and C{app2} in other "processes", using it as their remote bouncer.
    """

    options: tuple[str, ...] = ()

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(START)
        data = DataDir.create(Path(self.mktemp()) / "data")
        options = Options()
        options.parseOptions(
            [
                "--data-dir",
                str(data.path),
                "--requesters",
                "app1,app2",
                "--http",
                "tcp:0:interface=127.0.0.1",
                *self.options,
            ]
        )
        verifiers = SCRAMVerifiers(
            {name: Verifier.fromPassword(pw) for name, pw in PASSWORDS.items()}
        )
        self.bouncer = Bouncer(
            [verifiers, SCRAMPasswordChecker(verifiers, hashPool=inlinePool())],
            MemoryStore(),
            clock=self.reactor,
            duration=600.0,
            tokens=options.tokens,
        )
        self.bouncer.startService()
        self.addCleanup(self.bouncer.stopService)
        realm = BouncerRealm(self.bouncer, set(APPS), self.reactor)
        self.addCleanup(realm.stop)
        self.granter = TicketGranter(self.bouncer, self.reactor)
        self.addCleanup(self.granter.stop)
        self.granter.register("chat").listen(Listener())
        sessions = TicketGrantingRealm(realm, self.granter, {"chat"}, PB, TICKETS)
        self.pbRoot = KeycardRoot(
            self.bouncer, Portal(sessions), PB, clock=self.reactor
        )
        self.reactor.listenTCP(
            PORT, KeycardServerFactory(self.pbRoot, clock=self.reactor)
        )
        guard = KeycardGuard(
            self.bouncer,
            clock=self.reactor,
            requesterName=HTTP,
            options=GuardOptions(loginPath="/login"),
        )
        self.http = RequestTraversalAgent(httpFace(guard))
        self.pumps: list[IOPump] = []
        self.apps = {}
        for name in APPS:
            remote = RemoteBouncer(
                TCP4ClientEndpoint(self.reactor, "127.0.0.1", PORT),
                [SCRAMAnswerer(name, PASSWORDS[name])],
                clock=self.reactor,
                retryPolicy=lambda attempt: 1.0,
            )
            self.apps[name] = KeycardRoot(
                remote, Portal(AvatarRealm()), name, clock=self.reactor
            )
            remote.startService()
            self.addCleanup(remote.stopService)
            pump = ConnectionCompleter(self.reactor).succeedOnce()
            assert pump is not None
            self.pumps.append(pump)
            self.flush()
        self.log: list[str] = []

        @implementer(ILogObserver)
        def observe(event: LogEvent) -> None:
            self.log.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

    def flush(self, *connections: KeycardTestConnection) -> None:
        pumps = self.pumps + [c.pump for c in connections]
        for _ in range(200):
            moved = [p.pump() for p in pumps]  # every pump, no short cut
            if not any(moved):
                return
        raise AssertionError("still pumping")

    def root(self, face: str) -> KeycardRoot:
        return self.pbRoot if face in (PB, TICKETS) else self.apps[face]

    def pbLogin(self, face: str, answerer: Any) -> Deferred[KeycardLogin]:
        connection = connectToRoot(self.root(face), self.reactor)
        d = connection.factory.loginWithKeycard([answerer])
        self.flush(connection)
        self.addCleanup(connection.disconnect)
        self.connection = connection
        return d

    def web(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        raw = Headers({k: [v] for k, v in headers.items()})
        d = self.http.request(method.encode(), f"https://localhost{path}".encode(), raw)
        self.http.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(treq.content(response))
        return response.code, body

    def issue(self, face: str) -> str:
        """
        Alice logs in with her password at C{face} and gets a token.
        """
        if face == HTTP:
            basic = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
            code, body = self.web("POST", "/token", {"Authorization": f"Basic {basic}"})
            self.assertEqual(code, 200, body)
            token: str = json.loads(body)["token"]
            return token
        login = self.successResultOf(
            self.pbLogin(face, SCRAMAnswerer("alice", PASSWORDS["alice"]))
        )
        self.assertIsNotNone(login.keycard.token)
        assert login.keycard.token is not None
        return login.keycard.token

    def taken(self, token: str, face: str) -> bool:
        """
        Whether C{face} takes C{token}: a login with it at a PB face, a
        Bearer C{/whoami} at the HTTP face, and for ticket granting a
        ticket for C{chat} with the keycard that login got at the PB face.
        """
        if face == HTTP:
            code, body = self.web(
                "GET", "/whoami", {"Authorization": f"Bearer {token}"}
            )
            if code == 200:
                self.assertEqual(json.loads(body)["avatarId"], "alice")
                return True
            self.assertEqual(code, 401)
            return False
        d = self.pbLogin(face, TokenAnswerer(token))
        failures: list[Any] = []
        d.addErrback(failures.append)
        if failures:
            # The same opaque refusal as any bad token.
            failures[0].trap(KeycardRefused)
            self.assertEqual(failures[0].getErrorMessage(), "keycard refused")
            return False
        login = self.successResultOf(d)
        self.assertEqual(login.keycard.avatarId, "alice")
        if face != TICKETS:
            return True
        ticket = requestTicket(login, "chat")
        self.flush(self.connection)
        refusals: list[Any] = []
        ticket.addErrback(refusals.append)
        if refusals:
            refusals[0].trap(SessionRefused)
            return False
        self.assertEqual(self.successResultOf(ticket).clientName, "alice")
        return True

    def audienceOf(self, token: str) -> tuple[str, ...]:
        keys = self.bouncer.keys
        assert keys is not None
        keyring = self.successResultOf(Deferred.fromCoroutine(keys.current()))
        return verify(token, keyring, self.reactor.seconds()).audiences


class FacePairTests(ServiceFaces):
    def test_everyPair(self) -> None:
        """
        A token issued at each face (the PB face, the HTTP face, C{app1}
        and C{app2}; ticket granting issues none) is taken at each face
        (those four and ticket granting) only where its audience names
        it: at the bouncer's faces for one of theirs, at its own
        application for an application's.  Each refusal is logged with
        its reason.
        """
        faces = (PB, HTTP, TICKETS, *APPS)
        seen = {}
        for issuedAt in EXPECTED:
            token = self.issue(issuedAt)
            audience = set(self.audienceOf(token))
            self.assertEqual(audience, EXPECTED[issuedAt], issuedAt)
            seen[issuedAt] = {face for face in faces if self.taken(token, face)}
            self.assertEqual(seen[issuedAt], audience, issuedAt)
        self.assertEqual(seen, EXPECTED)
        # Each refusal is one token login the bouncer refused and logged
        # (a ticket is refused here because its login was).
        refusals = sum(len(set(faces) - row) for row in EXPECTED.values())
        self.assertEqual(refusals, 12)
        self.assertEqual(sum(NOT_FOR_HERE in line for line in self.log), refusals)

    def test_chainStaysWithin(self) -> None:
        """
        A token issued for an application's token is that application's
        too: renewing at C{app1} never reaches the bouncer's faces.
        """
        token = self.issue("app1")
        login = self.successResultOf(self.pbLogin("app1", TokenAnswerer(token)))
        child = login.keycard.token
        assert child is not None
        self.assertEqual(self.audienceOf(child), ("app1",))
        self.assertFalse(self.taken(child, PB))


class OperatorAudienceTests(ServiceFaces):
    """
    An operator who names the PB face in C{--token-audiences} makes every
    token a key to it, as the audience then says; ticket granting keeps
    its own name, so those tokens get no ticket.
    """

    options = ("--token-audiences", PB)

    def test_ticketsKeepTheirName(self) -> None:
        token = self.issue("app1")
        self.assertEqual(self.audienceOf(token), ("app1", PB))
        self.assertTrue(self.taken(token, PB))
        self.assertFalse(self.taken(token, TICKETS))
        self.assertFalse(self.taken(token, HTTP))
        self.assertTrue(
            any(
                "whose token is not for keycard-bouncer/tickets" in line
                for line in self.log
            ),
            self.log,
        )


class HeldAudienceTests(TokenLogins):
    """
    L{Bouncer.audienceOf}: the audience of each keycard a client holds,
    kept while it is held and no longer.
    """

    def test_keptWhileHeld(self) -> None:
        """
        A keycard's audience is its token's, whether or not a token was
        asked for, and is forgotten when it is removed or expires.
        """
        bouncer = self.makeBouncer(
            "faces", tokens=TokenPolicy(groups=[{"r1", "r1/tickets"}])
        )
        removed = self.login(bouncer)
        expired = self.login(bouncer)
        assert removed.id is not None and expired.id is not None
        self.assertEqual(bouncer.audienceOf(removed.id), ("r1", "r1/tickets"))
        self.successResultOf(bouncer.removeKeycardId(removed.id))
        self.assertEqual(bouncer.audienceOf(removed.id), ())
        self.clock.advance(61)
        self.assertNotIn(expired.id, bouncer.held)
        self.assertEqual(bouncer.audienceOf(expired.id), ())
        self.assertEqual(bouncer._held._audiences, {})

    def test_withoutTokens(self) -> None:
        """
        A bouncer that issues no tokens gives each keycard its requester
        as audience.
        """
        bouncer = self.makeBouncer("plain", tokens=None)
        keycard = self.login(bouncer)
        assert keycard.id is not None
        self.assertEqual(bouncer.audienceOf(keycard.id), ("r1",))
        self.assertEqual(bouncer.audienceOf("unknown"), ())
