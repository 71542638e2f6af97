"""
The data directory shared by the bouncer service and the C{keycard}
command: configuration, the SQLite store (keycards, revocations, keyring),
the users' SCRAM verifiers, and TLS material.

Layout::

    DIR/keycard.json       marker, format version, and the store's URL when
                           it is not the SQLite file (a Redis store)
    DIR/keycard.db         the SQLite store (back it up)
    DIR/users.scram        name:SCRAM-SHA-256$... lines (mode 0600)
    DIR/tls/server.pem     certificate and key for ssl:/tls: listeners
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import attrs

from twisted_keycard._secretfiles import createPrivateFile, makePrivateDirectory
from twisted_keycard.error import KeycardError

ENVIRONMENT = "KEYCARD_DATA_DIR"
DEFAULT = "keycard-data"
FORMAT = 1


class NoDataDir(KeycardError):
    """
    Raised when a directory is not an initialised data directory.
    """


@attrs.frozen
class DataDir:
    """
    An initialised data directory.
    """

    path: Path

    @property
    def marker(self) -> Path:
        return self.path / "keycard.json"

    @property
    def database(self) -> Path:
        return self.path / "keycard.db"

    def _config(self) -> dict[str, object]:
        info = json.loads(self.marker.read_text())
        assert isinstance(info, dict)
        return info

    @property
    def store(self) -> str:
        """
        The store's URL: the one given to C{keycard init --store}, else
        C{sqlite:DIR/keycard.db}.
        """
        store = self._config().get("store")
        return store if isinstance(store, str) else f"sqlite:{self.database}"

    @property
    def storePasswordFile(self) -> str | None:
        """
        The file holding the store's password (given to C{keycard init
        --store-password-file}), if any; the password itself is never
        kept here.
        """
        path = self._config().get("storePasswordFile")
        return path if isinstance(path, str) else None

    @property
    def users(self) -> Path:
        return self.path / "users.scram"

    @property
    def tls(self) -> Path:
        return self.path / "tls"

    @property
    def certificate(self) -> Path:
        return self.tls / "server.pem"

    @classmethod
    def default(cls, given: str | None = None) -> Path:
        """
        The data directory to use: C{given}, else C{$KEYCARD_DATA_DIR}, else
        C{./keycard-data}.
        """
        return Path(given or os.environ.get(ENVIRONMENT) or DEFAULT)

    @classmethod
    def open(cls, path: str | Path) -> DataDir:
        """
        @raise NoDataDir: if C{path} was not made by C{keycard init}.
        """
        directory = cls(Path(path))
        try:
            info = json.loads(directory.marker.read_text())
        except (OSError, ValueError):
            raise NoDataDir(
                f"{path} is not a keycard data directory;"
                f" make one with: keycard init {path}"
            ) from None
        if not isinstance(info, dict) or info.get("format") != FORMAT:
            raise NoDataDir(f"{path} has a data format this version cannot read")
        return directory

    @classmethod
    def create(
        cls,
        path: str | Path,
        store: str | None = None,
        storePasswordFile: str | None = None,
    ) -> DataDir:
        """
        Make a new data directory (mode 0700, whatever the umask) with an
        empty users file (mode 0600).

        @param store: the URL of its store, when not the SQLite file.
        @param storePasswordFile: the file holding that store's password.
        @raise NoDataDir: if C{path} already holds one.
        """
        directory = cls(Path(path))
        if directory.marker.exists():
            raise NoDataDir(f"{path} is already a keycard data directory")
        makePrivateDirectory(directory.path)
        createPrivateFile(directory.users)
        info: dict[str, object] = {"format": FORMAT}
        if store is not None:
            info["store"] = store
        if storePasswordFile is not None:
            info["storePasswordFile"] = str(Path(storePasswordFile).resolve())
        directory.marker.write_text(json.dumps(info) + "\n")
        return directory
