"""
Tests for the twistd plugin's options, checkers and start, without a
process: each failure is one line, stock twisted.cred checkers serve
password keycards, and the help shows no epytext.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from pathlib import Path
from typing import Any, cast

from twisted.application.service import MultiService
from twisted.cred.checkers import (
    FilePasswordDB,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.strcred import findCheckerFactories
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from twisted_keycard import Bouncer, IChallenger, KeycardRefused, KeycardState
from twisted_keycard.bouncer import SeatQueuePolicy
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.service import DataDir, Options, makeService
from twisted_keycard.service._checkers import (
    PasswordChallenger,
    plainHelp,
    warnPlainPasswords,
)
from twisted_keycard.service._services import warnExposedFaces
from twisted_keycard.service._startup import (
    Daemonized,
    EndpointError,
    Listener,
    StartupError,
    StoreCheck,
    checkEarly,
    clientEndpoint,
    daemonizing,
    describeAddress,
    dropsPrivileges,
    exitHook,
    quietParent,
    serverEndpoint,
)
from twisted_keycard.srp import ScryptKDF, SRPVerifier, SRPVerifiers, readVerifiers
from twisted_keycard.store._memory import MemoryStore
from twisted_keycard.web import ProxyTrust


class OptionsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.data = DataDir.create(Path(self.mktemp()) / "data")

    def parse(self, *args: str) -> Options:
        options = Options()
        options.parseOptions(["--data-dir", str(self.data.path), *args])
        return options

    def refused(self, *args: str) -> str:
        """
        The one line the options stop with.
        """
        with self.assertRaises(SystemExit) as caught:
            self.parse(*args)
        line = str(caught.exception.code)
        self.assertTrue(line.startswith("keycard-bouncer: "), line)
        self.assertNotIn("\n", line)
        self.assertNotIn("Usage", line)
        return line

    def test_severalListens(self) -> None:
        """
        C{--listen} is repeatable, each endpoint serving (issue 26: a
        second one replaced the first); one given twice is refused.
        """
        self.assertEqual(self.parse().listens, [])
        self.assertEqual(self.parse()["listen"], "tcp:8800:interface=127.0.0.1")
        options = self.parse("--listen", "tcp:8801", "-l", "tcp:8802")
        self.assertEqual(options.listens, ["tcp:8801", "tcp:8802"])
        self.assertEqual(options["listen"], "tcp:8801")
        self.assertIn(
            "--listen tcp:8801 given twice",
            self.refused("--listen", "tcp:8801", "--listen", "tcp:8801"),
        )

    def test_oneLine(self) -> None:
        """
        Every bad option stops with one line naming it, never the usage.
        """
        cases = {
            ("--duration", "abc"): "--duration takes a number, not 'abc'",
            ("--max-pending", "x"): "--max-pending takes a whole number, not 'x'",
            ("--duration", "nan"): "--duration must be a positive number",
            ("--duration", "-1"): "--duration must be a positive number",
            ("--allow", "10.0.0.300"): "bad --allow or --deny",
            ("--policy", "scram and"): "bad --policy: expected a name",
            ("--policy", "nosuch"): "unknown algorithm 'nosuch'",
            ("--auth", "bogus:x"): "unknown --auth type in 'bogus:x'",
            ("--auth", "scram:/no/such/file"): "/no/such/file: no such file",
            ("--bogus",): "option --bogus not recognized",
            ("--throttle-window", "60", "--throttle-retention", "30"): (
                "--throttle-retention must be at least --throttle-window"
            ),
            ("--throttle-flush-interval", "0"): (
                "--throttle-flush-interval must be a positive number"
            ),
            ("--throttle-retention", "inf"): (
                "--throttle-retention must be a positive number"
            ),
            ("--throttle-retention", "x"): "--throttle-retention takes a number",
            ("--throttle-account", "0"): "--throttle-account must be at least 1",
            ("--seats-per-avatar", "1"): "--seats-per-avatar needs --seat-pool",
            ("--seat-pool", "p", "--seats", "2", "--seats-per-avatar", "3"): (
                "--seats-per-avatar must be between 1 and --seats"
            ),
            ("--seat-pool", "p", "--seats", "2", "--seats-per-avatar", "0"): (
                "--seats-per-avatar must be between 1 and --seats"
            ),
            ("--seats-per-avatar", "x"): "--seats-per-avatar takes a whole number",
            ("--seat-queue", "3"): "--seat-queue needs --seat-pool",
            ("--seat-queue", "-1"): "--seat-queue must be a number of clients",
            ("--seat-queue", "x"): "--seat-queue takes a whole number",
            ("--seat-queue-grace", "0"): (
                "--seat-queue-grace must be a positive number"
            ),
            (
                "--seat-queue-per-avatar",
                "1",
            ): "--seat-queue-per-avatar needs --seat-queue",
            (
                "--seat-pool",
                "p",
                "--seats",
                "1",
                "--seat-queue",
                "2",
                "--seat-queue-per-address",
                "3",
            ): "--seat-queue-per-address must be between 1 and --seat-queue",
            ("--heartbeat", "-1"): "--heartbeat must be a number of seconds (0: none)",
            ("--heartbeat", "nan"): "--heartbeat must be a number of seconds",
            ("--heartbeat", "x"): "--heartbeat takes a number, not 'x'",
        }
        for args, expected in cases.items():
            self.assertIn(expected, self.refused(*args), args)

    def test_seatQueue(self) -> None:
        """
        C{--seat-queue} makes the pool's queue, with its grace and shares;
        without it (0, the default), there is none.
        """
        self.assertIsNone(self.parse("--seat-pool", "p", "--seats", "1").seatQueue)
        policy = self.parse(
            "--seat-pool",
            "p",
            "--seats",
            "1",
            "--seat-queue",
            "8",
            "--seat-queue-grace",
            "12",
            "--seat-queue-per-avatar",
            "2",
            "--seat-queue-per-address",
            "4",
        ).seatQueue
        self.assertEqual(policy, SeatQueuePolicy(8, 12.0, 2, 4))

    def test_missingAuthFile(self) -> None:
        """
        A C{file:} checker whose file cannot be read stops the start with
        one line (twisted's checker only warns, then serves nobody); so does
        every other checker's missing file.
        """
        missing = str(Path(self.mktemp()) / "users")
        directory = self.mktemp()
        Path(directory).mkdir()
        cases = {
            f"file:{missing}": f"bad --auth 'file:{missing}': {missing}: no such file",
            f"file:{directory}": f"{directory}: is a directory",
            f"htpasswd:{missing}": f"{missing}: no such file",
            f"srp:{missing}": f"{missing}: no such file",
            f"hmac:{missing}": f"{missing}: no such file",
            f"sshkeys:{missing}": f"{missing}: no such file",
        }
        for auth, expected in cases.items():
            self.assertIn(expected, self.refused("--auth", auth), auth)
        users = Path(self.mktemp())
        users.write_text("alice:secret\n")
        [checker] = self.parse("--auth", f"file:{users}")["credCheckers"]
        self.assertIsInstance(checker.checker, FilePasswordDB)

    def test_throttleUpkeep(self) -> None:
        """
        The flush of failed logins and their retention follow
        C{--throttle-window} unless given.
        """
        throttle = self.parse("--throttle-window", "60").throttle
        self.assertEqual((throttle.kept, throttle.flushEvery), (60.0, 5.0))
        throttle = self.parse().throttle
        self.assertEqual((throttle.kept, throttle.flushEvery), (3600.0, 300.0))
        throttle = self.parse(
            "--throttle-window",
            "60",
            "--throttle-retention",
            "900",
            "--throttle-flush-interval",
            "2",
        ).throttle
        self.assertEqual((throttle.kept, throttle.flushEvery), (900.0, 2.0))

    def test_missingDataDir(self) -> None:
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--data-dir", self.mktemp()])
        self.assertIn("keycard init", str(caught.exception.code))

    def test_stockCheckerServed(self) -> None:
        """
        A twisted.cred checker of user names and passwords is served through
        password keycards.
        """
        options = self.parse("--auth", "memory:alice:secret")
        [checker] = options["credCheckers"]
        self.assertIsInstance(checker, PasswordChallenger)
        self.assertIsInstance(checker.checker, InMemoryUsernamePasswordDatabaseDontUse)

    def test_checkerServingNoKind(self) -> None:
        """
        A checker that serves no keycard kind is refused at startup: no one
        could log in.
        """
        line = self.refused("--auth", "anonymous")
        self.assertIn("--auth anonymous serves no keycard kind", line)

    def test_kindServedTwice(self) -> None:
        users = self.data.users
        line = self.refused("--auth", f"scram:{users}", "--auth", f"scram:{users}")
        self.assertIn("both serve twisted_keycard.scram-sha-256", line)

    def test_policyNamesUnservedKind(self) -> None:
        """
        A policy naming a kind no checker serves is refused; so is C{token}
        when tokens are off.
        """
        line = self.refused("--auth", "memory:a:b", "--policy", "scram or address")
        self.assertIn("no --auth checker serves scram keycards", line)
        line = self.refused("--no-tokens", "--policy", "token")
        self.assertIn("tokens are off", line)
        options = self.parse("--auth", "memory:a:b", "--policy", "htpasswd or token")
        self.assertIsNotNone(options.policy)

    def test_help(self) -> None:
        """
        The C{--auth} help is one paragraph; no checker factory's help holds
        epytext markup.
        """
        options = Options()
        usage = str(options)
        self.assertIn("memory:...", usage)
        for factory in findCheckerFactories():
            if factory.authType in {"scram", "hmac", "sshkeys", "htpasswd", "srp"}:
                self.assertNotIn("C{", factory.authHelp)
                self.assertNotIn("L{", factory.authHelp)
        self.assertEqual(
            plainHelp("  C{scram:FILE}: see L{a.b}\n  I{x}"), "scram:FILE: see a.b\nx"
        )

    def test_srpHelpShowsTheFormat(self) -> None:
        """
        C{--help-auth} shows the SRP line format that
        C{SRPVerifier.toString} writes (scrypt first) and the older one,
        field for field, and the C{srp:} checker reads a line of each.
        """
        (factory,) = [f for f in findCheckerFactories() if f.authType == "srp"]
        kdf = ScryptKDF.generate(n=2**10)
        lines = [
            "alice:" + SRPVerifier.fromPassword("alice", "pw", kdf).toString(),
            "bob:" + SRPVerifier.withoutKDF("bob", "pw").toString(),
        ]
        shown = [
            word.strip(",)")
            for word in factory.argStringFormat.split()
            if word.startswith("name:")
        ]
        self.assertEqual(len(shown), 2)
        for line, format in zip(lines, shown, strict=True):
            written = line.split(":", 1)[1]
            self.assertEqual(
                written.split("$")[0], format.split(":", 1)[1].split("$")[0]
            )
            self.assertEqual(written.count("$"), format.count("$"))
            help = factory.authHelp.replace("<", "").replace(">", "")
            self.assertIn(format, help)
        path = Path(self.mktemp())
        path.write_text("\n".join(lines) + "\n")
        self.assertIsInstance(factory.generateChecker(str(path)), SRPVerifiers)
        self.assertEqual(sorted(readVerifiers(path.read_text())), ["alice", "bob"])


class StockCheckerTests(SynchronousTestCase):
    def test_plainTCPWarning(self) -> None:
        """
        Password keycards on a plain TCP listener could never log anyone in:
        the start says so.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        checkers = [PasswordChallenger(InMemoryUsernamePasswordDatabaseDontUse())]
        warnPlainPasswords("ssl:8800:privateKey=k.pem", checkers)
        self.assertEqual(events, [])
        warnPlainPasswords("tcp:8800", checkers)
        [event] = events
        self.assertEqual(event["event"], "bouncer.warning")
        self.assertIn("no one can log in with a password", event["log_format"])

    def test_exposedFaces(self) -> None:
        """
        A plain-HTTP face with no TLS proxy trusted, and metrics on plain
        TCP bound to more than loopback, are named at the start (issue 23).
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        quiet = [
            ("ssl:8443:privateKey=k.pem", "tcp:9100:interface=127.0.0.1", ()),
            (
                "tcp:8080:interface=127.0.0.1",
                "tcp6:9100:interface=\\:\\:1",
                ("::1/128",),
            ),
            (None, "tcp:9100:interface=localhost", ()),
            (None, "ssl:9100:privateKey=k.pem", ()),
            ("unix:/run/keycard.sock", "unix:/run/metrics.sock", ()),
        ]
        for http, metrics, proxies in quiet:
            warnExposedFaces(http, metrics, ProxyTrust(proxies))
        self.assertEqual(events, [])
        warnExposedFaces("tcp:8080", None, ProxyTrust())
        warnExposedFaces(None, "tcp:9100", ProxyTrust())
        warnExposedFaces(None, "tcp:9100:interface=0.0.0.0", ProxyTrust())
        warnExposedFaces(None, "9100", ProxyTrust())
        self.assertEqual([e["event"] for e in events], ["bouncer.warning"] * 4)
        self.assertIn("Bearer tokens and session cookies", events[0]["log_format"])
        for event in events[1:]:
            self.assertIn("more than loopback", event["log_format"])

    def login(self, checker: Any, name: str, password: str) -> Deferred[Any]:
        bouncer = Bouncer([PasswordChallenger(checker)], MemoryStore(), clock=Clock())
        keycard = PasswordKeycard(username=name, password=password)
        return bouncer.authenticate(keycard)

    def test_interfaces(self) -> None:
        challenger = PasswordChallenger(InMemoryUsernamePasswordDatabaseDontUse())
        verifyObject(IChallenger, challenger)

    def test_textNames(self) -> None:
        """
        The in-memory checker C{--auth memory:...} makes keeps text names.
        """
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser("alice", "secret")  # type: ignore[arg-type]
        keycard = self.successResultOf(self.login(checker, "alice", "secret"))
        self.assertEqual(keycard.state, KeycardState.AUTHENTICATED)
        self.assertEqual(keycard.avatarId, "alice")
        self.failureResultOf(self.login(checker, "alice", "wrong"), KeycardRefused)
        self.failureResultOf(self.login(checker, "bob", "secret"), KeycardRefused)

    def test_bytesNames(self) -> None:
        """
        twisted.cred's file checker reads bytes; its avatar id is decoded.
        """
        path = Path(self.mktemp())
        path.write_bytes(b"alice:secret\n")
        checker = FilePasswordDB(str(path))
        keycard = self.successResultOf(self.login(checker, "alice", "secret"))
        self.assertEqual(keycard.avatarId, "alice")
        self.failureResultOf(self.login(checker, "alice", "secrets"), KeycardRefused)


@implementer(IStreamServerEndpoint)
class _FailingEndpoint:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def listen(self, factory: object) -> Deferred[Any]:
        return fail(self.error)


class _Port:
    def __init__(self, address: Any) -> None:
        self.address = address

    def getHost(self) -> Any:
        return self.address


@implementer(IStreamServerEndpoint)
class _Listening:
    def listen(self, factory: object) -> Deferred[Any]:
        return succeed(_Port(IPv4Address("TCP", "127.0.0.1", 8800)))


class StartTests(SynchronousTestCase):
    def test_portInUse(self) -> None:
        """
        A port that cannot be listened on stops the start with one line.
        """
        error = CannotListenError("127.0.0.1", 8800, OSError(98, "Address in use"))
        listener = Listener(_FailingEndpoint(error), object(), "tcp:8800", "b")
        with self.assertRaises(StartupError) as caught:
            listener.privilegedStartService()
        self.assertEqual(
            str(caught.exception), "cannot listen on 127.0.0.1:8800: address in use"
        )
        self.flushLoggedErrors()

    def test_listeningLine(self) -> None:
        """
        Once listening, the log names the address and the port.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]

        @implementer(IStreamServerEndpoint)
        class Endpoint:
            def listen(self, factory: object) -> Deferred[Any]:
                return succeed(_Port(IPv4Address("TCP", "127.0.0.1", 8800)))

        for name, serving, line in [
            ("b", "bouncer", 'bouncer "b" listening on 127.0.0.1:8800 (tcp)'),
            # The default name reads as a name, not as a stutter (issue 27).
            ("bouncer", "bouncer", 'bouncer "bouncer" listening on 127.0.0.1:8800'),
            ("edge-1", "metrics of bouncer", 'metrics of bouncer "edge-1" listening'),
        ]:
            del events[:]
            listener = Listener(
                Endpoint(), object(), "tcp:8800:interface=127.0.0.1", name, serving
            )
            listener.privilegedStartService()
            listener.startService()
            [event] = [e for e in events if e.get("event") == "bouncer.listening"]
            self.assertEqual(event["address"], "127.0.0.1:8800")
            self.assertIn(line, formatEvent(event))

    def test_describeAddress(self) -> None:
        self.assertEqual(
            describeAddress(_Port(IPv6Address("TCP", "::1", 8800))),  # type: ignore[arg-type]
            "[::1]:8800",
        )
        self.assertEqual(
            describeAddress(_Port(UNIXAddress("/run/k.sock"))),  # type: ignore[arg-type]
            "/run/k.sock",
        )

    def test_storeCannotOpen(self) -> None:
        """
        A store that cannot be opened stops the start, before the reactor
        runs, with one line.
        """
        missing = StoreCheck(str(Path(self.mktemp()) / "no" / "keycard.db"))
        with self.assertRaises(StartupError) as caught:
            missing.startService()
        self.assertIn("no such file or directory", str(caught.exception))
        garbage = Path(self.mktemp())
        garbage.write_bytes(b"not a database" * 100)
        with self.assertRaises(StartupError) as caught:
            StoreCheck(str(garbage)).startService()
        self.assertIn("file is not a database", str(caught.exception))
        good = StoreCheck(self.mktemp())
        good.startService()
        self.assertTrue(good.running)

    def test_checkEarly(self) -> None:
        """
        Before twistd daemonizes, L{checkEarly} opens the store (once: the
        start does not open it again) and raises the one line, logging
        nothing (logging has not begun: the line would be printed twice).
        Only twistd's daemonizing options ask for it.
        """
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)  # type: ignore[arg-type]
        self.addCleanup(globalLogPublisher.removeObserver, events.append)  # type: ignore[arg-type]
        top = MultiService()
        StoreCheck(str(Path(self.mktemp()) / "no" / "x.db")).setServiceParent(top)
        with self.assertRaises(StartupError) as caught:
            checkEarly(top)
        self.assertIn("no such file or directory", str(caught.exception))
        self.assertEqual(events, [])
        # Switching users after, twistd would leave files of the store
        # root's: it is opened once privileges are dropped.
        checkEarly(top, dropsPrivileges=True)
        good = StoreCheck(self.mktemp())
        top = MultiService()
        good.setServiceParent(top)
        checkEarly(top)
        self.assertTrue(good.checked)
        self.patch(good, "path", "/no/such/dir/x.db")
        good.startService()
        self.assertTrue(good.running)

    def test_daemonizedTells(self) -> None:
        """
        Daemonized, a L{StartupError} of a service is written as one line
        on the copy of the starting process's standard error, which is then
        closed, as it is once the start succeeds.
        """
        error = CannotListenError("127.0.0.1", 8800, OSError(98, "Address in use"))
        for listener, told in [
            (
                _FailingEndpoint(error),
                b"keycard-bouncer: cannot listen on 127.0.0.1:8800",
            ),
            (_Listening(), b""),
        ]:
            read, write = os.pipe()
            self.addCleanup(os.close, read)
            top = Daemonized(write)
            Listener(listener, object(), "tcp:8800", "b").setServiceParent(top)
            if told:
                with self.assertRaises(StartupError):
                    top.privilegedStartService()
                self.flushLoggedErrors()
            else:
                top.privilegedStartService()
                top.startService()
            self.assertIsNone(top.stderr)
            self.assertEqual(
                os.read(read, 1000), told + (b": address in use\n" if told else b"")
            )

    def test_quietParent(self) -> None:
        """
        twistd's parent exits with status 1 and prints nothing more for a
        L{StartupError} its child printed; anything else is printed as
        twistd prints it.
        """
        from twisted.scripts._twistd_unix import UnixApplicationRunner

        self.patch(
            UnixApplicationRunner, "_waitForStart", UnixApplicationRunner._waitForStart
        )
        out = io.StringIO()
        self.patch(sys, "__stderr__", out)
        quietParent()
        quietParent()
        runner = UnixApplicationRunner.__new__(UnixApplicationRunner)
        startup = traceback.format_exception_only(StartupError, StartupError("x"))
        for status, code, printed in [
            (b"0", 0, ""),
            (f"1 {startup[-1].strip()}".encode(), 1, ""),
            (b"1 builtins.ValueError: boom", 1, "b'builtins.ValueError: boom'"),
        ]:
            read, write = os.pipe()
            os.write(write, status)
            os.close(write)
            self.assertEqual(runner._waitForStart(read), code)
            os.close(read)
            self.assertIn(printed, out.getvalue())
        self.assertEqual(out.getvalue().count("An error has occurred"), 1)

    def test_daemonizing(self) -> None:
        """
        L{daemonizing} and L{dropsPrivileges} read twistd's own options,
        the parent of the plugin's.
        """
        options = Options()
        self.assertFalse(daemonizing(options))
        self.assertFalse(dropsPrivileges(options))
        options.parent = cast(Any, {"nodaemon": False, "uid": None, "gid": None})
        self.assertTrue(daemonizing(options))
        self.assertFalse(dropsPrivileges(options))
        options.parent = cast(Any, {"nodaemon": True, "uid": 1000, "gid": None})
        self.assertFalse(daemonizing(options))
        self.assertTrue(dropsPrivileges(options))

    def test_badListen(self) -> None:
        """
        makeService refuses a --listen that names no endpoint.
        """
        self.patch(sys, "excepthook", sys.excepthook)
        data = DataDir.create(Path(self.mktemp()) / "data")
        for listen, expected in [
            ("bogus:8800", "unknown endpoint type 'bogus'"),
            ("tcp:notaport", "'notaport' is not a number"),
            ("ssl:8800:privateKey=/no/such.pem", "/no/such.pem: no such file"),
        ]:
            options = Options()
            options.parseOptions(["--data-dir", str(data.path), "--listen", listen])
            with self.assertRaises(StartupError) as caught:
                makeService(options)
            self.assertIn(expected, str(caught.exception))
            self.assertIn(f"bad --listen {listen!r}", str(caught.exception))

    def test_heartbeat(self) -> None:
        """
        The PB face pings its clients every 30 s by default, every
        C{--heartbeat} seconds, or never with C{--heartbeat 0}.
        """
        self.patch(sys, "excepthook", sys.excepthook)
        data = DataDir.create(Path(self.mktemp()) / "data")
        for args, every in [((), 30.0), (("--heartbeat", "2.5"), 2.5)]:
            options = Options()
            options.parseOptions(["--data-dir", str(data.path), *args])
            service: Any = makeService(options)
            [listener] = [s for s in service if isinstance(s, Listener)]
            heartbeat = listener.factory.root.heartbeat
            self.assertEqual(heartbeat.every, every)
        options = Options()
        options.parseOptions(["--data-dir", str(data.path), "--heartbeat", "0"])
        service = makeService(options)
        [listener] = [s for s in service if isinstance(s, Listener)]
        self.assertIsNone(listener.factory.root.heartbeat)

    def test_exitHook(self) -> None:
        """
        The hook prints a L{StartupError} as one line and hands anything
        else to the previous hook.
        """
        out = io.StringIO()
        others: list[BaseException] = []
        hook = exitHook(lambda c, e, t: others.append(e), lambda: out)
        hook(StartupError, StartupError("cannot listen"), None)
        self.assertEqual(out.getvalue(), "keycard-bouncer: cannot listen\n")
        bug = RuntimeError("bug")
        hook(RuntimeError, bug, None)
        self.assertEqual(others, [bug])


class EndpointTests(SynchronousTestCase):
    def test_client(self) -> None:
        reactor = MemoryReactor()
        for description, expected in [
            ("tcp:localhost", "no port given"),
            ("tls:localhost", "no port given"),
            ("tcp:localhost:abc", "'abc' is not a number"),
            ("tcp:localhost:1:foo=1", "unknown parameter 'foo'"),
            ("bogus:1", "unknown endpoint type 'bogus'"),
            ("tls:h:1:trustRoots=/no/dir", "trustRoots=/no/dir is not a directory"),
        ]:
            with self.assertRaises(EndpointError) as caught:
                clientEndpoint(reactor, description)
            self.assertIn(expected, str(caught.exception))
            self.assertIn(f"bad --connect {description!r}", str(caught.exception))
        clientEndpoint(reactor, "tcp:localhost:8800")

    def test_server(self) -> None:
        with self.assertRaises(EndpointError) as caught:
            serverEndpoint(MemoryReactor(), "tcp:8800:foo=1")
        self.assertIn("unknown parameter 'foo'", str(caught.exception))
