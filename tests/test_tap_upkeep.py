"""
Tests for the options of C{twistd keycard-bouncer} about tokens' claims and
the bouncer's upkeep of a shared store, parsed and handed to the bouncer.
"""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.service import DataDir, Options


class ClaimOptionTests(SynchronousTestCase):
    def parse(self, *arguments: str) -> Options:
        data = DataDir.create(Path(self.mktemp()) / "data")
        options = Options()
        options.parseOptions(["--data-dir", str(data.path), *arguments])
        return options

    def refused(self, *arguments: str) -> str:
        error = self.assertRaises(SystemExit, self.parse, *arguments)
        line = str(error)
        self.assertTrue(line.startswith("keycard-bouncer: "), line)
        self.assertNotIn("\n", line)
        return line

    def test_claims(self) -> None:
        """
        C{--claim KEY=VALUE}, repeated, sets the token policy's claims; a
        value may hold C{=} and be empty.
        """
        options = self.parse(
            "--claim", "program=flux", "--claim", "expr=a=b", "--claim", "tier="
        )
        self.assertEqual(
            options.tokens,
            TokenPolicy(claims={"program": "flux", "expr": "a=b", "tier": ""}),
        )
        self.assertEqual(self.parse().tokens, TokenPolicy())

    def test_badClaims(self) -> None:
        """
        A claim that is not C{KEY=VALUE}, a key given twice, a claim a token
        cannot carry, and claims without tokens stop the start with one line.
        """
        cases = {
            ("--claim", "program"): "--claim takes KEY=VALUE, not 'program'",
            ("--claim", "=flux"): "--claim takes KEY=VALUE, not '=flux'",
            ("--claim", "a=1", "--claim", "a=2"): "--claim a given twice",
            ("--claim", "a=x\ny"): "--claim: bad claim 'a'",
            ("--no-tokens", "--claim", "a=1"): "drop --no-tokens",
        }
        for arguments, expected in cases.items():
            self.assertIn(expected, self.refused(*arguments), arguments)
