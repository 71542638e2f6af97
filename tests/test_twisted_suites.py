"""
Twisted's own banana and Perspective Broker test cases, run against the
project's codec: L{LinearDecoder} for banana, L{KeycardBroker} for every
broker PB's factories build; and a check that those brokers decode with
our L{BananaDecoder}.

Each class below is one of Twisted's, with our class swapped in, so a new
Twisted release tests our decoder with whatever cases it adds.  Left out:
Twisted's cases that never decode banana nor build a broker (L{MathTests},
L{GlobalCoderTests}, L{SpreadUtilTests}, L{FailureJellyingTests},
C{test_jelly}); they would test Twisted, not us.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from twisted.spread import pb
from twisted.spread.test import test_banana as twistedBanana
from twisted.spread.test import test_pb as twistedPB
from twisted.spread.test import test_pbfailure as twistedFailure
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.pb import BananaDecoder, KeycardBroker, LinearDecoder

# Banana


class BananaTests(twistedBanana.BananaTests):
    """
    Twisted's banana tests, with L{LinearDecoder} as the codec.
    """

    encClass = LinearDecoder


class DialectTests(twistedBanana.DialectTests):
    """
    Twisted's dialect tests, with L{LinearDecoder} as the codec.
    """

    encClass = LinearDecoder

    def test_receiveIllegalPb(self) -> None:
        super().test_receiveIllegalPb()

    # A skip, not a todo: pytest reports a trial todo as a plain pass.
    test_receiveIllegalPb.skip = (  # type: ignore[attr-defined]
        "deviation: an unknown vocabulary number is a MalformedBanana (a "
        "BananaError), not Twisted's KeyError, so that a KeycardBroker drops "
        "the peer with one warning instead of a traceback; "
        "tests.test_banana.LinearDecoderTests.test_unknownVocabulary checks it"
    )


# Perspective Broker


def useKeycardBrokers(case: SynchronousTestCase) -> None:
    """
    Make L{pb.PBServerFactory}, L{pb.PBClientFactory} and their subclasses
    build L{KeycardBroker}s until C{case} ends.
    """
    case.patch(pb.PBServerFactory, "protocol", KeycardBroker)
    case.patch(pb.PBClientFactory, "protocol", KeycardBroker)


class KeycardBrokers(SynchronousTestCase):
    """
    A mixin for Twisted's PB test cases: every broker they build is a
    L{KeycardBroker}.
    """

    def setUp(self) -> Any:
        useKeycardBrokers(self)
        # Some of Twisted's setUps return a Deferred; pass it on.
        return cast(Any, super()).setUp()


class NewStyleTests(KeycardBrokers, twistedPB.NewStyleTests):
    """
    Twisted's copyable round trips, over L{KeycardBroker}s.
    """


@pytest.mark.integration
class NewStyleCachedTests(KeycardBrokers, twistedPB.NewStyleCachedTests):
    """
    Twisted's cacheable round trip, over L{KeycardBroker}s on loopback TCP.
    """


class BrokerTests(KeycardBrokers, twistedPB.BrokerTests):
    """
    Twisted's references, copies, caches and publishables, over
    L{KeycardBroker}s.
    """


class PagingTests(KeycardBrokers, twistedPB.PagingTests):
    """
    Twisted's paging, over L{KeycardBroker}s.
    """


class DisconnectionTests(KeycardBrokers, twistedPB.DisconnectionTests):
    """
    Twisted's disconnection callbacks, over L{KeycardBroker}s.
    """


class NewCredLeakTests(KeycardBrokers, twistedPB.NewCredLeakTests):
    """
    Twisted's check that a lost login leaks no avatar, over L{KeycardBroker}s.
    """


class NewCredTests(KeycardBrokers, twistedPB.NewCredTests):
    """
    Twisted's twisted.cred logins, over L{KeycardBroker}s.
    """


@pytest.mark.integration
class NSPTests(KeycardBrokers, twistedPB.NSPTests):
    """
    Twisted's non-Avatar perspectives, over L{KeycardBroker}s on loopback TCP.
    """


class PBWithSecurityOptionsTests(KeycardBrokers, twistedPB.PBWithSecurityOptionsTests):
    """
    Twisted's jelly security options, passed on to L{KeycardBroker}s.
    """


class PBFailureTests(KeycardBrokers, twistedFailure.PBFailureTests):
    """
    Twisted's remote failures, over L{KeycardBroker}s.
    """


class PBFailureUnsafeTests(KeycardBrokers, twistedFailure.PBFailureUnsafeTests):
    """
    Twisted's remote failures with tracebacks, over L{KeycardBroker}s.
    """


class SwappedInTests(SynchronousTestCase):
    """
    The classes above really run our code.
    """

    def test_factoriesBuildKeycardBrokers(self) -> None:
        """
        Every factory Twisted's PB tests use builds a L{KeycardBroker}.
        """
        useKeycardBrokers(self)
        root = pb.Root()
        for factory in [
            pb.PBServerFactory(root),
            pb.PBClientFactory(),
            twistedPB.ConnectionNotifyServerFactory(root),
            twistedFailure.SaveProtocolServerFactory(root),
        ]:
            self.assertIsInstance(factory.buildProtocol(None), KeycardBroker)

    def test_bytesGoThroughBananaDecoder(self) -> None:
        """
        In a Twisted PB test run here, both brokers decode what they receive
        with a L{BananaDecoder} of their own, and write with
        L{KeycardBroker.sendEncoded}.
        """
        decoders: set[int] = set()
        senders: set[int] = set()
        feed = BananaDecoder.feed
        send = KeycardBroker.sendEncoded

        def fed(decoder: BananaDecoder, chunk: bytes) -> None:
            self.assertIsInstance(decoder.protocol, KeycardBroker)
            decoders.add(id(decoder.protocol))
            feed(decoder, chunk)

        def sent(broker: KeycardBroker, obj: object) -> None:
            senders.add(id(broker))
            send(broker, obj)

        self.patch(BananaDecoder, "feed", fed)
        self.patch(KeycardBroker, "sendEncoded", sent)
        result = TestResult()
        NewStyleTests("test_newStyle").run(result)
        self.assertTrue(result.wasSuccessful(), result.errors + result.failures)
        self.assertEqual(len(decoders), 2)
        self.assertEqual(senders, decoders)

    def test_ownCodec(self) -> None:
        """
        L{KeycardBroker} defines the banana methods it replaces itself, so
        no method a Twisted release adds to L{pb.Broker} or
        L{banana.Banana} can come before them.
        """
        for name in ["dataReceived", "sendEncoded"]:
            self.assertIn(name, vars(KeycardBroker))
