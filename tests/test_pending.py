"""
Tests for the bouncer's exchanges in progress
(L{twisted_keycard.bouncer._login}): bounded per connection, per address
group and in all, fair among address groups, and ended with their
connection, alone, through a L{Bouncer}, and through a L{KeycardRoot}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import Bouncer, KeycardDenied, KeycardRefused, MemoryStore
from twisted_keycard.bouncer import ExchangeLimits
from twisted_keycard.bouncer._login import PendingExchange, PendingExchanges
from twisted_keycard.testing import KeycardTestServer

from ._passphrase import (
    PassphraseAnswerer,
    PassphraseChecker,
    PassphraseKeycard,
    sendFirst,
)
from ._realm import AvatarRealm


class PendingExchangesTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.dropped: list[PendingExchange] = []
        self.pending = PendingExchanges(
            self.clock,
            ExchangeLimits(
                timeout=10.0,
                maxPending=6,
                maxPendingPerAddress=4,
                maxPendingPerConnection=2,
            ),
            self.dropped.append,
        )
        self.ids = 0

    def reserve(
        self, address: str | None = "10.0.0.1", connection: object = None
    ) -> str:
        self.ids += 1
        keycardId = f"k{self.ids}"
        self.pending.reserve(keycardId, "t", address, "r", connection)
        return keycardId

    def assertBusy(
        self, address: str | None = "10.0.0.1", connection: object = None
    ) -> None:
        self.assertRaises(
            KeycardDenied,
            self.pending.reserve,
            "refused",
            "t",
            address,
            "r",
            connection,
        )

    def test_perConnection(self) -> None:
        """
        A connection has at most C{maxPendingPerConnection} exchanges in
        progress; another connection from the same address has its own.
        """
        self.reserve(connection="c1")
        self.reserve(connection="c1")
        self.assertBusy(connection="c1")
        self.reserve(connection="c2")
        self.assertEqual(self.pending.onConnection("c1"), 2)

    def test_noConnectionPerAddressOnly(self) -> None:
        """
        Without a connection, only the address bound applies.
        """
        for _ in range(4):
            self.reserve()
        self.assertBusy()
        self.reserve("10.0.0.2")

    def test_ipv6Group(self) -> None:
        """
        IPv6 addresses of one /64 count as one client.
        """
        for i in range(4):
            self.reserve(f"2001:db8:1:2::{i + 1}")
        self.assertBusy("2001:db8:1:2:ffff::1")
        self.reserve("2001:db8:1:3::1")

    def test_mappedIPv4Group(self) -> None:
        """
        An IPv4 client seen through a dual-stack listener counts as its
        IPv4 address.
        """
        for _ in range(4):
            self.reserve("192.0.2.7")
        self.assertBusy("::ffff:192.0.2.7")

    def test_abandon(self) -> None:
        """
        The exchanges of a connection that is gone are dropped, each
        reported, and free their places.
        """
        first = self.reserve(connection="c1")
        second = self.reserve(connection="c1")
        other = self.reserve(connection="c2")
        self.assertEqual(self.pending.abandon("c1"), 2)
        self.assertEqual(len(self.dropped), 2)
        self.assertNotIn(first, self.pending)
        self.assertNotIn(second, self.pending)
        self.assertIn(other, self.pending)
        self.reserve(connection="c1")
        self.assertEqual(self.pending.abandon("unknown"), 0)

    def test_timeoutReported(self) -> None:
        """
        An exchange dropped at its timeout is reported; one taken is not.
        """
        late = self.reserve()
        taken = self.reserve()
        self.assertIsNotNone(self.pending.take(taken))
        self.clock.advance(10.0)
        self.pending.purge()
        self.assertNotIn(late, self.pending)
        self.assertEqual(len(self.dropped), 1)
        self.assertEqual(len(self.pending), 0)

    def test_fairShareWhenFull(self) -> None:
        """
        When every place is taken, an address group with fewer exchanges
        than the largest takes the place of that group's oldest one, which
        is reported; the largest group itself is refused.
        """
        oldest = self.reserve("10.0.0.1")
        for _ in range(3):
            self.reserve("10.0.0.1")
        self.reserve("10.0.0.2")
        self.reserve("10.0.0.2")
        self.assertEqual(len(self.pending), 6)
        newcomer = self.reserve("10.0.0.3")
        self.assertNotIn(oldest, self.pending)
        self.assertIn(newcomer, self.pending)
        self.assertEqual([e.address for e in self.dropped], ["10.0.0.1"])
        self.assertEqual(len(self.pending), 6)
        # 10.0.0.1 and 10.0.0.2 now hold 3 and 2; 10.0.0.1 is the largest.
        self.assertBusy("10.0.0.1")
        self.reserve("10.0.0.2")
        self.assertBusy("10.0.0.2")


class BouncerConnectionTests(SynchronousTestCase):
    """
    A bouncer told which connection each keycard came on.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.bouncer = Bouncer(
            [PassphraseChecker({"alice": "pw"})],
            MemoryStore(),
            clock=self.clock,
            limits=ExchangeLimits(timeout=10.0, maxPendingPerConnection=2),
        )

    def first(self, connection: object) -> PassphraseKeycard:
        keycard = PassphraseKeycard(
            username="alice", address="10.0.0.1", requesterName="r"
        )
        result = self.successResultOf(self.bouncer.authenticate(keycard, connection))
        assert isinstance(result, PassphraseKeycard)
        return result

    def test_boundPerConnection(self) -> None:
        self.first("c1")
        self.first("c1")
        keycard = PassphraseKeycard(username="alice", address="10.0.0.1")
        self.failureResultOf(self.bouncer.authenticate(keycard, "c1"), KeycardDenied)
        self.first("c2")

    def test_connectionLostFrees(self) -> None:
        """
        Once the connection is gone, its challenges cannot be answered and
        their places are free.
        """
        challenged = self.first("c1")
        self.first("c1")
        self.bouncer.connectionLost("c1")
        self.assertEqual(len(self.bouncer._authentication.pending), 0)
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        self.failureResultOf(self.bouncer.authenticate(answered, "c1"), KeycardRefused)

    def test_answerOnAnotherConnection(self) -> None:
        """
        A challenge sent on one connection is answered on that one only.
        """
        challenged = self.first("c1")
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        self.failureResultOf(self.bouncer.authenticate(answered, "c2"), KeycardRefused)

    def test_answerOnSameConnection(self) -> None:
        challenged = self.first("c1")
        answered = PassphraseAnswerer("alice", "pw").answer(challenged)
        result = self.successResultOf(self.bouncer.authenticate(answered, "c1"))
        self.assertEqual(result.avatarId, "alice")
        self.assertEqual(self.bouncer._authentication.pending.onConnection("c1"), 0)


class RootConnectionTests(SynchronousTestCase):
    """
    A L{KeycardRoot} tells the bouncer which connection each keycard came
    on, and when it is gone.
    """

    def test_disconnectFreesPlaces(self) -> None:
        server = KeycardTestServer.build(
            [PassphraseChecker({"alice": "pw"})],
            AvatarRealm(),
            limits=ExchangeLimits(maxPendingPerConnection=2),
        )
        connection = server.connect()
        root = self.successResultOf(connection.factory.getRootObject())
        calls = [sendFirst(root, PassphraseKeycard(username="alice")) for _ in range(3)]
        connection.flush()
        self.successResultOf(calls[0])
        self.successResultOf(calls[1])
        self.failureResultOf(calls[2], KeycardDenied)
        self.assertEqual(len(server.bouncer._authentication.pending), 2)
        connection.disconnect()
        self.assertEqual(len(server.bouncer._authentication.pending), 0)
        again = server.connect()
        login = again.login([PassphraseAnswerer("alice", "pw")])
        self.assertIsNotNone(self.successResultOf(login))
