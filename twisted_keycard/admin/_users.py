"""
The users file of a data directory: C{name:SCRAM-SHA-256$...} lines, as
PostgreSQL stores SCRAM verifiers.  Edited by C{keycard user}, read by the
bouncer, which notices when it changes.
"""

from __future__ import annotations

from pathlib import Path

from twisted_keycard._secretfiles import writePrivateFile
from twisted_keycard.error import ProtocolError
from twisted_keycard.scram import Verifier
from twisted_keycard.scram._messages import checkUserName

NAME_LIMIT = 256


def checkName(name: str) -> str:
    """
    @raise ValueError: for a name that cannot be a user name: one the file
        cannot hold, or one SCRAM would refuse (L{checkUserName}), which
        also keeps escapes and bidi overrides out of logs and listings.
    """
    if not name or len(name) > NAME_LIMIT:
        raise ValueError(f"a user name has 1 to {NAME_LIMIT} characters")
    if any(c in name for c in ":\n\r\0") or name != name.strip():
        raise ValueError("a user name may not hold ':', line breaks or edge spaces")
    try:
        return checkUserName(name)
    except ProtocolError as e:
        raise ValueError(str(e)) from None


def readUsers(path: Path) -> dict[str, str]:
    """
    The users and their verifier strings, in file order.
    """
    users: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, _, verifier = line.partition(":")
        users[name] = verifier
    return users


def writeUsers(path: Path, users: dict[str, str]) -> None:
    """
    Replace the users file atomically (write, fsync, rename), mode 0600.
    """
    text = "".join(f"{name}:{verifier}\n" for name, verifier in users.items())
    writePrivateFile(path, text.encode("utf-8"))


def addUser(path: Path, name: str, password: str, iterations: int = 4096) -> bool:
    """
    Add a user, or replace their verifier.

    @return: whether the user is new.
    """
    users = readUsers(path)
    new = checkName(name) not in users
    users[name] = Verifier.fromPassword(password, iterations=iterations).toString()
    writeUsers(path, users)
    return new


def removeUser(path: Path, name: str) -> bool:
    """
    @return: whether there was such a user.
    """
    users = readUsers(path)
    if users.pop(name, None) is None:
        return False
    writeUsers(path, users)
    return True
