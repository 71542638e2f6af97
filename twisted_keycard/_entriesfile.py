"""
Named entries (users, keys, verifiers) given in memory or read from a file
that is read again when it changes, so an administrator's edit takes effect
without a restart.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

_T = TypeVar("_T")


def entryLines(text: str) -> Iterator[tuple[int, str]]:
    """
    The lines of an entries file that hold an entry, with their numbers
    (from 1): blank lines and lines starting with C{#} are skipped.
    """
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


class WatchedEntries(Generic[_T]):
    """
    Entries by name; with a file, its modification time and size are
    checked at each look-up and the file parsed again when they change.
    """

    def __init__(
        self,
        entries: Mapping[str, _T],
        path: str | os.PathLike[str] | None = None,
        parse: Callable[[str], dict[str, _T]] | None = None,
    ) -> None:
        self._entries = dict(entries)
        self._path = None if path is None else Path(path)
        self._parse = parse
        self._stamp: tuple[int, int] | None = None
        self.refresh()

    def __len__(self) -> int:
        return len(self._entries)

    def refresh(self) -> None:
        """
        Read the file again if it changed.

        @raise OSError: if it cannot be read.
        @raise ValueError: if it does not parse; the old entries stay.
        """
        if self._path is None or self._parse is None:
            return
        stat = os.stat(self._path)
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            self._entries = self._parse(self._path.read_text("utf-8"))
            self._stamp = stamp

    def get(self, name: str) -> _T | None:
        """
        The entry for C{name}, after reading the file again if it changed.
        """
        self.refresh()
        return self._entries.get(name)
