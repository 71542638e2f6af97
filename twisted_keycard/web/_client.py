"""
The client side over HTTP, on treq: requests that carry a Bearer token,
or log in with SCRAM-SHA-256 over HTTP (RFC 7804) so that the password
never crosses, and check the server's signature.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attrs
import treq
from twisted.internet.defer import Deferred
from twisted.web.iweb import IResponse

from twisted_keycard.error import (
    KeycardDenied,
    KeycardRefused,
    ProtocolError,
    ServerAuthenticationFailed,
)
from twisted_keycard.scram import SCRAMAnswerer, SCRAMKeyCache
from twisted_keycard.web._http import BEARER, SCRAM, decodeData, encodeData, parseParams


@attrs.frozen
class TokenGrant:
    """
    What C{POST /token} answered.

    @ivar token: the token, for C{Authorization: Bearer}.
    @ivar keycardId: the keycard it was issued with (to revoke it).
    @ivar expires: its expiry, POSIX time.
    @ivar avatarId: whom it names.
    """

    token: str = attrs.field(repr=False)
    keycardId: str
    expires: float
    avatarId: str


def _challengesOf(response: IResponse, scheme: str) -> list[dict[str, str]]:
    """
    The auth-params of each C{WWW-Authenticate} challenge of C{scheme}.
    """
    found = []
    for raw in response.headers.getRawHeaders(b"www-authenticate", []):
        text = raw.decode("ascii", "replace")
        name, _, rest = text.partition(" ")
        if name.lower() == scheme.lower():
            try:
                found.append(parseParams(rest))
            except ProtocolError:
                continue
    return found


class KeycardHTTPClient:
    """
    Makes HTTP requests through a treq client, answering the guard: with a
    token when it has one (C{Authorization: Bearer}), else, or when the
    token is refused, with a SCRAM-SHA-256 login if it has a user name and
    password.  A SCRAM login takes the request three times (its body is
    sent each time: give bytes or text), and fails unless the server's
    C{Authentication-Info} proves it knows the verifier.
    """

    def __init__(
        self,
        http: Any = None,
        *,
        token: str | None = None,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        """
        @param http: a L{treq.client.HTTPClient} (or L{treq.testing.StubTreq}
            or the C{treq} module, the default).
        @param token: a token from an earlier login.
        """
        self.http = http if http is not None else treq
        self.token = token
        self.username = username
        self._password = password
        self._cache = SCRAMKeyCache(1)

    def __repr__(self) -> str:
        return f"<KeycardHTTPClient {self.username!r}>"

    def request(self, method: str, url: str, **kwargs: Any) -> Deferred[IResponse]:
        """
        Make a request, logging in as needed.

        @return: a L{Deferred} firing with the response to the logged-in
            request, or failing with L{KeycardRefused} (the credentials were
            refused), L{KeycardDenied} (throttled: a 429),
            L{ServerAuthenticationFailed} or L{ProtocolError}.
        """
        return Deferred.fromCoroutine(self._request(method, url, kwargs))

    def get(self, url: str, **kwargs: Any) -> Deferred[IResponse]:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Deferred[IResponse]:
        return self.request("POST", url, **kwargs)

    def fetchToken(self, url: str) -> Deferred[TokenGrant]:
        """
        Log in with SCRAM at a C{/token} endpoint and keep the token it
        answers for the requests that follow.
        """
        return Deferred.fromCoroutine(self._fetchToken(url))

    async def _fetchToken(self, url: str) -> TokenGrant:
        response = await self._scram("POST", url, {})
        if response.code != 200:
            await treq.content(response)
            raise ProtocolError(f"the token endpoint answered {response.code}")
        body = json.loads(await treq.content(response))
        grant = TokenGrant(
            token=str(body["token"]),
            keycardId=str(body["keycardId"]),
            expires=float(body["expires"]),
            avatarId=str(body["avatarId"]),
        )
        self.token = grant.token
        return grant

    async def _request(self, method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if self.token is not None:
            response = await self._send(method, url, kwargs, f"{BEARER} {self.token}")
            if response.code != 401:
                return response
            await treq.content(response)
            if self._password is None:
                raise KeycardRefused()
        if self._password is None:
            return await self._send(method, url, kwargs, None)
        return await self._scram(method, url, kwargs)

    async def _scram(self, method: str, url: str, kwargs: dict[str, Any]) -> Any:
        if self.username is None or self._password is None:
            raise ProtocolError("a SCRAM login needs a user name and a password")
        answerer = SCRAMAnswerer(
            self.username, self._password, cache=self._cache, channelBinding="disable"
        )
        keycard = answerer.start()
        assert keycard.clientFirst is not None
        first = f"{SCRAM} data={encodeData(keycard.clientFirst)}"
        challenged = await self._send(method, url, kwargs, first)
        await treq.content(challenged)
        _refusal(challenged)
        params = next((p for p in _challengesOf(challenged, SCRAM) if "sid" in p), None)
        if params is None:
            raise ProtocolError("the server did not continue the SCRAM exchange")
        keycard.id = params["sid"]
        keycard.serverFirst = decodeData(params.get("data"))
        answerer.answer(keycard)
        assert keycard.clientFinal is not None
        final = f"{SCRAM} sid={keycard.id}, data={encodeData(keycard.clientFinal)}"
        response = await self._send(method, url, kwargs, final)
        if response.code in (401, 429):
            await treq.content(response)
            _refusal(response)
        info = response.headers.getRawHeaders(b"authentication-info", [b""])[0]
        try:
            keycard.serverFinal = decodeData(parseParams(info.decode()).get("data"))
        except (ProtocolError, UnicodeDecodeError):
            keycard.serverFinal = None
        answerer.finish(keycard)
        return response

    def _send(
        self,
        method: str,
        url: str,
        kwargs: Mapping[str, Any],
        authorization: str | None,
    ) -> Deferred[IResponse]:
        options = dict(kwargs)
        headers = dict(options.pop("headers", None) or {})
        if authorization is not None:
            headers["Authorization"] = authorization
        d: Deferred[IResponse] = self.http.request(
            method, url, headers=headers, **options
        )
        return d


def _refusal(response: IResponse) -> None:
    """
    @raise KeycardDenied: for a 429.
    @raise KeycardRefused: for a 401 that does not continue a SCRAM exchange.
    """
    if response.code == 429:
        raise KeycardDenied(f"throttled (retry after {_retryAfter(response)} s)")
    if response.code == 401 and not any(
        "sid" in p for p in _challengesOf(response, SCRAM)
    ):
        raise KeycardRefused()
    if response.code != 401:
        raise ServerAuthenticationFailed(
            f"the server answered {response.code} to a SCRAM login"
        )


def _retryAfter(response: IResponse) -> str:
    value: bytes = response.headers.getRawHeaders(b"retry-after", [b"?"])[0]
    return value.decode("ascii", "replace")
