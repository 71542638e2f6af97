"""
A keycard root over an application's own portal: its realm gives the
avatars, and its checkers check the keycards, those that hold passwords
through SCRAM (see L{CheckPasswordSCRAM}).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.portal import Portal
from twisted.internet.interfaces import IReactorTime

from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.keycard._interfaces import IChallenger
from twisted_keycard.scram._checkpassword import CheckPasswordSCRAM
from twisted_keycard.store._interfaces import IKeycardStore
from twisted_keycard.store._memory import MemoryStore

if TYPE_CHECKING:
    from twisted_keycard.pb._root import KeycardRoot

_R = TypeVar("_R", bound="KeycardRoot")


def portalCheckers(
    portal: Portal, *, key: bytes | None = None
) -> list[ICredentialsChecker]:
    """
    The checkers of C{portal} a bouncer can use: those that are keycard
    challengers already, as they are, and the one for
    L{IUsernamePassword} behind a L{CheckPasswordSCRAM}.

    @param key: the server key the SCRAM salts are made from (see
        L{CheckPasswordSCRAM}).
    @raise ValueError: if the portal has none of these.
    """
    found: list[ICredentialsChecker] = []
    for checker in portal.checkers.values():
        if IChallenger.providedBy(checker) and checker not in found:
            found.append(checker)
    passwords = portal.checkers.get(IUsernamePassword)
    if passwords is not None and not IChallenger.providedBy(passwords):
        found.append(CheckPasswordSCRAM(passwords, key=key))
    if not found:
        raise ValueError(
            "the portal has no checker of keycards nor of IUsernamePassword"
        )
    return found


def rootFromPortal(
    rootClass: type[_R],
    portal: Portal,
    *,
    clock: IReactorTime,
    key: bytes | None = None,
    store: IKeycardStore | None = None,
    requesterName: str = "requester",
    bouncerOptions: Mapping[str, Any] | None = None,
    **options: Any,
) -> _R:
    """
    A root over an application's portal, with a bouncer of its own built
    from the portal's checkers (see L{portalCheckers}).

    @param clock: the bouncer's and the root's clock.
    @param key: the server key the SCRAM salts are made from; random by
        default, or the mock secret of a store that keeps one when it is
        handed to the checkers.
    @param store: the bouncer's store; a L{MemoryStore} by default.
    @param bouncerOptions: further keyword arguments for L{Bouncer}
        (C{duration}, C{maxLifetime}, C{throttle}, ...).
    @param options: further keyword arguments for the root
        (C{renewEvery}, C{stockLogin}, ...).
    @raise ValueError: if the portal has no checker a bouncer can use.
    """
    bouncer = Bouncer(
        portalCheckers(portal, key=key),
        store if store is not None else MemoryStore(),
        clock=clock,
        **dict(bouncerOptions or {}),
    )
    return rootClass(bouncer, portal, requesterName, clock=clock, **options)
