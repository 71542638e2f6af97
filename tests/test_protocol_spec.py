"""
A client built from docs/protocol.rst's message tables, against a real
listener: the tables are read out of the page (so that the page and the
wire cannot disagree unnoticed), and the client uses nothing of
twisted_keycard, only twisted.spread's PB, jelly and banana, and hashlib
for the cryptography.  It logs in with SCRAM-SHA-256, with HMAC and with a
token, asks the bouncer service for a ticket, opens a brokered session and
seals its messages, checking every value the server sends against its row,
and sends a value that breaks each row of the tables of what a client sends
and expects the refusal the row names.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import io
import re
import secrets
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
from docutils import nodes
from docutils.core import publish_doctree
from twisted.cred.portal import Portal
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.spread import banana, pb
from twisted.test.iosim import FakeTransport, IOPump, connect
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardRoot, MemoryStore
from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.hmackeys import HMACKeys
from twisted_keycard.pb import ConnectionLimits, KeycardServerFactory
from twisted_keycard.remote import BouncerRealm
from twisted_keycard.scram import SCRAMVerifiers, Verifier
from twisted_keycard.sessions import (
    SessionRoot,
    SessionServerFactory,
    TicketGranter,
    TicketGrantingRealm,
)

from ._sessions import EchoRealm

PAGE = Path(__file__).parent.parent / "docs" / "protocol.rst"

USER, PASSWORD = "alice", "pencil"
HMAC_NAME, HMAC_KEY = "probe", b"k" * 32
SERVICE = "chat"
REQUESTER = "keycard-bouncer"
ERRORS = "twisted_keycard.error."


@attrs.frozen
class Row:
    """
    One row of a message table.

    @ivar key: the value's position (from 1), a dictionary key, or C{None}
        for the message as a whole.
    """

    key: int | str | None
    value: str
    pbType: str
    bound: str
    setBy: str
    ifBad: str | None


def readTables(path: Path = PAGE) -> dict[str, list[Row]]:
    """
    The message tables of the page, by title: the list tables whose
    header starts with C{#}, C{value}, C{PB type}.
    """
    doctree = publish_doctree(
        path.read_text(encoding="utf-8"),
        settings_overrides={
            "report_level": 5,
            "halt_level": 5,
            "warning_stream": io.StringIO(),
        },
    )
    # A lone "#" is read as a possible title underline, with a note.
    for note in list(doctree.findall(nodes.system_message)):
        note.parent.remove(note)
    tables: dict[str, list[Row]] = {}
    for table in doctree.findall(nodes.table):
        titles = [child for child in table.children if isinstance(child, nodes.title)]
        if not titles:
            continue
        rows = [
            [entry.astext().replace("\n", " ") for entry in row.findall(nodes.entry)]
            for row in table.findall(nodes.row)
        ]
        if rows[0][:3] != ["#", "value", "PB type"]:
            continue
        parsed = []
        for cells in rows[1:]:
            if cells[0] == "(none)":
                continue
            key: int | str | None
            if cells[0] == "(all)":
                key = None
            elif cells[0].isdigit():
                key = int(cells[0])
            else:
                key = cells[0].strip('"')
            ifBad = cells[5] if len(cells) > 5 and cells[5] != "-" else None
            parsed.append(Row(key, cells[1], cells[2], cells[3], cells[4], ifBad))
        tables[titles[0].astext()] = parsed
    return tables


TABLES = readTables()

#: The PB types of the page, as jelly gives them to Python.
TYPES: dict[str, type | tuple[type, ...]] = {
    "bytes": bytes,
    "str": str,
    "int": int,
    "float": float,
    "None": type(None),
    "tuple": tuple,
    "list": list,
    "dict": dict,
    "remote reference": pb.RemoteReference,
}


def hasType(pbType: str, value: object) -> bool:
    """
    Whether C{value}, as PB gave it, is of C{pbType}.
    """
    for one in pbType.split(" or "):
        if one == "any":
            return True
        if one.startswith("list of "):
            item = TYPES[one.removeprefix("list of ")]
            if type(value) is list and all(isinstance(v, item) for v in value):
                return True
        elif type(value) is TYPES[one] or (
            one == "remote reference" and isinstance(value, pb.RemoteReference)
        ):
            return True
    return False


def withinBound(bound: str, value: object) -> bool:
    """
    Whether C{value} keeps to a bound as the page writes them.
    """
    if value is None or bound == "-":
        return True
    if isinstance(value, bytes | str):
        size = len(value)
        if isinstance(value, bytes) and "characters" in bound:
            size = len(value.decode("utf-8"))
    elif isinstance(value, list | tuple):
        size = len(value)
    else:
        size = value  # type: ignore[assignment]
    if m := re.fullmatch(r"(\d+) bytes", bound):
        return size == int(m[1])
    if m := re.fullmatch(r"(\d+) to (\d+)(?: bytes)?", bound):
        return int(m[1]) <= size <= int(m[2])
    if m := re.fullmatch(r"at most (\d+) (?:bytes|characters|items)", bound):
        return size <= int(m[1])
    if m := re.fullmatch(r"at least (\d+) items", bound):
        return size >= int(m[1])
    raise AssertionError(f"a bound the page should not write: {bound!r}")


def rows(title: str) -> list[Row]:
    """
    The rows of the page's table C{title}.
    """
    found = TABLES.get(title)
    assert found is not None, f"docs/protocol.rst has no table {title!r}"
    return found


def check(title: str, message: object) -> list[Any]:
    """
    Check a message the server sent against its table: the whole, each
    value at its position (or under its key), each type and bound.

    @return: the values from the position a row marks C{...} on, which
        another table describes.
    """
    table = rows(title)
    for row in table:
        if row.key is None:
            assert hasType(row.pbType, message), (title, row, message)
            assert withinBound(row.bound, message), (title, row, message)
    if isinstance(message, dict):
        keys = {row.key for row in table if isinstance(row.key, str)}
        assert set(message) == keys, (title, sorted(message))
        for row in table:
            if isinstance(row.key, str):
                value = message[row.key]
                assert hasType(row.pbType, value), (title, row, value)
                assert withinBound(row.bound, value), (title, row, value)
        return []
    positional = [row for row in table if isinstance(row.key, int)]
    if not positional:
        return []
    values = list(message) if isinstance(message, list | tuple) else [message]
    for row in positional:
        assert isinstance(row.key, int)
        if row.pbType == "...":
            return values[row.key - 1 :]
        if row.key > len(values):
            assert "None" in row.pbType, (title, row, "left out")
            continue
        value = values[row.key - 1]
        assert hasType(row.pbType, value), (title, row, value)
        assert withinBound(row.bound, value), (title, row, value)
    assert len(values) <= len(positional), (title, "more values than rows", values)
    return []


def build(title: str, *values: object) -> list[object]:
    """
    A message of a table: each value in its row's PB type (text as the
    row says, bytes or str), in its bound, trailing C{None}s left out
    where the row allows C{None}.
    """
    table = [row for row in rows(title) if isinstance(row.key, int)]
    assert len(values) <= len(table), (title, values)
    out: list[object] = []
    for row, value in zip(table, values, strict=False):
        kinds = row.pbType.split(" or ")
        if isinstance(value, str) and "str" not in kinds and "bytes" in kinds:
            value = value.encode("utf-8")
        elif isinstance(value, bytes) and "bytes" not in kinds and "str" in kinds:
            value = value.decode("utf-8")
        assert row.pbType == "..." or hasType(row.pbType, value), (title, row, value)
        assert withinBound(row.bound, value), (title, row, value)
        out.append(value)
    # Trailing values a row lets be None are left out.
    while out and out[-1] is None and "None" in table[len(out) - 1].pbType:
        out.pop()
    return out


def badValues(row: Row) -> list[object]:
    """
    Values that break a row: one of a type it does not take, and one just
    outside its bound.
    """
    kinds = row.pbType.split(" or ")
    text = "bytes" in kinds or "str" in kinds
    bad: list[object] = [7 if text else b"7"]
    main = kinds[0]
    if m := re.fullmatch(r"(\d+) bytes", row.bound):
        bad.append(b"x" * (int(m[1]) - 1))
    elif m := re.fullmatch(r"1 to (\d+) bytes", row.bound):
        bad.append(b"x" * (int(m[1]) + 1))
    elif m := re.fullmatch(r"at most (\d+) characters", row.bound):
        over = "x" * (int(m[1]) + 1)
        bad.append(over.encode() if main == "bytes" else over)
    elif m := re.fullmatch(r"(\d+) to (\d+)", row.bound):
        bad.append(int(m[1]) - 1)
    return bad


def errorOf(row: Row) -> str:
    """
    The error class a row names for a bad value (its first).
    """
    assert row.ifBad is not None
    m = re.match(r"(\w+)", row.ifBad)
    assert m is not None, row
    return ERRORS + m[1]


# The cryptography, from the page's formulas.


def scramProof(
    clientFirst: str, nonce: str, salt: bytes, iterations: int
) -> tuple[bytes, bytes]:
    """
    The ClientProof and the ServerSignature a client expects, for a
    client-first message with the GS2 header C{n,,}.
    """
    salted = hashlib.pbkdf2_hmac("sha256", PASSWORD.encode(), salt, iterations)
    clientKey = hmac.digest(salted, b"Client Key", "sha256")
    storedKey = hashlib.sha256(clientKey).digest()
    serverKey = hmac.digest(salted, b"Server Key", "sha256")
    serverFirst = f"r={nonce},s={base64.b64encode(salt).decode()},i={iterations}"
    final = f"c={base64.b64encode(b'n,,').decode()},r={nonce}"
    auth = f"{clientFirst[3:]},{serverFirst},{final}".encode()
    signature = hmac.digest(storedKey, auth, "sha256")
    proof = bytes(a ^ b for a, b in zip(clientKey, signature, strict=True))
    return proof, hmac.digest(serverKey, auth, "sha256")


def fields(*parts: bytes | str) -> bytes:
    """
    The page's C{fields(a, b, ...)}: each part (text as UTF-8) after its
    length, 4 bytes big endian.
    """
    out = b""
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += struct.pack("!I", len(raw)) + raw
    return out


def hkdf(secret: bytes, info: bytes, length: int) -> bytes:
    """
    HKDF-SHA256 (RFC 5869) with the page's salt, written out with hmac.
    """
    key = hmac.digest(b"twisted-keycard session v1", secret, "sha256")
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(key, block + info + bytes([counter]), "sha256")
        out += block
        counter += 1
    return out[:length]


def sessionKeys(secret: bytes) -> list[bytes]:
    """
    Ksp, Kcp, Kcs and Ksc, from the session secret.
    """
    material = hkdf(secret, fields(b"keys"), 128)
    return [material[i : i + 32] for i in range(0, 128, 32)]


# The client: Twisted's own PB broker, sealing as the page says.


class Collector(banana.Banana):
    """
    Decodes one payload of banana in PB's dialect.
    """

    def __init__(self) -> None:
        super().__init__(isClient=1)
        self.items: list[object] = []
        self.makeConnection(FakeTransport(self, True))
        # As if both ends had chosen it (making the connection resets it).
        self.currentDialect = b"pb"

    def expressionReceived(self, lst: object) -> None:
        self.items.append(lst)


class RawBroker(pb.Broker):
    """
    A stock PB broker that records what it receives and, once sealed,
    seals what it sends and checks what it receives.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: list[object] = []
        self.keys: tuple[bytes, bytes] | None = None
        self.sent = self.received = 0

    def seal(self, sendKey: bytes, receiveKey: bytes) -> None:
        self.keys = (sendKey, receiveKey)

    def sendEncoded(self, obj: object) -> None:
        if self.keys is None:
            super().sendEncoded(obj)
            return
        out = io.BytesIO()
        self._encode(obj, out.write)
        payload = out.getvalue()
        mac = hmac.digest(
            self.keys[0], struct.pack("!Q", self.sent) + payload, "sha256"
        )
        chunk = int(re.findall(r"\d+", rows("sealed message")[-1].bound)[-1])
        chunks = [payload[i : i + chunk] for i in range(0, len(payload), chunk)]
        message = build("sealed message", b"sealed", self.sent, mac, chunks[0])
        self.sent += 1
        super().sendEncoded([*message, *chunks[1:]])

    def callExpressionReceived(self, obj: object) -> None:
        if self.currentDialect is None:
            # The server's first message: its dialects, or a refusal.
            self.frames.append(obj)
        super().callExpressionReceived(obj)

    def expressionReceived(self, sexp: object) -> None:
        self.frames.append(sexp)
        if self.keys is None:
            super().expressionReceived(sexp)
            return
        rest = check("sealed message", sexp)
        assert isinstance(sexp, list)
        _, sequence, mac = sexp[:3]
        payload = b"".join([sexp[3], *rest[1:]])
        assert sequence == self.received, (sequence, self.received)
        expected = hmac.digest(
            self.keys[1], struct.pack("!Q", sequence) + payload, "sha256"
        )
        assert hmac.compare_digest(mac, expected)
        self.received += 1
        decoder = Collector()
        decoder.dataReceived(payload)
        [inner] = decoder.items
        super().expressionReceived(inner)


@attrs.define
class Raw:
    """
    One raw client connection, in memory, to a server factory.
    """

    broker: RawBroker
    pump: IOPump
    root: pb.RemoteReference

    def answer(self, target: pb.RemoteReference, method: str, *args: object) -> Any:
        """
        Call a method, pump, and return its result or its failure.
        """
        results: list[Any] = []
        target.callRemote(method, *args).addBoth(results.append)
        self.pump.flush()
        assert results, f"{method} got no answer"
        return results[0]

    def call(self, target: pb.RemoteReference, method: str, *args: object) -> Any:
        """
        Call a method that must succeed, pump, and return its result.
        """
        result = self.answer(target, method, *args)
        if isinstance(result, Failure):
            error = f"{result.type!r}: {result.getErrorMessage()}"
            raise AssertionError(f"{method} failed: {error}")
        return result

    def refusal(self, target: pb.RemoteReference, method: str, *args: object) -> str:
        """
        Call a method that must fail: the qualified name of the error.
        """
        result = self.answer(target, method, *args)
        assert isinstance(result, Failure), (method, args, result)
        value = result.type
        return value.decode() if isinstance(value, bytes) else str(value)


class World:
    """
    The bouncer service's PB face (a SCRAM verifier, an HMAC key, tokens,
    ticket granting) and a service, on a L{MemoryReactorClock}.
    """

    def __init__(self) -> None:
        self.reactor = MemoryReactorClock()
        verifier = Verifier.fromPassword(PASSWORD, 4096, b"0123456789abcdef")
        self.bouncer = Bouncer(
            [SCRAMVerifiers({USER: verifier}), HMACKeys({HMAC_NAME: HMAC_KEY})],
            MemoryStore(),
            clock=self.reactor,
            duration=3600,
            tokens=TokenPolicy(groups=[{REQUESTER, f"{REQUESTER}/tickets"}]),
        )
        self.granter = TicketGranter(self.bouncer, self.reactor)
        realm = TicketGrantingRealm(
            BouncerRealm(self.bouncer, set(), self.reactor),
            self.granter,
            {SERVICE},
            requesterName=REQUESTER,
            audience=f"{REQUESTER}/tickets",
        )
        self.root = KeycardRoot(
            self.bouncer, Portal(realm), REQUESTER, clock=self.reactor
        )
        self.bouncerFace = KeycardServerFactory(self.root, clock=self.reactor)
        self.serviceRealm = EchoRealm()
        sessions = SessionRoot(
            self.granter.register(SERVICE), self.serviceRealm, clock=self.reactor
        )
        self.serviceFace = SessionServerFactory(sessions, clock=self.reactor)

    def connect(self, factory: IProtocolFactory, host: str = "192.0.2.7") -> Raw:
        """
        A raw client connected to C{factory}, with the root object.
        """
        client, broker, pump = self.connectBroker(factory, host)
        roots: list[Any] = []
        client.getRootObject().addBoth(roots.append)
        pump.flush()
        [root] = roots
        assert isinstance(root, pb.RemoteReference)
        return Raw(broker, pump, root)

    def connectBroker(
        self, factory: IProtocolFactory, host: str
    ) -> tuple[pb.PBClientFactory, RawBroker, IOPump]:
        """
        A raw client's broker connected to C{factory}, before anything is
        sent.
        """
        serverAddress = IPv4Address("TCP", "127.0.0.1", 8800)
        clientAddress = IPv4Address("TCP", host, 40000)
        server = factory.buildProtocol(clientAddress)
        assert server is not None
        client = pb.PBClientFactory()
        client.protocol = RawBroker
        broker = client.buildProtocol(serverAddress)
        assert isinstance(broker, RawBroker)
        pump = connect(
            server,
            FakeTransport(server, True, serverAddress, clientAddress),
            broker,
            FakeTransport(broker, False, clientAddress, serverAddress),
            clock=self.reactor,
        )
        return client, broker, pump

    def bouncerConnection(self) -> Raw:
        """
        A raw client of the bouncer service's PB face.
        """
        return self.connect(self.bouncerFace)

    def scramFirst(self, raw: Raw, flags: int) -> tuple[str, list[Any]]:
        """
        Send a SCRAM first message.

        @return: the client-first message and the challenge values.
        """
        clientFirst = f"n,,n={USER},r={secrets.token_urlsafe(18)}"
        first = build("scram-sha-256 first", clientFirst)
        login = build("login(kind, flags, mind, *first)", "scram-sha-256", flags, None)
        answer = raw.call(raw.root, "login", *login, *first)
        challenge = check("challenge answer", answer)
        check("scram-sha-256 challenge", challenge)
        return clientFirst, [answer[1], *challenge]

    def scramLogin(self, raw: Raw, flags: int) -> list[Any]:
        """
        A SCRAM-SHA-256 login, every value checked.

        @return: the perspective, then the proof and details values.
        """
        clientFirst, (exchange, suffix, salt, iterations) = self.scramFirst(raw, flags)
        nonce = clientFirst.partition(",r=")[2] + suffix.decode("ascii")
        proof, signature = scramProof(clientFirst, nonce, salt, iterations)
        answer = raw.call(
            raw.root,
            "answer",
            *build("answer(exchange, *values)", exchange),
            *build("scram-sha-256 answer", proof),
        )
        rest = check("logged_in answer", answer)
        proofs = rest[: len(rows("scram-sha-256 proof"))]
        check("scram-sha-256 proof", proofs)
        assert hmac.compare_digest(proofs[0], signature)
        if flags:
            check("details", rest[-1])
        return [answer[1], *rest]

    def ticket(self) -> tuple[Raw, pb.RemoteReference, dict[str, Any]]:
        """
        Log in to the bouncer and ask for a ticket for the service.

        @return: the connection, the perspective and the grant.
        """
        raw = self.bouncerConnection()
        perspective, _, details = self.scramLogin(raw, 3)
        grant = raw.call(
            perspective,
            "ticket",
            *build("ticket(serviceName, keycardId)", SERVICE, details[0]),
        )
        check("ticket grant", grant)
        return raw, perspective, grant

    def open(self, grant: dict[str, Any]) -> tuple[Raw, list[bytes], bytes]:
        """
        Present the ticket to the service and check its proof.

        @return: the connection, the session keys and the confirmation.
        """
        raw = self.connect(self.serviceFace)
        nonce = secrets.token_bytes(32)
        answer = raw.call(
            raw.root, "open", *build("open(ticketId, nonce)", grant["ticket"], nonce)
        )
        check("open answer", answer)
        serviceNonce, proof = answer
        keys = sessionKeys(grant["secret"])
        transcript = (
            grant["ticket"],
            grant["client"],
            grant["service"],
            nonce,
            serviceNonce,
        )
        expected = hmac.digest(keys[0], fields(b"service proof", *transcript), "sha256")
        assert hmac.compare_digest(proof, expected)
        confirmation = hmac.digest(
            keys[1], fields(b"client confirmation", *transcript, proof), "sha256"
        )
        return raw, keys, confirmation


class TablesTests(SynchronousTestCase):
    """
    The page has the tables the client is built from.
    """

    def test_tables(self) -> None:
        """
        Every table the client reads is there, in the page's PB types.
        """
        for title in [
            "keycardClasses() answers",
            "login(kind, flags, mind, *first)",
            "answer(exchange, *values)",
            "challenge answer",
            "logged_in answer",
            "kinds answer",
            "details",
            "scram-sha-256 first",
            "scram-sha-256 challenge",
            "scram-sha-256 answer",
            "scram-sha-256 proof",
            "hmac-sha256 first",
            "hmac-sha256 challenge",
            "hmac-sha256 answer",
            "token first",
            "ticket(serviceName, keycardId)",
            "ticket grant",
            "open(ticketId, nonce)",
            "open answer",
            "confirm(confirmation, mind)",
            "confirm answer",
            "sealed message",
            "connection refusal",
        ]:
            self.assertIn(title, TABLES)
            for row in TABLES[title]:
                for one in row.pbType.split(" or "):
                    self.assertTrue(
                        one in ("any", "...")
                        or one in TYPES
                        or one.removeprefix("list of ") in TYPES,
                        (title, row),
                    )

    def test_readsRows(self) -> None:
        """
        A row is read with its key, type, bound and refusal.
        """
        [first] = rows("token first")
        self.assertEqual(
            (first.key, first.pbType, first.bound, errorOf(first)),
            (1, "bytes", "at most 4096 characters", ERRORS + "InvalidKeycard"),
        )
        self.assertEqual(
            [row.key for row in rows("ticket grant")],
            [None, "ticket", "secret", "client", "service", "expires"],
        )

    def test_bounds(self) -> None:
        """
        The bounds read as the page says.
        """
        self.assertTrue(withinBound("32 bytes", b"x" * 32))
        self.assertFalse(withinBound("32 bytes", b"x" * 31))
        self.assertTrue(withinBound("1 to 128 bytes", b"x"))
        self.assertFalse(withinBound("1 to 128 bytes", b""))
        self.assertFalse(withinBound("at most 4 characters", "é" * 5))
        self.assertTrue(withinBound("at most 4 characters", "é" * 4))
        self.assertTrue(withinBound("at most 4 characters", ("é" * 4).encode()))
        self.assertFalse(withinBound("1 to 2147483647", 0))


class BananaTests(SynchronousTestCase):
    """
    The page's examples of banana are what Twisted's banana writes.
    """

    def test_examples(self) -> None:
        """
        Each C{``value`` is ``bytes``} of the page encodes so.
        """
        examples = re.findall(
            r"``([^`]+)`` is\s+``((?:[0-9a-f]{2} ?)+)``",
            PAGE.read_text(encoding="utf-8"),
        )
        self.assertEqual(len(examples), 3)
        coder = Collector()
        for value, spelled in examples:
            out = io.BytesIO()
            coder._encode(ast.literal_eval(value), out.write)
            self.assertEqual(out.getvalue(), bytes.fromhex(spelled), value)


class LoginTests(SynchronousTestCase):
    """
    Logins by the tables' client.
    """

    def test_perspective(self) -> None:
        """
        The client's perspective on the bouncer service: C{whoami}; a
        requester's methods denied, a service's refused, any other PB's
        own error.
        """
        world = World()
        raw = world.bouncerConnection()
        perspective, *_ = world.scramLogin(raw, 0)
        self.assertEqual(raw.call(perspective, "whoami"), USER)
        for method, args, error in [
            ("keycardClasses", (), ERRORS + "KeycardDenied"),
            ("adopt", ([],), ERRORS + "KeycardDenied"),
            ("redeem", ("x",), ERRORS + "SessionRefused"),
            ("noSuchMethod", (), ERRORS + "MalformedMessage"),
        ]:
            self.assertEqual(raw.refusal(perspective, method, *args), error)
        # Refused with no traceback in the server's log.
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_kinds(self) -> None:
        """
        C{keycardClasses()} and a first message of a kind the server does
        not take answer the kinds.
        """
        world = World()
        raw = world.bouncerConnection()
        kinds = raw.call(raw.root, "keycardClasses")
        check("keycardClasses() answers", kinds)
        self.assertEqual(kinds, ["scram-sha-256", "hmac-sha256", "token"])
        login = build("login(kind, flags, mind, *first)", "no-such-kind", 0, None)
        answer = raw.call(raw.root, "login", *login)
        check("kinds answer", answer)
        self.assertEqual(answer[1], kinds)

    def test_scram(self) -> None:
        """
        A SCRAM-SHA-256 login with its proof checked; with details asked,
        the details; the perspective answers.
        """
        world = World()
        raw = world.bouncerConnection()
        perspective, _, details = world.scramLogin(raw, 1)
        self.assertEqual(details[1], USER.encode())
        self.assertIsNone(details[3])
        self.assertEqual(details[4], REQUESTER.encode())
        self.assertEqual(raw.call(perspective, "whoami"), USER)
        [held] = world.bouncer.held.values()
        self.assertEqual(held.keycardId.encode(), details[0])
        self.assertEqual(held.address, "192.0.2.7")

    def test_hmac(self) -> None:
        """
        An HMAC login: the challenge tells the requester's name, which the
        client signs and does not send back.
        """
        world = World()
        raw = world.bouncerConnection()
        login = build("login(kind, flags, mind, *first)", "hmac-sha256", 0, None)
        answer = raw.call(
            raw.root, "login", *login, *build("hmac-sha256 first", HMAC_NAME)
        )
        challenge = check("challenge answer", answer)
        check("hmac-sha256 challenge", challenge)
        keycardId, requesterName, nonce = (v.decode() for v in challenge)
        self.assertEqual(requesterName, REQUESTER)
        context = b"\0".join(
            [
                b"twisted-keycard hmac v1",
                *(p.encode() for p in (nonce, keycardId)),
                requesterName.encode(),
                HMAC_NAME.encode(),
            ]
        )
        mac = base64.b64encode(hmac.digest(HMAC_KEY, context, "sha256")).decode()
        answer = raw.call(
            raw.root,
            "answer",
            *build("answer(exchange, *values)", answer[1]),
            *build("hmac-sha256 answer", mac),
        )
        self.assertEqual(check("logged_in answer", answer), [])
        self.assertEqual(raw.call(answer[1], "whoami"), HMAC_NAME)

    def test_token(self) -> None:
        """
        A token from a SCRAM login logs in as the first call of a new
        connection, and on the connection that holds the SCRAM keycard.
        """
        world = World()
        raw = world.bouncerConnection()
        *_, details = world.scramLogin(raw, 3)
        token = details[3]
        self.assertTrue(token.startswith(b"kc2."))
        for connection in [world.bouncerConnection(), raw]:
            login = build("login(kind, flags, mind, *first)", "token", 3, None)
            answer = connection.call(
                connection.root, "login", *login, *build("token first", token)
            )
            [newDetails] = check("logged_in answer", answer)
            check("details", newDetails)
            self.assertEqual(newDetails[1], USER.encode())
            self.assertNotEqual(newDetails[0], details[0])
            self.assertEqual(connection.call(answer[1], "whoami"), USER)


class RefusedConnectionTests(SynchronousTestCase):
    """
    A connection the server will not take gets the refusal in place of the
    dialects.
    """

    def test_refused(self) -> None:
        world = World()
        limits = ConnectionLimits(maxUnauthenticated=1)
        factory = KeycardServerFactory(world.root, limits=limits, clock=world.reactor)
        first = world.connect(factory)
        _, broker, pump = world.connectBroker(factory, "192.0.2.7")
        pump.flush()
        refusal = broker.frames[0]
        check("connection refusal", refusal)
        assert isinstance(refusal, list)
        self.assertEqual(refusal[1], b"too many connections from your address")
        self.assertTrue(broker.disconnected)
        self.assertFalse(first.broker.disconnected)
        self.assertEqual(first.broker.frames[0], [b"pb", b"none"])


class SessionTests(SynchronousTestCase):
    """
    A brokered session by the tables' client.
    """

    def test_session(self) -> None:
        """
        A ticket, the service's proof, the confirmation, and sealed calls
        both ways on the session's connection.
        """
        world = World()
        _, _, grant = world.ticket()
        self.assertEqual((grant["client"], grant["service"]), (USER, SERVICE))
        raw, keys, confirmation = world.open(grant)
        results: list[Any] = []
        raw.root.callRemote(
            "confirm", *build("confirm(confirmation, mind)", confirmation, None)
        ).addBoth(results.append)
        # The confirmation is the last message the client sends unsealed.
        raw.broker.seal(keys[2], keys[3])
        raw.pump.flush()
        [perspective] = results
        check("confirm answer", perspective)
        sealedFrom = len(raw.broker.frames) - 1
        self.assertEqual(raw.call(perspective, "echo", b"hello"), b"hello")
        self.assertEqual(raw.call(perspective, "whoami"), USER)
        self.assertEqual(raw.broker.sent, 2)
        self.assertEqual(raw.broker.received, 3)
        for frame in raw.broker.frames[sealedFrom:]:
            check("sealed message", frame)

    def test_tampered(self) -> None:
        """
        A sealed message whose MAC is wrong: the service drops the
        connection, and sends nothing.
        """
        world = World()
        _, _, grant = world.ticket()
        raw, keys, confirmation = world.open(grant)
        results: list[Any] = []
        raw.root.callRemote("confirm", confirmation, None).addBoth(results.append)
        raw.broker.seal(keys[2], keys[3])
        raw.pump.flush()
        [perspective] = results
        frames = len(raw.broker.frames)
        raw.broker.seal(b"\0" * 32, keys[3])
        perspective.callRemote("whoami").addBoth(results.append)
        raw.pump.flush()
        self.assertTrue(raw.broker.disconnected)
        self.assertEqual(len(raw.broker.frames), frames)


class RefusalTests(SynchronousTestCase):
    """
    A value that breaks a row of what a client sends gets the error the
    row names.
    """

    def probe(
        self,
        title: str,
        valid: Sequence[object],
        send: Callable[[list[object]], str],
    ) -> int:
        """
        Send C{valid} with each value of each row C{if bad} names broken
        in turn, and check the error.

        @param send: sends the values on a fresh connection, returns the
            qualified name of the error.
        @return: how many bad values were sent.
        """
        count = 0
        for row in rows(title):
            if not isinstance(row.key, int) or row.ifBad is None or row.pbType == "...":
                continue
            for bad in badValues(row):
                values = list(valid)
                values[row.key - 1] = bad
                self.assertEqual(send(values), errorOf(row), (title, row, bad))
                count += 1
        return count

    def test_login(self) -> None:
        """
        A bad kind or flags.
        """
        world = World()

        def send(values: list[object]) -> str:
            raw = world.bouncerConnection()
            return raw.refusal(raw.root, "login", *values, "n,,n=a,r=b")

        valid = build("login(kind, flags, mind, *first)", "scram-sha-256", 0, None)
        self.assertEqual(self.probe("login(kind, flags, mind, *first)", valid, send), 2)

    def test_answer(self) -> None:
        """
        A bad exchange number, and one not waiting.
        """
        world = World()
        proof = b"\0" * 32

        def send(values: list[object]) -> str:
            raw = world.bouncerConnection()
            world.scramFirst(raw, 0)
            return raw.refusal(raw.root, "answer", *values, proof)

        self.assertEqual(self.probe("answer(exchange, *values)", [1], send), 1)
        self.assertEqual(send([2]), ERRORS + "KeycardRefused")

    def test_scram(self) -> None:
        """
        Bad values of SCRAM's first message and answer.
        """
        world = World()

        def first(values: list[object]) -> str:
            raw = world.bouncerConnection()
            return raw.refusal(raw.root, "login", b"scram-sha-256", 0, None, *values)

        valid = build("scram-sha-256 first", "n,,n=alice,r=abc", b"salt", 4096)
        self.assertEqual(self.probe("scram-sha-256 first", valid, first), 6)

        def answer(values: list[object]) -> str:
            raw = world.bouncerConnection()
            _, (exchange, *_) = world.scramFirst(raw, 0)
            return raw.refusal(raw.root, "answer", exchange, *values)

        self.assertEqual(self.probe("scram-sha-256 answer", [b"\0" * 32], answer), 2)

    def test_hmacAndToken(self) -> None:
        """
        Bad values of HMAC's first message and answer, and of a token's.
        """
        world = World()
        kinds: list[tuple[str, str, list[object]]] = [
            ("hmac-sha256", "hmac-sha256 first", [HMAC_NAME]),
            ("token", "token first", [b"kc2.x.y"]),
        ]
        for kind, title, valid in kinds:

            def send(values: list[object], kind: str = kind) -> str:
                raw = world.bouncerConnection()
                return raw.refusal(raw.root, "login", kind.encode(), 0, None, *values)

            self.assertEqual(self.probe(title, valid, send), 2)

        def answer(values: list[object]) -> str:
            raw = world.bouncerConnection()
            challenge = raw.call(raw.root, "login", b"hmac-sha256", 0, None, HMAC_NAME)
            return raw.refusal(raw.root, "answer", challenge[1], *values)

        self.assertEqual(self.probe("hmac-sha256 answer", [b"mac"], answer), 2)

    def test_sessions(self) -> None:
        """
        Bad values of C{ticket}, C{open} and C{confirm}: each refused, the
        service's closing the connection.
        """
        world = World()
        bouncer, perspective, grant = world.ticket()

        def ticket(values: list[object]) -> str:
            return bouncer.refusal(perspective, "ticket", *values)

        keycardId = next(iter(world.bouncer.held))
        valid = build("ticket(serviceName, keycardId)", SERVICE, keycardId)
        self.assertEqual(self.probe("ticket(serviceName, keycardId)", valid, ticket), 4)

        def open(values: list[object]) -> str:
            raw = world.connect(world.serviceFace)
            error = raw.refusal(raw.root, "open", *values)
            self.assertTrue(raw.broker.disconnected)
            return error

        valid = build("open(ticketId, nonce)", grant["ticket"], b"n" * 32)
        self.assertEqual(self.probe("open(ticketId, nonce)", valid, open), 4)

        def confirm(values: list[object]) -> str:
            _, _, grant = world.ticket()
            raw, keys, _ = world.open(grant)
            results: list[Any] = []
            raw.root.callRemote("confirm", *values).addBoth(results.append)
            raw.broker.seal(keys[2], keys[3])
            raw.pump.flush()
            [failure] = results
            self.assertIsInstance(failure, Failure)
            self.assertTrue(raw.broker.disconnected)
            return str(failure.type.decode())

        valid = build("confirm(confirmation, mind)", b"q" * 32, None)
        self.assertEqual(self.probe("confirm(confirmation, mind)", valid, confirm), 2)
