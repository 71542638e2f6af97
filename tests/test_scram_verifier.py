"""
Tests for L{twisted_keycard.scram.Verifier} and the verifiers file read by
L{twisted_keycard.scram.SCRAMVerifiers.fromFile}.
"""

from __future__ import annotations

import hashlib
import os
from base64 import b64decode, b64encode

from passlib.utils import saslprep
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.scram import (
    SCRAMExchange,
    SCRAMKeycard,
    SCRAMVerifiers,
    Verifier,
    _messages,
    readVerifiers,
)
from twisted_keycard.scram._messages import hmacSha256, saltedPassword, sha256

from ._threads import QueuedThread, inline

# RFC 7677, section 3: the keys follow from these.
PASSWORD = "pencil"
SALT = b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")


def _b64(data: bytes) -> str:
    return b64encode(data).decode("ascii")


class VerifierTests(SynchronousTestCase):
    """
    Making, reading and writing verifiers.
    """

    def test_fromPasswordKeys(self) -> None:
        """
        The keys are those RFC 5802 defines, from the SASLprep'd password.
        """
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        salted = saltedPassword(PASSWORD, SALT, 4096)
        self.assertEqual(verifier.iterations, 4096)
        self.assertEqual(verifier.salt, SALT)
        self.assertEqual(verifier.storedKey, sha256(hmacSha256(salted, b"Client Key")))
        self.assertEqual(verifier.serverKey, hmacSha256(salted, b"Server Key"))

    def test_saslprep(self) -> None:
        """
        A password is normalised with SASLprep: a non-ASCII space is a
        space, and a soft hyphen is dropped.
        """
        self.assertEqual(
            Verifier.fromPassword("a\u00a0b\u00adc", salt=SALT),
            Verifier.fromPassword("a bc", salt=SALT),
        )

    def test_saslprepRefusesRawBytes(self) -> None:
        """
        A password SASLprep refuses (a control character, an emoji
        unassigned in Unicode 3.2, a bidi mix) or maps to nothing gives the
        keys of its raw UTF-8 bytes, as PostgreSQL's C{pg_saslprep} callers
        do; the PBKDF2 is that of those bytes.
        """
        self.assertEqual(saslprep("\u00ad"), "")
        for password in ["a\tb", "a\x00b", "pass\U0001f600", "\u05d0a", "\u00ad"]:
            if password != "\u00ad":
                self.assertRaises(ValueError, saslprep, password)
            salted = hashlib.pbkdf2_hmac("sha256", password.encode(), SALT, 4096)
            verifier = Verifier.fromPassword(password, 4096, SALT)
            self.assertEqual(
                verifier.storedKey, sha256(hmacSha256(salted, b"Client Key"))
            )
        self.assertNotEqual(
            Verifier.fromPassword("a\tb", salt=SALT),
            Verifier.fromPassword("ab", salt=SALT),
        )

    def test_surrogateRefused(self) -> None:
        """
        A password holding a lone surrogate is not text: a L{ValueError}.
        """
        error = self.assertRaises(ValueError, Verifier.fromPassword, "a\udcffb")
        self.assertEqual(str(error), "the password is not UTF-8 text")

    def test_normalizeASCII(self) -> None:
        """
        A password of ASCII is used as it is, without asking passlib (whose
        time grows with the length, and would show a stored password's
        length), as PostgreSQL does: printable ASCII is its own SASLprep,
        and control characters, which SASLprep refuses, are used as they
        are.  Any other password goes through SASLprep.
        """
        asked: list[str] = []

        def counted(text: str, param: str = "value") -> str:
            asked.append(text)
            return saslprep(text, param)  # type: ignore[no-any-return]

        self.patch(_messages, "saslprep", counted)
        every = "".join(chr(c) for c in range(0x20, 0x7F))
        for password in ["", "pencil", every, "x" * 1024]:
            self.assertEqual(_messages.normalize(password), password)
            self.assertEqual(saslprep(password), password)
        for password in ["a\x7fb", "a\tb", "\x00"]:
            self.assertEqual(_messages.normalize(password), password)
        self.assertEqual(asked, [])
        self.assertEqual(_messages.normalize("a\u00a0b\u00adc"), "a bc")
        self.assertEqual(_messages.normalize("\U0001f600"), "\U0001f600")
        self.assertEqual(asked, ["a\u00a0b\u00adc", "\U0001f600"])

    def test_randomSalt(self) -> None:
        """
        Without a salt, a fresh random 16-byte one is made each time.
        """
        one, two = Verifier.fromPassword("x"), Verifier.fromPassword("x")
        self.assertEqual(len(one.salt), 16)
        self.assertNotEqual(one.salt, two.salt)
        self.assertNotEqual(one.storedKey, two.storedKey)

    def test_badArguments(self) -> None:
        self.assertRaises(ValueError, Verifier.fromPassword, "x", 0)
        self.assertRaises(ValueError, Verifier.fromPassword, "x", 4096, b"")
        self.assertRaises(
            ValueError, Verifier, iterations=1, salt=b"s", storedKey=b"", serverKey=b""
        )

    def test_roundTrip(self) -> None:
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        text = verifier.toString()
        self.assertEqual(Verifier.fromString(text), verifier)
        self.assertEqual(Verifier.fromString(f"  {text}\r\n"), verifier)
        other = Verifier.fromPassword(PASSWORD, 5000, SALT)
        self.assertTrue(other.toString().startswith("SCRAM-SHA-256$5000:"))
        self.assertEqual(Verifier.fromString(other.toString()), other)

    def test_postgresqlFormat(self) -> None:
        """
        The format is PostgreSQL's: C{SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:
        <ServerKey>}, base64 with padding.
        """
        verifier = Verifier.fromPassword(PASSWORD, 4096, SALT)
        self.assertEqual(
            verifier.toString(),
            f"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=="
            f"${_b64(verifier.storedKey)}:{_b64(verifier.serverKey)}",
        )

    def test_secretsNotInRepr(self) -> None:
        verifier = Verifier.fromPassword("x")
        for secret in [verifier.storedKey, verifier.serverKey]:
            self.assertNotIn(_b64(secret), repr(verifier))
            self.assertNotIn(repr(secret), repr(verifier))

    def test_frozen(self) -> None:
        verifier = Verifier.fromPassword("x")
        self.assertRaises(AttributeError, setattr, verifier, "iterations", 1)

    def test_bad(self) -> None:
        """
        Anything but a well-formed verifier is a L{ValueError} whose message
        does not repeat the text.
        """
        good = Verifier.fromPassword(PASSWORD, 4096, SALT).toString()
        mechanism, params, keys = good.split("$")
        stored, server = keys.split(":")
        key31 = _b64(b"k" * 31)
        for bad in [
            "",
            "SCRAM-SHA-256",
            "md5abc",
            good.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
            good.replace("SCRAM-SHA-256", "scram-sha-256"),
            good.replace("$4096:", "$0:"),
            good.replace("$4096:", "$-1:"),
            good.replace("$4096:", "$04096:"),
            good.replace("$4096:", "$٤٠٩٦:"),
            good.replace("$4096:", "$:"),
            good.replace("$4096:", "$x:"),
            f"{mechanism}$4096${keys}",
            f"{mechanism}${params}${stored}",
            f"{mechanism}${params}${stored}:{server}:{server}",
            f"{mechanism}${params}${stored}:{server}$",
            f"{mechanism}$4096:${keys}",
            f"{mechanism}$4096:!!!!${keys}",
            f"{mechanism}${params}${stored[:-1]}:{server}",
            f"{mechanism}${params}${key31}:{server}",
            f"{mechanism}${params}${stored}:{key31}",
            f"{mechanism}${params}$ {stored}:{server}",
        ]:
            with self.assertRaises(ValueError) as caught:
                Verifier.fromString(bad)
            message = str(caught.exception)
            self.assertNotIn(stored, message)
            self.assertNotIn(server, message)
            self.assertIn("SCRAM-SHA-256 verifier", message)


class VerifiersFileTests(SynchronousTestCase):
    """
    The verifiers file: C{name:SCRAM-SHA-256$...} lines.
    """

    def setUp(self) -> None:
        self.alice = Verifier.fromPassword("a", salt=b"alice's salt")
        self.bob = Verifier.fromPassword("b", salt=b"bob's salt")

    def test_goodLines(self) -> None:
        """
        Lines are split at the first C{:}; blank lines and comments are
        skipped; spaces around a line are ignored.
        """
        text = (
            "# users\n"
            "\n"
            f"alice:{self.alice.toString()}\n"
            "   \n"
            "  # indented comment\n"
            f"  bob:{self.bob.toString()}  \r\n"
        )
        self.assertEqual(readVerifiers(text), {"alice": self.alice, "bob": self.bob})

    def test_empty(self) -> None:
        self.assertEqual(readVerifiers(""), {})
        self.assertEqual(readVerifiers("# nobody\n"), {})

    def test_badLineByNumber(self) -> None:
        """
        A bad line is reported by its number, never with its verifier.
        """
        secret = "c2VjcmV0c3R1ZmZzZWNyZXRzdHVmZg=="
        for bad, number in [
            (f"bob:SCRAM-SHA-256$4096:{secret}", 3),
            (f"SCRAM-SHA-256$4096:{secret}", 3),
            (f":SCRAM-SHA-256$4096:{secret}", 3),
            (secret, 3),
        ]:
            text = f"# users\nalice:{self.alice.toString()}\n{bad}\n"
            with self.assertRaises(ValueError) as caught:
                readVerifiers(text)
            message = str(caught.exception)
            self.assertTrue(message.startswith(f"line {number}:"), message)
            self.assertNotIn(secret, message)
            self.assertNotIn("4096", message)

    def test_repeatedName(self) -> None:
        text = f"alice:{self.alice.toString()}\nalice:{self.bob.toString()}\n"
        with self.assertRaises(ValueError) as caught:
            readVerifiers(text)
        self.assertIn("line 2:", str(caught.exception))
        self.assertNotIn(self.bob.toString(), str(caught.exception))

    def test_fromFile(self) -> None:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"# users\nalice:{self.alice.toString()}\n")
        checker = SCRAMVerifiers.fromFile(path)
        self.assertEqual(repr(checker), "<SCRAMVerifiers of 1 users>")

    def test_fromFileBadLine(self) -> None:
        """
        A bad line leaves out that user only: the others log in.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"alice:{self.alice.toString()}\n\nbob:nope\n")
        checker = SCRAMVerifiers.fromFile(path)
        self.assertEqual(repr(checker), "<SCRAMVerifiers of 1 users>")

    def test_fromFileRepeatedName(self) -> None:
        """
        A name given twice in a file is left out: neither verifier holds.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(
                f"alice:{self.alice.toString()}\nbob:{self.bob.toString()}\n"
                f"alice:{self.bob.toString()}\n"
            )
        checker = SCRAMVerifiers.fromFile(path)
        self.assertEqual(repr(checker), "<SCRAMVerifiers of 1 users>")
        exchange = self.successResultOf(
            checker.prime(SCRAMKeycard(clientFirst="n,,n=alice,r=abc"))
        )
        assert isinstance(exchange, SCRAMExchange)
        self.assertFalse(exchange.known)

    def test_fromFileMissing(self) -> None:
        self.assertRaises(OSError, SCRAMVerifiers.fromFile, self.mktemp())

    def test_fromFileReloads(self) -> None:
        """
        The file is read again, in the thread given, when it changes; the
        exchange that notices the change waits for it.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"alice:{self.alice.toString()}\n")
        thread = QueuedThread()
        checker = SCRAMVerifiers.fromFile(path, clock=Clock(), runInThread=thread)
        with open(path, "a") as f:
            f.write(f"bob:{self.bob.toString()}\n")
        os.utime(path, ns=(1, 1))
        primed = checker.prime(SCRAMKeycard(clientFirst="n,,n=bob,r=abc"))
        self.assertNoResult(primed)
        thread.runAll()
        exchange = self.successResultOf(primed)
        assert isinstance(exchange, SCRAMExchange)
        self.assertTrue(exchange.known)
        self.assertEqual(exchange.serverFirst.salt, b"bob's salt")

    def test_fromFileBecomesBad(self) -> None:
        """
        A verifiers file that changes into one with a bad line leaves that
        user out and keeps the others (it once failed every exchange).
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(f"alice:{self.alice.toString()}\nbob:{self.bob.toString()}\n")
        checker = SCRAMVerifiers.fromFile(path, clock=Clock(), runInThread=inline)
        with open(path, "w") as f:
            f.write(f"alice:broken\nbob:{self.bob.toString()}\n")
        os.utime(path, ns=(2, 2))
        keycard = SCRAMKeycard(clientFirst="n,,n=bob,r=abc")
        exchange = self.successResultOf(checker.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        self.assertTrue(exchange.known)
        keycard = SCRAMKeycard(clientFirst="n,,n=alice,r=abc")
        exchange = self.successResultOf(checker.prime(keycard))
        assert isinstance(exchange, SCRAMExchange)
        self.assertFalse(exchange.known)
