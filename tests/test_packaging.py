"""
Packaging, as the docs tell a user to install: the sdist and the wheel that
C{python -m build} makes carry the plugins (and no dropin.cache, no
twisted/__init__.py); the wheel, installed with its dependencies into a
fresh virtualenv, gives a C{keycard} command and a twistd that finds the
keycard-bouncer plugin; and C{pip install '.[docs]'} from the checkout, in
a fresh virtualenv, is all the docs build needs (the extras it does not
install, Buildbot, are mocked in docs/conf.py).

The dependencies come from the package index: outside CI, without it, the
tests are skipped; in CI (C{CI} set) they run and fail.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from twisted_keycard._version import __version__

ROOT = Path(__file__).resolve().parent.parent
#: A literal block of reStructuredText, after C{::}.
_LITERAL = re.compile(r"::\n\n((?:    .*\n|[ \t]*\n)+)")
TIMEOUT = 600
#: Asks pip's indexes which versions of a package they have, once each.
PIP_INDEX = ("-m", "pip", "index", "versions", "--retries", "0", "--timeout", "15")

# Slow: builds a wheel and installs it in a fresh virtualenv.
pytestmark = pytest.mark.integration


def run(
    *args: str | Path, cwd: Path = ROOT, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(arg) for arg in args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


def requireIndex() -> None:
    """
    Skip, outside CI, when pip cannot find every dependency the tests
    install (the runtime ones and the C{docs} extra's) on its indexes (no
    network, or a local mirror that lacks some): each is asked for at
    once, the way C{pip install} will look for it.
    """
    if os.environ.get("CI"):
        return
    names = sorted(
        {
            re.split(r"[<>=!~ ;\[]", requirement, maxsplit=1)[0]
            for requirement in metadata.requires("twisted-keycard") or []
            if "extra ==" not in requirement or 'extra == "docs"' in requirement
        }
    )
    asked = [
        (
            name,
            subprocess.Popen(
                [sys.executable, *PIP_INDEX, name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        )
        for name in names
    ]
    missing = []
    for name, process in asked:
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.returncode != 0:
            missing.append(name)
    if missing:
        raise SkipTest(
            "the package index is out of reach: pip finds no " + ", ".join(missing)
        )


def freshVirtualenv(test: SynchronousTestCase) -> tuple[Path, Path]:
    """
    A new directory outside the checkout, and a virtualenv in it.

    @return: the directory and the virtualenv's C{bin} directory.
    """
    work = Path(test.mktemp()).resolve()
    work.mkdir(parents=True)
    made = run(sys.executable, "-m", "venv", work / "venv")
    test.assertEqual(made.returncode, 0, made.stderr)
    return work, work / "venv" / "bin"


def trackedCopy(test: SynchronousTestCase, destination: Path) -> Path:
    """
    A copy of the checkout's tracked files, as a fresh clone has them (and
    so that no build leaves its files in the checkout).
    """
    tracked = run("git", "ls-files", "-z")
    test.assertEqual(tracked.returncode, 0, tracked.stderr)
    for name in filter(None, tracked.stdout.split("\0")):
        if (ROOT / name).is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, destination / name)
    return destination


class WheelTests(SynchronousTestCase):
    def setUp(self) -> None:
        requireIndex()

    def assertCommandsWork(self, bin: Path, cwd: Path) -> None:
        """
        The installed C{keycard} and C{twistd keycard-bouncer} run, run
        from C{cwd} (outside the checkout, so that only the installed copy
        can be found).
        """
        version = run(bin / "keycard", "--version", cwd=cwd)
        self.assertEqual(version.returncode, 0, version.stderr)
        self.assertIn(f"keycard {__version__}", version.stdout)
        helped = run(bin / "twistd", "--help", cwd=cwd)
        self.assertIn("keycard-bouncer", helped.stdout)
        options = run(bin / "twistd", "keycard-bouncer", "--help", cwd=cwd)
        self.assertEqual(options.returncode, 0, options.stderr)
        self.assertIn("--data-dir", options.stdout)
        command = run(bin / "keycard", "--help", cwd=cwd)
        self.assertEqual(command.returncode, 0, command.stderr)
        self.assertIn("revoke", command.stdout)

    def test_wheelInFreshVirtualenv(self) -> None:
        """
        docs/production.rst's wheel install, as printed, in a copy of the
        checkout's tracked files (a fresh clone) and with the virtualenv
        elsewhere than C{/opt/keycard}: C{python3 -m build} makes an sdist
        and, from it, a wheel; the wheel installs with its dependencies
        into a fresh virtualenv, where C{keycard --version} and
        C{twistd keycard-bouncer --help} run.
        """
        work = Path(self.mktemp()).resolve()
        source = trackedCopy(self, work / "src")
        venv = work / "venv"
        page = (ROOT / "docs" / "production.rst").read_text()
        (made,) = [line for line in page.splitlines() if "python3 -m venv" in line]
        (block,) = [b for b in _LITERAL.findall(page) if "python3 -m build" in b]
        script = "set -ex\n" + "\n".join(
            line.strip().replace("/opt/keycard", str(venv))
            for line in [made, *block.splitlines()]
            if line.strip()
        )
        # python3: the one running the tests, which has build (the test extra).
        env = {
            **os.environ,
            "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        }
        env.pop("PYTHONPATH", None)
        installed = subprocess.run(
            ["bash", "-c", script.replace("python3 ", f"{sys.executable} ")],
            cwd=source,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        self.assertEqual(
            installed.returncode, 0, installed.stdout[-2000:] + installed.stderr[-2000:]
        )
        (sdist,) = (source / "dist").glob("twisted_keycard-*.tar.gz")
        with tarfile.open(sdist) as archive:
            inSdist = [name.split("/", 1)[-1] for name in archive.getnames()]
        self.assertIn("twisted/plugins/twisted_keycard_bouncer.py", inSdist)
        self.assertIn("README.md", inSdist)
        self.assertCommandsWork(venv / "bin", work)

        (wheel,) = (source / "dist").glob("twisted_keycard-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            names = archive.namelist()
        self.assertIn("twisted/plugins/twisted_keycard_bouncer.py", names)
        self.assertIn("twisted/plugins/twisted_keycard_checkers.py", names)
        self.assertNotIn("twisted/__init__.py", names)
        self.assertNotIn("twisted/plugins/__init__.py", names)
        self.assertFalse([n for n in names if n.endswith("dropin.cache")])
        # Users' type checkers see the library's annotations (PEP 561).
        self.assertIn("twisted_keycard/py.typed", names)
        for package in ["bouncer", "keycard", "pb", "store/sqlite", "tokens", "web"]:
            self.assertIn(f"twisted_keycard/{package}/__init__.py", names)

    def test_docsFromDocsExtra(self) -> None:
        """
        C{pip install '.[docs]'} in a copy of the checkout's tracked files,
        into a fresh virtualenv, installs the commands, and is all that
        C{sphinx-build -W} needs to build the docs.
        """
        work, bin = freshVirtualenv(self)
        source = trackedCopy(self, work / "src")
        installed = run(
            bin / "python", "-m", "pip", "install", "-q", ".[docs]", cwd=source
        )
        self.assertEqual(installed.returncode, 0, installed.stderr[-2000:])
        self.assertCommandsWork(bin, work)
        # Not there, so mocked: the API page still documents the module.
        absent = run(bin / "python", "-c", "import buildbot", cwd=work)
        self.assertNotEqual(absent.returncode, 0)
        html = work / "html"
        docs = run(
            bin / "sphinx-build", "-q", "-W", "--keep-going", "-b", "html",
            source / "docs", html,
        )  # fmt: skip
        self.assertEqual(docs.returncode, 0, docs.stdout[-2000:] + docs.stderr)
        self.assertIn("useKeycards", (html / "api.html").read_text())
