"""
Tests for a keycard root over an application's own portal: its password
checker backing SCRAM (L{CheckPasswordSCRAM}, L{KeycardRoot.fromPortal}),
PB's own login on the same port (C{stockLogin}), and the realm's errors
reaching the client as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.cred.checkers import (
    FilePasswordDB,
    ICredentialsChecker,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, globalLogPublisher
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
from twisted_keycard.pb import ConnectionLimits, portalCheckers
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

    def __init__(self, root: KeycardRoot, clock: Clock) -> None:
        serverBroker = KeycardServerFactory(
            root, clock=clock, limits=ConnectionLimits(loginTimeout=10.0)
        ).buildProtocol(CLIENT)
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

    def test_keycardsStillTaken(self) -> None:
        root = self.root(stockLogin=True)
        d = connectToRoot(root, self.clock).login(
            [SCRAMAnswerer("alice", "wonderland")]
        )
        self.successResultOf(d)


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
