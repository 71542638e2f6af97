"""
Named entries (users, keys, verifiers) given in memory or read from a file
that is read again when it changes, so an administrator's edit takes effect
without a restart.

Nothing is read on the reactor thread after startup: a look-up costs one
C{stat}.  When the file's identity, size or times changed, it is read,
hashed and (if its content changed) parsed in a thread, and the look-up
waits for that (L{WatchedEntries.ready}), so that no login is answered from
a version known to be old.  When only the interval since its content was
last checked has passed (a rewrite within one timestamp tick changes no
C{stat} field), the file is checked the same way in the background, and
look-ups meanwhile are answered from the version in use.  Changes are
recognised by the hash of the content, so a file replaced by one of the
same size and times is not missed.  A bad line is skipped (its entry is
left out) and logged once; a file that cannot be read or decoded leaves the
last version in use.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from twisted_keycard._fileversion import (
    FileVersion,
    RunInThread,
    Stamp,
    UnusableVersion,
    checkVersion,
    fileStamp,
    globalClock,
    inReactorThreadPool,
    readVersion,
)

_T = TypeVar("_T")

#: Seconds after which a look-up has the file's content checked again even
#: though its C{stat} did not change (a rewrite within one timestamp tick).
CHECK_INTERVAL = 5.0

#: Bad lines logged for one version of a file, at most.
MAX_LOGGED_PROBLEMS = 20


def entryLines(text: str) -> Iterator[tuple[int, str]]:
    """
    The lines of an entries file that hold an entry, with their numbers
    (from 1): blank lines and lines starting with C{#} are skipped.
    """
    for number, line in enumerate(text.splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


@attrs.frozen
class ParsedEntries(Generic[_T]):
    """
    The entries read from a file's text, and what was wrong with the lines
    left out.

    @ivar problems: one C{"line N: ..."} message per bad line, naming what
        was expected, never a secret.
    """

    entries: Mapping[str, _T]
    problems: tuple[str, ...] = ()

    def strict(self) -> dict[str, _T]:
        """
        The entries, if no line was bad.

        @raise ValueError: with the first problem.
        """
        if self.problems:
            raise ValueError(self.problems[0])
        return dict(self.entries)


def parseLines(text: str, addLine: Callable[[str], None]) -> tuple[str, ...]:
    """
    Hand each entry line to C{addLine}; a L{ValueError} it raises marks
    that line bad.

    @return: the problems, as L{ParsedEntries.problems}.
    """
    problems = []
    for number, line in entryLines(text):
        try:
            addLine(line)
        except ValueError as e:
            problems.append(f"line {number}: {e}")
    return tuple(problems)


class WatchedEntries(Generic[_T]):
    """
    Entries by name, in memory or from a file checked at each look-up (see
    the module's docstring).
    """

    log = Logger()

    def __init__(
        self,
        entries: Mapping[str, _T],
        path: str | os.PathLike[str] | None = None,
        parse: Callable[[str], ParsedEntries[_T]] | None = None,
        *,
        clock: IReactorTime | None = None,
        runInThread: RunInThread | None = None,
        interval: float = CHECK_INTERVAL,
    ) -> None:
        """
        Read the file, if one is given, here and now (this is startup).

        @param parse: reads a file's text; needed with C{path}.
        @param clock: the time of content checks; the global reactor's by
            default.
        @param runInThread: runs a blocking call off the reactor thread,
            returning a L{Deferred}; the global reactor's thread pool by
            default.
        @param interval: seconds after which the content is checked again
            even if the file's C{stat} did not change.
        @raise OSError: if the file cannot be read.
        @raise ValueError: if it is not UTF-8 text.
        """
        self._entries: Mapping[str, _T] = dict(entries)
        self._path = None if path is None else Path(path)
        self._parse = parse
        self._clock = clock
        self._run = runInThread or inReactorThreadPool
        self._interval = interval
        self._stamp: Stamp | None = None
        self._digest: bytes | None = None
        self._checkedAt = 0.0
        self._checking = False
        self._waiting: list[Deferred[None]] = []
        self._lastFailure: str | None = None
        if self._path is not None:
            if parse is None:
                raise TypeError("a file needs a parse function")
            self._read(readVersion(self._path, parse, None))

    def __len__(self) -> int:
        return len(self._entries)

    def _now(self) -> float:
        return (self._clock or globalClock()).seconds()

    def ready(self) -> Deferred[None]:
        """
        Wait, if need be, until the version in use is the file as it is now.

        @return: a L{Deferred} that fires with C{None} at once when the
            file's C{stat} did not change (a content check due after the
            interval then runs in the background), else once the file has
            been read again in a thread; it never fails.
        """
        if self._path is None:
            return succeed(None)
        try:
            stamp: Stamp | None = fileStamp(self._path)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            return self.check()
        if not self._checking and self._now() >= self._checkedAt + self._interval:
            self.check()
        return succeed(None)

    def get(self, name: str) -> _T | None:
        """
        The entry for C{name} in the version in use, without waiting; a
        file that looks changed is read again in the background (see
        L{ready}).
        """
        self.ready()
        return self._entries.get(name)

    def current(self) -> Mapping[str, _T]:
        """
        The entries of the version in use, as the parse function gave them
        (so with what it made beside them), without checking the file.
        """
        return self._entries

    def check(self) -> Deferred[None]:
        """
        Read the file again in a thread (or join the reading under way).

        @return: a L{Deferred} that fires with C{None} once what was read is
            in use, or was found bad and logged; it never fails.
        """
        if self._path is None or self._parse is None:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        if not self._checking:
            self._checking = True
            running = self._run(checkVersion, self._path, self._parse, self._digest)
            running.addCallbacks(self._checked, self._failed).addBoth(self._done)
        return waiter

    def _read(self, version: FileVersion[ParsedEntries[_T]]) -> None:
        self._stamp, self._checkedAt = version.stamp, self._now()
        self._lastFailure = None
        if version.parsed is None:
            return
        self._entries, self._digest = version.parsed.entries, version.digest
        problems = version.parsed.problems
        for problem in problems[:MAX_LOGGED_PROBLEMS]:
            self.log.warn(
                "{path}: {problem}; line skipped", path=str(self._path), problem=problem
            )
        if len(problems) > MAX_LOGGED_PROBLEMS:
            self.log.warn(
                "{path}: {more} more bad lines skipped",
                path=str(self._path),
                more=len(problems) - MAX_LOGGED_PROBLEMS,
            )

    def _checked(
        self, version: FileVersion[ParsedEntries[_T]] | UnusableVersion
    ) -> None:
        if isinstance(version, FileVersion):
            self._read(version)
            return
        self._stamp, self._checkedAt = version.stamp, self._now()
        if version.reason != self._lastFailure:
            self._lastFailure = version.reason
            self.log.error(
                "{path} {reason}; the version read before stays in use",
                path=str(self._path),
                reason=version.reason,
            )

    def _failed(self, failure: Failure) -> None:
        self._checkedAt = self._now()
        self.log.failure(
            "{path} could not be parsed; the version read before stays in use",
            failure,
            path=str(self._path),
        )

    def _done(self, result: object) -> None:
        self._checking = False
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)
