"""
The changelog's news fragments (C{newsfragments/}, see its README): every
file is named C{<issue>.<type>} (or C{<issue>.<type>.<n>}, C{+name.<type>}),
of a type the towncrier configuration has, and C{towncrier build --draft}
renders every one of them into the changelog's page.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from unittest import SkipTest

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import __version__

ROOT = Path(__file__).resolve().parent.parent
FRAGMENTS = ROOT / "newsfragments"
#: The types newsfragments/README.rst describes, in the changelog's order.
TYPES = ["removal", "feature", "bugfix", "doc", "misc"]
#: A fragment's name: an issue number or an orphan's name, a type, and a
#: counter for a second fragment of the same issue and type.
NAME = re.compile(
    r"(?P<issue>[1-9][0-9]*|\+[a-z0-9][a-z0-9-]*)\.(?P<type>[a-z]+)(\.[1-9][0-9]*)?"
)
#: What is not a fragment.
IGNORED = {"README.rst", ".gitignore"}


def fragments() -> list[Path]:
    return sorted(p for p in FRAGMENTS.iterdir() if p.name not in IGNORED)


def towncrier(*args: str) -> subprocess.CompletedProcess[str]:
    """
    Run towncrier as a maintainer does, from the checkout's root.
    """
    if importlib.util.find_spec("towncrier") is None:
        if os.environ.get("CI"):
            raise AssertionError("towncrier is missing; the docs extra installs it")
        raise SkipTest("towncrier is not installed (pip install -e '.[docs]')")
    return subprocess.run(
        [sys.executable, "-m", "towncrier", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


class FragmentNameTests(SynchronousTestCase):
    def test_configuredTypes(self) -> None:
        """
        The types of pyproject.toml's towncrier configuration are those the
        README describes, in that order.
        """
        text = (ROOT / "pyproject.toml").read_text()
        configured = re.findall(
            r'\[\[tool\.towncrier\.type\]\]\s*directory = "([a-z]+)"', text
        )
        self.assertEqual(configured, TYPES)
        readme = (FRAGMENTS / "README.rst").read_text()
        for kind in TYPES:
            self.assertIn(f"``{kind}``", readme)

    def test_wellFormed(self) -> None:
        """
        Every fragment has a well-formed name of a known type, and a few
        sentences: no heading, ending with a new line.
        """
        found = fragments()
        self.assertTrue(found, "no news fragment: the draft would test nothing")
        for path in found:
            with self.subTest(fragment=path.name):
                match = NAME.fullmatch(path.name)
                self.assertIsNotNone(match, f"{path.name}: not <issue>.<type>")
                assert match is not None
                self.assertIn(match["type"], TYPES)
                text = path.read_text()
                self.assertTrue(text.strip(), f"{path.name} is empty")
                self.assertTrue(text.endswith("\n"))
                self.assertNotRegex(text, r"(?m)^(=+|-+|~+)$")

    def test_checkerRefusesBadNames(self) -> None:
        """
        The name check is not a formality: these are refused.
        """
        for bad in [
            "24.features",
            "24",
            "feature.24",
            "24.feature.rst",
            "24.feature.0",
            "0.feature",
            "#24.bugfix",
            "+.doc",
        ]:
            with self.subTest(name=bad):
                match = NAME.fullmatch(bad)
                self.assertFalse(match is not None and match["type"] in TYPES)


class DraftTests(SynchronousTestCase):
    def test_draft(self) -> None:
        """
        C{towncrier build --draft} renders every fragment, under its type's
        heading, and changes nothing.
        """
        before = {p.name: p.read_text() for p in fragments()}
        changelog = (ROOT / "docs" / "changelog.rst").read_text()
        result = towncrier("build", "--draft", "--version", __version__)
        self.assertEqual(result.returncode, 0, result.stderr)
        draft = result.stdout
        self.assertIn(f"twisted-keycard {__version__} (", draft)
        for path in fragments():
            with self.subTest(fragment=path.name):
                # The first words of each, as towncrier wraps them.
                words = " ".join(path.read_text().split()[:4])
                self.assertIn(words, " ".join(draft.split()))
                issue = path.name.split(".")[0]
                if not issue.startswith("+"):
                    self.assertIn(f"(issue {issue})", " ".join(draft.split()))
        self.assertEqual({p.name: p.read_text() for p in fragments()}, before)
        self.assertEqual((ROOT / "docs" / "changelog.rst").read_text(), changelog)

    def test_startMarker(self) -> None:
        """
        The changelog page has the marker towncrier writes a release after,
        above the history already there.
        """
        text = (ROOT / "docs" / "changelog.rst").read_text()
        marker = text.index(".. towncrier release notes start\n")
        self.assertLess(marker, text.index("twisted-keycard 0.1 "))
