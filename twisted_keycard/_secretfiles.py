"""
Files that hold secrets (the store with its signing keys, verifiers,
tokens, TLS keys): made readable by their owner only, whatever the umask,
and replaced without following a link someone else planted.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

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
