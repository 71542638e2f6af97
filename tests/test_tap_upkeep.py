"""
Tests for the options of C{twistd keycard-bouncer} about tokens' claims and
the bouncer's upkeep of a shared store, parsed and handed to the bouncer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer
from twisted_keycard.bouncer import TokenPolicy, Upkeep
from twisted_keycard.service import DataDir, Options, makeService

from .test_service import FACES


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
            TokenPolicy(
                claims={"program": "flux", "expr": "a=b", "tier": ""}, groups=FACES
            ),
        )
        self.assertEqual(self.parse().tokens, TokenPolicy(groups=FACES))

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


class LeaseOptionTests(SynchronousTestCase):
    def parse(self, *arguments: str) -> Options:
        data = DataDir.create(Path(self.mktemp()) / "data")
        options = Options()
        options.parseOptions(["--data-dir", str(data.path), *arguments])
        return options

    def test_leaseTime(self) -> None:
        """
        C{--lease-time} sets the bouncer's lease; 10 seconds by default.
        """
        self.assertEqual(self.parse().upkeep, Upkeep())
        self.assertEqual(Upkeep().leaseTime, 10.0)
        options = self.parse("--lease-time", "2.5")
        self.assertEqual(options.upkeep, Upkeep(leaseTime=2.5))
        top: Any = makeService(options)
        [bouncer] = [s for s in top if isinstance(s, Bouncer)]
        self.assertEqual(bouncer.upkeep.leaseTime, 2.5)

    def test_badLeaseTime(self) -> None:
        for value, expected in [
            ("1", "--lease-time must be at least 2 seconds"),
            ("0", "--lease-time must be a positive number"),
            ("inf", "--lease-time must be a positive number"),
        ]:
            error = self.assertRaises(SystemExit, self.parse, "--lease-time", value)
            self.assertIn(expected, str(error))
