"""
Text and times as an operator reads them: peer-supplied text made safe for
a log line or a terminal, and times in ISO 8601, UTC.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

#: Characters of the text kept at most; the rest is counted, not shown.
LIMIT = 200

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    named = _NAMED.get(char)
    if named is not None:
        return named
    if char.isprintable():
        return char
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, limit: int = LIMIT) -> str:
    """
    C{text} (or C{str(text)}) with every control, format (bidi overrides,
    zero-width characters), separator other than the space, surrogate and
    unassigned character, and the backslash, escaped as Python's C{repr}
    does, and cut to C{limit} characters of the original followed by
    C{...[+N]} when longer.  The result never holds a line break or an
    escape sequence.
    """
    if text is None:
        return "-"
    if not isinstance(text, str):
        text = str(text)
    if (
        type(text) is str
        and len(text) <= limit
        and text.isprintable()
        and "\\" not in text
    ):
        # Nothing to escape: the common case, checked in C.
        return text
    shown = "".join(_escape(c) for c in text[:limit])
    if len(text) > limit:
        shown += f"...[+{len(text) - limit}]"
    return shown


def printables(texts: Iterable[object], limit: int = LIMIT) -> list[str]:
    """
    L{printable} of each of C{texts}.
    """
    return [printable(text, limit) for text in texts]


def isoTime(seconds: float) -> str:
    """
    A POSIX time as an ISO 8601 UTC string, to the second:
    C{2025-01-31T12:00:00+00:00}.
    """
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(
        timespec="seconds"
    )
