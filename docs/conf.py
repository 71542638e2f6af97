"""
Sphinx configuration for twisted-keycard.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

from zope.interface import Interface
from zope.interface.interface import InterfaceClass, Method

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
# The extras' imports: the docs build from the ``docs`` extra alone (tox -e
# docs, a fresh virtualenv), without Buildbot installed.
autodoc_mock_imports = ["buildbot", "buildbot_worker"]

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
# L{x} becomes a literal, so that no cross-reference can fail; "\\ " ends
# the markup before a letter, as in "L{Revocation}s".
_INLINE = [
    (re.compile(r"[LC]\{([^{}]*)\}(?=\w)"), r"``\1``\\ "),
    (re.compile(r"[LC]\{([^{}]*)\}"), r"``\1``"),
    (re.compile(r"I\{([^{}]*)\}(?=\w)"), r"*\1*\\ "),
    (re.compile(r"I\{([^{}]*)\}"), r"*\1*"),
    (re.compile(r"B\{([^{}]*)\}(?=\w)"), r"**\1**\\ "),
    (re.compile(r"B\{([^{}]*)\}"), r"**\1**"),
]


def _epytext(lines: list[str]) -> None:
    for i, line in enumerate(lines):
        for pattern, replacement in _FIELDS:
            line = pattern.sub(replacement, line)
        lines[i] = line
    # Inline markup may run over a line break.
    text = "\n".join(lines)
    for pattern, replacement in _INLINE:
        text = pattern.sub(replacement, text)
    lines[:] = text.split("\n")


def _indented(text: str | None, indent: str) -> list[str]:
    return [
        indent + line if line else ""
        for line in inspect.cleandoc(text or "").splitlines()
    ]


def _interfaceLines(name: str, iface: InterfaceClass) -> list[str]:
    """
    reST for a zope interface, which autodoc does not document by itself.
    """
    lines = ["", f".. py:class:: {name}", ""]
    bases = [b for b in iface.__bases__ if b is not Interface]
    if bases:
        shown = ", ".join(f"``{b.__module__}.{b.__name__}``" for b in bases)
        lines += [f"   Extends {shown}.", ""]
    lines += _indented(iface.__doc__, "   ")
    for member in iface.names():
        description = iface[member]
        if isinstance(description, Method):
            lines += [
                "",
                f"   .. py:method:: {member}{description.getSignatureString()}",
                "",
            ]
        else:
            lines += ["", f"   .. py:attribute:: {member}", ""]
        lines += _indented(description.getDoc(), "      ")
    return lines


def _interfaces(module: object, name: str, options: object) -> list[str]:
    """
    The interfaces a module documents: those in its C{__all__}, or else those
    it defines, less the excluded members.
    """
    if not getattr(options, "members", None):
        return []
    excluded = getattr(options, "exclude_members", None) or ()
    public = getattr(module, "__all__", None)
    lines = []
    for member in public if public is not None else list(vars(module)):
        iface = getattr(module, member, None)
        if not isinstance(iface, InterfaceClass) or member in excluded:
            continue
        if public is None and (member.startswith("_") or iface.__module__ != name):
            continue
        lines += _interfaceLines(member, iface)
    return lines


def _processDocstring(app, what, name, obj, options, lines):  # type: ignore[no-untyped-def]
    if what == "module":
        lines += _interfaces(obj, name, options)
    _epytext(lines)


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("autodoc-process-docstring", _processDocstring)
