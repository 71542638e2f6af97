"""
Tests for L{twisted_keycard.keycard._keycard}: one text per client host, so
that an IPv4 client of a dual-stack listener meets the IPv4 rules.
"""

from __future__ import annotations

from twisted.internet.address import IPv6Address
from twisted.internet.testing import StringTransport
from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard.bouncer._composite import networks, within
from twisted_keycard.keycard._keycard import addressGroup, normalizeAddress
from twisted_keycard.pb._root import peerAddress


class NormalizeTests(SynchronousTestCase):
    def test_ipv4Mapped(self) -> None:
        self.assertEqual(normalizeAddress("::ffff:127.0.0.1"), "127.0.0.1")
        self.assertEqual(normalizeAddress("::FFFF:7f00:1"), "127.0.0.1")

    def test_ipv6Canonical(self) -> None:
        self.assertEqual(normalizeAddress("2001:DB8:0:0::1"), "2001:db8::1")
        self.assertEqual(normalizeAddress("fe80::1%eth0"), "fe80::1")

    def test_notAnAddress(self) -> None:
        self.assertEqual(normalizeAddress("unix:/tmp/sock"), "unix:/tmp/sock")

    def test_group(self) -> None:
        self.assertEqual(addressGroup("192.0.2.7"), "192.0.2.7")
        self.assertEqual(addressGroup("::ffff:192.0.2.7"), "192.0.2.7")
        self.assertEqual(addressGroup("2001:db8:1:2:3:4:5:6"), "2001:db8:1:2::/64")
        self.assertEqual(
            addressGroup("2001:db8:1:2::9"), addressGroup("2001:db8:1:2:ffff::1")
        )
        self.assertIsNone(addressGroup(None))

    def test_denyRuleMatchesMappedPeer(self) -> None:
        """
        A rule for 127.0.0.0/8 covers an IPv4 peer seen by a dual-stack
        listener as C{::ffff:127.0.0.1}.
        """
        self.assertTrue(within("::ffff:127.0.0.1", networks(["127.0.0.0/8"])))

    def test_peerAddressNormalized(self) -> None:
        """
        The address a requester records for a dual-stack listener's IPv4
        peer is the IPv4 address.
        """
        broker = pb.Broker()
        broker.makeConnection(
            StringTransport(peerAddress=IPv6Address("TCP", "::ffff:10.1.2.3", 4321))
        )
        self.assertEqual(peerAddress(broker), "10.1.2.3")
