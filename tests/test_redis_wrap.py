"""
Tests for the wrapping of the Redis store's secrets under a key-encryption
key (L{twisted_keycard.store.redis._wrap}), without Redis: what is stored
opens only under its key, in its place, at its version; a flipped byte, a
swapped field, another prefix or version, and another key are refused; a
store written before wrapping is wrapped once, and a clear value in a
wrapped store is refused.
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.service import DataDir, KeyFileError
from twisted_keycard.store.redis import KeyEncryptionKey, WrongKeyEncryptionKey
from twisted_keycard.store.redis._lua import keyFields
from twisted_keycard.store.redis._wrap import (
    CHECK_KIND,
    KEYRING_KIND,
    SecretsSnapshot,
    SecretsWrapper,
    associatedData,
    wrapArgs,
)
from twisted_keycard.tokens import Keyring

PREFIX = "kc:"


def twoKeys() -> Keyring:
    keyring = Keyring.generate(1000.0)
    rotated, _ = keyring.rotate(1100.0, 3600.0)
    return rotated


def flip(value: str, at: int) -> str:
    """
    C{value} (a wrapped value) with one bit of its sealed bytes flipped.
    """
    head, _, data = value.rpartition(":")
    raw = bytearray(base64.b64decode(data))
    raw[at] ^= 0x01
    return f"{head}:{base64.b64encode(bytes(raw)).decode()}"


class KeyEncryptionKeyTests(SynchronousTestCase):
    def test_roundTrip(self) -> None:
        kek = KeyEncryptionKey.generate()
        data = associatedData(PREFIX, "mock")
        wrapped = kek.wrap(b"secret", data)
        self.assertTrue(wrapped.startswith(f"kw1:{kek.id}:"))
        self.assertNotIn(base64.b64encode(b"secret").decode(), wrapped)
        self.assertEqual(kek.unwrap(wrapped, data, "it"), b"secret")

    def test_freshNonce(self) -> None:
        """
        The same secret wrapped twice gives two values.
        """
        kek = KeyEncryptionKey.generate()
        data = associatedData(PREFIX, "mock")
        self.assertNotEqual(kek.wrap(b"s", data), kek.wrap(b"s", data))

    def test_everyFlippedByte(self) -> None:
        """
        A bit flipped anywhere in the nonce, the ciphertext or the tag is
        refused.
        """
        kek = KeyEncryptionKey.generate()
        data = associatedData(PREFIX, "mock")
        wrapped = kek.wrap(b"0123456789abcdef", data)
        size = len(base64.b64decode(wrapped.rpartition(":")[2]))
        self.assertEqual(size, 12 + 16 + 16)
        for at in range(size):
            with self.assertRaises(WrongKeyEncryptionKey):
                kek.unwrap(flip(wrapped, at), data, "it")

    def test_wrongKey(self) -> None:
        """
        Another key is refused, naming both keys' ids and neither key; a
        value claiming the other key's id does not open either.
        """
        kek, other = KeyEncryptionKey.generate(), KeyEncryptionKey.generate()
        data = associatedData(PREFIX, "mock")
        wrapped = kek.wrap(b"secret", data)
        with self.assertRaises(WrongKeyEncryptionKey) as caught:
            other.unwrap(wrapped, data, "the mock secret")
        message = str(caught.exception)
        self.assertIn(kek.id, message)
        self.assertIn(other.id, message)
        for key in (kek, other):
            self.assertNotIn(base64.b64encode(key.key).decode(), message)
        relabelled = wrapped.replace(kek.id, other.id)
        with self.assertRaises(WrongKeyEncryptionKey):
            other.unwrap(relabelled, data, "the mock secret")

    def test_notWrapped(self) -> None:
        kek = KeyEncryptionKey.generate()
        with self.assertRaises(WrongKeyEncryptionKey) as caught:
            kek.unwrap("{}", associatedData(PREFIX, "mock"), "the mock secret")
        self.assertEqual(
            str(caught.exception), "the mock secret in the Redis store is not wrapped"
        )
        with self.assertRaises(WrongKeyEncryptionKey):
            kek.unwrap(f"kw1:{kek.id}:!!", associatedData(PREFIX, "mock"), "it")

    def test_reprHidesKey(self) -> None:
        kek = KeyEncryptionKey.generate()
        self.assertEqual(repr(kek), f"<KeyEncryptionKey {kek.id}>")

    def test_size(self) -> None:
        with self.assertRaises(ValueError):
            KeyEncryptionKey(b"short")

    def test_file(self) -> None:
        kek = KeyEncryptionKey.generate()
        path = Path(self.mktemp())
        path.write_bytes(kek.toFileContent())
        self.assertEqual(KeyEncryptionKey.fromFile(path), kek)
        for bad in (b"", b"not base64!\n", base64.b64encode(b"x" * 16) + b"\n"):
            path.write_bytes(bad)
            with self.assertRaises(ValueError) as caught:
                KeyEncryptionKey.fromFile(path)
            self.assertIn(str(path), str(caught.exception))


class WrapperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.kek = KeyEncryptionKey.generate()
        self.wrapper = SecretsWrapper(self.kek, PREFIX)
        self.keyring = twoKeys()

    def test_keyringRoundTrip(self) -> None:
        fields = self.wrapper.wrapKeyring(self.keyring, 3)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        self.assertEqual(self.wrapper.unwrapKeyring(stored, 3), self.keyring)
        for key in self.keyring.keys:
            secret = base64.b64encode(key.secret).decode()
            self.assertFalse(any(secret in value for value in fields))

    def test_swappedFields(self) -> None:
        """
        The values of two keys swapped (each now under the other's id) are
        refused: an attacker who can write Redis cannot make a retired key
        the signing one.
        """
        fields = self.wrapper.wrapKeyring(self.keyring, 3)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        first, second = list(stored)
        swapped = {first: stored[second], second: stored[first]}
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.unwrapKeyring(swapped, 3)

    def test_otherVersion(self) -> None:
        """
        A keyring stored at one version does not open at another: an old
        keyring put back is refused.
        """
        fields = self.wrapper.wrapKeyring(self.keyring, 3)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.unwrapKeyring(stored, 4)

    def test_otherPrefix(self) -> None:
        """
        Values of one deployment (key prefix) do not open in another that
        shares the key-encryption key.
        """
        other = SecretsWrapper(self.kek, "other:")
        fields = self.wrapper.wrapKeyring(self.keyring, 1)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        with self.assertRaises(WrongKeyEncryptionKey):
            other.unwrapKeyring(stored, 1)
        with self.assertRaises(WrongKeyEncryptionKey):
            other.unwrapMock(self.wrapper.wrapMock(b"m" * 32))
        with self.assertRaises(WrongKeyEncryptionKey):
            other.verifyCheck(self.wrapper.checkValue())

    def test_mockIsNotAKey(self) -> None:
        """
        The mock secret's value put in the keyring (or the check's) is
        refused: each is bound to what it is.
        """
        mock = self.wrapper.wrapMock(b"m" * 32)
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.unwrapKeyring({"k1": mock}, 0)
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.verifyCheck(mock)
        check = self.wrapper.checkValue()
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.unwrapMock(check)
        self.assertNotEqual(
            associatedData(PREFIX, KEYRING_KIND, "k", 1),
            associatedData(PREFIX, CHECK_KIND, "k", 1),
        )

    def clearSnapshot(self, version: int = 2) -> SecretsSnapshot:
        """
        A store as written before wrapping: the keyring's JSON and the mock
        secret's base64 in clear.
        """
        fields = keyFields(self.keyring)
        return SecretsSnapshot(
            version,
            None,
            base64.b64encode(b"m" * 32).decode(),
            dict(zip(fields[::2], fields[1::2], strict=True)),
        )

    def test_planWrapsClear(self) -> None:
        """
        A store written before wrapping is wrapped: its keys and mock
        secret, at its version, and the check that marks it wrapped.
        """
        snapshot = self.clearSnapshot()
        plan = self.wrapper.plan(snapshot)
        write = plan.write
        assert write is not None
        self.wrapper.verifyCheck(write.check)
        assert write.mock is not None
        self.assertEqual(self.wrapper.unwrapMock(write.mock), b"m" * 32)
        stored = dict(zip(write.keyring[::2], write.keyring[1::2], strict=True))
        self.assertEqual(self.wrapper.unwrapKeyring(stored, 2), self.keyring)
        self.assertEqual(wrapArgs(snapshot, write)[:3], ["2", "", snapshot.mock])
        after = SecretsSnapshot(2, write.check, write.mock, stored)
        self.assertIsNone(self.wrapper.plan(after).write)
        self.assertEqual(self.wrapper.plan(after).check(), write.check)

    def test_planNewStore(self) -> None:
        """
        A new store gets the check alone.
        """
        write = self.wrapper.plan(SecretsSnapshot(0, None, None, {})).write
        assert write is not None
        self.assertEqual((write.mock, write.keyring), (None, []))
        self.wrapper.verifyCheck(write.check)

    def test_planOtherKey(self) -> None:
        """
        A store wrapped under another key is refused at its check, even
        with no keyring in it yet.
        """
        other = SecretsWrapper(KeyEncryptionKey.generate(), PREFIX)
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.plan(SecretsSnapshot(0, other.checkValue(), None, {}))

    def test_planClearInWrapped(self) -> None:
        """
        A clear keyring written into a wrapped store (by someone who can
        write Redis but has no key-encryption key) is refused, never used
        or wrapped.
        """
        clear = self.clearSnapshot()
        check = self.wrapper.checkValue()
        planted = SecretsSnapshot(2, check, None, clear.keyring)
        with self.assertRaises(WrongKeyEncryptionKey) as caught:
            self.wrapper.plan(planted)
        self.assertIn("in clear", str(caught.exception))
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.plan(SecretsSnapshot(2, check, clear.mock, {}))

    def test_planWrappedWithoutCheck(self) -> None:
        """
        Wrapped values with the check deleted are refused: deleting the
        check does not make the store look new.
        """
        fields = self.wrapper.wrapKeyring(self.keyring, 2)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.plan(SecretsSnapshot(2, None, None, stored))

    def test_rewrap(self) -> None:
        """
        Rewrapped under a new key, the secrets open under it at the same
        version, and no longer under the old one.
        """
        fields = self.wrapper.wrapKeyring(self.keyring, 5)
        stored = dict(zip(fields[::2], fields[1::2], strict=True))
        check, mock = self.wrapper.checkValue(), self.wrapper.wrapMock(b"m" * 32)
        new = KeyEncryptionKey.generate()
        write = self.wrapper.rewrap(SecretsSnapshot(5, check, mock, stored), new)
        renewed = SecretsWrapper(new, PREFIX)
        assert write.mock is not None
        after = dict(zip(write.keyring[::2], write.keyring[1::2], strict=True))
        self.assertEqual(renewed.unwrapKeyring(after, 5), self.keyring)
        self.assertEqual(renewed.unwrapMock(write.mock), b"m" * 32)
        renewed.verifyCheck(write.check)
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.plan(SecretsSnapshot(5, write.check, write.mock, after))

    def test_rewrapWrongKey(self) -> None:
        other = SecretsWrapper(KeyEncryptionKey.generate(), PREFIX)
        snapshot = SecretsSnapshot(0, other.checkValue(), None, {})
        with self.assertRaises(WrongKeyEncryptionKey):
            self.wrapper.rewrap(snapshot, KeyEncryptionKey.generate())


class DataDirKeyTests(SynchronousTestCase):
    def test_madeByCreate(self) -> None:
        """
        A new data directory has a key-encryption key of its own, mode 0600
        whatever the umask.
        """
        old = os.umask(0)
        try:
            one = DataDir.create(Path(self.mktemp()) / "one")
        finally:
            os.umask(old)
        two = DataDir.create(Path(self.mktemp()) / "two")
        path = one.keyEncryptionKeyFile
        self.assertEqual(path.name, "store.kek")
        self.assertEqual(stat.S_IMODE(path.stat().st_mode), 0o600)
        self.assertNotEqual(one.keyEncryptionKey(), two.keyEncryptionKey())
        self.assertEqual(json.loads(one.marker.read_text()), {"format": 1})

    def test_given(self) -> None:
        kek = KeyEncryptionKey.generate()
        data = DataDir.create(Path(self.mktemp()) / "d", keyEncryptionKey=kek)
        self.assertEqual(data.keyEncryptionKey(), kek)

    def test_missing(self) -> None:
        data = DataDir.create(Path(self.mktemp()) / "d")
        data.keyEncryptionKeyFile.unlink()
        with self.assertRaises(KeyFileError) as caught:
            data.keyEncryptionKey()
        self.assertIn("keycard keys rewrap", str(caught.exception))
        data.keyEncryptionKeyFile.write_text("nonsense\n")
        with self.assertRaises(KeyFileError) as caught:
            data.keyEncryptionKey()
        self.assertIn("holds no key-encryption key", str(caught.exception))
