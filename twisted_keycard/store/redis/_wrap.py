"""
The key-encryption key (KEK) that wraps the Redis store's secrets: the
keyring (the keys that sign tokens) and the mock secret are kept in Redis
encrypted with AES-256-GCM under a key that lives only in the data
directory, so that reading Redis gives nothing a token can be forged from.

Each wrapped value is bound to where it lives (the key prefix, what it is,
its field and the keyring's version) by the AEAD's associated data, so that
values cannot be swapped between fields, deployments or versions.  A
wrapped value reads C{kw1:KEKID:BASE64}, where C{KEKID} names the KEK it
was wrapped under (a hash of it, for error messages; it says nothing of
the key).

A store written before wrapping holds its values in clear; L{planSecrets}
says how to wrap them, once, and marks the store wrapped with a I{check}
value (a constant wrapped under the KEK, at C{PREFIX kek}), after which a
clear value is refused as tampering, and a KEK that does not open the
check is refused at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from twisted_keycard.error import KeycardError
from twisted_keycard.store.redis._lua import keyFields, keyringFrom
from twisted_keycard.tokens import Keyring

#: Bytes of a key-encryption key (AES-256).
KEK_BYTES = 32

#: Bytes of a GCM nonce, random for each value.
NONCE_BYTES = 12

#: How a wrapped value starts.
WRAPPED = "kw1:"

#: The plaintext of the check value.
CHECK = b"twisted-keycard key-encryption key check"

#: Times a change of the secrets is tried again when another process
#: changed them meanwhile.
SECRETS_RETRIES = 5

#: What each wrapped value is, in its associated data.
KEYRING_KIND = "keyring"
MOCK_KIND = "mock"
CHECK_KIND = "kek"


class WrongKeyEncryptionKey(KeycardError):
    """
    Raised when a value in Redis does not open under the key-encryption
    key given (another KEK wrapped it, or it was changed), or a value that
    must be wrapped is in clear.  The message is one line, naming the KEKs
    by their ids, never a secret.
    """


#: Why L{SecretsChanging} is raised.
CHANGING = "the Redis store's secrets kept changing while being written; try again"


class SecretsChanging(KeycardError):
    """
    Raised when the secrets kept changing (other processes saving the
    keyring, or rewrapping) while this one tried to write them.
    """


def _kekId(key: bytes) -> str:
    return hashlib.sha256(b"twisted-keycard kek id\0" + key).hexdigest()[:16]


@attrs.frozen(repr=False)
class KeyEncryptionKey:
    """
    A key-encryption key: 32 random bytes, kept in a file of mode 0600
    (one line of base64) in the data directory, the same on every host of
    a store.

    @ivar key: the key's bytes.
    """

    key: bytes = attrs.field()

    @key.validator
    def _checkKey(self, attribute: object, value: bytes) -> None:
        if not isinstance(value, bytes) or len(value) != KEK_BYTES:
            raise ValueError(f"a key-encryption key is {KEK_BYTES} bytes")

    def __repr__(self) -> str:
        return f"<KeyEncryptionKey {self.id}>"

    @property
    def id(self) -> str:
        """
        The key's name in messages and in the values it wraps: a hash of
        it, from which nothing of the key can be learnt.
        """
        return _kekId(self.key)

    @classmethod
    def generate(cls) -> KeyEncryptionKey:
        return cls(secrets.token_bytes(KEK_BYTES))

    @classmethod
    def fromFile(cls, path: str | os.PathLike[str]) -> KeyEncryptionKey:
        """
        Read a key from its file (see L{toFileContent}).

        @raise OSError: if the file cannot be read.
        @raise ValueError: naming the file, if it holds no key.
        """
        text = Path(path).read_text(encoding="ascii", errors="replace")
        line = text.strip()
        try:
            key = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != KEK_BYTES:
            raise ValueError(
                f"{os.fspath(path)} holds no key-encryption key (one line of"
                f" base64, {KEK_BYTES} bytes)"
            )
        return cls(key)

    def toFileContent(self) -> bytes:
        """
        The content of the key's file: one line of base64.
        """
        return base64.b64encode(self.key) + b"\n"

    def wrap(self, plaintext: bytes, associated: bytes) -> str:
        """
        Encrypt C{plaintext}, bound to C{associated}, as a wrapped value.
        """
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(self.key).encrypt(nonce, plaintext, associated)
        return f"{WRAPPED}{self.id}:" + base64.b64encode(nonce + sealed).decode()

    def unwrap(self, value: str, associated: bytes, what: str) -> bytes:
        """
        Open a wrapped value.

        @param what: what it is, for the error: C{"the keyring"}.
        @raise WrongKeyEncryptionKey: if it is not a wrapped value, another
            key wrapped it, or it was changed (a flipped byte, a value
            moved from another field or version).
        """
        if not value.startswith(WRAPPED):
            raise WrongKeyEncryptionKey(f"{what} in the Redis store is not wrapped")
        kekId, _, data = value[len(WRAPPED) :].partition(":")
        if kekId != self.id:
            raise WrongKeyEncryptionKey(
                f"{what} in the Redis store is wrapped under key-encryption"
                f" key {kekId[:16]!r}, not this one ({self.id})"
            )
        try:
            raw = base64.b64decode(data, validate=True)
            return AESGCM(self.key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated
            )
        except (binascii.Error, ValueError, InvalidTag):
            raise WrongKeyEncryptionKey(
                f"{what} in the Redis store does not open under key-encryption"
                f" key {self.id}: it was changed, or moved from another place"
            ) from None


def associatedData(prefix: str, kind: str, field: str = "", version: int = 0) -> bytes:
    """
    What a wrapped value is bound to: the store's key prefix, what the
    value is (L{KEYRING_KIND}, L{MOCK_KIND}, L{CHECK_KIND}), its field (a
    key id) and the keyring's version.
    """
    return json.dumps(
        ["twisted-keycard/kw1", prefix, kind, field, version], separators=(",", ":")
    ).encode("utf-8")


def isWrapped(value: str) -> bool:
    return value.startswith(WRAPPED)


@attrs.frozen
class SecretsSnapshot:
    """
    The Redis store's secrets as read at once (by L{READ_SECRETS}).

    @ivar version: the keyring's version.
    @ivar check: the check value, if the store was ever wrapped.
    @ivar mock: the stored mock secret, if any.
    @ivar keyring: the keyring's hash: each key id and its value.
    """

    version: int
    check: str | None
    mock: str | None
    keyring: Mapping[str, str]

    @classmethod
    def fromReply(cls, reply: list[object]) -> SecretsSnapshot:
        version, check, mock, *pairs = reply
        fields = [str(p) for p in pairs]
        return cls(
            int(str(version or 0)),
            None if check is None else str(check),
            None if mock is None else str(mock),
            dict(zip(fields[::2], fields[1::2], strict=True)),
        )


@attrs.define
class SecretsWrapper:
    """
    Wraps and opens the secrets of one store (one key prefix) under one
    key-encryption key.
    """

    kek: KeyEncryptionKey
    prefix: str

    def checkValue(self) -> str:
        return self.kek.wrap(CHECK, associatedData(self.prefix, CHECK_KIND))

    def verifyCheck(self, check: str) -> None:
        """
        @raise WrongKeyEncryptionKey: if C{check} was not made under this
            key for this prefix.
        """
        opened = self.kek.unwrap(
            check, associatedData(self.prefix, CHECK_KIND), "the key check"
        )
        if opened != CHECK:
            raise WrongKeyEncryptionKey("the key check in the Redis store was changed")

    def wrapKeyring(self, keyring: Keyring, version: int) -> list[str]:
        """
        The keyring's hash, each key wrapped, bound to its key id and to
        C{version}: the keyring's version once it is stored.
        """
        fields = keyFields(keyring)
        wrapped = []
        for kid, text in zip(fields[::2], fields[1::2], strict=True):
            data = associatedData(self.prefix, KEYRING_KIND, kid, version)
            wrapped += [kid, self.kek.wrap(text.encode("utf-8"), data)]
        return wrapped

    def unwrapKeyring(self, fields: Mapping[str, str], version: int) -> Keyring | None:
        """
        The keyring from its wrapped hash, at C{version}.

        @raise WrongKeyEncryptionKey: if a key does not open.
        """
        opened = {
            kid: self.kek.unwrap(
                value,
                associatedData(self.prefix, KEYRING_KIND, kid, version),
                "the keyring",
            ).decode("utf-8")
            for kid, value in fields.items()
        }
        return keyringFrom(opened)

    def wrapMock(self, secret: bytes) -> str:
        return self.kek.wrap(secret, associatedData(self.prefix, MOCK_KIND))

    def unwrapMock(self, value: str) -> bytes:
        return self.kek.unwrap(
            value, associatedData(self.prefix, MOCK_KIND), "the mock secret"
        )

    def plan(self, snapshot: SecretsSnapshot) -> SecretsPlan:
        """
        What to write so that the store's secrets are wrapped under this
        key: nothing when they are; the check value and every clear value
        wrapped when the store was written before wrapping (no check).

        @raise WrongKeyEncryptionKey: if the check does not open under
            this key, or the store was wrapped yet holds a clear value.
        """
        if snapshot.check is not None:
            self.verifyCheck(snapshot.check)
            clear = [k for k, v in snapshot.keyring.items() if not isWrapped(v)]
            if clear or (snapshot.mock is not None and not isWrapped(snapshot.mock)):
                raise WrongKeyEncryptionKey(
                    "the Redis store is wrapped, yet holds a secret in clear:"
                    " it was written by someone without the key-encryption key"
                )
            return SecretsPlan(snapshot, None)
        if any(map(isWrapped, snapshot.keyring.values())) or (
            snapshot.mock is not None and isWrapped(snapshot.mock)
        ):
            raise WrongKeyEncryptionKey(
                "the Redis store holds wrapped secrets but no key check: it was changed"
            )
        keyring = keyringFrom(dict(snapshot.keyring))
        fields = [] if keyring is None else self.wrapKeyring(keyring, snapshot.version)
        mock = None
        if snapshot.mock is not None:
            try:
                secret = base64.b64decode(snapshot.mock, validate=True)
            except (binascii.Error, ValueError):
                raise WrongKeyEncryptionKey(
                    "the mock secret in the Redis store is neither wrapped nor"
                    " one written before wrapping"
                ) from None
            mock = self.wrapMock(secret)
        return SecretsPlan(snapshot, WrapWrite(self.checkValue(), mock, fields))

    def rewrap(self, snapshot: SecretsSnapshot, new: KeyEncryptionKey) -> WrapWrite:
        """
        The store's secrets wrapped under C{new} in place of this key.

        @raise WrongKeyEncryptionKey: if they do not open under this key.
        """
        self.plan(snapshot)
        other = SecretsWrapper(new, self.prefix)
        keyring = self.unwrapKeyring(snapshot.keyring, snapshot.version)
        fields = [] if keyring is None else other.wrapKeyring(keyring, snapshot.version)
        mock = None
        if snapshot.mock is not None:
            mock = other.wrapMock(self.unwrapMock(snapshot.mock))
        return WrapWrite(other.checkValue(), mock, fields)


@attrs.frozen
class WrapWrite:
    """
    The values that wrap a store's secrets, written at once by
    L{WRAP_SECRETS} (see L{wrapArgs}).

    @ivar check: the new check value.
    @ivar mock: the wrapped mock secret, if the store has one.
    @ivar keyring: the keyring's wrapped hash, in pairs (empty for none).
    """

    check: str
    mock: str | None
    keyring: list[str]


@attrs.frozen
class SecretsPlan:
    """
    What L{SecretsWrapper.plan} found: the snapshot, and the write that
    wraps its secrets, or C{None} when they are wrapped.
    """

    snapshot: SecretsSnapshot
    write: WrapWrite | None

    def wrapArgs(self) -> list[str]:
        """
        The arguments of L{WRAP_SECRETS} (after the prefix) for C{write}.
        """
        assert self.write is not None
        return wrapArgs(self.snapshot, self.write)

    def check(self) -> str:
        """
        The store's check value once the write, if any, is done.
        """
        if self.write is not None:
            return self.write.check
        assert self.snapshot.check is not None
        return self.snapshot.check


def wrapArgs(snapshot: SecretsSnapshot, write: WrapWrite) -> list[str]:
    """
    The arguments of L{WRAP_SECRETS}, after the prefix: the state the
    values were read in (the script writes only if it is still that), then
    the new values.
    """
    return [
        str(snapshot.version),
        snapshot.check or "",
        snapshot.mock or "",
        write.check,
        write.mock or "",
        *write.keyring,
    ]


#: ARGV: prefix.  Returns the keyring's version, the check value, the mock
#: secret, then the keyring's hash in pairs.
READ_SECRETS = """
local P = ARGV[1]
local result = {
  redis.call('GET', P .. 'keyring:version') or '0',
  redis.call('GET', P .. 'kek'),
  redis.call('GET', P .. 'mock'),
}
for _, v in ipairs(redis.call('HGETALL', P .. 'keyring')) do table.insert(result, v) end
return result
"""

#: ARGV: prefix, the keyring's version, check value and mock secret as
#: read ('' for none), the new check value, the new mock secret ('' to
#: leave it), then the keyring's new hash in pairs.  Writes only if the
#: version, check and mock secret are still those read; the keyring's
#: version stays (its keys are the same).  Returns 1 if written, else 0.
WRAP_SECRETS = """
local P = ARGV[1]
if (redis.call('GET', P .. 'keyring:version') or '0') ~= ARGV[2]
   or (redis.call('GET', P .. 'kek') or '') ~= ARGV[3]
   or (redis.call('GET', P .. 'mock') or '') ~= ARGV[4] then
  return 0
end
redis.call('SET', P .. 'kek', ARGV[5])
if ARGV[6] ~= '' then redis.call('SET', P .. 'mock', ARGV[6]) end
if #ARGV > 6 then
  redis.call('DEL', P .. 'keyring')
  local fields = {}
  for i = 7, #ARGV do table.insert(fields, ARGV[i]) end
  redis.call('HSET', P .. 'keyring', unpack(fields))
end
return 1
"""
