"""
Versions of a file read off the reactor thread: its stamp (a cheap
C{stat}), then its content, hashed and parsed in a thread; and an atomic
rewrite.  Used by L{twisted_keycard._entriesfile.WatchedEntries}.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TypeVar

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.threads import deferToThreadPool

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
