"""
The shell blocks of the README and of docs/service.rst run as printed: each
block is taken from its page, its lines are run one by one by C{bash -e} in
a fresh directory, with the C{keycard} and C{twistd} of the Python running
the tests first on C{PATH}.  Only the ports change (to free ones), so that
a run never meets another's processes; after each line that starts a
server in the background (C{... &}), the script waits for its port, as a
user waits for the prompt (a bouncer started on the default port, 8800,
is given its free port with C{--listen}).  Every process a block starts
is stopped at the end, as the block's process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
from twisted.trial.unittest import SynchronousTestCase

from ._procs import ENV, freePort, needTool

ROOT = Path(__file__).resolve().parent.parent
#: Seconds for a whole block, on a busy machine.
DEADLINE = 180.0
#: Seconds a command that follows a revocation has to see it.
RETRY_DEADLINE = 10
#: The port of a bouncer started without --listen.
DEFAULT_PORT = 8800
#: Seconds a server started in the background has to listen.
LISTEN_DEADLINE = 60

pytestmark = pytest.mark.integration

_FENCE = re.compile(r"^```sh\n(.*?)^```", re.MULTILINE | re.DOTALL)
_LITERAL = re.compile(r"::\n\n((?:    .*\n|[ \t]*\n)+)")
_PORT = re.compile(r"(?:tcp:|ssl:|--port |localhost:|127\.0\.0\.1:)(\d{4,5})\b")
_BACKGROUND = re.compile(r"&\s*(?:#.*)?$")
_COMMENT = re.compile(r"\s+#[^'\"]*$")
_STATUS = re.compile(r"#.*\bexit (\d+)")


def shellBlocks(page: Path) -> list[str]:
    """
    The shell blocks of a page: C{```sh} fences of Markdown, literal
    blocks (after C{::}) of reStructuredText.
    """
    text = page.read_text()
    if page.suffix == ".md":
        return _FENCE.findall(text)
    return [textwrap.dedent(block) for block in _LITERAL.findall(text)]


def theBlock(page: Path, marker: str) -> str:
    """
    The one shell block of C{page} that holds C{marker}.
    """
    (block,) = [b for b in shellBlocks(page) if marker in b]
    return block


def commands(block: str) -> list[str]:
    """
    The commands of a block, one per item, continuation lines joined.
    """
    joined = block.replace("\\\n", " ")
    return [line for line in joined.splitlines() if line.strip()]


def script(
    block: str, ports: dict[int, int], typed: Mapping[str, str] | None = None
) -> str:
    """
    A bash script that runs the block's commands with C{ports} renumbered,
    and waits for the port of each command started in the background.  A
    command whose comment says it exits with a status (C{# refused, exit
    1}) must exit with that one within C{RETRY_DEADLINE} seconds: it
    follows a revocation, which reaches the bouncers within a second (as
    the README says; more on a busy machine), and a user types slower than
    a script.

    @param typed: what a user types at the password prompt of a command
        that holds each key: it is that command's standard input.
    """
    lines = [
        "set -e",
        # Quietly: the transcript shows the block's commands, not this.
        "listening() { { set +x; } 2>/dev/null;"
        f" for _ in $(seq {LISTEN_DEADLINE * 10}); do"
        ' (echo > "/dev/tcp/127.0.0.1/$1") 2>/dev/null && { set -x; return; };'
        ' sleep 0.1; done; echo "nothing listens on port $1"; return 1; }',
    ]
    for command in commands(block):
        for old, new in ports.items():
            command = re.sub(rf"\b{old}\b", str(new), command)
        if (
            _BACKGROUND.search(command)
            and "keycard-bouncer" in command
            and "--listen" not in command
        ):
            # The default port, renumbered as the others are.
            listen = f"--listen tcp:{ports[DEFAULT_PORT]}:interface=127.0.0.1"
            command = re.sub(r"\s*&", f" {listen} &", command, count=1)
        for key, answer in (typed or {}).items():
            if key in command:
                comment = _COMMENT.search(command)
                cut = comment.start() if comment else len(command)
                command = f"{command[:cut]} <<< {shlex.quote(answer)}{command[cut:]}"
        status = _STATUS.search(command)
        if status:
            expected = status.group(1)
            lines.append(
                f"for _ in $(seq {RETRY_DEADLINE * 5}); do\nset +e\n{command}\n"
                f"status=$?; set -e\ntest $status -eq {expected} && break\n"
                "sleep 0.2\ndone"
            )
            lines.append(f"test $status -eq {expected}")
        else:
            lines.append(command)
        if _BACKGROUND.search(command):
            listened = _PORT.findall(command)
            assert listened, f"no port to wait for in {command!r}"
            port = listened[-1]
            lines.append(f"listening {port}")
    return "\n".join(lines) + "\n"


class SnippetTests(SynchronousTestCase):
    def runBlock(
        self, block: str, ports: list[int], typed: Mapping[str, str] | None = None
    ) -> tuple[Path, str]:
        """
        Run a block as printed (but for C{ports}, renumbered) in a new
        directory, with C{typed} at its password prompts (see L{script}).

        @return: the directory and the transcript (standard output and
            error, with each command as bash ran it).
        """
        work = Path(self.mktemp()).resolve()
        work.mkdir(parents=True)
        text = script(block, {port: freePort() for port in ports}, typed)
        env = {
            **ENV,
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "PS4": "$ ",
        }
        log = work / "transcript"
        with log.open("w") as out:
            proc = subprocess.Popen(
                ["bash", "-x", "-c", text],
                cwd=work,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def stopGroup() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)

        self.addCleanup(stopGroup)
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            stopGroup()
            proc.wait()
        # What the block started in the background stops with it.
        stopGroup()
        transcript = log.read_text()
        self.assertEqual(proc.returncode, 0, transcript[-4000:])
        # Not even when the servers stop at the end.
        self.assertNotIn("Traceback", transcript)
        return work, transcript

    def test_readmeRedis(self) -> None:
        """
        The README's Redis section: a redis-server with a password, two
        bouncers in one directory on it, a login on one and its token on
        the other, then a revocation.
        """
        needTool("redis-server")
        block = theBlock(ROOT / "README.md", "redis-server --port 6380")
        work, transcript = self.runBlock(block, [6380, 8801, 8802])
        self.assertNotIn("Another twistd server is running", transcript)
        self.assertEqual(transcript.count("avatar alice"), 2, transcript)
        self.assertIn("revoked", transcript)
        self.assertTrue((work / "t").exists())

    def test_serviceOverHttp(self) -> None:
        """
        docs/service.rst's "Over HTTP", after its walk-through's first
        lines (whose bouncer keeps running): a second bouncer in the same
        directory with an HTTP face, a token taken over HTTP, used, then
        revoked by the keycard id from the JSON.
        """
        needTool("curl")
        needTool("jq")
        page = ROOT / "docs" / "service.rst"
        walk = theBlock(page, "keycard init keycard-data --dev-cert localhost")
        first = commands(walk)
        (start,) = [i for i, c in enumerate(first) if "twistd" in c]
        self.assertEqual(start, 2)  # "After the walk-through's first three lines"
        http = theBlock(page, "--http ssl:8443")
        work, transcript = self.runBlock(
            "\n".join(first[: start + 1]) + "\n" + http, [8800, 8801, 8443]
        )
        self.assertNotIn("Another twistd server is running", transcript)
        self.assertEqual(transcript.count("listening on 127.0.0.1"), 3, transcript)
        login = json.loads((work / "login.json").read_text())
        self.assertEqual(login["avatarId"], "alice")
        self.assertIn('"avatarId": "alice"', transcript)
        self.assertIn(f"revoked keycard {login['keycardId']}", transcript)

    def test_readmeWalkThrough(self) -> None:
        """
        The README's walk-through: a data directory with a dev certificate,
        a user, a TLS bouncer, a login that saves a token, the keycard
        listed and revoked, the token refused (exit 1), the user removed.
        The password is typed at the prompts.
        """
        block = theBlock(ROOT / "README.md", "keycard init my-data --dev-cert")
        work, transcript = self.runBlock(
            block,
            [8800],
            typed={
                "keycard user add": "correct horse",
                "alice --save-token": "correct horse",
            },
        )
        self.assertIn("added user alice", transcript)
        # The password login; a token login tried before the revocation
        # reached the bouncer (within a second) may log in too, before the
        # retried one is refused.
        self.assertIn(transcript.count("avatar id:  alice"), (1, 2), transcript)
        self.assertIn("login refused", transcript)
        self.assertTrue((work / "alice.token").exists())

    def test_serviceWalkThrough(self) -> None:
        """
        docs/service.rst's walk-through, whole: its token login works until
        the revocation, then is refused (exit 1).
        """
        block = theBlock(ROOT / "docs" / "service.rst", "keycard init keycard-data")
        _, transcript = self.runBlock(block, [8800])
        # The password login and the token login; a token login tried
        # before the revocation reached the bouncer (within a second, as
        # the page says) may log in too, before the retried one is refused.
        self.assertIn(transcript.count("avatar id:  alice"), (2, 3), transcript)
        self.assertIn("login refused", transcript)
