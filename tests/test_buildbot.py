"""
Integration test of the two-line Buildbot setup (L{twisted_keycard.buildbot})
with a real master and real workers from the package registry: a build
longer than a keycard's duration finishes, a wrong password is refused and
tried again, a revocation drops the worker (which logs in again), PB's own
login still serves C{buildbot sendchange} on the same port, and the master
stops cleanly.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from ._procs import ENV, TIMEOUT, Process, freePort, keycard, waitFor

pytest.importorskip("buildbot.master", reason="needs twisted-keycard[buildbot]")
pytest.importorskip("buildbot_worker.bot", reason="needs twisted-keycard[buildbot]")

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent
#: Seconds a keycard is valid; the build takes twice as long.
DURATION = 3.0
BUILD_SECONDS = 2 * DURATION

MASTER_CFG = """\
from buildbot.plugins import changes, schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c["workers"] = [worker.Worker("w1", "pass1"), worker.Worker("w2", "pass2")]
c["protocols"] = {{"pb": {{"port": "tcp:{port}:interface=127.0.0.1"}}}}
c["change_source"] = [changes.PBChangeSource(user="change", passwd="changepw")]
c["schedulers"] = [
    schedulers.AnyBranchScheduler(name="all", treeStableTimer=None, builderNames=["b"])
]
factory = util.BuildFactory([steps.ShellCommand(command=["sleep", "{seconds}"])])
c["builders"] = [util.BuilderConfig(name="b", workernames=["w1"], factory=factory)]
c["title"] = "keycards"
c["buildbotNetUsageData"] = None
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}

"""

#: The one line a user adds to C{master.cfg}; C{stockLogin} for
#: C{buildbot sendchange}, a short C{duration} to see renewal at work.
MASTER_LINE = (
    "from twisted_keycard.buildbot import useKeycards;"
    ' useKeycards(c, "keycard-data", stockLogin=True, duration={duration})\n'
)

WORKER_LINE = "\nfrom twisted_keycard.buildbot import keycardWorker; keycardWorker()\n"


class _Twistd(Process):
    """
    C{twistd -n -y buildbot.tac} in a Buildbot directory, as
    C{buildbot start --nodaemon} runs it; its log is the directory's
    C{twistd.log}.
    """

    def __init__(self, basedir: Path) -> None:
        super().__init__(
            [str(BIN / "twistd"), "--nodaemon", "--pidfile=", "-y", "buildbot.tac"],
            basedir / "twistd.log",
        )
        self.basedir = basedir

    def start(self) -> None:
        with open(self.basedir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen(
                self.args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=ENV,
                cwd=self.basedir,
            )

    def count(self, text: str) -> int:
        return self.output().count(text)


def _run(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        env=ENV,
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _builds(master: Path) -> list[tuple[Any, ...]]:
    """
    The finished builds in the master's database: (number, results).
    """
    with sqlite3.connect(master / "state.sqlite") as db:
        return db.execute(
            "SELECT number, results FROM builds WHERE complete_at IS NOT NULL"
        ).fetchall()


class BuildbotTests(TestCase):
    timeout = 120

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(parents=True)
        self.port = freePort()
        self.master = self.base / "master"
        _run(str(BIN / "buildbot"), "create-master", "-r", "master", cwd=self.base)
        (self.master / "master.cfg").write_text(
            MASTER_CFG.format(port=self.port, seconds=int(BUILD_SECONDS))
            + MASTER_LINE.format(duration=DURATION)
        )
        done = keycard("init", str(self.master / "keycard-data"))
        assert done.returncode == 0, done.stderr
        self.processes: list[_Twistd] = []

    def tearDown(self) -> None:
        for process in reversed(self.processes):
            process.stop()

    def worker(self, name: str, password: str) -> _Twistd:
        basedir = self.base / name
        _run(
            str(BIN / "buildbot-worker"),
            "create-worker",
            str(basedir),
            f"127.0.0.1:{self.port}",
            name,
            password,
            cwd=self.base,
        )
        with open(basedir / "buildbot.tac", "a") as tac:
            tac.write(WORKER_LINE)
        return self.started(_Twistd(basedir))

    def started(self, process: _Twistd) -> _Twistd:
        self.processes.append(process)
        process.start()
        return process

    def test_twoLines(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._twoLines())

    async def _twoLines(self) -> None:
        master = self.started(_Twistd(self.master))
        await waitFor(lambda: master.count("BuildMaster is running"), "the master")
        self.assertIn("takes keycards", master.output())

        # The worker logs in with a SCRAM keycard.
        w1 = self.worker("w1", "pass1")
        await waitFor(lambda: master.count("Worker w1 attached to b"), "w1")
        self.assertIn("issued to w1 via buildbot", master.output())
        # The worker logs its side a moment after the master has attached it.
        await waitFor(
            lambda: w1.count("Connected to buildmaster; worker is ready"), "w1 ready"
        )

        # A wrong password is refused and tried again; the worker stays up.
        w2 = self.worker("w2", "wrong")
        refused = "unauthorized login; check worker name and password"
        await waitFor(lambda: w2.count(refused) >= 2, "two refusals of w2")
        self.assertIn("keycard refused", master.output())
        self.assertIn("Scheduling retry", w2.output())
        assert w2.proc is not None
        self.assertIsNone(w2.proc.poll())

        # PB's own login (stockLogin) takes a change on the same port, and
        # the build outlives its worker's keycard: the root renews it.
        _run(
            str(BIN / "buildbot"),
            "sendchange",
            "--master",
            f"127.0.0.1:{self.port}",
            "--auth",
            "change:changepw",
            "--who",
            "tester",
            "--branch",
            "main",
            "a.c",
            cwd=self.base,
        )
        # A wrong password gets stock PB's refusal (issue 26: it was
        # "RemoteError: keycard refused"): the tool's usual failure.
        wrong = subprocess.run(
            [
                str(BIN / "buildbot"), "sendchange", "--master",
                f"127.0.0.1:{self.port}", "--auth", "change:wrong", "--who",
                "tester", "--branch", "main", "b.c",
            ],
            capture_output=True, text=True, env=ENV, cwd=self.base,
            timeout=TIMEOUT, check=False,
        )  # fmt: skip
        self.assertEqual(wrong.returncode, 1, wrong.stdout + wrong.stderr)
        self.assertIn("change not sent:", wrong.stdout)
        self.assertEqual(
            wrong.stdout.rstrip().splitlines()[-1], "twisted.spread.pb.RemoteError"
        )
        self.assertNotIn("keycard refused", wrong.stdout)
        await waitFor(lambda: _builds(self.master), "the build", 60)
        self.assertEqual(_builds(self.master), [(1, 0)])
        self.assertEqual(master.count("Worker w1 detached"), 0)

        # A revocation drops the worker at once; it logs in again.
        done = keycard(
            "revoke", "--avatar", "w1", "--data-dir", str(self.master / "keycard-data")
        )
        self.assertEqual(done.returncode, 0, done.stderr)
        await waitFor(lambda: master.count("Worker w1 detached"), "the drop")
        await waitFor(lambda: master.count("Worker w1 attached to b") >= 2, "w1 again")
        # As after the first attach: the master logs its side while it is
        # still attaching the worker (and stopping then is a stop in the
        # middle of a login); the worker's own line says the attach is done.
        await waitFor(
            lambda: w1.count("Connected to buildmaster; worker is ready") >= 2,
            "w1 ready again",
        )

        # w2 stops first: its retries would go on into the master's stop,
        # and a login that reaches Buildbot's own checker once the master
        # is torn down fails there (AttributeError: 'NoneType' object has no
        # attribute 'initLock'), which the bouncer logs as a checker's
        # failure, with its traceback (seen in a CI run).
        w2.proc.terminate()
        await waitFor(lambda: w2.proc.poll() is not None, "w2 to stop")

        # The master stops cleanly, and at once.
        assert master.proc is not None
        master.proc.send_signal(signal.SIGTERM)
        await waitFor(lambda: master.proc.poll() is not None, "the master to stop")
        self.assertEqual(master.proc.returncode, 0)
        self.assertIn("Server Shut Down.", master.output())
        self.assertNoTraceback(master)

    def assertNoTraceback(self, process: _Twistd) -> None:
        """
        Fail with the lines before and after the first traceback in the
        process's log, not the whole log.
        """
        lines = process.output().splitlines()
        for number, line in enumerate(lines):
            if "Traceback" in line:
                shown = "\n".join(lines[max(0, number - 15) : number + 30])
                self.fail(f"a traceback in {process.log}:\n{shown}")
