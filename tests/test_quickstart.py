"""
Integration test of C{scripts/quickstart}, run from a copy of it with the
commands already installed: a taken port makes it say why the bouncer did
not start, and exit 1.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.trial.unittest import TestCase

from ._procs import ENV, ROOT, TIMEOUT


@pytest.mark.integration
class QuickstartTests(TestCase):
    def run_(self, port: int) -> subprocess.CompletedProcess[str]:
        copy = Path(self.mktemp()).resolve()
        (copy / "scripts").mkdir(parents=True)
        shutil.copy(ROOT / "scripts" / "quickstart", copy / "scripts" / "quickstart")
        bin = str(Path(sys.executable).parent)
        env = {
            **ENV,
            "KEYCARD_SKIP_INSTALL": "1",
            "KEYCARD_PORT": str(port),
            "PATH": bin + os.pathsep + ENV.get("PATH", ""),
        }
        return subprocess.run(
            ["bash", str(copy / "scripts" / "quickstart")],
            capture_output=True,
            text=True,
            env=env,
            timeout=TIMEOUT * 2,
            check=False,
        )

    def test_portTaken(self) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            result = self.run_(taken.getsockname()[1])
        self.assertEqual(result.returncode, 1, result.stdout + result.stderr)
        self.assertIn("quickstart: the bouncer did not start:", result.stderr)
        self.assertIn("address already in use", result.stderr)
        self.assertIn("KEYCARD_PORT=", result.stderr)
        self.assertNotIn("logging in", result.stdout)
