"""
The web guard's schemes in memory, with a L{Clock}: Bearer, Basic, SCRAM
over HTTP; refusals (401 with its challenges, 429), identical answers for
unknown users and wrong passwords, revocation and expiry reaching the next
request, and the bound on cached logins.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from twisted_keycard import IRequester
from twisted_keycard.bouncer import Throttle
from twisted_keycard.web import GuardOptions, ProxyTrust

from ._web import PASSWORD, Reply, WebApp

APP = "https://example.com/app"


def basic(user: str, password: str) -> dict[str, str]:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class GuardTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.app = self.makeApp()

    def makeApp(self, options: GuardOptions | None = None, **kw: Any) -> WebApp:
        app = WebApp.make(options, **kw)
        self.addCleanup(app.bouncer.stopService)
        return app

    def get(self, url: str = APP, **headers: str) -> Reply:
        return self.fetch("GET", url, headers)

    def fetch(
        self,
        method: str,
        url: str,
        headers: dict[str, str] | None = None,
        body: bytes | None = None,
    ) -> Reply:
        return self.successResultOf(self.app.request(method, url, headers, body))

    def token(self) -> dict[str, object]:
        reply = self.fetch(
            "POST", "https://example.com/token", basic("alice", PASSWORD)
        )
        self.assertEqual(reply.code, 200, reply.body)
        grant: dict[str, object] = json.loads(reply.body)
        return grant


class ChallengeTests(GuardTestCase):
    def test_requester(self) -> None:
        verifyObject(IRequester, self.app.guard)

    def test_challenges(self) -> None:
        """
        Without credentials: a 401 whose WWW-Authenticate lists each scheme
        offered, Basic only over HTTPS.
        """
        reply = self.get()
        self.assertEqual(reply.code, 401)
        self.assertEqual(
            reply.header("WWW-Authenticate"),
            [
                'Bearer realm="keycard"',
                'SCRAM-SHA-256 realm="keycard"',
                'Basic realm="keycard", charset="UTF-8"',
            ],
        )
        plain = self.get("http://example.com/app")
        self.assertEqual(
            plain.header("WWW-Authenticate"),
            ['Bearer realm="keycard"', 'SCRAM-SHA-256 realm="keycard"'],
        )

    def test_browserGetsLoginLink(self) -> None:
        """
        A browser (Accept: text/html) of a guard with a login page gets an
        HTML 401 linking to it, and no Basic challenge (no password prompt).
        """
        reply = self.get(APP + "/x?y=1", Accept="text/html")
        self.assertEqual(reply.code, 401)
        self.assertIn(b'href="/login?next=/app/x%3Fy%3D1"', reply.body)
        self.assertNotIn("Basic", " ".join(reply.header("WWW-Authenticate")))

    def test_unknownScheme(self) -> None:
        for value in [
            "Digest x=1",
            "Bearer",
            "Basic !!!",
            "Bearer a b",
            "Basic \u00e9",
        ]:
            reply = self.get(Authorization=value)
            self.assertEqual(reply.code, 401, value)


class BasicTests(GuardTestCase):
    def test_basic(self) -> None:
        """
        Basic over HTTPS logs in; the same credentials again reuse the
        keycard held for them.
        """
        reply = self.get(**basic("alice", PASSWORD))
        self.assertEqual((reply.code, reply.body), (200, b"hello, alice (Basic)"))
        self.assertEqual(len(self.app.bouncer.held), 1)
        self.get(**basic("alice", PASSWORD))
        self.assertEqual(len(self.app.bouncer.held), 1)
        self.assertEqual(self.app.realm.loggedOut, ["alice", "alice"])

    def test_refusedOverPlainHTTP(self) -> None:
        """
        Basic over plain HTTP is refused before the bouncer sees it.
        """
        reply = self.get("http://example.com/app", **basic("alice", PASSWORD))
        self.assertEqual(reply.code, 401)
        self.assertIn(b"HTTPS", reply.body)
        self.assertEqual(self.app.bouncer.held, {})
        self.assertEqual(self.app.realm.loggedIn, [])

    def test_unknownAndWrongAlike(self) -> None:
        """
        An unknown user and a wrong password get byte-identical answers.
        """
        wrong = self.get(**basic("alice", "wrong"))
        unknown = self.get(**basic("mallory", "wrong"))
        self.assertEqual(wrong.code, 401)
        self.assertEqual(wrong.shape(), unknown.shape())

    def test_throttled(self) -> None:
        """
        Past the throttle's limit, a 429 with Retry-After, even with the
        right password: the seconds until the oldest failure counted
        leaves the throttle's window (issue 23: always 60 s, while the
        window was an hour).
        """
        self.app = self.makeApp(throttle=Throttle(perAccount=2, perAddress=100))
        self.assertEqual(self.get(**basic("alice", "wrong")).code, 401)
        self.app.clock.advance(100)
        self.assertEqual(self.get(**basic("alice", "wrong")).code, 401)
        self.app.clock.advance(400)
        reply = self.get(**basic("alice", PASSWORD))
        self.assertEqual(reply.code, 429)
        self.assertEqual(reply.header("Retry-After"), ["3100"])
        self.app.clock.advance(3100)
        self.assertEqual(self.get(**basic("alice", PASSWORD)).code, 200)

    def test_cacheBounded(self) -> None:
        """
        Cached logins are bounded: the least recently used is pushed out
        and its keycard removed from the bouncer.
        """
        self.app = self.makeApp(
            GuardOptions(maxCached=2),
            users={"alice": PASSWORD, "bob": PASSWORD, "carol": PASSWORD},
        )
        for name in ["alice", "bob", "carol"]:
            self.assertEqual(self.get(**basic(name, PASSWORD)).code, 200)
        held = sorted(r.avatarId for r in self.app.bouncer.held.values())
        self.assertEqual(held, ["bob", "carol"])
        self.assertEqual(len(self.app.guard.keycardIds()), 2)

    def test_cachePerAvatar(self) -> None:
        """
        One user's cached logins (here, from many addresses) stay within
        its share, pushing out its own; another user's stays.
        """
        self.app = self.makeApp(
            GuardOptions(
                maxCached=100,
                maxCachedPerAvatar=2,
                proxies=ProxyTrust(["127.0.0.0/8"]),
            ),
            users={"alice": PASSWORD, "bob": PASSWORD},
        )
        self.assertEqual(self.get(**basic("bob", PASSWORD)).code, 200)
        for i in range(5):
            forwarded = {**basic("alice", PASSWORD), "X-Forwarded-For": f"192.0.2.{i}"}
            self.assertEqual(self.get(**forwarded).code, 200)
        held = sorted(r.avatarId for r in self.app.bouncer.held.values())
        self.assertEqual(held, ["alice", "alice", "bob"])


class BearerTests(GuardTestCase):
    def test_token(self) -> None:
        """
        POST /token (Basic) answers JSON with a token, its keycard id and
        expiry; the keycard is not held afterwards.
        """
        grant = self.token()
        self.assertEqual(grant["avatarId"], "alice")
        self.assertIsInstance(grant["token"], str)
        self.assertEqual(self.app.bouncer.held, {})
        reply = self.get(**bearer(str(grant["token"])))
        self.assertEqual((reply.code, reply.body), (200, b"hello, alice (Bearer)"))

    def test_revokedAtNextRequest(self) -> None:
        """
        Revoking the token's keycard drops the guard's login at once; the
        next request is a 401 with error="invalid_token".
        """
        grant = self.token()
        token = str(grant["token"])
        self.assertEqual(self.get(**bearer(token)).code, 200)
        (heldId,) = self.app.guard.keycardIds()
        self.assertTrue(self.app.guard.holds(heldId))
        self.assertFalse(self.app.guard.holds(str(grant["keycardId"])))
        self.successResultOf(
            self.app.bouncer.revokeKeycardIds([str(grant["keycardId"])])
        )
        self.assertEqual(self.app.guard.keycardIds(), [])
        self.assertFalse(self.app.guard.holds(heldId))
        reply = self.get(**bearer(token))
        self.assertEqual(reply.code, 401)
        self.assertIn(
            'Bearer realm="keycard", error="invalid_token"',
            reply.header("WWW-Authenticate"),
        )

    def test_expiredAtNextRequest(self) -> None:
        """
        When the token expires, so does the login held for it.
        """
        token = str(self.token()["token"])
        self.assertEqual(self.get(**bearer(token)).code, 200)
        self.app.clock.advance(606)  # past the token's expiry and its skew
        self.assertEqual(self.get(**bearer(token)).code, 401)

    def test_badToken(self) -> None:
        for token in ["kc1.abc.def", "nonsense", "kc1." + "A" * 5000]:
            reply = self.get(**bearer(token))
            self.assertEqual(reply.code, 401, token)

    def test_logoutRevokesToken(self) -> None:
        """
        POST /logout with a Bearer token revokes it.
        """
        token = str(self.token()["token"])
        reply = self.fetch("POST", "https://example.com/logout", bearer(token))
        self.assertEqual(reply.code, 204)
        self.assertEqual(self.get(**bearer(token)).code, 401)

    def test_addressFromTrustedProxyOnly(self) -> None:
        """
        X-Forwarded-For names the client only when the peer is a trusted
        proxy.
        """
        forwarded = {**basic("alice", PASSWORD), "X-Forwarded-For": "192.0.2.7"}
        self.get(**forwarded)
        (record,) = self.app.bouncer.held.values()
        self.assertEqual(record.address, "127.0.0.1")
        self.app = self.makeApp(GuardOptions(proxies=ProxyTrust(["127.0.0.0/8"])))
        self.get(**forwarded)
        (record,) = self.app.bouncer.held.values()
        self.assertEqual(record.address, "192.0.2.7")


class OptionsTests(SynchronousTestCase):
    def test_badShares(self) -> None:
        """
        Each bound on held logins is a positive integer.
        """
        for name in [
            "maxSessions",
            "maxSessionsPerAvatar",
            "maxCached",
            "maxCachedPerAvatar",
        ]:
            for bad in [0, -1, 2.5, "3"]:
                with self.assertRaises((ValueError, TypeError), msg=(name, bad)):
                    GuardOptions(**{name: bad})  # type: ignore[arg-type]
