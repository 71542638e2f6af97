"""
Files the library reads and writes: named entries (users, keys,
verifiers) given in memory or read from a file and read again when it
changes, the versions of such files read off the reactor thread, and files
that hold secrets, made with modes that keep them private; and the
reactor's helpers these and a login share: its thread pool, its clock, and
coroutines run at once as far as they go without waiting.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import stat
from collections.abc import Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure

_P = TypeVar("_P")

#: What identifies a version of a file cheaply: device, inode, size,
#: modification and change times (nanoseconds).
Stamp = tuple[int, int, int, int, int]

#: Runs a blocking call off the reactor thread, returning a L{Deferred}.
RunInThread = Callable[..., Deferred[Any]]


def fileStamp(path: Path) -> Stamp:
    """
    @raise OSError: if the file cannot be found.
    """
    s = os.stat(path)
    return (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)


@attrs.frozen
class FileVersion(Generic[_P]):
    """
    One reading of a file.

    @ivar stamp: the file's stamp, taken before its content was read, so a
        change made while reading shows as another stamp at the next look-up.
    @ivar digest: the SHA-256 of the content.
    @ivar parsed: the entries, or C{None} when the content is the version
        already in use.
    """

    stamp: Stamp
    digest: bytes
    parsed: _P | None


def readVersion(
    path: Path,
    parse: Callable[[str], _P],
    knownDigest: bytes | None,
    stamp: Stamp | None = None,
) -> FileVersion[_P]:
    """
    Read, hash and parse a file (in a thread: this is the slow part).

    @param stamp: the file's stamp, if already taken.
    @raise OSError: if it cannot be read.
    @raise ValueError: if it is not UTF-8 text.
    """
    stamp = fileStamp(path) if stamp is None else stamp
    data = path.read_bytes()
    digest = hashlib.sha256(data).digest()
    if digest == knownDigest:
        return FileVersion(stamp, digest, None)
    return FileVersion(stamp, digest, parse(data.decode("utf-8")))


@attrs.frozen
class UnusableVersion:
    """
    A reading of a file that gave nothing to use.

    @ivar stamp: the file's stamp, if it could be taken.
    @ivar reason: why, for the log.
    """

    stamp: Stamp | None
    reason: str


def checkVersion(
    path: Path, parse: Callable[[str], _P], knownDigest: bytes | None
) -> FileVersion[_P] | UnusableVersion:
    """
    L{readVersion}, with a file that cannot be read or decoded as a result.
    """
    try:
        stamp = fileStamp(path)
    except OSError as e:
        return UnusableVersion(None, f"cannot be read ({e.strerror})")
    try:
        return readVersion(path, parse, knownDigest, stamp)
    except OSError as e:
        return UnusableVersion(stamp, f"cannot be read ({e.strerror})")
    except UnicodeError:
        return UnusableVersion(stamp, "is not UTF-8 text")


def inReactorThreadPool(f: Callable[..., Any], *args: Any) -> Deferred[Any]:
    """
    Run C{f} in the global reactor's thread pool: the default for code
    built without a reactor (a strcred checker factory).
    """
    from twisted.internet import reactor

    return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)  # type: ignore[arg-type, attr-defined]


def globalClock() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


_C = TypeVar("_C")


# A login whose every step has its answer at hand (a memory store, a
# checker that answers at once) finishes inside the call that started it,
# with no Deferred made and fired for each step on the way; one that waits
# (a store's thread, a remote bouncer) goes on as Deferred.fromCoroutine
# runs it.


def runNow(coro: Coroutine[Any, Any, _C]) -> _C | Deferred[_C]:
    """
    Run C{coro} until it ends or first waits.

    @return: its result, if it ended without waiting; a failed L{Deferred}
        if it raised (so that a caller handles a failure one way, whenever
        it comes); else a L{Deferred} for the rest of its run, which
        L{Deferred.fromCoroutine} drives from where it waits (a
        L{Deferred} awaited inside it gives its result when asked again).
    """
    try:
        coro.send(None)
    except StopIteration as end:
        result: _C = end.value
        return result
    except BaseException:
        return fail()
    return Deferred.fromCoroutine(coro)


def deferNow(coro: Coroutine[Any, Any, _C]) -> Deferred[_C]:
    """
    L{runNow}, always as a L{Deferred}: one already fired when C{coro}
    ended without waiting, so that awaiting it costs nothing more.
    """
    result = runNow(coro)
    if isinstance(result, Deferred):
        return result
    return succeed(result)


_T = TypeVar("_T")
_R = TypeVar("_R")

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

    def pending(self) -> Deferred[None] | None:
        """
        What to wait for before the version in use is the file as it is
        now: C{None} when the file's C{stat} did not change (the common
        case, with no L{Deferred} made; a content check due after the
        interval then runs in the background), else a L{Deferred} that
        fires with C{None} once the file has been read again in a thread
        (it never fails).
        """
        if self._path is None:
            return None
        try:
            stamp: Stamp | None = fileStamp(self._path)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            return self.check()
        if not self._checking and self._now() >= self._checkedAt + self._interval:
            self.check()
        return None

    def whenCurrent(self, then: Callable[[], Deferred[_R]]) -> Deferred[_R]:
        """
        Call C{then} once the version in use is the file as it is now: at
        once when the file's C{stat} did not change (the common case: one
        C{stat}, no L{Deferred} of our own), else once it has been read
        again.  C{then} reads the entries with L{current}, which checks
        nothing more.

        @return: what C{then} returns.
        """
        waiting = self.pending()
        if waiting is None:
            return then()
        return waiting.addCallback(lambda _: then())

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


#: The mode of every file the project writes that holds a secret.
PRIVATE_FILE = 0o600
#: The mode of every directory the project makes for such files.
PRIVATE_DIRECTORY = 0o700

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def makePrivateDirectory(path: Path) -> None:
    """
    Make C{path} (and missing parents, with the usual modes) and set its own
    mode to 0700, which C{mkdir} alone does not do under every umask.
    """
    path.mkdir(mode=PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    path.chmod(PRIVATE_DIRECTORY)


def createPrivateFile(path: str | os.PathLike[str]) -> bool:
    """
    Create C{path} empty with mode 0600 if it does not exist; an existing
    file is left as it is.

    @return: whether the file was created.
    """
    try:
        fd = os.open(path, _NEW, PRIVATE_FILE)
    except FileExistsError:
        return False
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
    return True


def writePrivateFile(path: str | os.PathLike[str], data: bytes) -> None:
    """
    Replace C{path} with C{data}, mode 0600: written to a new file in the
    same directory (created exclusively, never through a link), flushed to
    disk, then renamed over C{path}.  A symbolic link at C{path} is
    replaced, never followed; readers see the old or the new content.

    @raise OSError: if the directory cannot take the new file.
    """
    target = Path(path)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, _NEW, PRIVATE_FILE)
    try:
        try:
            os.fchmod(fd, PRIVATE_FILE)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _syncDirectory(target.parent)


def _syncDirectory(directory: Path) -> None:
    # The rename is durable once the directory is on disk too.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def exposure(path: str | os.PathLike[str]) -> str | None:
    """
    Why C{path} is not private, or C{None} if it is (or does not exist):
    a file or directory that its group or other users may read, write or
    enter.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return None
    open_ = stat.S_IMODE(mode) & 0o077
    if not open_:
        return None
    kind = "directory" if stat.S_ISDIR(mode) else "file"
    return f"{kind} {os.fspath(path)} has mode {stat.S_IMODE(mode):04o}"
