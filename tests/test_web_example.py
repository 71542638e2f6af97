"""
The web guard's example runs as is: its scripted client logs in with SCRAM,
gets a token and uses it, and is refused without credentials.
"""

from __future__ import annotations

import os
import sys

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from ._procs import ROOT

pytestmark = pytest.mark.integration


class WebExampleTests(TestCase):
    def test_demo(self) -> Deferred[None]:
        async def go() -> None:
            out, err, code = await getProcessOutputAndValue(
                sys.executable,
                [str(ROOT / "examples" / "web_guard.py"), "--demo"],
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                path=str(ROOT),
            )
            self.assertEqual(code, 0, err.decode())
            text = out.decode()
            self.assertIn("serving https://localhost:", text)
            self.assertIn("curl --cacert ", text)
            self.assertIn("SCRAM:   hello, alice (logged in with SCRAM-SHA-256)", text)
            self.assertIn("Bearer:  hello, alice (logged in with Bearer)", text)
            self.assertIn("no credentials: 401", text)

        return ensureDeferred(go())
