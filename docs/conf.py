"""
Sphinx configuration for twisted-keycard.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twisted_keycard._version import __version__  # noqa: E402

project = "twisted-keycard"
author = "the twisted-keycard developers"
copyright = "2026, the twisted-keycard developers"
version = release = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_typehints = "none"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
exclude_patterns = ["_build"]
html_theme = "alabaster"
nitpicky = False

# Our docstrings are epytext, as Twisted's are; turn them into reST.
_FIELDS = [
    (re.compile(r"^(\s*)@param\s+(\w+):"), r"\1:param \2:"),
    (re.compile(r"^(\s*)@type\s+(\w+):"), r"\1:type \2:"),
    (re.compile(r"^(\s*)@ivar\s+(\w+):"), r"\1:ivar \2:"),
    (re.compile(r"^(\s*)@cvar\s+(\w+):"), r"\1:cvar \2:"),
    (re.compile(r"^(\s*)@return:"), r"\1:returns:"),
    (re.compile(r"^(\s*)@rtype:"), r"\1:rtype:"),
    (re.compile(r"^(\s*)@raise\s+([\w.]+):"), r"\1:raises \2:"),
    (re.compile(r"^(\s*)@note:"), r"\1.. note::"),
]
_INLINE = [
    (re.compile(r"[LC]\{([^{}]*)\}"), r"``\1``"),
    (re.compile(r"I\{([^{}]*)\}"), r"*\1*"),
    (re.compile(r"B\{([^{}]*)\}"), r"**\1**"),
]


def _epytext(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    for i, line in enumerate(lines):
        for pattern, replacement in _FIELDS + _INLINE:
            line = pattern.sub(replacement, line)
        lines[i] = line


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("autodoc-process-docstring", _epytext)
