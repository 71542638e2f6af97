"""
The service's HTTP face (C{--http}): the web guard serving C{POST /token},
C{GET /whoami}, C{POST /logout} and C{/login} for clients that do not speak
PB.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import MultiService
from twisted.cred.checkers import ICredentialsChecker

from twisted_keycard.bouncer._interfaces import IBouncer
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.scram._password import SCRAMPasswordChecker
from twisted_keycard.scram._server import SCRAMVerifiers
from twisted_keycard.service._endpoints import EndpointError, serverEndpoint
from twisted_keycard.service._startup import Listener, StartupError
from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._options import GuardOptions
from twisted_keycard.web._peers import ProxyTrust
from twisted_keycard.web._site import KeycardSite
from twisted_keycard.web._tokenapi import httpFace


def passwordCheckers(checkers: list[ICredentialsChecker]) -> list[ICredentialsChecker]:
    """
    What lets the HTTP face check plain passwords (Basic, the login form):
    nothing if a checker already takes password keycards (htpasswd:),
    else the first SCRAM verifiers file, checking passwords itself.
    """
    if any(PasswordKeycard in getattr(c, "keycardClasses", ()) for c in checkers):
        return []
    for checker in checkers:
        if isinstance(checker, SCRAMVerifiers):
            return [SCRAMPasswordChecker(checker)]
    return []


def serveHTTP(
    reactor: Any,
    endpoint: str,
    bouncer: IBouncer,
    requesterName: str,
    proxies: ProxyTrust,
    parent: MultiService,
    bouncerName: str,
) -> None:
    """
    Serve the HTTP face on C{endpoint}, as requester C{requesterName}.

    @raise StartupError: if C{endpoint} names no server endpoint.
    """
    try:
        listening = serverEndpoint(reactor, endpoint, "--http")
    except EndpointError as e:
        raise StartupError(str(e)) from None
    guard = KeycardGuard(
        bouncer,
        clock=reactor,
        requesterName=requesterName,
        options=GuardOptions(loginPath="/login", proxies=proxies),
    )
    site = KeycardSite(httpFace(guard))
    Listener(
        listening, site, endpoint, bouncerName, "HTTP face of bouncer"
    ).setServiceParent(parent)
