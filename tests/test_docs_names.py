"""
The Python blocks of the how-tos that show a change to an application use
no name they do not import or define, but for the application's own
(its realm, its reactor, the password it asks for): a reader who copies a
block has nothing to guess.
"""

from __future__ import annotations

import ast
import builtins
import re
import textwrap
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"\.\. code-block:: python\n\n((?:    .*\n|[ \t]*\n)+)")


def pythonBlocks(page: Path) -> list[str]:
    return [textwrap.dedent(code) for code in _BLOCK.findall(page.read_text())]


def freeNames(code: str) -> set[str]:
    """
    The names a block reads but neither imports, defines nor assigns, less
    the builtins.
    """
    bound: set[str] = set()
    loaded: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    return loaded - bound - set(dir(builtins))


class FreeNamesTests(SynchronousTestCase):
    def test_freeNames(self) -> None:
        """
        L{freeNames} finds a name used but never imported, and none of
        those a block binds.
        """
        code = "import os\nfrom a import b as c\ndef f(x):\n    return x, c, y\n"
        self.assertEqual(freeNames(code + "z = os.sep\nprint(z)\n"), {"y"})

    def test_migratePB(self) -> None:
        """
        docs/howto/migrate-pb.rst: each block is the application's code,
        with the application's realm, reactor, mind, password, chat
        object and twistd application as the only names it does not make.
        """
        blocks = pythonBlocks(DOCS / "howto" / "migrate-pb.rst")
        self.assertGreaterEqual(len(blocks), 4)
        application = {
            "ChatRealm",
            "reactor",
            "mind",
            "password",
            "chat",
            "application",
        }
        for code in blocks:
            self.assertEqual(freeNames(code) - application, set(), code)

    def test_buildbot(self) -> None:
        """
        docs/howto/buildbot.rst: the blocks use only master.cfg's C{c}.
        """
        for code in pythonBlocks(DOCS / "howto" / "buildbot.rst"):
            self.assertEqual(freeNames(code) - {"c"}, set(), code)
