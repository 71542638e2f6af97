"""
Tests for a keycard root over an application's own portal: its password
checker backing SCRAM (L{CheckPasswordSCRAM}, L{KeycardRoot.fromPortal}),
PB's own login on the same port (C{stockLogin}), and the realm's errors
reaching the client as they are.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import (
    IUsernameHashedPassword,
    IUsernamePassword,
    UsernamePassword,
)
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, LogLevel, formatEvent, globalLogPublisher
from twisted.python.reflect import qual
from twisted.spread import pb
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import (
    Bouncer,
    KeycardDenied,
    KeycardRefused,
    KeycardRoot,
    KeycardServerFactory,
    ServerAuthenticationFailed,
)
from twisted_keycard.bouncer import Throttle
from twisted_keycard.metrics import PrometheusMetrics
from twisted_keycard.pb import ConnectionLimits, _root, portalCheckers
from twisted_keycard.pb._root import STOCK_KIND
from twisted_keycard.scram import (
    CheckPasswordSCRAM,
    SCRAMAnswerer,
    SCRAMKeycard,
    SCRAMProof,
    SCRAMVerifiers,
    ServerFirst,
    Verifier,
)
from twisted_keycard.testing import connectToRoot

from ._realm import AvatarRealm

SERVER = IPv4Address("TCP", "127.0.0.1", 8800)
CLIENT = IPv4Address("TCP", "127.0.0.1", 40000)
KEY = b"k" * 32


def _database() -> InMemoryUsernamePasswordDatabaseDontUse:
    return InMemoryUsernamePasswordDatabaseDontUse(alice=b"wonderland")


def _salt(checker: CheckPasswordSCRAM, name: str) -> ServerFirst:
    keycard = SCRAMAnswerer(name, "x").start()
    exchange = SynchronousTestCase().successResultOf(checker.prime(keycard))
    return exchange.serverFirst  # type: ignore[attr-defined, no-any-return]


@implementer(ICredentialsChecker)
class _Trusting:
    """
    A broken checker: it accepts anyone, without a check.
    """

    credentialInterfaces = (IUsernamePassword,)

    def requestAvatarId(self, credentials: Any) -> Deferred[Any]:
        return succeed(credentials.username)


class CheckPasswordSCRAMTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.realm = AvatarRealm()
        self.derivations: list[str] = []
        real = Verifier.fromPassword.__func__  # type: ignore[attr-defined]

        def counted(cls: type[Verifier], password: str, *args: Any) -> Verifier:
            self.derivations.append(password)
            return real(cls, password, *args)  # type: ignore[no-any-return]

        self.patch(Verifier, "fromPassword", classmethod(counted))

    def root(self, checker: ICredentialsChecker, **options: Any) -> KeycardRoot:
        portal = Portal(self.realm, [checker])
        return KeycardRoot.fromPortal(portal, clock=self.clock, key=KEY, **options)

    def login(self, root: KeycardRoot, name: str, password: str) -> Deferred[Any]:
        return connectToRoot(root, self.clock).login([SCRAMAnswerer(name, password)])

    def test_interfaces(self) -> None:
        checker = CheckPasswordSCRAM(_database(), key=KEY)
        self.assertTrue(verifyObject(ICredentialsChecker, checker))
        self.assertEqual(checker.keycardClasses, (SCRAMKeycard,))

    def test_inMemoryDatabase(self) -> None:
        """
        A user of Twisted's in-memory database logs in with SCRAM, and the
        client checks the server's signature, made from the same password.
        """
        root = self.root(_database())
        perspective = self.successResultOf(self.login(root, "alice", "wonderland"))
        self.assertIsInstance(perspective, pb.RemoteReference)
        self.assertEqual([a.avatarId for a in self.realm.avatars], ["alice"])
        self.assertEqual(len(self.derivations), 1)

    def test_filePasswordDB(self) -> None:
        """
        C{FilePasswordDB} without a hash backs SCRAM too.
        """
        path = Path(self.mktemp())
        path.write_text("alice:wonderland\n")
        root = self.root(FilePasswordDB(str(path)))
        self.successResultOf(self.login(root, "alice", "wonderland"))

    def test_wrongPassword(self) -> None:
        root = self.root(_database())
        self.failureResultOf(self.login(root, "alice", "mirror"), KeycardRefused)
        self.assertEqual(len(self.derivations), 1)
        self.assertEqual(self.realm.avatars, [])

    def test_unknownUserSameWork(self) -> None:
        """
        An unknown user, whom the checker refuses without a check, is
        refused as a wrong password is, after the same key derivation.
        """
        root = self.root(_database())
        self.failureResultOf(self.login(root, "mallory", "x"), KeycardRefused)
        self.assertEqual(len(self.derivations), 1)

    def test_saltsStablePerUser(self) -> None:
        """
        A user's salt comes from the key and the name: the same each time,
        another for another name or key, and known and unknown names look
        alike.
        """
        checker = CheckPasswordSCRAM(_database(), key=KEY)
        alice = _salt(checker, "alice")
        self.assertEqual(_salt(checker, "alice").salt, alice.salt)
        mallory = _salt(checker, "mallory")
        self.assertNotEqual(mallory.salt, alice.salt)
        self.assertEqual(len(mallory.salt), len(alice.salt))
        self.assertEqual(mallory.iterations, alice.iterations)
        self.assertEqual(alice.iterations, 4096)
        other = CheckPasswordSCRAM(_database(), key=b"o" * 32)
        self.assertNotEqual(_salt(other, "alice").salt, alice.salt)
        other.setMockSecret(KEY)
        self.assertEqual(_salt(other, "alice").salt, alice.salt)

    def test_acceptedWithoutCheckRefused(self) -> None:
        """
        A checker that accepts without calling C{checkPassword} proves
        nothing: the login is refused.
        """
        root = self.root(_Trusting())
        self.failureResultOf(self.login(root, "alice", "x"), KeycardRefused)
        self.assertEqual(self.realm.avatars, [])

    def test_passwordReadRefused(self) -> None:
        """
        A checker that reads the password (a hashed C{FilePasswordDB})
        cannot back SCRAM: its logins are refused, with one warning.
        """
        path = Path(self.mktemp())
        path.write_text("alice:wonderland\n")
        checker = FilePasswordDB(str(path), hash=lambda u, p, s: p)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(
            globalLogPublisher.removeObserver,
            events.append,  # type: ignore[arg-type]
        )
        root = self.root(checker)
        for _ in range(2):
            self.failureResultOf(
                self.login(root, "alice", "wonderland"), KeycardRefused
            )
        warnings = [e for e in events if "checkPassword" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_proofChecksOnce(self) -> None:
        """
        C{checkPassword} checks the proof once; a second call is false.
        """
        answerer = SCRAMAnswerer("alice", "wonderland")
        checker = CheckPasswordSCRAM(_database(), key=KEY)
        keycard = answerer.start()
        exchange: Any = self.successResultOf(checker.prime(keycard))
        exchange.challenge(keycard)
        answerer.answer(keycard)
        exchange.answer(keycard)
        proof = SCRAMProof(exchange, lambda: None, lambda n: b"r" * n)
        self.assertTrue(verifyObject(IUsernamePassword, proof, tentative=True))
        self.assertEqual(proof.username, b"alice")
        self.assertTrue(proof.checkPassword(b"wonderland"))
        self.assertFalse(proof.checkPassword(b"wonderland"))

    def test_checkerOnlyForPasswords(self) -> None:
        with self.assertRaises(ValueError):
            CheckPasswordSCRAM(SCRAMVerifiers({}))

    def test_portalChallengersKept(self) -> None:
        """
        A portal's keycard challengers are used as they are, beside its
        password checker.
        """
        verifiers = SCRAMVerifiers({"bob": Verifier.fromPassword("builder")})
        portal = Portal(self.realm, [verifiers])
        self.assertEqual(portalCheckers(portal), [verifiers])
        root = KeycardRoot.fromPortal(portal, clock=self.clock)
        self.successResultOf(self.login(root, "bob", "builder"))
        with self.assertRaises(ValueError):
            portalCheckers(Portal(self.realm))

    def test_bouncerOptions(self) -> None:
        root = self.root(_database(), bouncerOptions={"duration": 5.0})
        assert isinstance(root.bouncer, Bouncer)
        self.assertEqual(root.bouncer.duration, 5.0)

    def test_serverWithoutPasswordFails(self) -> None:
        """
        A server whose checker holds another password for the user cannot
        pass itself off: the client refuses the login, whichever way the
        server answers.
        """
        root = self.root(InMemoryUsernamePasswordDatabaseDontUse(alice=b"other"))
        d = self.login(root, "alice", "wonderland")
        failure = self.failureResultOf(d)
        self.assertTrue(failure.check(KeycardRefused, ServerAuthenticationFailed))


class _StockClient:
    """
    A stock PB client connected in memory to a root.
    """

    def __init__(
        self,
        root: KeycardRoot,
        clock: Clock,
        serverFactory: pb.PBServerFactory | None = None,
    ) -> None:
        if serverFactory is None:
            serverFactory = KeycardServerFactory(
                root, clock=clock, limits=ConnectionLimits(loginTimeout=10.0)
            )
        serverBroker = serverFactory.buildProtocol(CLIENT)
        assert serverBroker is not None
        self.serverBroker = serverBroker
        self.factory = pb.PBClientFactory()
        client = self.factory.buildProtocol(SERVER)
        self.pump: IOPump = connect(
            self.serverBroker,
            FakeTransport(self.serverBroker, True, SERVER, CLIENT),
            client,
            FakeTransport(client, False, CLIENT, SERVER),
            clock=clock,
        )

    def login(self, name: bytes, password: bytes) -> Deferred[Any]:
        d: Deferred[Any] = self.factory.login(UsernamePassword(name, password))
        self.pump.flush()
        return d


class StockLoginTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.realm = AvatarRealm()

    def root(self, **options: Any) -> KeycardRoot:
        portal = Portal(self.realm, [_database()])
        return KeycardRoot.fromPortal(portal, clock=self.clock, key=KEY, **options)

    def test_refusedByDefault(self) -> None:
        """
        A stock client's C{login} is refused with an L{UnauthorizedLogin}
        that says the server takes keycards, and no traceback is logged.
        """
        client = _StockClient(self.root(), self.clock)
        failure = self.failureResultOf(client.login(b"alice", b"wonderland"))
        self.assertTrue(failure.check(UnauthorizedLogin))
        self.assertIn("keycards only", failure.getErrorMessage())
        self.assertEqual(self.realm.avatars, [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stockLogin(self) -> None:
        """
        With C{stockLogin}, a stock client logs in through the portal's
        checkers, and is no longer a stranger: the login deadline passes
        and the connection stays.
        """
        client = _StockClient(self.root(stockLogin=True), self.clock)
        perspective = self.successResultOf(client.login(b"alice", b"wonderland"))
        self.clock.advance(20)
        client.pump.flush()
        self.assertFalse(client.serverBroker.disconnected)
        whoami = perspective.callRemote("whoami")
        client.pump.flush()
        self.assertEqual(self.successResultOf(whoami), b"alice")

    def test_stockWrongPassword(self) -> None:
        """
        A wrong password on the stock login is an L{UnauthorizedLogin},
        with no traceback in the log.
        """
        client = _StockClient(self.root(stockLogin=True), self.clock)
        failure = self.failureResultOf(client.login(b"alice", b"mirror"))
        self.assertTrue(failure.check(UnauthorizedLogin))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stockRefusalAsStockPB(self) -> None:
        """
        A wrong password and an unknown user on the stock login reach the
        client as stock PB's own refusal does (issue 26: it was
        C{RemoteError: keycard refused}): an L{UnauthorizedLogin} with the
        same type, message and parents, so that C{buildbot sendchange}
        prints its usual failure.  No traceback is logged, where stock PB
        logs one.
        """
        portal = Portal(self.realm, [_database()])
        stock = _StockClient(self.root(), self.clock, pb.PBServerFactory(portal)).login(
            b"alice", b"mirror"
        )
        expected = self.failureResultOf(stock)
        self.assertEqual(len(self.flushLoggedErrors(UnauthorizedLogin)), 1)
        self.assertEqual(expected.type, b"twisted.cred.error.UnauthorizedLogin")
        root = self.root(stockLogin=True)
        for name, password in [(b"alice", b"mirror"), (b"mallory", b"x")]:
            failure = self.failureResultOf(
                _StockClient(root, self.clock).login(name, password)
            )
            self.assertEqual(failure.type, expected.type)
            self.assertEqual(failure.value, expected.value)
            # Passed on as a pb.Error, which PB sends without a traceback.
            self.assertEqual(failure.parents, [*expected.parents, qual(pb.Error)])
            self.assertEqual(failure.getErrorMessage(), "")
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_keycardsStillTaken(self) -> None:
        root = self.root(stockLogin=True)
        d = connectToRoot(root, self.clock).login(
            [SCRAMAnswerer("alice", "wonderland")]
        )
        self.successResultOf(d)


#: Three failures per account, a hundred per address, in an hour.
THROTTLE = Throttle(3, 100)


class StockRulesTests(SynchronousTestCase):
    """
    A stock login under the rules of keycard logins (issue 23, finding 4):
    throttled with the bouncer's throttle, counted in its metrics, one
    audit line each, and an unknown user refused after the same MD5 work
    as a wrong password.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1000)
        self.realm = AvatarRealm()
        self.registry = CollectorRegistry()
        self.metrics = PrometheusMetrics(self.registry, timer=self.clock.seconds)
        self.events: list[LogEvent] = []
        globalLogPublisher.addObserver(self.events.append)  # type: ignore[arg-type]
        self.addCleanup(
            globalLogPublisher.removeObserver,
            self.events.append,  # type: ignore[arg-type]
        )
        self.md5s: list[bytes] = []
        real = hashlib.md5

        def counted(data: bytes) -> Any:
            self.md5s.append(data)
            return real(data)

        self.patch(_root, "md5", counted)

    def root(self, throttle: Throttle | None = THROTTLE) -> KeycardRoot:
        portal = Portal(self.realm, [_database()])
        return KeycardRoot.fromPortal(
            portal,
            clock=self.clock,
            key=KEY,
            requesterName="app",
            bouncerOptions={"throttle": throttle, "metrics": self.metrics},
            stockLogin=True,
        )

    def stock(self, root: KeycardRoot, name: bytes, password: bytes) -> Any:
        return _StockClient(root, self.clock).login(name, password)

    def logins(self, result: str) -> float:
        found = self.registry.get_sample_value(
            "keycard_logins_total", {"kind": STOCK_KIND, "result": result}
        )
        return 0.0 if found is None else found

    def audit(self, event: str) -> list[LogEvent]:
        return [e for e in self.events if e.get("event") == event]

    def test_warning(self) -> None:
        """
        A root built with C{stockLogin=True} logs one warning naming what
        it allows; one without logs none.
        """
        self.root()
        KeycardRoot.fromPortal(Portal(self.realm, [_database()]), clock=self.clock)
        warnings = self.audit("stock.on")
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["log_level"], LogLevel.warn)
        line = formatEvent(warnings[0])
        for words in ("MD5 challenge-response", "offline", "no channel binding"):
            self.assertIn(words, line)
        self.assertIn("requester app", line)
        self.assertNotIn("not limited", line)

    def test_warningUnthrottled(self) -> None:
        """
        The warning says so when the bouncer has no throttle.
        """
        self.root(None)
        [warning] = self.audit("stock.on")
        self.assertIn(
            "and guesses are not limited (the bouncer has no throttle);",
            formatEvent(warning),
        )

    def test_throttled(self) -> None:
        """
        Past the account's limit of failures, a stock login is denied
        before any check, the right password too, until the failures leave
        the window; another account still logs in.
        """
        root = self.root()
        for _ in range(3):
            failure = self.failureResultOf(self.stock(root, b"alice", b"mirror"))
            self.assertTrue(
                failure.check(UnauthorizedLogin) and failure.getErrorMessage() == ""
            )
        checks = len(self.md5s)
        for password in (b"mirror", b"wonderland"):
            failure = self.failureResultOf(self.stock(root, b"alice", password))
            self.assertTrue(failure.check(KeycardDenied))
            self.assertIn("too many failed logins", failure.getErrorMessage())
        self.assertEqual(len(self.md5s), checks)
        self.assertEqual(self.realm.avatars, [])
        self.clock.advance(3601)
        self.successResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertEqual([a.avatarId for a in self.realm.avatars], [b"alice"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_sameAccountAsKeycards(self) -> None:
        """
        Failed SCRAM logins and failed stock logins count against one
        account.
        """
        root = self.root()
        for _ in range(3):
            d = connectToRoot(root, self.clock).login([SCRAMAnswerer("alice", "x")])
            self.failureResultOf(d, KeycardRefused)
        failure = self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertTrue(failure.check(KeycardDenied))

    def test_addressThrottled(self) -> None:
        """
        Stock logins count against the client's address group too: wrong
        passwords for many names lock the address out, not the names.
        """
        root = self.root(Throttle(100, 3))
        for n in range(3):
            name = f"user{n}".encode()
            failure = self.failureResultOf(self.stock(root, name, b"x"))
            self.assertTrue(
                failure.check(UnauthorizedLogin) and failure.getErrorMessage() == ""
            )
        failure = self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertTrue(failure.check(KeycardDenied))

    def test_unknownUser(self) -> None:
        """
        An unknown user is refused as a wrong password is, after the same
        MD5 work (against a mock password), and counted against the name
        tried.
        """
        root = self.root()
        wrong = self.failureResultOf(self.stock(root, b"alice", b"mirror"))
        knownWork = len(self.md5s)
        unknown = self.failureResultOf(self.stock(root, b"mallory", b"mirror"))
        self.assertEqual(len(self.md5s), 2 * knownWork)
        self.assertEqual(knownWork, 2)
        self.assertEqual(wrong.type, unknown.type)
        self.assertEqual(wrong.getErrorMessage(), unknown.getErrorMessage())
        refusals = self.audit("login.refused")
        self.assertEqual([e["account"] for e in refusals], ["alice", "mallory"])
        self.assertEqual({e["reason"] for e in refusals}, {"UnauthorizedLogin"})

    def test_noThrottle(self) -> None:
        """
        Without a throttle on the bouncer, stock logins are still counted
        and audited.
        """
        root = self.root(None)
        for _ in range(5):
            self.failureResultOf(self.stock(root, b"alice", b"mirror"))
        self.successResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertEqual(self.logins("refused"), 5)
        self.assertEqual(self.logins("success"), 1)

    def test_auditAndMetrics(self) -> None:
        """
        Each stock login writes one line, as a keycard login does: its
        success (C{login.stock}), its refusal or its denial, with the
        account, the kind, the requester and the address; the metrics
        count it under kind C{pb-md5}.
        """
        root = self.root()
        self.successResultOf(self.stock(root, b"alice", b"wonderland"))
        for _ in range(3):
            self.failureResultOf(self.stock(root, b"alice", b"mirror"))
        self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        [issued] = self.audit("login.stock")
        self.assertEqual(
            formatEvent(issued),
            "stock PB login of alice via app from 127.0.0.1 (pb-md5 for alice),"
            " no keycard",
        )
        refused = self.audit("login.refused")
        denied = self.audit("login.denied")
        self.assertEqual(len(refused), 3)
        self.assertEqual(len(denied), 1)
        for event in refused + denied:
            self.assertEqual(event["keycardType"], STOCK_KIND)
            self.assertEqual(event["account"], "alice")
            self.assertEqual(event["requesterName"], "app")
            self.assertEqual(event["address"], "127.0.0.1")
        self.assertEqual(
            formatEvent(denied[0]),
            "keycard denied: too many failed logins; try again later"
            " (pb-md5 for alice via app from 127.0.0.1)",
        )
        self.assertEqual(self.logins("success"), 1)
        self.assertEqual(self.logins("refused"), 3)
        self.assertEqual(self.logins("denied"), 1)
        self.assertEqual(
            self.registry.get_sample_value(
                "keycard_refusals_total", {"reason": "throttled"}
            ),
            1,
        )

    def test_checkerFails(self) -> None:
        """
        A checker that fails with anything but a refusal is logged, counted
        as an error, and the client is told to come back later, without
        what failed.
        """

        @implementer(ICredentialsChecker)
        class Broken:
            credentialInterfaces = (IUsernameHashedPassword,)

            def requestAvatarId(self, credentials: Any) -> Any:
                raise OSError("/etc/secret: disk on fire")

        root = KeycardRoot.fromPortal(
            Portal(self.realm, [_database(), Broken()]),
            clock=self.clock,
            key=KEY,
            bouncerOptions={"throttle": THROTTLE, "metrics": self.metrics},
            stockLogin=True,
        )
        failure = self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertTrue(failure.check(KeycardDenied))
        self.assertNotIn("secret", failure.getErrorMessage())
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(self.logins("error"), 1)
        self.assertEqual(self.realm.avatars, [])

    def test_noMD5Checker(self) -> None:
        """
        A portal without a checker of MD5 responses refuses every stock
        login, counted as a failure.
        """

        @implementer(ICredentialsChecker)
        class PlainOnly:
            credentialInterfaces = (IUsernamePassword,)

            def requestAvatarId(self, credentials: Any) -> Any:
                return succeed(credentials.username)

        root = KeycardRoot.fromPortal(
            Portal(self.realm, [PlainOnly()]),
            clock=self.clock,
            key=KEY,
            bouncerOptions={"metrics": self.metrics},
            stockLogin=True,
        )
        failure = self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertTrue(
            failure.check(UnauthorizedLogin) and failure.getErrorMessage() == ""
        )
        self.assertEqual(self.logins("refused"), 1)
        self.assertEqual(self.realm.avatars, [])

    def test_singleResponse(self) -> None:
        """
        A challenge takes one response: a second, even the right one, is
        refused without a check.
        """
        root = self.root()
        client = _StockClient(root, self.clock)
        rootObject = client.factory.getRootObject()
        client.pump.flush()
        login = self.successResultOf(rootObject).callRemote("login", b"alice")
        client.pump.flush()
        challenge, challenger = self.successResultOf(login)
        for password in (b"mirror", b"wonderland"):
            d = challenger.callRemote("respond", pb.respond(challenge, password), None)
            client.pump.flush()
            failure = self.failureResultOf(d)
            self.assertTrue(
                failure.check(UnauthorizedLogin) and failure.getErrorMessage() == ""
            )
        self.assertEqual(self.realm.avatars, [])
        self.assertEqual(len(self.audit("login.refused")), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_hostileName(self) -> None:
        """
        A name with control characters is escaped in the audit line.
        """
        root = self.root()
        self.failureResultOf(self.stock(root, b"eve\nkeycard issued", b"x"))
        [refused] = self.audit("login.refused")
        line = formatEvent(refused)
        self.assertNotIn("\n", line)
        self.assertIn("for eve\\nkeycard issued via app", line)

    def test_realmRefusal(self) -> None:
        """
        What the realm raises after a right password reaches the stock
        client as it is, logged once, after the login's line.
        """
        portal = Portal(_RefusingRealm(LoginFailed("no builds today")), [_database()])
        root = KeycardRoot.fromPortal(
            portal, clock=self.clock, key=KEY, stockLogin=True
        )
        failure = self.failureResultOf(self.stock(root, b"alice", b"wonderland"))
        self.assertTrue(failure.check(LoginFailed))
        self.assertEqual(failure.getErrorMessage(), "no builds today")
        self.assertEqual(len(self.audit("login.stock")), 1)
        lines = [e for e in self.events if "realm refused" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        self.assertEqual(self.flushLoggedErrors(), [])


class _RefusingRealm(AvatarRealm):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def requestAvatar(self, avatarId: Any, mind: object, *interfaces: Any) -> Any:
        raise self.error


class RealmErrorTests(SynchronousTestCase):
    """
    What a realm raises reaches the client as it is, logged once without a
    traceback.
    """

    def attempt(self, error: Exception) -> tuple[Any, list[LogEvent]]:
        clock = Clock()
        portal = Portal(_RefusingRealm(error), [_database()])
        root = KeycardRoot.fromPortal(portal, clock=clock, key=KEY)
        events: list[LogEvent] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(
            globalLogPublisher.removeObserver,
            events.append,  # type: ignore[arg-type]
        )
        d = connectToRoot(root, clock).login([SCRAMAnswerer("alice", "wonderland")])
        self.assertEqual(self.flushLoggedErrors(), [])
        lines = [e for e in events if "realm refused" in e.get("log_format", "")]
        self.assertEqual(len(lines), 1)
        return self.failureResultOf(d), events

    def test_loginFailed(self) -> None:
        failure, _ = self.attempt(LoginFailed("no builds today"))
        self.assertTrue(failure.check(LoginFailed))
        self.assertEqual(failure.getErrorMessage(), "no builds today")

    def test_pbError(self) -> None:
        failure, _ = self.attempt(pb.Error("go away"))
        self.assertTrue(failure.check(pb.Error))

    def test_duplicateWorker(self) -> None:
        """
        Buildbot's realm refuses a second connection of a worker with a
        C{RuntimeError}.
        """
        failure, _ = self.attempt(RuntimeError("rejecting duplicate worker"))
        self.assertTrue(failure.check(RuntimeError))
        self.assertEqual(failure.getErrorMessage(), "rejecting duplicate worker")

    def test_denied(self) -> None:
        """
        A realm's L{KeycardDenied} is a L{KeycardDenied} on the client, and
        an L{UnauthorizedLogin}, which clients such as Buildbot's worker try
        again after.
        """
        failure, _ = self.attempt(KeycardDenied("later"))
        self.assertTrue(failure.check(KeycardDenied))
        self.assertTrue(failure.check(UnauthorizedLogin))
        self.assertEqual(failure.getErrorMessage(), "later")
