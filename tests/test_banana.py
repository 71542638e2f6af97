"""
Tests for L{twisted_keycard.pb._broker}: the linear decoder gives exactly the
items and errors of Twisted's own banana decoder.
"""

from __future__ import annotations

import random
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.spread import banana
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.pb._broker import (
    MAX_DEPTH,
    LinearDecoder,
    MalformedBanana,
    OverBudget,
)


class Recording(banana.Banana):
    """
    Twisted's banana, keeping what it decodes.
    """

    def __init__(self) -> None:
        super().__init__(isClient=1)
        self.items: list[Any] = []
        self.transport = StringTransport()
        self.connectionMade()
        self.currentDialect = b"pb"

    def expressionReceived(self, item: Any) -> None:
        self.items.append(item)


class LinearRecording(LinearDecoder):
    """
    The linear decoder, keeping what it decodes.
    """

    def __init__(self) -> None:
        super().__init__(isClient=1)
        self.items: list[Any] = []
        self.transport = StringTransport()
        self.connectionMade()
        self.currentDialect = b"pb"

    def expressionReceived(self, item: Any) -> None:
        self.items.append(item)


def encode(*items: Any) -> bytes:
    """
    The bytes Twisted's banana sends for these expressions, one after the
    other.
    """
    encoder = Recording()
    out: list[bytes] = []
    for item in items:
        encoder._encode(item, out.append)
    return b"".join(out)


def header(size: int, kind: bytes) -> bytes:
    prefix = bytearray()
    banana.int2b128(size, prefix.extend)
    return bytes(prefix) + kind


def sample(rng: random.Random, depth: int = 0) -> Any:
    """
    A random banana expression: lists, strings, ints of every size and sign,
    floats and vocabulary words.
    """
    kind = rng.randrange(7 if depth < 4 else 6)
    if kind == 0:
        return rng.randbytes(rng.choice([0, 1, 5, 127, 128, 300, 5000]))
    if kind == 1:
        return rng.randrange(-(2**31), 2**31)
    if kind == 2:
        return rng.choice([1, -1]) * rng.randrange(2**31, 2**200)
    if kind == 3:
        return rng.uniform(-1e9, 1e9)
    if kind == 4:
        return rng.choice([b"None", b"tuple", b"message", b"answer"])
    if kind == 5:
        return rng.choice([0, 127, 128, 2**14, -128])
    return [sample(rng, depth + 1) for _ in range(rng.randrange(6))]


class LinearDecoderTests(SynchronousTestCase):
    def feed(self, decoder: banana.Banana, data: bytes, rng: random.Random) -> None:
        at = 0
        while at < len(data):
            step = rng.choice([1, 2, 3, 7, 64, 1000, 70000])
            decoder.dataReceived(data[at : at + step])
            at += step

    def test_sameItemsAsTwisted(self) -> None:
        """
        Random expressions, cut into random chunks, decode to the same items
        as Twisted's decoder gives them (vocabulary words come back as the
        words, floats bit for bit).
        """
        rng = random.Random(5802)
        for _ in range(50):
            items = [sample(rng) for _ in range(rng.randrange(1, 20))]
            data = encode(*items)
            ours, theirs = LinearRecording(), Recording()
            self.feed(ours, data, random.Random(rng.random()))
            theirs.dataReceived(data)
            self.assertEqual(ours.items, theirs.items)
            self.assertEqual(len(ours.items), len(items))
            self.assertEqual(ours.pendingBytes, 0)

    def sent(self, coder: banana.Banana, item: Any) -> bytes:
        transport = StringTransport()
        coder.transport = transport
        coder.sendEncoded(item)
        return bytes(transport.value())

    def test_sameBytesAsTwisted(self) -> None:
        """
        The encoder writes exactly the bytes Twisted's writes, in the C{pb}
        dialect and before it is chosen (no vocabulary), for every kind of
        item including C{bool} and the int size boundaries.
        """
        rng = random.Random(7677)
        edges: list[Any] = [0, 127, 128, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1]
        edges += [True, False, 2**448 - 1, -(2**448) + 1, b"", [], ()]
        for dialect in (b"pb", None):
            ours, theirs = LinearRecording(), Recording()
            ours.currentDialect = theirs.currentDialect = dialect
            for item in edges + [sample(rng) for _ in range(200)]:
                self.assertEqual(self.sent(ours, item), self.sent(theirs, item))

    def test_sameEncodingErrors(self) -> None:
        """
        What Twisted's encoder refuses, this one refuses the same way.
        """
        tooLong = [0] * (banana.SIZE_LIMIT + 1)
        refused: list[Any] = [2**448, -(2**448), "text", None, {}, tooLong, [object()]]
        for item in refused:
            for coder in (LinearRecording(), Recording()):
                self.assertRaises(banana.BananaError, coder.sendEncoded, item)

    def test_manyItemsInOneChunk(self) -> None:
        """
        Ten thousand messages in one chunk all arrive, in order.
        """
        items = [[b"message", i, b"x" * 40] for i in range(10_000)]
        decoder = LinearRecording()
        decoder.dataReceived(encode(*items))
        self.assertEqual(decoder.items, items)

    def test_partialItemWaits(self) -> None:
        """
        A string whose bytes have not all come is kept until they do.
        """
        data = encode(b"y" * 1000)
        decoder = LinearRecording()
        decoder.dataReceived(data[:500])
        self.assertEqual(decoder.items, [])
        self.assertEqual(decoder.pendingBytes, 500)
        decoder.dataReceived(data[500:])
        self.assertEqual(decoder.items, [b"y" * 1000])
        self.assertEqual(decoder.pendingBytes, 0)

    def assertSameError(self, data: bytes, error: type[Exception]) -> None:
        for cls in (LinearRecording, Recording):
            self.assertRaises(error, cls().dataReceived, data)

    def test_prefixTooLong(self) -> None:
        """
        A header of more than 64 digits is refused, whether or not its type
        byte has come.
        """
        self.assertSameError(b"\x01" * 65, banana.BananaError)
        self.assertSameError(b"\x01" * 65 + banana.INT, banana.BananaError)
        decoder = LinearRecording()
        decoder.dataReceived(b"\x01" * 64)
        self.assertEqual(decoder.items, [])

    def test_stringTooLong(self) -> None:
        """
        A string header over banana's size limit is refused before its bytes
        come.
        """
        tooLong = banana.SIZE_LIMIT + 1
        self.assertSameError(header(tooLong, banana.STRING), banana.BananaError)
        self.assertSameError(header(tooLong, banana.LIST), banana.BananaError)

    def test_badTypeByte(self) -> None:
        """
        An unknown type byte is refused.
        """
        self.assertSameError(b"\x01\xff", NotImplementedError)

    def test_vocabularyOnlyInPB(self) -> None:
        """
        Vocabulary words are taken only once the C{pb} dialect is chosen.
        """
        for cls in (LinearRecording, Recording):
            decoder = cls()
            decoder.currentDialect = None
            self.assertRaises(NotImplementedError, decoder.dataReceived, b"\x01\x87")

    def test_unknownVocabulary(self) -> None:
        """
        A vocabulary number nobody defined is refused as bad banana (Twisted
        raises L{KeyError}).
        """
        self.assertRaises(KeyError, Recording().dataReceived, b"\x7f\x87")
        self.assertRaises(
            banana.BananaError, LinearRecording().dataReceived, b"\x7f\x87"
        )

    def test_badInputIsBananaError(self) -> None:
        """
        Every refusal is a L{banana.BananaError}, which a broker can tell
        from a bug.
        """
        for data in (
            b"\x01\xff",
            b"\x01" * 65,
            header(banana.SIZE_LIMIT + 1, banana.LIST),
        ):
            self.assertRaises(banana.BananaError, LinearRecording().dataReceived, data)
        decoder = LinearRecording()
        decoder.currentDialect = None
        self.assertRaises(banana.BananaError, decoder.dataReceived, b"\x01\x87")

    def test_depthBounded(self) -> None:
        """
        Lists open inside one another are refused past L{MAX_DEPTH}, before
        the message ends; up to it they decode.
        """
        opening = header(1, banana.LIST)
        deep = LinearRecording()
        deep.dataReceived(opening * MAX_DEPTH + encode(b"x"))
        nested: Any = deep.items[0]
        for _ in range(MAX_DEPTH - 1):
            nested = nested[0]
        self.assertEqual(nested, [b"x"])
        self.assertRaises(
            banana.BananaError,
            LinearRecording().dataReceived,
            opening * (MAX_DEPTH + 1),
        )

    def test_reentrantFeed(self) -> None:
        """
        Bytes fed while an item is being handled are decoded after it, in
        order.
        """
        first, second = encode(b"one"), encode(b"two", b"three")

        class Feeding(LinearRecording):
            def expressionReceived(self, item: Any) -> None:
                super().expressionReceived(item)
                if item == b"one":
                    self.dataReceived(second)

        decoder = Feeding()
        decoder.dataReceived(first)
        self.assertEqual(decoder.items, [b"one", b"two", b"three"])
        self.assertEqual(decoder.pendingBytes, 0)


class BudgetTests(SynchronousTestCase):
    """
    L{LinearDecoder.maxObjects} and L{LinearDecoder.maxMessage}: a message's
    items are counted as their list headers arrive, and a header that
    announces more than the budget can hold is refused at once.
    """

    def decoder(
        self, maxObjects: int | None = None, maxMessage: int | None = None
    ) -> LinearRecording:
        decoder = LinearRecording()
        decoder.maxObjects = maxObjects
        decoder.maxMessage = maxMessage
        return decoder

    def test_objectsCounted(self) -> None:
        """
        A message of exactly C{maxObjects} items (itself, and every item of
        every list in it) decodes; one more item is refused.
        """
        message = [b"a", [b"b", [], 1], 2.0]
        self.assertEqual(self.count(message), 7)
        fits = self.decoder(maxObjects=7)
        fits.dataReceived(encode(message, message))
        self.assertEqual(fits.items, [message, message])
        self.assertRaises(
            OverBudget, self.decoder(maxObjects=6).dataReceived, encode(message)
        )

    def count(self, item: Any) -> int:
        if isinstance(item, list):
            return 1 + sum(self.count(i) for i in item)
        return 1

    def test_headerRefusedAtOnce(self) -> None:
        """
        The header of a list of 600,001 items is refused as it arrives, over
        the budget of items and over what the bytes left could hold, before
        any item is built.
        """
        attack = header(600_001, banana.LIST) + header(0, banana.LIST)
        for decoder in (
            self.decoder(maxObjects=1024),
            self.decoder(maxMessage=64 * 1024),
        ):
            self.assertRaises(OverBudget, decoder.dataReceived, attack)
            self.assertEqual(decoder.listStack, [])
        # Unbounded, the same bytes are only the start of a list.
        unbounded = self.decoder()
        unbounded.dataReceived(attack)
        self.assertEqual(len(unbounded.listStack), 1)

    def test_bytesLeftPerMessage(self) -> None:
        """
        The bytes left are counted from the start of each message, across
        chunks: a list header may announce as many items as there are bytes
        left in the message, not one more; a string likewise.
        """
        first = encode([b"x" * 20])
        decoder = self.decoder(maxMessage=len(first) + 10)
        for _ in range(3):
            decoder.dataReceived(first[:3])
            decoder.dataReceived(first[3:])
        self.assertEqual(len(decoder.items), 3)
        # 2 bytes of header leave 8: a list of 8 empty lists fits.
        fits = header(8, banana.LIST) + header(0, banana.LIST) * 8
        decoder.maxMessage = 10
        decoder.dataReceived(fits)
        self.assertEqual(decoder.items[-1], [[]] * 8)
        self.assertRaises(OverBudget, decoder.dataReceived, header(9, banana.LIST))
        self.assertRaises(
            OverBudget,
            self.decoder(maxMessage=10).dataReceived,
            header(9, banana.STRING),
        )

    def test_budgetResetsPerMessage(self) -> None:
        """
        Each message has its own budget of items.
        """
        decoder = self.decoder(maxObjects=3)
        decoder.dataReceived(encode([1, 2]) * 50)
        self.assertEqual(decoder.items, [[1, 2]] * 50)

    def test_depthAttribute(self) -> None:
        """
        L{LinearDecoder.maxDepth} bounds nesting per decoder.
        """
        decoder = self.decoder()
        decoder.maxDepth = 3
        decoder.dataReceived(encode([[[1]]]))
        self.assertRaises(MalformedBanana, decoder.dataReceived, encode([[[[1]]]]))
