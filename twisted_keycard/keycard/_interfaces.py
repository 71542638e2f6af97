"""
The interfaces of one keycard kind: the bouncer's side of an exchange,
the challenger that primes it, and the client's answerer.

Methods here have no C{self}; each docstring says what the returned
L{Deferred} fires with and how it fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.cred.credentials import ICredentials
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted_keycard.keycard._channel import ClientChannel
    from twisted_keycard.keycard._keycard import Keycard


class IExchange(ICredentials):
    """
    The bouncer's side of one exchange: the challenge it sent and everything
    it must compare later.  It never leaves the bouncer.  Once answered it is
    the credentials handed to a L{twisted.cred.checkers.ICredentialsChecker}.
    """

    def challenge(keycard: Keycard) -> bool:
        """
        Write the challenge into the keycard about to go back to the client.

        @return: C{True} if the client must answer before the check, C{False}
            if the keycard already holds everything and can be checked now.
        """

    def answer(keycard: Keycard) -> None:
        """
        Take the client's answer from the keycard it sent back.  Only the
        answer fields are read; everything else comes from this object.

        @raise twisted_keycard.error.ProtocolError: if the answer is malformed
            or does not belong to this exchange.
        """

    def conclude(keycard: Keycard) -> None:
        """
        After a successful check, write the bouncer's own proof (if the
        exchange has one) into the keycard about to go back to the client.
        """


class IChallenger(Interface):
    """
    Starts exchanges for some keycard classes.  Usually the same object as
    the checker, because building a challenge needs the stored data (SCRAM
    needs the salt and the iteration count).
    """

    keycardClasses = Attribute(
        "The keycard classes this challenger starts exchanges for: a tuple."
    )

    def prime(keycard: Keycard) -> Deferred[IExchange]:
        """
        Start an exchange for the first keycard of a client.

        For an unknown user this primes a mock exchange that cannot be told
        from a real one and fails at the check.

        @return: a L{Deferred} firing with an L{IExchange}, or failing with
            L{twisted_keycard.error.ProtocolError} if the keycard is
            malformed.
        """


class IAnswerer(Interface):
    """
    The client's side of one keycard kind: makes the first keycard, answers
    challenges, and checks the server's proof.
    """

    keycardClass = Attribute("The keycard class this answerer produces.")

    def start() -> Keycard:
        """
        @return: the first keycard of an exchange.
        """

    def answer(keycard: Keycard) -> Keycard:
        """
        Answer a challenge.

        @param keycard: the keycard the server sent back, REQUESTING.
        @return: the keycard to send back.
        @raise twisted_keycard.error.ProtocolError: for a malformed or
            unacceptable challenge.
        """

    def finish(keycard: Keycard) -> None:
        """
        Check the server's proof in the AUTHENTICATED keycard.

        @raise twisted_keycard.error.ServerAuthenticationFailed: if the
            server did not prove its identity.
        """


class IChannelBindingAnswerer(IAnswerer):
    """
    An answerer whose exchange can bind to the TLS connection it runs over
    (SCRAM-SHA-256-PLUS), so that a relay between client and server is
    caught.  A client that knows the connection calls L{startBound} in
    place of C{start}.
    """

    def startBound(channel: ClientChannel) -> Keycard:
        """
        Begin an exchange over a connection.

        @param channel: the connection's channel binding data, and whether
            the server said it binds this kind.
        @return: the first keycard of the exchange.
        @raise twisted_keycard.error.ProtocolError: if the answerer insists
            on a binding this connection cannot give.
        """
