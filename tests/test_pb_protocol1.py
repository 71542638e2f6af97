"""
A client of keycard protocol 2 meeting a server of protocol 1
(twisted-keycard 0.1, as during an upgrade): it is refused with a reason
that names the protocol, not "malformed message" or "takes none of these
kinds".
"""

from __future__ import annotations

from typing import Any

from twisted.spread import pb
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard import KeycardRefused
from twisted_keycard.error import MalformedMessage
from twisted_keycard.pb import refuseProtocol1
from twisted_keycard.scram import SCRAMAnswerer
from twisted_keycard.testing import connectToRoot

#: The kinds a 0.1 server lists: its keycard classes' type tags.
PROTOCOL_1_KINDS = ["twisted_keycard.scram-sha-256", "twisted_keycard.token"]


class Protocol1Root(pb.Root):
    """
    What a twisted-keycard 0.1 server answers (tried against one: its
    C{ConnectionGuard} refused a protocol 2 login's C{TypeError} with
    C{MalformedMessage("message refused")}).
    """

    def __init__(self, kinds: list[str]) -> None:
        self.kinds = kinds
        self.logins = 0

    def remote_keycardClasses(self) -> list[str]:
        return self.kinds

    def remote_login(self, *args: Any) -> None:
        self.logins += 1
        raise MalformedMessage("message refused")


class Protocol1Tests(SynchronousTestCase):
    def login(self, root: Protocol1Root, askServer: bool) -> Any:
        connection = connectToRoot(root)
        self.addCleanup(connection.disconnect)
        return connection.loginWithKeycard(
            [SCRAMAnswerer("alice", "pw")], askServer=askServer
        )

    def test_login(self) -> None:
        """
        The server refuses the first message as malformed: the client asks
        its kinds, and refuses to go on, naming the protocol.
        """
        root = Protocol1Root(PROTOCOL_1_KINDS)
        failure = self.failureResultOf(self.login(root, False), KeycardRefused)
        self.assertEqual(
            failure.getErrorMessage(),
            "the server speaks keycard protocol 1 (twisted-keycard 0.1); this"
            " client speaks protocol 2: upgrade the server to twisted-keycard"
            " 0.2 or later",
        )
        self.assertEqual(root.logins, 1)

    def test_askServer(self) -> None:
        """
        Asked first, the kinds tell at once: no login is sent.
        """
        root = Protocol1Root(PROTOCOL_1_KINDS)
        failure = self.failureResultOf(self.login(root, True), KeycardRefused)
        self.assertIn("keycard protocol 1", failure.getErrorMessage())
        self.assertEqual(root.logins, 0)

    def test_protocol2Malformed(self) -> None:
        """
        A protocol 2 server that refuses a message as malformed is not
        taken for protocol 1: its error reaches the caller as it is.
        """
        root = Protocol1Root(["scram-sha-256", "token", "myapp.passphrase"])
        failure = self.failureResultOf(self.login(root, False), MalformedMessage)
        self.assertEqual(failure.getErrorMessage(), "message refused")


class RefuseProtocol1Tests(SynchronousTestCase):
    def test_kinds(self) -> None:
        """
        Only this library's type tags, which protocol 2 lists without their
        prefix, mark a protocol 1 server; another library's tags do not.
        """
        self.assertRaises(KeycardRefused, refuseProtocol1, PROTOCOL_1_KINDS)
        self.assertRaises(
            KeycardRefused, refuseProtocol1, ["myapp.passphrase", PROTOCOL_1_KINDS[1]]
        )
        refuseProtocol1(["scram-sha-256", "scram-sha-256-plus", "token"])
        refuseProtocol1(["myapp.passphrase"])
        refuseProtocol1([])
