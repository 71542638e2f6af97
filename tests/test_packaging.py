"""
Packaging: the built wheel carries the plugins (and no dropin.cache, no
twisted/__init__.py), and once installed into a fresh virtualenv, twistd
finds the keycard-bouncer plugin and the keycard command runs.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 600

# Slow: builds a wheel and installs it in a fresh virtualenv.
pytestmark = pytest.mark.integration


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=TIMEOUT,
        check=False,
    )


class WheelTests(SynchronousTestCase):
    def test_wheelInFreshVirtualenv(self) -> None:
        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        built = run(
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "-w",
            str(work / "dist"),
            str(ROOT),
        )
        self.assertEqual(built.returncode, 0, built.stderr[-2000:])
        (wheel,) = (work / "dist").glob("twisted_keycard-*.whl")
        names = zipfile.ZipFile(wheel).namelist()
        self.assertIn("twisted/plugins/twisted_keycard_bouncer.py", names)
        self.assertIn("twisted/plugins/twisted_keycard_checkers.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertFalse([n for n in names if n.endswith("dropin.cache")])
        # Users' type checkers see the library's annotations (PEP 561).
        self.assertIn("twisted_keycard/py.typed", names)
        for package in ["bouncer", "keycard", "pb", "store/sqlite", "tokens", "web"]:
            self.assertIn(f"twisted_keycard/{package}/__init__.py", names)

        venv = work / "venv"
        made = run(sys.executable, "-m", "venv", str(venv))
        self.assertEqual(made.returncode, 0, made.stderr)
        installed = run(
            str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)
        )
        self.assertEqual(installed.returncode, 0, installed.stderr[-2000:])
        # Outside the checkout, so only the installed copy can be found.
        helped = run(str(venv / "bin" / "twistd"), "--help", cwd=work)
        self.assertIn("keycard-bouncer", helped.stdout)
        options = run(
            str(venv / "bin" / "twistd"), "keycard-bouncer", "--help", cwd=work
        )
        self.assertIn("--data-dir", options.stdout)
        command = run(str(venv / "bin" / "keycard"), "--help", cwd=work)
        self.assertEqual(command.returncode, 0, command.stderr)
        self.assertIn("revoke", command.stdout)
