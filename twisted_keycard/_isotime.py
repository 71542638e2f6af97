"""
Times as operators read them: ISO 8601 in UTC, in listings and log events.
"""

from __future__ import annotations

from datetime import datetime, timezone


def isoTime(seconds: float) -> str:
    """
    A POSIX time as an ISO 8601 UTC string, to the second:
    C{2025-01-31T12:00:00+00:00}.
    """
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(
        timespec="seconds"
    )
