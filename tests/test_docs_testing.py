"""
Integration test of C{docs/howto/testing.rst}: its package, its tests and
its command work as printed, in a fresh directory.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from twisted.trial.unittest import TestCase

from ._procs import ENV, TIMEOUT

HOWTO = Path(__file__).resolve().parent.parent / "docs" / "howto" / "testing.rst"
_BLOCK = re.compile(r"\.\. code-block:: (\w+)\n\n((?:    .*\n|\n)+)")


@pytest.mark.integration
class TestingHowtoTests(TestCase):
    def test_asPrinted(self) -> None:
        blocks = [
            (kind, textwrap.dedent(code))
            for kind, code in _BLOCK.findall(HOWTO.read_text())
        ]
        (chat, command, tests) = [code for _, code in blocks[:3]]
        self.assertEqual([kind for kind, _ in blocks[:3]], ["python", "sh", "python"])
        work = Path(self.mktemp()).resolve()
        (work / "myapp").mkdir(parents=True)
        (work / "myapp" / "__init__.py").write_text("")
        (work / "myapp" / "chat.py").write_text(chat)
        (work / "myapp" / "test_login.py").write_text(tests)
        self.assertEqual(command.strip(), "python -m twisted.trial myapp")
        result = subprocess.run(
            [sys.executable, *command.split()[1:]],
            capture_output=True,
            text=True,
            cwd=work,
            env=ENV,
            timeout=TIMEOUT * 2,
            check=False,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn("PASSED (successes=5)", result.stdout)
