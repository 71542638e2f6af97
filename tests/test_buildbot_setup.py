"""
Tests for the two lines of L{twisted_keycard.buildbot}, without processes:
what C{useKeycards} adds to C{master.cfg}'s configuration and how
C{keycardWorker} finds and changes the worker of C{buildbot.tac}, and what
checks the workers' keycards on the master's PB port.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

pytest.importorskip("buildbot.master", reason="needs twisted-keycard[buildbot]")
pytest.importorskip("buildbot_worker.bot", reason="needs twisted-keycard[buildbot]")

from buildbot_worker.bot import Worker

from twisted_keycard import KeycardServerFactory
from twisted_keycard.buildbot import (
    KeycardDispatcher,
    KeycardService,
    KeycardWebAuth,
    keycardWorker,
    useKeycards,
)
from twisted_keycard.buildbot._master import KeycardSettings
from twisted_keycard.scram import CheckPasswordSCRAM, SCRAMKeycard, SCRAMVerifiers
from twisted_keycard.service import DataDir


def _worker(basedir: str) -> Any:
    return Worker("127.0.0.1", 9989, "w1", "pass1", basedir, 600)


class UseKeycardsTests(SynchronousTestCase):
    def test_addsService(self) -> None:
        """
        C{useKeycards} adds one L{KeycardService}, named C{keycards}, to
        the services already configured.
        """
        other = object()
        c: dict[str, Any] = {"services": [other]}
        useKeycards(c, "kc", stockLogin=True, duration=60.0)
        first, service = c["services"]
        self.assertIs(first, other)
        self.assertIsInstance(service, KeycardService)
        self.assertEqual(service.name, "keycards")
        self.assertEqual(service._config_args, ("kc",))
        self.assertTrue(service._config_kwargs["stockLogin"])

    def test_badOption(self) -> None:
        with self.assertRaises(TypeError):
            useKeycards({}, "kc", nonsense=True)  # type: ignore[call-arg]


class KeycardWorkerTests(SynchronousTestCase):
    def tac(self, source: str) -> dict[str, Any]:
        """
        Run C{source} as twistd runs a C{buildbot.tac}: its names are the
        globals of the code that calls C{keycardWorker}.
        """
        namespace: dict[str, Any] = {
            "make": lambda: _worker(self.mktemp()),
            "keycardWorker": keycardWorker,
        }
        exec(source, namespace)  # noqa: S102 - a tac file, as twistd runs it
        return namespace

    def test_findsTheWorker(self) -> None:
        """
        Without arguments, C{keycardWorker} changes the worker of its
        caller's namespace (C{buildbot.tac}'s): its factory logs in with
        keycards from now on.
        """
        tac = self.tac("s = make()\nstock = s.bf.doLogin\nfound = keycardWorker()\n")
        self.assertIs(tac["found"], tac["s"])
        self.assertNotEqual(tac["s"].bf.doLogin, tac["stock"])
        self.assertEqual(tac["s"].bf.doLogin.__name__, "doLogin")

    def test_noWorker(self) -> None:
        with self.assertRaises(ValueError):
            self.tac("keycardWorker()\n")

    def test_twoWorkers(self) -> None:
        with self.assertRaises(ValueError):
            self.tac("a = make()\nb = make()\nkeycardWorker()\n")
        tac = self.tac("a = make()\nb = make()\nfound = keycardWorker(a)\n")
        self.assertIs(tac["found"], tac["a"])

    def test_passwordNotUTF8(self) -> None:
        with self.assertRaises(ValueError):
            keycardWorker(_worker(self.mktemp()), password=b"\xff")


class DispatcherTests(TestCase):
    """
    What checks the workers' keycards on a master's PB port.
    """

    async def dispatcher(self, usersFile: bool) -> Any:
        dataDir = Path(self.mktemp())
        DataDir.create(dataDir)
        settings = KeycardSettings(dataDir, usersFile=usersFile, stockLogin=True)
        dispatcher = KeycardDispatcher("tcp:0", "tcp:0", settings, reactor)
        self.addCleanup(dispatcher.bouncerService.stopService)
        return dispatcher

    def challenger(self, dispatcher: Any) -> Any:
        bouncer = dispatcher.root.bouncer
        challengers = bouncer._authentication.challengers
        return challengers.challenger(SCRAMKeycard.keycardType)

    def test_passwordsOfMasterCfg(self) -> Deferred[None]:
        """
        By default the dispatcher itself, which holds the passwords of
        C{master.cfg}, checks them through SCRAM; PB's own login is taken
        when asked for.
        """

        async def check() -> None:
            dispatcher = await self.dispatcher(usersFile=False)
            challenger = self.challenger(dispatcher)
            self.assertIsInstance(challenger, CheckPasswordSCRAM)
            self.assertIs(challenger.checker, dispatcher)
            self.assertTrue(dispatcher.root.stockLogin)
            self.assertIsInstance(dispatcher.serverFactory, KeycardServerFactory)

        return Deferred.fromCoroutine(check())

    def test_usersFile(self) -> Deferred[None]:
        """
        With C{usersFile}, the data directory's verifiers check them.
        """

        async def check() -> None:
            dispatcher = await self.dispatcher(usersFile=True)
            self.assertIsInstance(self.challenger(dispatcher), SCRAMVerifiers)

        return Deferred.fromCoroutine(check())


class KeycardWebAuthTests(SynchronousTestCase):
    """
    What L{KeycardWebAuth} takes in C{master.cfg}, before a master
    configures it (C{tests/test_buildbot_www.py} runs it in one).
    """

    def test_isBuildbotAuth(self) -> None:
        """
        It is one of Buildbot's auths, with a user info provider, and opens
        nothing until a master configures it.
        """
        from buildbot.www.auth import AuthBase

        auth = KeycardWebAuth("keycard-data", htpasswd="web.htpasswd")
        self.assertIsInstance(auth, AuthBase)
        self.assertIsNotNone(auth.userInfoProvider)
        self.assertIsNone(auth.guard)
        self.assertIsNone(auth.bouncerService)
        self.assertEqual(auth.getConfigDict(), {"name": "KeycardWebAuth"})

    def test_onePasswordFile(self) -> None:
        """
        An htpasswd file and a SCRAM verifiers file together are refused in
        one line.
        """
        error = self.assertRaises(
            ValueError, KeycardWebAuth, htpasswd="a", scramUsers="b"
        )
        self.assertEqual(
            str(error),
            "KeycardWebAuth checks passwords against one file: give htpasswd= or"
            " scramUsers=, not both",
        )

    def test_duration(self) -> None:
        """
        A duration that is not a positive number is refused.
        """
        for bad in (0, -1, float("nan")):
            self.assertRaises(ValueError, KeycardWebAuth, duration=bad)
