"""
The web guard's settings, as a value, and what it tells a resource about
the login of the request it serves.
"""

from __future__ import annotations

import attrs

from twisted_keycard.web._headers import BASIC, BEARER, SCRAM
from twisted_keycard.web._peers import ProxyTrust

#: What a session cookie is called by default: the C{__Host-} prefix makes
#: browsers take it only over HTTPS, for the whole host, with no Domain.
COOKIE = "__Host-keycard"
#: Where a session's CSRF token goes in a form, and in a header.
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
#: The scheme of a request authenticated by its session cookie.
SESSION = "session"

_count = [attrs.validators.instance_of(int), attrs.validators.ge(1)]


def _schemes(instance: object, attribute: object, value: tuple[str, ...]) -> None:
    unknown = set(value) - {BEARER, SCRAM, BASIC}
    if unknown:
        raise ValueError(f"unknown schemes {sorted(unknown)}")


@attrs.frozen
class GuardOptions:
    """
    How a L{KeycardGuard} meets clients.

    @ivar realm: the C{realm} of its challenges.
    @ivar schemes: the C{Authorization} schemes taken, in the order its 401
        lists them: C{"Bearer"} (tokens), C{"SCRAM-SHA-256"} (RFC 7804),
        C{"Basic"} (offered and taken over HTTPS only).  Listing Basic makes
        browsers show their own password prompt on a 401.
    @ivar loginPath: where the login form (L{LoginPage}) is mounted, if
        there is one: a 401 to a browser then links to it.
    @ivar maxSessions: cookie sessions held at once; a new one pushes out
        the least recently used.
    @ivar maxCached: Bearer and Basic logins held at once, so that repeated
        credentials do not cost a check each; the same rule.
    @ivar retryAfter: seconds the C{Retry-After} of a 429 (throttled) or a
        503 (bouncer unavailable) says.
    @ivar cookieName: the session cookie's name.
    @ivar proxies: the reverse proxies whose forwarding headers count.
    """

    realm: str = "keycard"
    schemes: tuple[str, ...] = attrs.field(
        default=(BEARER, SCRAM, BASIC), converter=tuple, validator=_schemes
    )
    loginPath: str | None = None
    maxSessions: int = attrs.field(default=10_000, validator=_count)
    maxCached: int = attrs.field(default=10_000, validator=_count)
    retryAfter: int = attrs.field(default=60, validator=_count)
    cookieName: str = COOKIE
    proxies: ProxyTrust = ProxyTrust()


@attrs.frozen
class WebLogin:
    """
    The login of one request, as the guard checked it; a realm gets it as
    the C{mind} of L{IRealm.requestAvatar}.

    @ivar avatarId: who logged in.
    @ivar keycardId: the keycard the guard holds for it.
    @ivar scheme: how: C{"Bearer"}, C{"Basic"}, C{"SCRAM-SHA-256"} or
        C{"session"}.
    @ivar expires: POSIX time the login ends at the latest.
    @ivar csrfToken: for a session, the token forms must carry (as the
        C{csrf} field, or the C{X-CSRF-Token} header) in requests that
        change state.
    @ivar token: the token issued by this very login (Basic or SCRAM), if
        the bouncer issues tokens.
    @ivar tokenId: for a Bearer login, the keycard id of the token.
    @ivar oneShot: the keycard ends with the request (SCRAM).
    """

    avatarId: str
    keycardId: str
    scheme: str
    expires: float | None = None
    csrfToken: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    tokenId: str | None = None
    oneShot: bool = False
