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
from twisted_keycard.web._forms import LoginPage, LogoutPage
from twisted_keycard.web._guard import KeycardGuard
from twisted_keycard.web._klein import protect
from twisted_keycard.web._options import GuardOptions, WebLogin
from twisted_keycard.web._peers import ProxyTrust
from twisted_keycard.web._refusals import WebRefusal
from twisted_keycard.web._resources import GuardedResource
from twisted_keycard.web._site import KeycardSite, SiteLimits
from twisted_keycard.web._tokenapi import TokenPage, WhoamiPage, httpFace

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
