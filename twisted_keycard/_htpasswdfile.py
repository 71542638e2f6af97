"""
Password files as Apache's C{htpasswd} and C{/etc/shadow} write them: the
schemes verified, parsing, and the rewrite of one user's hash.
"""

from __future__ import annotations

from pathlib import Path
from threading import Lock

from passlib.context import CryptContext

from twisted_keycard._entriesfile import ParsedEntries, parseLines
from twisted_keycard._secretfiles import writePrivateFile

#: Schemes verified, and the one passwords are rehashed to on login.
SCHEMES = [
    "argon2",
    "bcrypt",
    "sha512_crypt",
    "sha256_crypt",
    "apr_md5_crypt",
    "md5_crypt",
    "ldap_sha1",
    "des_crypt",
]


def context(rehashTo: str = "argon2") -> CryptContext:
    return CryptContext(schemes=SCHEMES, default=rehashTo, deprecated="auto")


def parseHashes(text: str) -> ParsedEntries[str]:
    """
    C{name:hash} lines (htpasswd), or C{name:hash:...} (shadow), leaving out
    bad lines.

    @return: the hashes, and a problem naming the line number of each bad
        line.
    """
    hashes = {}

    def add(line: str) -> None:
        name, sep, rest = line.partition(":")
        hashed = rest.split(":", 1)[0]
        if not sep or not name or not hashed:
            raise ValueError("expected name:hash")
        hashes[name] = hashed

    problems = parseLines(text, add)
    return ParsedEntries(hashes, problems)


def readHashes(text: str) -> dict[str, str]:
    """
    C{name:hash} lines (htpasswd), or C{name:hash:...} (shadow).

    @raise ValueError: naming the line number of a bad line.
    """
    return parseHashes(text).strict()


def rewriteHash(path: Path, username: str, old: str, updated: str, lock: Lock) -> None:
    """
    Replace one user's hash in the file, if it is still C{old} (an
    administrator may have changed it since), keeping every other line, and
    write the file atomically (see L{writePrivateFile}).  Blocking: run it in a
    thread.
    """
    with lock:
        out = []
        for line in path.read_text("utf-8").splitlines():
            name, sep, rest = line.partition(":")
            if sep and name == username and rest.split(":", 1)[0] == old:
                tail = rest.split(":", 1)[1:] if ":" in rest else []
                line = ":".join([name, updated, *tail])
            out.append(line)
        writePrivateFile(path, ("\n".join(out) + "\n").encode("utf-8"))
