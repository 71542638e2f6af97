"""
Tests that the SQLite store's thread stops with the reactor, and that
L{BouncerService} pairs a bouncer with the store it closes: an application
embedding a bouncer exits after C{reactor.stop()} and on SIGTERM.
"""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.service import BouncerService, DataDir, NoDataDir
from twisted_keycard.store.sqlite._database import Database
from twisted_keycard.store.sqlite._store import SQLiteStore

from ._procs import ENV, ROOT

#: Seconds an embedding process has to exit once told to.
EXIT_DEADLINE = 10.0


class ThreadlessReactor(Clock):
    """
    The parts of a reactor the database uses: time, its shutdown triggers,
    and results handed over from the database's thread, kept to be run
    here.
    """

    def __init__(self) -> None:
        super().__init__()
        self.triggers: dict[int, tuple[str, str, Callable[[], None]]] = {}
        self.delivered: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
        self._arrived = threading.Condition()

    def addSystemEventTrigger(
        self, phase: str, event: str, f: Callable[[], None]
    ) -> int:
        key = len(self.triggers) + 1
        self.triggers[key] = (phase, event, f)
        return key

    def removeSystemEventTrigger(self, key: int) -> None:
        del self.triggers[key]

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:
        with self._arrived:
            self.delivered.append((f, args))
            self._arrived.notify_all()

    def waitForDeliveries(self, count: int) -> None:
        """
        Wait until the database's thread has handed over C{count} results,
        for at most L{EXIT_DEADLINE} seconds.
        """
        with self._arrived:
            arrived = self._arrived.wait_for(
                lambda: len(self.delivered) >= count, EXIT_DEADLINE
            )
        assert arrived, f"{len(self.delivered)} of {count} results handed over"

    def deliver(self) -> None:
        while self.delivered:
            f, args = self.delivered.pop(0)
            f(*args)

    def shutdown(self) -> None:
        for phase, event, f in list(self.triggers.values()):
            if (phase, event) == ("during", "shutdown"):
                f()


class DatabaseThreadTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = ThreadlessReactor()
        self.database = Database(self.mktemp(), self.reactor)

    def started(self) -> list[Any]:
        d = self.database.run(lambda c: int(c.execute("SELECT 1").fetchone()[0]))
        threads = list(self.database._pool.threads)
        self.assertEqual(len(threads), 1)
        return [d, threads[0]]

    def test_stopsWithReactor(self) -> None:
        """
        The thread starts with the first query, as a daemon thread, with a
        shutdown trigger that closes the connection and ends the thread
        once the queued work is done.
        """
        d, thread = self.started()
        self.assertTrue(thread.daemon)
        self.assertEqual(
            [t[:2] for t in self.reactor.triggers.values()], [("during", "shutdown")]
        )
        self.reactor.shutdown()
        self.assertFalse(thread.is_alive())
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(d), 1)
        self.assertIsNone(self.database._connection)

    def test_closeRemovesTrigger(self) -> None:
        """
        A database closed before the reactor stops leaves no trigger; used
        again, it starts a new thread, stopped with the reactor.
        """
        d, thread = self.started()
        closed = self.database.close()
        # The thread stops once the close's result is delivered here.
        self.reactor.waitForDeliveries(2)
        self.reactor.deliver()
        thread.join(EXIT_DEADLINE)
        self.successResultOf(d)
        self.successResultOf(closed)
        self.assertFalse(thread.is_alive())
        self.assertEqual(self.reactor.triggers, {})
        again, second = self.started()
        self.assertIsNot(second, thread)
        self.reactor.shutdown()
        self.reactor.deliver()
        self.assertEqual(self.successResultOf(again), 1)
        self.assertFalse(second.is_alive())


class BouncerServiceTests(SynchronousTestCase):
    def test_fromDataDir(self) -> None:
        """
        The service's bouncer uses the data directory's store, issues
        tokens, and stopping the service closes the store.
        """
        data = DataDir.create(Path(self.mktemp()) / "data")
        reactor = ThreadlessReactor()
        service = BouncerService.fromDataDir(data.path, reactor, name="embedded")
        self.assertIsInstance(service.store, SQLiteStore)
        self.assertEqual(service.store.path, str(data.database))
        self.assertIs(service.bouncer.store, service.store)
        self.assertIsNotNone(service.bouncer.tokens)
        self.assertEqual(service.bouncer.name, "embedded")
        self.assertIs(service.bouncer.parent, service)
        closed: list[bool] = []
        service.store.close = lambda: closed.append(True)
        service.startService()
        self.assertTrue(service.bouncer.running)
        stopped = service.stopService()
        self.assertFalse(service.bouncer.running)
        self.assertEqual(closed, [True])
        self.successResultOf(stopped)
        # The bouncer's first queries started the store's thread.
        reactor.shutdown()
        self.assertFalse(any(t.is_alive() for t in service.store._db._pool.threads))

    def test_noDataDir(self) -> None:
        self.assertRaises(NoDataDir, BouncerService.fromDataDir, self.mktemp(), Clock())


@pytest.mark.integration
class EmbeddedExitTests(SynchronousTestCase):
    """
    The README's embedding, as a process: it exits once its reactor stops.
    """

    def embed(self, how: str, when: str) -> subprocess.Popen[str]:
        if how == "service":
            path = str(DataDir.create(Path(self.mktemp()) / "data").path)
        else:
            path = self.mktemp()
        child = subprocess.Popen(
            [sys.executable, str(ROOT / "tests" / "_embedded.py"), how, when, path],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=ENV,
        )
        self.addCleanup(self.kill, child)
        self.assertEqual(self.readLine(child), "READY")
        return child

    def kill(self, child: subprocess.Popen[str]) -> None:
        if child.poll() is None:
            child.kill()
            child.wait()
        assert child.stdout is not None
        child.stdout.close()

    def readLine(self, child: subprocess.Popen[str]) -> str:
        assert child.stdout is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready, _, _ = select.select([child.stdout], [], [], 0.5)
            if ready:
                return child.stdout.readline().strip()
        self.fail("the embedding process said nothing")

    def exits(self, child: subprocess.Popen[str]) -> None:
        try:
            child.wait(EXIT_DEADLINE)
        except subprocess.TimeoutExpired:
            self.fail(f"still running {EXIT_DEADLINE} s after its reactor stopped")
        self.assertEqual(self.readLine(child), "STOPPED")
        self.assertIn(child.returncode, (0, -signal.SIGTERM))

    def test_storeExitsAfterReactorStop(self) -> None:
        self.exits(self.embed("store", "stop"))

    def test_storeExitsOnSIGTERM(self) -> None:
        child = self.embed("store", "wait")
        child.send_signal(signal.SIGTERM)
        self.exits(child)

    def test_serviceExitsAfterReactorStop(self) -> None:
        self.exits(self.embed("service", "stop"))

    def test_serviceExitsOnSIGTERM(self) -> None:
        child = self.embed("service", "wait")
        child.send_signal(signal.SIGTERM)
        self.exits(child)
