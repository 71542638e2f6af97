"""
HTTP authentication as the guard reads and writes it: the headers of RFC
7235, the values each scheme carries, the 401 with a challenge per scheme
and the other refusals, cross-site request checks, the guard's settings,
and who sent a request.
"""

from __future__ import annotations

import binascii
import hmac
import ipaddress
import re
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from typing import TypeVar
from urllib.parse import quote as urlquote

import attrs
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from zope.interface import implementer

from twisted_keycard.error import InvalidKeycard, KeycardError, ProtocolError
from twisted_keycard.keycard import ADDRESS_LENGTH, Keycard, normalizeAddress
from twisted_keycard.passwords import PasswordKeycard
from twisted_keycard.scram import SCRAMKeycard, b64
from twisted_keycard.tokens import claimedExpiry
from twisted_keycard.web._html import errorPage, wantsHTML

#: The schemes the guard speaks, as written in its challenges.
BEARER = "Bearer"
BASIC = "Basic"
SCRAM = "SCRAM-SHA-256"

#: Auth-params at most in one header, and characters at most in one value.
MAX_PARAMS = 8
MAX_VALUE = 4096

_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_SCHEME = re.compile(rf"({_TCHARS})(?:[ ]+(.*))?\Z", re.DOTALL)
_TOKEN68 = re.compile(r"[A-Za-z0-9._~+/-]+=*\Z")
# One auth-param: a token name, "=", a quoted string or a run of characters
# that are neither separators nor quotes (RFC 7804's examples leave base64
# unquoted, "/" and "=" included).
_PARAM = re.compile(
    rf'[ \t]*({_TCHARS})[ \t]*=[ \t]*(?:"((?:[^"\\]|\\.)*)"|([^",\s]+))[ \t]*(?:,|\Z)',
    re.DOTALL,
)
_UNESCAPE = re.compile(r"\\(.)", re.DOTALL)
_BARE = ("data", "sid")


@attrs.frozen
class Credentials:
    """
    An C{Authorization} header, parsed.

    @ivar scheme: the scheme as the client wrote it.
    @ivar token68: the token68 form (Bearer, Basic), if that is what came.
    @ivar params: the auth-params (SCRAM), by lower-case name.
    """

    scheme: str
    token68: str | None = None
    params: Mapping[str, str] = attrs.field(factory=dict)

    def isScheme(self, scheme: str) -> bool:
        """
        Whether this is C{scheme}; schemes are case-insensitive.
        """
        return self.scheme.lower() == scheme.lower()


def parseAuthorization(value: bytes) -> Credentials:
    """
    Read an C{Authorization} header value.

    @raise ProtocolError: if it is not one scheme followed by a token68 or
        by at most L{MAX_PARAMS} auth-params, each named once, or a value is
        over L{MAX_VALUE} characters.
    """
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        raise ProtocolError("the Authorization header is not ASCII") from None
    match = _SCHEME.match(text.strip())
    if match is None:
        raise ProtocolError("malformed Authorization header")
    scheme, rest = match.group(1), (match.group(2) or "").strip()
    if not rest:
        return Credentials(scheme)
    if _TOKEN68.match(rest):
        if len(rest) > MAX_VALUE:
            raise ProtocolError("Authorization value too long")
        return Credentials(scheme, token68=rest)
    return Credentials(scheme, params=parseParams(rest))


def parseParams(text: str) -> dict[str, str]:
    """
    Read comma-separated auth-params, names in lower case.

    @raise ProtocolError: as L{parseAuthorization}.
    """
    params: dict[str, str] = {}
    position = 0
    text = text.strip()
    while position < len(text):
        match = _PARAM.match(text, position)
        if match is None or len(params) >= MAX_PARAMS:
            raise ProtocolError("malformed auth-params")
        name = match.group(1).lower()
        quoted, bare = match.group(2), match.group(3)
        value = _UNESCAPE.sub(r"\1", quoted) if quoted is not None else bare
        if name in params or len(value) > MAX_VALUE:
            raise ProtocolError("repeated or oversized auth-param")
        params[name] = value
        position = match.end()
    return params


def quote(value: str) -> str:
    """
    A quoted-string holding C{value}.
    """
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(scheme: str, params: Sequence[tuple[str, str]] = ()) -> bytes:
    """
    One challenge (or C{Authentication-Info} value, without a scheme):
    C{scheme name=value, ...}.  Values are quoted, except base64 C{data}
    and C{sid}, written bare as RFC 7804 shows them.
    """
    parts = [
        f"{name}={value if name in _BARE else quote(value)}" for name, value in params
    ]
    text = ", ".join(parts)
    if scheme:
        text = f"{scheme} {text}" if text else scheme
    return text.encode("ascii")


_K = TypeVar("_K", bound=Keycard)


def keycardFrom(cls: type[_K], fields: dict[str, object]) -> _K:
    """
    A new keycard of class C{cls} holding what a client sent, checked as a
    keycard received over PB is (types, length limits).

    @raise ProtocolError: if a field is not acceptable.
    """
    keycard = cls()
    try:
        keycard.setCopyableState({k: v for k, v in fields.items() if v is not None})
    except InvalidKeycard as e:
        raise ProtocolError(str(e)) from None
    return keycard


def decodeBasic(token68: str | None) -> tuple[str, str]:
    """
    Basic credentials (RFC 7617, UTF-8): C{base64(user:password)}.

    @return: the user name and the password.
    @raise ProtocolError: if they are not base64 of UTF-8 with a colon.
    """
    if token68 is None:
        raise ProtocolError("no Basic credentials")
    try:
        text = binascii.a2b_base64(token68.encode("ascii"), strict_mode=True)
        username, sep, password = text.decode("utf-8").partition(":")
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed Basic credentials") from None
    if not sep or not username:
        raise ProtocolError("malformed Basic credentials")
    return username, password


def passwordKeycard(username: str, password: str) -> PasswordKeycard:
    """
    A password keycard for what a client sent (Basic, a login form).

    @raise ProtocolError: if a field is over its limit.
    """
    return keycardFrom(PasswordKeycard, {"username": username, "password": password})


def scramKeycard(params: Mapping[str, str]) -> SCRAMKeycard:
    """
    The SCRAM keycard for one RFC 7804 message: without C{sid}, the
    client-first message; with it, the client-final message of the exchange
    whose keycard id is C{sid}.

    @raise ProtocolError: if C{data} is missing or malformed.
    """
    message = decodeData(params.get("data"))
    sid = params.get("sid")
    if sid is None:
        return keycardFrom(SCRAMKeycard, {"clientFirst": message})
    return keycardFrom(SCRAMKeycard, {"id": sid, "clientFinal": message})


def decodeData(data: str | None) -> str:
    """
    A SCRAM message from RFC 7804's C{data} auth-param: base64 of UTF-8
    (a trailing newline, as in the RFC's own examples, is left out).

    @raise ProtocolError: if it is missing or not base64 of UTF-8.
    """
    if data is None:
        raise ProtocolError("no SCRAM data")
    try:
        raw = binascii.a2b_base64(data.encode("ascii"), strict_mode=True)
        return raw.decode("utf-8").removesuffix("\n")
    except (binascii.Error, ValueError):
        raise ProtocolError("malformed SCRAM data") from None


def encodeData(message: str) -> str:
    """
    RFC 7804's C{data}: base64 of the message.
    """
    return b64(message.encode("utf-8"))


def tokenExpires(token: str) -> float | None:
    """
    The expiry a token states, read without checking it: only for a token
    the bouncer has just accepted, to hold it no longer than it is valid
    (see L{claimedExpiry}).

    @return: the POSIX time, or C{None} if it cannot be read.
    """
    return claimedExpiry(token)


Header = tuple[bytes, bytes]


class WebRefusal(KeycardError):
    """
    Raised by the guard when a request does not reach the resource.

    @ivar status: the HTTP status.
    @ivar headers: headers to add (C{WWW-Authenticate}, C{Retry-After},
        C{Set-Cookie}).
    @ivar body: the body.
    @ivar contentType: its type.
    """

    def __init__(
        self,
        status: int,
        body: bytes,
        headers: Sequence[Header] = (),
        contentType: bytes = b"text/plain; charset=utf-8",
    ) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.body = body
        self.headers = list(headers)
        self.contentType = contentType

    def render(self, request: IRequest) -> bytes:
        """
        Write the status and headers into C{request}.  A plain-text refusal
        to a browser (see L{wantsHTML}) is the same message as a small HTML
        page instead.

        @return: the body.
        """
        request.setResponseCode(self.status)
        for name, value in self.headers:
            request.responseHeaders.addRawHeader(name, value)
        body, contentType = self.body, self.contentType
        if contentType.startswith(b"text/plain"):
            request.setHeader(b"vary", b"Accept")
            if wantsHTML(request):
                message = body.decode("utf-8", "replace").strip()
                body, contentType = errorPage(self.status, message), HTML
        request.setHeader(b"content-type", contentType)
        request.setHeader(b"cache-control", b"no-store")
        return body

    def resource(self) -> IResource:
        """
        A leaf resource that renders this refusal.
        """
        return _RefusalResource(self)


@implementer(IResource)
class _RefusalResource:
    isLeaf = True

    def __init__(self, refusal: WebRefusal) -> None:
        self._refusal = refusal

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("a refusal has no children")

    def render(self, request: IRequest) -> bytes:
        return self._refusal.render(request)


UNAUTHORIZED = b"authentication required\n"
HTML = b"text/html; charset=utf-8"
NEEDS_TLS = b"this way of logging in needs HTTPS\n"


def unauthorized(
    challenges: Sequence[bytes],
    *,
    loginURL: bytes | None = None,
    html: bool = False,
    body: bytes = UNAUTHORIZED,
    extra: Sequence[Header] = (),
) -> WebRefusal:
    """
    A 401 listing C{challenges} in C{WWW-Authenticate} headers (one each);
    for a browser (C{html}) of a guard with a login page, an HTML page
    linking to it.
    """
    headers = [(b"www-authenticate", c) for c in challenges]
    headers.extend(extra)
    if html and loginURL is not None:
        link = escape(loginURL.decode("ascii", "replace"))
        page = errorPage(
            401,
            "Log in to see this page.",
            f'<p><a id="login" href="{link}">Log in</a></p>',
        )
        return WebRefusal(401, page, headers, HTML)
    return WebRefusal(401, body, headers)


def notFound() -> WebRefusal:
    """
    A 404: nothing here.
    """
    return WebRefusal(404, b"there is no page at this address\n")


def methodNotAllowed(allowed: Sequence[bytes]) -> WebRefusal:
    """
    A 405, with C{Allow} naming the methods this page takes.
    """
    methods = b", ".join(sorted(set(allowed)))
    message = b"this page takes " + methods + b" only\n"
    return WebRefusal(405, message, [(b"allow", methods)])


def throttled(retryAfter: int, message: str) -> WebRefusal:
    """
    A 429: the bouncer will not take a login now.
    """
    return WebRefusal(
        429,
        message.encode("utf-8") + b"\n",
        [(b"retry-after", str(retryAfter).encode("ascii"))],
    )


def forbidden(message: str) -> WebRefusal:
    """
    A 403: the login is good, the request is not (CSRF).
    """
    return WebRefusal(403, message.encode("utf-8") + b"\n")


def unavailable(retryAfter: int) -> WebRefusal:
    """
    A 503: the bouncer could not be asked.
    """
    return WebRefusal(
        503,
        b"the bouncer is unavailable; try again later\n",
        [(b"retry-after", str(retryAfter).encode("ascii"))],
    )


#: Addresses at most read from C{X-Forwarded-For}, from the right.
MAX_FORWARDED = 16

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(cidrs: Iterable[str]) -> tuple[_Network, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


@attrs.frozen
class ProxyTrust:
    """
    The reverse proxies whose forwarding headers the guard believes.  By
    default none: the client address is the TCP peer's, and
    C{X-Forwarded-For} and C{X-Forwarded-Proto} are ignored, since any
    client can send them.

    From a trusted peer, the client address is the right-most address in
    C{X-Forwarded-For} that is not itself a trusted proxy, and the request
    counts as made over TLS when the last C{X-Forwarded-Proto} says
    C{https}.

    @ivar networks: the proxies' networks, as CIDR strings (IPv4 or IPv6).
    """

    networks: Sequence[str] = ()
    _parsed: tuple[_Network, ...] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        """
        @raise ValueError: for a network that is not CIDR.
        """
        object.__setattr__(self, "_parsed", _networks(self.networks))

    def trusts(self, address: str | None) -> bool:
        """
        Whether C{address} is one of the trusted proxies.
        """
        if address is None or not self._parsed:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._parsed)

    def clientAddress(self, request: IRequest) -> str | None:
        """
        The normalized client address of C{request}, at most
        L{ADDRESS_LENGTH} characters (see L{normalizeAddress}).
        """
        peer = _peerHost(request)
        if peer is None or not self.trusts(peer):
            return peer
        forwarded = _headerList(request, b"x-forwarded-for")[-MAX_FORWARDED:]
        address = peer
        for hop in reversed(forwarded):
            try:
                hopAddress = normalizeAddress(str(ipaddress.ip_address(hop)))
            except ValueError:
                break
            address = hopAddress
            if not self.trusts(hopAddress):
                break
        return address[:ADDRESS_LENGTH]

    def isSecure(self, request: IRequest) -> bool:
        """
        Whether C{request} came over TLS: to this server, or to a trusted
        proxy that says so.
        """
        if request.isSecure():
            return True
        if not self.trusts(_peerHost(request)):
            return False
        protos = _headerList(request, b"x-forwarded-proto")
        return bool(protos) and protos[-1].lower() == "https"


def _peerHost(request: IRequest) -> str | None:
    peer = request.getClientAddress()
    host = getattr(peer, "host", None)
    if isinstance(host, str):
        return normalizeAddress(host)[:ADDRESS_LENGTH]
    return None


def _headerList(request: IRequest, name: bytes) -> list[str]:
    """
    The comma-separated items of every C{name} header, in order.
    """
    items: list[str] = []
    for raw in request.requestHeaders.getRawHeaders(name, []):
        text = raw.decode("latin-1") if isinstance(raw, bytes) else raw
        items.extend(item.strip() for item in text.split(",") if item.strip())
    return items


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
    @ivar logoutPath: where L{LogoutPage} is mounted, if it is: the login
        page then shows a browser that has a session whose it is, and a
        button that logs it out.
    @ivar maxSessions: cookie sessions held at once.  A new one pushes out
        the least recently used session of its own avatar when that avatar
        holds C{maxSessionsPerAvatar}, or holds as many as any other avatar
        when the table is full; only then does the least recently used
        session of an avatar holding more go.  One user's logins never push
        out another's.
    @ivar maxSessionsPerAvatar: cookie sessions of one avatar held at once.
    @ivar maxCached: Bearer and Basic logins held at once, so that repeated
        credentials do not cost a check each; the same rule.
    @ivar maxCachedPerAvatar: such logins of one avatar held at once.
    @ivar retryAfter: seconds the C{Retry-After} of a 503 (bouncer
        unavailable) says, and of a 429 for a denial other than the
        throttle's (a busy bouncer, a full hash pool, a quota).  A 429 from
        the throttle says when its window lets a login be counted again.
    @ivar cookieName: the session cookie's name.
    @ivar proxies: the reverse proxies whose forwarding headers count.
    @ivar renew: whether the requests of a cookie session or of held Basic
        credentials renew its keycard: a request made in the second half
        of the keycard's duration asks the bouncer to renew it for its
        duration from then (within the bouncer's C{maxLifetime}), as PB
        clients are renewed while their connection lives.  A browser that
        stops making requests lets its keycard, and any seat it holds,
        expire a duration after its last one.  A Bearer login ends with its
        token, whatever its requests.
    """

    realm: str = "keycard"
    schemes: tuple[str, ...] = attrs.field(
        default=(BEARER, SCRAM, BASIC), converter=tuple, validator=_schemes
    )
    loginPath: str | None = None
    logoutPath: str | None = None
    maxSessions: int = attrs.field(default=10_000, validator=_count)
    maxSessionsPerAvatar: int = attrs.field(default=100, validator=_count)
    maxCached: int = attrs.field(default=10_000, validator=_count)
    maxCachedPerAvatar: int = attrs.field(default=1_000, validator=_count)
    retryAfter: int = attrs.field(default=60, validator=_count)
    cookieName: str = COOKIE
    proxies: ProxyTrust = ProxyTrust()
    renew: bool = True


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


#: The longest request target a 401 sends back in its login link.
MAX_NEXT = 1024


class Answers:
    """
    The guard's 401s and cookies, from its options.
    """

    def __init__(self, options: GuardOptions) -> None:
        self.options = options

    def unauthorized(
        self, request: IRequest, *, bearerError: bool = False, body: bytes | None = None
    ) -> WebRefusal:
        """
        The 401 for C{request}: a challenge per scheme offered (Basic only
        over TLS), and for a browser of a guard with a login page, a link
        to it (and no Basic challenge, so the browser shows the page rather
        than its own password prompt).
        """
        realm = ("realm", self.options.realm)
        html = wantsHTML(request) and self.options.loginPath is not None
        challenges = []
        for scheme in self.options.schemes:
            if scheme == BEARER:
                error = [("error", "invalid_token")] if bearerError else []
                challenges.append(challenge(BEARER, [realm, *error]))
            elif scheme == SCRAM:
                challenges.append(challenge(SCRAM, [realm]))
            elif not html and self.options.proxies.isSecure(request):
                challenges.append(challenge(BASIC, [realm, ("charset", "UTF-8")]))
        loginURL = None
        if self.options.loginPath is not None:
            loginURL = self.options.loginPath.encode("ascii")
            target = request.uri
            if len(target) <= MAX_NEXT and target.startswith(b"/"):
                loginURL += b"?next=" + urlquote(target, safe="/").encode("ascii")
        extra = []
        if request.getCookie(self.options.cookieName.encode("ascii")) is not None:
            extra.append(self.clearCookie())
        return unauthorized(
            challenges,
            loginURL=loginURL,
            html=html,
            extra=extra,
            **({} if body is None else {"body": body}),
        )

    def clearCookie(self) -> tuple[bytes, bytes]:
        """
        A C{Set-Cookie} header that removes the session cookie.
        """
        return (b"set-cookie", self.cookieHeader("", 0))

    def cookieHeader(self, value: str, maxAge: int) -> bytes:
        """
        The session cookie: HttpOnly, Secure, SameSite=Strict, for the
        whole host.
        """
        return (
            f"{self.options.cookieName}={value}; Max-Age={maxAge}; Path=/;"
            " Secure; HttpOnly; SameSite=Strict"
        ).encode("ascii")


#: Methods that change nothing, which need no token.
SAFE_METHODS = frozenset([b"GET", b"HEAD", b"OPTIONS", b"TRACE"])


def changesState(request: IRequest) -> bool:
    return request.method not in SAFE_METHODS


def fromAnotherSite(request: IRequest, secure: bool) -> bool:
    """
    Whether the browser says the request comes from another site (or a
    sibling subdomain): C{Sec-Fetch-Site} other than C{same-origin} and
    C{none}, or without it, an C{Origin} other than this server's.
    """
    fetchSite = request.getHeader(b"sec-fetch-site")
    if fetchSite is not None:
        return bool(fetchSite.lower() not in (b"same-origin", b"none"))
    origin = request.getHeader(b"origin")
    if origin is None:
        return False
    host = request.getHeader(b"host") or b""
    scheme = b"https" if secure else b"http"
    return bool(origin.lower() != scheme + b"://" + host.lower())


def submittedToken(request: IRequest, field: str, header: str) -> str | None:
    """
    The CSRF token a request carries: its header, else its form field.
    """
    value = request.getHeader(header.encode("ascii"))
    if value is None:
        args = request.args or {}
        values = args.get(field.encode("ascii"))
        value = values[0] if values else None
    if value is None:
        return None
    try:
        return str(value.decode("ascii"))
    except UnicodeDecodeError:
        return None


def tokensMatch(expected: str | None, submitted: str | None) -> bool:
    """
    Whether a submitted token is the expected one, in constant time.
    """
    if expected is None or submitted is None:
        return False
    return hmac.compare_digest(expected.encode("ascii"), submitted.encode("ascii"))
