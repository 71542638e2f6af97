"""
The web guard: the bouncer in front of twisted.web and Klein applications.

L{KeycardGuard} checks each request with a bouncer (in-process or remote):
C{Authorization: Bearer} tokens, C{Basic} over HTTPS, C{SCRAM-SHA-256} over
HTTP (RFC 7804), and cookie sessions from a login form, with CSRF
protection.  L{GuardedResource} serves a realm's avatar resources behind
it, L{protect} guards Klein routes, L{KeycardSite} bounds what a request
may carry, and L{KeycardHTTPClient} is the client side on treq.
"""

from twisted_keycard.web._client import KeycardHTTPClient, TokenGrant
from twisted_keycard.web._guard import GuardedResource, KeycardGuard, protect
from twisted_keycard.web._http import GuardOptions, ProxyTrust, WebLogin, WebRefusal
from twisted_keycard.web._pages import (
    LoginPage,
    LogoutPage,
    TokenPage,
    WhoamiPage,
    httpFace,
)
from twisted_keycard.web._site import KeycardSite, SiteLimits

__all__ = [
    "GuardOptions",
    "GuardedResource",
    "KeycardGuard",
    "KeycardHTTPClient",
    "KeycardSite",
    "LoginPage",
    "LogoutPage",
    "ProxyTrust",
    "SiteLimits",
    "TokenGrant",
    "TokenPage",
    "WebLogin",
    "WebRefusal",
    "WhoamiPage",
    "httpFace",
    "protect",
]
