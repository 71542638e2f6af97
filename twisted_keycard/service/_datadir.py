"""
The data directory shared by the bouncer service and the C{keycard}
command, and a self-signed certificate for development.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import secrets
from pathlib import Path

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from twisted_keycard._files import (
    createPrivateFile,
    makePrivateDirectory,
    writePrivateFile,
)
from twisted_keycard.error import KeycardError
from twisted_keycard.store.redis import KeyEncryptionKey

ENVIRONMENT = "KEYCARD_DATA_DIR"
DEFAULT = "keycard-data"
FORMAT = 1


class NoDataDir(KeycardError):
    """
    Raised when a directory is not an initialised data directory.
    """


class KeyFileError(KeycardError):
    """
    Raised when a data directory's key-encryption key file is missing or
    holds no key.
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
    def keyEncryptionKeyFile(self) -> Path:
        """
        The file of the key-encryption key (mode 0600) that the Redis
        store's keyring and mock secret are wrapped under: made by
        C{keycard init}, replaced by C{keycard keys rewrap}, and copied
        with the data directory to every host of the store.
        """
        return self.path / "store.kek"

    def keyEncryptionKey(self) -> KeyEncryptionKey:
        """
        The key-encryption key of L{keyEncryptionKeyFile}.

        @raise KeyFileError: naming the file and what to do, if it
            is missing or holds no key.
        """
        path = self.keyEncryptionKeyFile
        try:
            return KeyEncryptionKey.fromFile(path)
        except FileNotFoundError:
            raise KeyFileError(
                f"{path} is missing: copy it from another host of the store"
                " (with the data directory), or make one with: keycard keys"
                f" rewrap --data-dir {self.path}"
            ) from None
        except OSError as e:
            raise KeyFileError(
                f"cannot read {path}: {(e.strerror or str(e)).lower()}"
            ) from None
        except ValueError as e:
            raise KeyFileError(str(e)) from None

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
        keyEncryptionKey: KeyEncryptionKey | None = None,
    ) -> DataDir:
        """
        Make a new data directory (mode 0700, whatever the umask) with an
        empty users file and a new key-encryption key (both mode 0600).

        @param store: the URL of its store, when not the SQLite file.
        @param storePasswordFile: the file holding that store's password.
        @param keyEncryptionKey: the key-encryption key of its secrets (that
            of the other hosts of a Redis store); a new one by default.
        @raise NoDataDir: if C{path} already holds one.
        """
        directory = cls(Path(path))
        if directory.marker.exists():
            raise NoDataDir(f"{path} is already a keycard data directory")
        makePrivateDirectory(directory.path)
        createPrivateFile(directory.users)
        writePrivateFile(
            directory.keyEncryptionKeyFile,
            (keyEncryptionKey or KeyEncryptionKey.generate()).toFileContent(),
        )
        info: dict[str, object] = {"format": FORMAT}
        if store is not None:
            info["store"] = store
        if storePasswordFile is not None:
            info["storePasswordFile"] = str(Path(storePasswordFile).resolve())
        directory.marker.write_text(json.dumps(info) + "\n")
        return directory


VALID_DAYS = 365


def makeDevCertificate(hostname: str, serverPem: Path, trustPem: Path) -> None:
    """
    Write a new self-signed certificate for C{hostname}: key and certificate
    to C{serverPem} (mode 0600, in a directory of mode 0700) for the server,
    certificate alone to C{trustPem} for clients to trust.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certPem = certificate.public_bytes(serialization.Encoding.PEM)
    keyPem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    makePrivateDirectory(serverPem.parent)
    writePrivateFile(serverPem, keyPem + certPem)
    trustPem.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    trustPem.write_bytes(certPem)


@attrs.define
class RunLeases:
    """
    The leases of the bouncers started from one data directory, so that a
    restart frees the seats of a run that was killed at once, not when its
    lease runs out: each running bouncer holds a lock (C{flock}) on a file
    of its own in C{DIR/leases/} that names its lease.  The kernel frees
    the lock when the process ends, however it ends (C{kill -9}
    included), so a file whose lock can be taken names the lease of a dead
    run.  Local to the host: a data directory is never shared between
    hosts.

    @ivar directory: where the files are, C{DIR/leases}.
    """

    directory: Path
    _held: int | None = None

    @classmethod
    def of(cls, dataDir: DataDir) -> RunLeases:
        return cls(dataDir.path / "leases")

    def takeDead(self) -> list[str]:
        """
        Remove the files of the runs that ended.

        @return: the lease ids they named.
        """
        if not self.directory.is_dir():
            return []
        dead: list[str] = []
        for path in sorted(self.directory.glob("*.lease")):
            try:
                fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its bouncer runs
                holderId = os.read(fd, 4096).decode("utf-8", "replace").strip()
                path.unlink(missing_ok=True)
                if holderId:
                    dead.append(holderId)
            finally:
                os.close(fd)
        return dead

    def hold(self, holderId: str) -> None:
        """
        Write and lock a file naming C{holderId}, this run's lease, until
        the process ends (or L{close}): made under a hidden name, locked,
        then renamed, so another start never finds it unlocked.
        """
        makePrivateDirectory(self.directory)
        name = secrets.token_hex(8)
        hidden = self.directory / f".{name}.tmp"
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, holderId.encode("utf-8") + b"\n")
            os.fsync(fd)
            os.rename(hidden, self.directory / f"{name}.lease")
        except BaseException:
            os.close(fd)
            hidden.unlink(missing_ok=True)
            raise
        self._held = fd

    def close(self) -> None:
        """
        Unlock this run's file (the bouncer stopped): the next start
        releases what its lease still holds.
        """
        if self._held is not None:
            os.close(self._held)
            self._held = None
