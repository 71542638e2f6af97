"""
The pluggable roles of twisted-keycard, as zope interfaces.

Methods here have no C{self}; each docstring says what the returned
L{Deferred} fires with and how it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twisted.cred.credentials import ICredentials
from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from ._record import IssuedKeycard, Revocation
    from .keycard import Keycard
    from .keyring import Keyring


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


class IRequester(Interface):
    """
    What a bouncer calls back on the requester that holds keycards.
    """

    def expireKeycardIds(keycardIds: Sequence[str]) -> Deferred[None] | None:
        """
        The bouncer has expired or revoked these keycard ids: drop the
        clients that hold them.

        @param keycardIds: a sequence of keycard ids.
        @return: C{None} or a L{Deferred} firing when done.
        """

    def keycardIds() -> list[str]:
        """
        The ids of the keycards this requester's clients hold now, for a
        bouncer that lost track of them (a restart, a reconnection).
        """


class IBouncer(Interface):
    """
    Checks keycards, issues keycard ids, and expires them.
    """

    name = Attribute("The bouncer's name, set in the keycards it checks.")
    keycardClasses = Attribute("The keycard classes this bouncer takes: a tuple.")

    def authenticate(keycard: Keycard) -> Deferred[Keycard]:
        """
        Take one message of an exchange.

        @return: a L{Deferred} firing with a keycard: L{KeycardState.REQUESTING}
            with a challenge to answer, or L{KeycardState.AUTHENTICATED} with
            C{avatarId}, C{duration} and C{expires} set.  It fails with
            L{twisted_keycard.error.KeycardRefused} for any refusal, or
            L{twisted_keycard.error.KeycardDenied} when the bouncer will not
            take the keycard now.
        """

    def registerRequester(name: str, requester: IRequester) -> None:
        """
        Tell the bouncer which L{IRequester} to call back for the keycards
        issued through requester C{name}.
        """

    def unregisterRequester(name: str) -> None:
        """
        Forget the requester called C{name}.
        """

    def removeKeycardId(keycardId: str) -> Deferred[bool]:
        """
        The client that held this keycard has gone: forget the keycard
        without calling back its requester.

        @return: a L{Deferred} firing with C{True} if the id was issued and
            is now removed, C{False} if it was unknown.
        """

    def expireKeycardIds(keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Expire these keycards now and tell the requesters that hold them.

        @return: a L{Deferred} firing with the number of ids expired.
        """

    def keepAlive(requesterName: str, keycardIds: Sequence[str]) -> Deferred[int]:
        """
        Renew the keycards that requester C{requesterName} still holds, each
        for its duration from now.  Ids issued through another requester are
        left alone.

        @return: a L{Deferred} firing with the number of keycards renewed.
        """


class IKeycardStore(Interface):
    """
    The store of valid (issued) keycards.  Every method returns a
    L{Deferred}; a backend that can fail (a database) fails it.
    """

    def add(record: IssuedKeycard) -> Deferred[None]:
        """
        Record an L{twisted_keycard.store.IssuedKeycard}.

        @return: a L{Deferred} firing with C{None} once it is recorded.
        @raise KeyError: (as a failure) if a keycard with that id is already
            recorded.
        """

    def get(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        @return: a L{Deferred} firing with the record for C{keycardId}, or
            C{None}.
        """

    def remove(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        @return: a L{Deferred} firing with the removed record, or C{None} if
            there was none.
        """

    def release(keycardId: str) -> Deferred[IssuedKeycard | None]:
        """
        The client holding a keycard left, but the keycard's token stays
        valid: keep the record (for listing and revocation) with C{held}
        false and no seat, so it counts against no quota or pool.

        @return: a L{Deferred} firing with the updated record, or C{None}.
        """

    def renew(keycardId: str, expires: float) -> Deferred[IssuedKeycard | None]:
        """
        Set the expiry of a recorded keycard.

        @return: a L{Deferred} firing with the updated record, or C{None} if
            there was none.
        """

    def addWithin(
        record: IssuedKeycard, maxPerAvatar: int | None, poolSize: int | None
    ) -> Deferred[None]:
        """
        Record a keycard if, atomically, its avatar holds fewer than
        C{maxPerAvatar} keycards and, when C{record.seatPool} is set, that
        pool has fewer than C{poolSize} seats taken.  Only held keycards
        that have not expired at C{record.issued} count.  C{None} means no
        limit.

        Several processes sharing the store never exceed either limit.

        @return: a L{Deferred} firing with C{None} once it is recorded, or
            failing with L{twisted_keycard.error.QuotaExceeded}.
        """

    def byParent(parentId: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records whose
            C{parentId} is C{parentId}.
        """

    def flushExpired(when: float) -> Deferred[int]:
        """
        Remove the records whose expiry is at or before C{when}.

        @return: a L{Deferred} firing with the number removed.
        """

    def byAvatar(avatarId: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records issued to
            C{avatarId}.
        """

    def byRequester(requesterName: str) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records issued
            through requester C{requesterName}.
        """

    def expiredBefore(when: float) -> Deferred[list[IssuedKeycard]]:
        """
        @return: a L{Deferred} firing with a list of the records whose
            expiry is at or before C{when}.
        """

    def count() -> Deferred[int]:
        """
        @return: a L{Deferred} firing with the number of records.
        """


class IRevocationStore(Interface):
    """
    The store of revoked keycard ids.  A revocation stays until the keycard
    would have expired anyway; several bouncers sharing the store see every
    revocation.
    """

    def revoke(revocations: Sequence[Revocation]) -> Deferred[int]:
        """
        Record revocations.  They are durable (on disk, for a persistent
        backend) before the L{Deferred} fires.  Revoking an id twice keeps
        the later expiry.

        @return: a L{Deferred} firing with the number of ids newly revoked.
        """

    def isRevoked(keycardId: str) -> Deferred[bool]:
        """
        @return: a L{Deferred} firing with whether C{keycardId} is revoked.
        """

    def revocationsOf(keycardIds: Sequence[str]) -> Deferred[list[Revocation]]:
        """
        The revocations of those of C{keycardIds} that are revoked, in one
        look-up.  Besides keycard ids, a revocation may be keyed
        C{avatar:<avatar id>} or C{requester:<name>}: every token issued to
        that avatar or through that requester before its C{revokedAt} is
        refused.

        @return: a L{Deferred} firing with a list of L{Revocation} records.
        """

    def revokedSince(cursor: int, limit: int) -> Deferred[tuple[list[Revocation], int]]:
        """
        The revocations recorded after C{cursor}, oldest first, at most
        C{limit} of them, for other processes to follow.  Start with cursor
        C{0}; pass back the cursor returned.

        @return: a L{Deferred} firing with C{(revocations, newCursor)}.
        """

    def flushRevocations(when: float) -> Deferred[int]:
        """
        Remove the revocations whose expiry is at or before C{when}.

        @return: a L{Deferred} firing with the number removed.
        """


class IThrottleStore(Interface):
    """
    Counts of failed logins, per account and per address, shared by the
    bouncers on a store.
    """

    def recordFailure(keys: Sequence[str], when: float) -> Deferred[None]:
        """
        Record one failure at C{when} for each key (C{account:NAME},
        C{address:HOST}).
        """

    def failuresSince(keys: Sequence[str], since: float) -> Deferred[dict[str, int]]:
        """
        @return: a L{Deferred} firing with the number of failures recorded
            after C{since}, for each key.
        """

    def flushFailures(before: float) -> Deferred[int]:
        """
        Forget the failures recorded at or before C{before}.

        @return: a L{Deferred} firing with the number forgotten.
        """


class IKeyringStore(Interface):
    """
    Where the keyring that signs tokens is kept, so that bouncers sharing a
    store share it.
    """

    def loadKeyring() -> Deferred[Keyring | None]:
        """
        @return: a L{Deferred} firing with the stored L{Keyring}, or C{None}
            if none was stored yet.
        """

    def saveKeyring(keyring: Keyring) -> Deferred[None]:
        """
        Replace the stored keyring, durably, as one change.

        @return: a L{Deferred} firing with C{None} once it is stored.
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
