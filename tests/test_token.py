"""
Tests for L{twisted_keycard.tokens._tokens} and L{twisted_keycard.tokens._tokens}.
"""

from __future__ import annotations

from base64 import urlsafe_b64decode, urlsafe_b64encode
from collections.abc import Callable

from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.tokens._tokens import (
    BadSignature,
    Keyring,
    MalformedToken,
    SigningKey,
    TokenClaims,
    UnknownKey,
    keycardIdOf,
    sign,
    verify,
)

NOW = 1_800_000_000.0


def claims(**changes: object) -> TokenClaims:
    fields: dict[str, object] = {
        "keycardId": "k" * 32,
        "avatarId": "alice",
        "issued": NOW,
        "expires": NOW + 3600,
        "bouncerName": "b1",
    }
    fields.update(changes)
    return TokenClaims(**fields)  # type: ignore[arg-type]


def reencode(token: str, change: Callable[[bytes], bytes]) -> str:
    """
    Replace a token's body with C{change} applied to its raw bytes.
    """
    prefix, keycardId, body = token.split(".")
    raw = urlsafe_b64decode(body + "=" * (-len(body) % 4))
    body = urlsafe_b64encode(change(raw)).rstrip(b"=").decode()
    return f"{prefix}.{keycardId}.{body}"


class TokenTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.keyring = Keyring.generate(NOW)

    def test_roundTrip(self) -> None:
        original = claims(
            requesterName="r1",
            address="192.0.2.1",
            parentId="p" * 32,
            claims={"vendor": "acme", "program": "flux", "version": "2.1=b"},
        )
        token = sign(original, self.keyring.signing)
        self.assertTrue(token.startswith("kc2." + "k" * 32 + "."))
        self.assertLess(len(token), 320)
        result = verify(token, self.keyring, NOW)
        self.assertEqual(
            result,
            original._replace(
                kid=self.keyring.signing.kid,
                familyId="k" * 32,
                familyIssued=NOW,
                audience=("r1",),
            ),
        )

    def test_family(self) -> None:
        """
        A token carries its family (id and start) and its audience.
        """
        original = claims(
            requesterName="app1",
            familyId="f" * 32,
            familyIssued=NOW - 600,
            audience=("app1", "app2", ""),
        )
        result = verify(sign(original, self.keyring.signing), self.keyring, NOW)
        self.assertEqual(result, original._replace(kid=self.keyring.signing.kid))
        self.assertEqual(
            (result.family, result.familyStart, result.audiences),
            ("f" * 32, NOW - 600, ("app1", "app2", "")),
        )

    def test_minimal(self) -> None:
        """
        A token with no family starts its own; with no audience it is for
        the requester it came through, or none.
        """
        token = sign(claims(), self.keyring.signing)
        result = verify(token, self.keyring, NOW)
        self.assertEqual(
            (
                result.requesterName,
                result.address,
                result.parentId,
                dict(result.claims),
                result.familyId,
                result.familyIssued,
                result.audience,
            ),
            (None, None, None, {}, "k" * 32, NOW, ()),
        )
        token = sign(claims(requesterName="app1"), self.keyring.signing)
        self.assertEqual(verify(token, self.keyring, NOW).audience, ("app1",))

    def test_kc1Refused(self) -> None:
        """
        A token of the earlier format, with no family or audience, is
        refused with a message that says so.
        """
        kc1 = "kc1." + "k" * 32 + ".DQAAAaMYXFAAAAABoxhdOmA4ZmM4NTU1ZgBhbGljZQ"
        for check in (keycardIdOf, lambda t: verify(t, self.keyring, NOW)):
            error = self.assertRaises(MalformedToken, check, kc1)
            self.assertIn("kc1 tokens", str(error))
            self.assertIn("log in with a password", str(error))

    def test_unicode(self) -> None:
        token = sign(claims(avatarId="zoë ☃"), self.keyring.signing)
        self.assertEqual(verify(token, self.keyring, NOW).avatarId, "zoë ☃")

    def test_keycardIdOf(self) -> None:
        token = sign(claims(), self.keyring.signing)
        self.assertEqual(keycardIdOf(token), "k" * 32)

    def assertMalformed(self, token: object) -> None:
        self.assertRaises(MalformedToken, verify, token, self.keyring, NOW)

    def test_malformed(self) -> None:
        good = sign(claims(), self.keyring.signing)
        for bad in [
            None,
            b"kc2.x.y",
            "",
            "kc2",
            "kc2.",
            "kc3." + good[4:],
            "kc2.." + good.split(".")[2],
            "kc2.k*k." + good.split(".")[2],
            "kc2." + "k" * 65 + "." + good.split(".")[2],
            good + "!",
            good + "=",
            good[:-1] + "é",
            good.split(".")[0] + "." + good.split(".")[1] + ".",
            good.split(".")[0] + "." + good.split(".")[1],
            "kc2.abc.AAAA",
            good + "A" * 5000,
        ]:
            self.assertMalformed(bad)

    def test_truncated(self) -> None:
        good = sign(claims(), self.keyring.signing)
        for cut in (10, 20, 30, 40, len(good) - 44):
            self.assertRaises(
                (MalformedToken, BadSignature), verify, good[:cut], self.keyring, NOW
            )

    def test_nonCanonical(self) -> None:
        """
        Base64 leaves 2 or 4 spare bits in a body's last character; a token
        whose spare bits are not zero is refused, so that one token has one
        spelling.
        """
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        tried = set()
        for length in range(1, 4):
            good = sign(claims(avatarId="a" * length), self.keyring.signing)
            body = good.rsplit(".", 1)[1]
            spare = {2: 4, 3: 2, 0: 0}[len(body) % 4]
            last = alphabet.index(body[-1])
            self.assertEqual(last % (1 << spare), 0)
            for extra in range(1, 1 << spare):
                tried.add(spare)
                self.assertMalformed(good[:-1] + alphabet[last + extra])
        self.assertEqual(tried, {2, 4})

    def test_padding(self) -> None:
        """
        A body with base64 padding, or an C{=} anywhere in it, is refused:
        one token, one spelling.
        """
        for length in range(1, 5):
            good = sign(claims(avatarId="a" * length), self.keyring.signing)
            body = good.rsplit(".", 1)[1]
            padded = good + "=" * (-len(body) % 4)
            if padded != good:
                self.assertMalformed(padded)
            self.assertMalformed(good + "=")
            self.assertMalformed(good[:-5] + "=" + good[-4:])
            self.assertMalformed(good[:-2] + "==")

    def test_standardAlphabet(self) -> None:
        """
        A body spelled with the standard base64 alphabet's C{+} or C{/} in
        place of base64url's C{-} or C{_} is refused: one token, one
        spelling.
        """
        tried = set()
        for length in range(1, 40):
            good = sign(claims(avatarId="a" * length), self.keyring.signing)
            head, body = good.rsplit(".", 1)
            for urlsafe, standard in (("-", "+"), ("_", "/")):
                if urlsafe in body:
                    tried.add(standard)
                    self.assertMalformed(f"{head}.{body.replace(urlsafe, standard, 1)}")
        self.assertEqual(tried, {"+", "/"})

    def test_unknownFlags(self) -> None:
        good = sign(claims(), self.keyring.signing)
        self.assertMalformed(
            reencode(good, lambda raw: bytes([raw[0] | 0x80]) + raw[1:])
        )
        self.assertMalformed(reencode(good, lambda raw: raw[:17]))

    def test_tamperedRecord(self) -> None:
        """
        Any change to the signed bytes breaks the MAC.
        """
        good = sign(claims(), self.keyring.signing)

        def flip(position: int) -> Callable[[bytes], bytes]:
            def change(raw: bytes) -> bytes:
                data = bytearray(raw)
                data[position] ^= 1
                return bytes(data)

            return change

        # flags (a known bit), issued, expires, avatar, bouncer, the MAC
        for position in (0, 3, 12, -40, -33, -1):
            tampered = reencode(good, flip(position))
            self.assertRaises(
                (BadSignature, MalformedToken), verify, tampered, self.keyring, NOW
            )

    def test_tamperedAvatar(self) -> None:
        good = sign(claims(avatarId="alice"), self.keyring.signing)
        forged = reencode(good, lambda raw: raw.replace(b"alice", b"admin"))
        self.assertRaises(BadSignature, verify, forged, self.keyring, NOW)

    def test_swappedKeycardId(self) -> None:
        """
        The keycard id in clear is covered by the MAC.
        """
        good = sign(claims(), self.keyring.signing)
        forged = good.replace("k" * 32, "j" * 32)
        self.assertRaises(BadSignature, verify, forged, self.keyring, NOW)

    def test_wrongKey(self) -> None:
        other = Keyring((SigningKey(self.keyring.signing.kid, b"x" * 32, NOW),))
        token = sign(claims(), other.signing)
        self.assertRaises(BadSignature, verify, token, self.keyring, NOW)

    def test_unknownKid(self) -> None:
        token = sign(claims(), Keyring.generate(NOW).signing)
        self.assertRaises(UnknownKey, verify, token, self.keyring, NOW)

    def test_malformedRecord(self) -> None:
        """
        A record whose key id is not ASCII, whose text is not UTF-8, or that
        has a field too many or too few is malformed, whatever its MAC.
        """
        good = sign(claims(requesterName="app1"), self.keyring.signing)
        kid = self.keyring.signing.kid.encode()
        for change in [
            lambda raw: raw.replace(kid, "é".encode() + kid[2:], 1),
            lambda raw: raw.replace(b"alice", b"al\xffce", 1),
            lambda raw: raw.replace(b"alice", b"al\0ce", 1),
            lambda raw: raw.replace(b"\0app1", b"", 1),
        ]:
            self.assertMalformed(reencode(good, change))

    def test_noNul(self) -> None:
        self.assertRaises(
            ValueError, sign, claims(avatarId="a\0b"), self.keyring.signing
        )
        self.assertRaises(
            ValueError, sign, claims(keycardId="a.b"), self.keyring.signing
        )
        self.assertRaises(
            ValueError, sign, claims(claims={"a\nb": "c"}), self.keyring.signing
        )
        for bad in (claims(familyId="a.b"), claims(audience=("a\0b",))):
            self.assertRaises(ValueError, sign, bad, self.keyring.signing)

    def test_tooLong(self) -> None:
        """
        A token that would be longer than any bouncer takes, or name more
        audiences than the format counts, is not made.
        """
        many = claims(audience=tuple(f"app{i}" for i in range(256)))
        self.assertRaises(ValueError, sign, many, self.keyring.signing)
        big = claims(claims={"blob": "x" * 3000})
        self.assertRaises(ValueError, sign, big, self.keyring.signing)
        sign(claims(claims={"blob": "x" * 2800}), self.keyring.signing)


class KeyringTests(SynchronousTestCase):
    def test_rotationGrace(self) -> None:
        """
        After a rotation the new key signs; tokens signed with the old key
        verify until its grace ends, and not after.
        """
        keyring = Keyring.generate(NOW)
        old = sign(claims(), keyring.signing)
        rotated, fresh = keyring.rotate(NOW + 10, grace=100)
        self.assertIs(rotated.signing, fresh)
        self.assertNotEqual(fresh.kid, keyring.signing.kid)
        new = sign(claims(), rotated.signing)
        self.assertEqual(verify(old, rotated, NOW + 110).avatarId, "alice")
        self.assertRaises(UnknownKey, verify, old, rotated, NOW + 110.001)
        self.assertEqual(verify(new, rotated, NOW + 10_000).avatarId, "alice")

    def test_rotationDropsExpiredKeys(self) -> None:
        keyring = Keyring.generate(NOW)
        first, _ = keyring.rotate(NOW, grace=10)
        second, _ = first.rotate(NOW + 100, grace=10)
        self.assertEqual(len(second.keys), 2)
        self.assertNotIn(keyring.signing.kid, [k.kid for k in second.keys])

    def test_secretNotInRepr(self) -> None:
        keyring = Keyring.generate(NOW)
        self.assertNotIn(repr(keyring.signing.secret), repr(keyring))
        self.assertNotIn("secret=", repr(keyring))

    def test_noSigningKey(self) -> None:
        key = SigningKey("a", b"x" * 32, NOW, notAfter=NOW + 1)
        self.assertRaises(UnknownKey, lambda: Keyring((key,)).signing)

    def test_duplicateKid(self) -> None:
        key = SigningKey("a", b"x" * 32, NOW)
        self.assertRaises(ValueError, Keyring, (key, key))
