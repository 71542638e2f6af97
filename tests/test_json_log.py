"""
Integration test of the JSON log as C{docs/production.rst} prints it: the
observer module given to C{twistd --logger}, a real bouncer writing its
audit events through it, and both readers of the page (the
C{eventsFromJSONLogFile} script and the C{tr | jq} pipeline) run on the
file it wrote.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import TestCase

from ._procs import ENV, ROOT, TIMEOUT, TWISTD, freePort, keycard, needTool, waitFor

PAGE = ROOT / "docs" / "production.rst"
PRINTED = "/var/log/keycard/audit.json"
PASSWORD = "correct horse battery staple"
_BLOCK = re.compile(r"\.\. code-block:: (\w+)\n\n((?:    .*\n|\n)+)")

pytestmark = pytest.mark.integration


def printed(first: str) -> str:
    """
    The code block of the page whose first line is C{first}.
    """
    for _, code in _BLOCK.findall(PAGE.read_text()):
        code = textwrap.dedent(code)
        if code.startswith(first):
            return code
    raise AssertionError(f"no block starting {first!r} in {PAGE}")


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class JSONLogTests(TestCase):
    def test_asPrinted(self) -> Deferred[None]:
        """
        A bouncer started with the page's observer writes a JSON text
        sequence (each record after an RS); the page's script reads one
        line per login from it, naming the account, and its C{jq} pipeline
        reads the refusal.
        """
        work = Path(self.mktemp()).resolve()
        (work / "myapp").mkdir(parents=True)
        data = work / "data"
        audit = work / "audit.json"
        self.assertEqual(keycard("init", str(data)).returncode, 0)
        added = keycard("user", "add", "--data-dir", str(data), "alice", stdin=PASSWORD)
        self.assertEqual(added.returncode, 0, added.stderr)
        (work / "myapp" / "__init__.py").write_text("")
        (work / "myapp" / "logs.py").write_text(
            printed("# myapp/logs.py").replace(PRINTED, str(audit))
        )
        script = work / "audit_report.py"
        script.write_text(printed("# audit_report.py"))
        commands = printed("python audit_report.py").replace(PRINTED, str(audit))
        run, pipeline = commands.split("\n", 1)
        env = {**ENV, "PYTHONPATH": os.pathsep.join([str(work), str(ROOT)])}
        port = freePort()

        async def go() -> None:
            out = open(work / "twistd.out", "wb")  # noqa: SIM115 - closed in cleanup
            self.addCleanup(out.close)
            process = subprocess.Popen(
                [
                    TWISTD,
                    "--logger=myapp.logs.audit",
                    "-n",
                    "--pidfile=",
                    "keycard-bouncer",
                    "--data-dir",
                    str(data),
                    "--listen",
                    f"tcp:{port}:interface=127.0.0.1",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=work,
            )
            self.addCleanup(process.wait, TIMEOUT)
            self.addCleanup(process.terminate)
            await waitFor(lambda: listening(port), "the bouncer")
            connect = ["login", "--connect", f"tcp:127.0.0.1:{port}", "alice"]
            wrong = keycard(*connect, stdin="nope\n")
            self.assertEqual(wrong.returncode, 1, wrong.stderr)
            right = keycard(*connect, stdin=PASSWORD + "\n")
            self.assertEqual(right.returncode, 0, right.stderr)
            process.terminate()
            # twistd stops cleanly, then ends by the signal it was sent.
            self.assertIn(process.wait(TIMEOUT), (0, -signal.SIGTERM))

        await_ = ensureDeferred(go())

        def read(_: object) -> None:
            raw = audit.read_bytes()
            self.assertTrue(raw.startswith(b"\x1e{"), raw[:20])
            report = subprocess.run(
                [sys.executable, *run.split()[1:]],
                capture_output=True,
                text=True,
                cwd=work,
                env=env,
                timeout=TIMEOUT,
                check=False,
            )
            self.assertEqual(report.returncode, 0, report.stderr)
            lines = report.stdout.splitlines()
            self.assertEqual(len(lines), 2, report.stdout)
            refused, issued = lines
            self.assertTrue(
                refused.startswith("login.refused alice keycard refused:"), refused
            )
            self.assertRegex(
                issued, r"^login\.issued alice keycard \S+ issued to alice"
            )
            needTool("jq")
            piped = subprocess.run(
                ["sh", "-c", pipeline],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
            self.assertEqual(piped.returncode, 0, piped.stderr)
            [line] = piped.stdout.splitlines()
            account, address, reason = json.loads(line)
            self.assertEqual((account, address), ("alice", "127.0.0.1"))
            self.assertTrue(reason)

        return await_.addCallback(read)
