"""
Integration test of L{twisted_keycard.buildbot.KeycardWebAuth} with a real
Buildbot master (and its web UI, buildbot-www) from the package registry:
its REST API over HTTPS refuses a wrong bcrypt password and takes the
right one, every htpasswd format, and a keycard token, which is refused
within about a second of its revocation; failed logins are throttled; and
C{/auth/login} starts a session that ends with its keycard.
"""

from __future__ import annotations

import base64
import http.client
import json
import signal
import ssl
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from passlib.hash import apr_md5_crypt, argon2, bcrypt, sha512_crypt
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from ._procs import TIMEOUT, freePort, keycard, waitFor
from .test_buildbot import BIN, _run, _Twistd
from .test_web_browser import browserTools, headlessBrowser

pytest.importorskip("buildbot.master", reason="needs twisted-keycard[buildbot]")
pytest.importorskip("buildbot_www", reason="needs twisted-keycard[buildbot]")

pytestmark = pytest.mark.integration

#: Users of the htpasswd file, one per format, their passwords, and the
#: hash of each.
USERS = {
    "alice": ("bcrypt secret", bcrypt),
    "bob": ("argon2 secret", argon2),
    "carol": ("sha512 secret", sha512_crypt),
    "dave": ("apr1 secret", apr_md5_crypt),
    "eve": ("throttled secret", bcrypt),
}

MASTER_CFG = """\
from buildbot.plugins import schedulers, steps, util, worker
from twisted_keycard.bouncer import Throttle
from twisted_keycard.buildbot import KeycardWebAuth, useKeycards

c = BuildmasterConfig = {{}}
c["workers"] = [worker.Worker("w1", "pass1")]
c["protocols"] = {{"pb": {{"port": "tcp:{pbPort}:interface=127.0.0.1"}}}}
factory = util.BuildFactory([steps.ShellCommand(command=["true"])])
c["builders"] = [util.BuilderConfig(name="b", workernames=["w1"], factory=factory)]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["b"])]
c["title"] = "keycards"
c["buildbotURL"] = "https://localhost:{port}/"
c["buildbotNetUsageData"] = None
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
c["www"] = {{
    "port": "ssl:{port}:interface=127.0.0.1:privateKey=keycard-data/tls/server.pem",
    "auth": {auth},
    "authz": util.Authz(
        allowRules=[util.AnyEndpointMatcher(role="users", defaultDeny=True)],
        roleMatchers=[util.RolesFromUsername(roles=["users"], usernames={users!r})],
    ),
}}
# The PB port on keycards too: two bouncers of one data directory.
useKeycards(c, "keycard-data")
"""


def basic(user: str, password: str) -> str:
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


class Response:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = response.headers
        self.body = response.read()

    def json(self) -> Any:
        return json.loads(self.body)


class BuildbotWebTests(TestCase):
    timeout = 180

    def setUp(self) -> None:
        self.base = Path(self.mktemp()).resolve()
        self.base.mkdir(parents=True)
        self.port = freePort()
        self.pbPort = freePort()
        self.master = self.base / "master"
        _run(str(BIN / "buildbot"), "create-master", "-r", "master", cwd=self.base)
        self.data = self.master / "keycard-data"
        done = keycard("init", str(self.data), "--dev-cert", "localhost")
        self.assertEqual(done.returncode, 0, done.stderr)
        lines = [f"{name}:{scheme.hash(pw)}\n" for name, (pw, scheme) in USERS.items()]
        (self.master / "web.htpasswd").write_text("".join(lines))
        self.context = ssl.create_default_context(
            cafile=str(self.data / "tls" / "trust" / "ca.pem")
        )
        self.process = _Twistd(self.master)
        self.addCleanup(self.process.stop)

    def request(
        self, method: str, path: str, headers: dict[str, str] | None = None
    ) -> Response:
        connection = http.client.HTTPSConnection(
            "localhost", self.port, context=self.context, timeout=TIMEOUT
        )
        try:
            connection.request(method, path, headers=headers or {})
            return Response(connection.getresponse())
        finally:
            connection.close()

    def builders(self, authorization: str | None = None, cookie: str = "") -> int:
        headers = {"Authorization": authorization} if authorization else {}
        if cookie:
            headers["Cookie"] = cookie
        response = self.request("GET", "/api/v2/builders", headers)
        if response.status == 200:
            names = [b["name"] for b in response.json()["builders"]]
            self.assertEqual(names, ["b"])
        return response.status

    def login(self, user: str) -> str:
        """
        Log in at C{/auth/login} with the user's password, as a browser
        does after the prompt.

        @return: the Buildbot session's C{Cookie} header.
        """
        password = USERS[user][0]
        login = self.request(
            "GET", "/auth/login", {"Authorization": basic(user, password)}
        )
        self.assertEqual(login.status, 302, login.body)
        self.assertEqual(login.headers["Location"], f"https://localhost:{self.port}/#/")
        # The last: twisted.web sets the new, anonymous session first.
        cookie = (login.headers.get_all("Set-Cookie") or [""])[-1].split(";")[0]
        self.assertTrue(cookie.startswith("TWISTED_SECURE_SESSION="), cookie)
        return cookie

    async def reconfig(self, auth: str) -> None:
        """
        Write C{master.cfg} with C{auth} and reconfigure the master, as
        C{buildbot reconfig} does (SIGHUP).
        """
        done = "configuration update complete"
        before = self.process.count(done)
        (self.master / "master.cfg").write_text(self.config(auth))
        assert self.process.proc is not None
        self.process.proc.send_signal(signal.SIGHUP)
        await waitFor(lambda: self.process.count(done) > before, "the reconfiguration")

    def revoke(self, user: str) -> None:
        done = keycard("revoke", "--data-dir", str(self.data), "--avatar", user)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)

    def config(self, auth: str) -> str:
        return MASTER_CFG.format(
            port=self.port, pbPort=self.pbPort, users=sorted(USERS), auth=auth
        )

    async def startMaster(self, auth: str) -> None:
        """
        Start the master with C{auth} as its C{c["www"]["auth"]}.
        """
        (self.master / "master.cfg").write_text(self.config(auth))
        self.process.start()
        await waitFor(
            lambda: (
                self.process.count("BuildMaster is running")
                or self.process.count("BuildMaster startup failed")
            ),
            "the master",
            90,
        )
        if not self.process.count("BuildMaster is running"):
            stdout = (self.master / "stdout.log").read_text()
            self.fail(f"the master did not start:\n{self.process.output()}\n{stdout}")
        self.assertIn(
            "the web UI takes keycard tokens and passwords", self.process.output()
        )
        self.assertIn("takes keycards (data directory", self.process.output())

    def test_restAPI(self) -> Deferred[None]:
        return Deferred.fromCoroutine(self._restAPI())

    async def _restAPI(self) -> None:
        auth = (
            'KeycardWebAuth("keycard-data", htpasswd="web.htpasswd",'
            " throttle=Throttle(3, 30))"
        )
        await self.startMaster(auth)
        # Anonymous: authz refuses; a wrong bcrypt password: the guard does.
        self.assertEqual(self.builders(), 403)
        wrong = self.request(
            "GET", "/api/v2/builders", {"Authorization": basic("alice", "wrong")}
        )
        self.assertEqual(wrong.status, 401)
        challenges = wrong.headers.get_all("WWW-Authenticate") or []
        self.assertIn('Basic realm="buildbot", charset="UTF-8"', challenges)
        self.assertEqual(self.builders(basic("nobody", "x")), 401)

        # The right password, in every format of the file.
        for name, (password, _) in USERS.items():
            if name != "eve":
                self.assertEqual(self.builders(basic(name, password)), 200, name)

        # A token, asked for with the password, then used as Bearer.
        answer = self.request(
            "POST", "/auth/token", {"Authorization": basic("alice", USERS["alice"][0])}
        )
        self.assertEqual(answer.status, 200, answer.body)
        grant = answer.json()
        self.assertEqual(grant["avatarId"], "alice")
        bearer = f"Bearer {grant['token']}"
        self.assertEqual(self.builders(bearer), 200)
        self.assertEqual(self.builders("Bearer not-a-token"), 401)

        # A browser's login: a Buildbot session, for alice.
        cookie = self.login("alice")
        self.assertEqual(self.builders(cookie=cookie), 200)
        page = self.request("GET", "/", {"Cookie": cookie}).body.decode()
        self.assertIn('"username": "alice"', page)
        noLogin = self.request("GET", "/auth/login")
        self.assertEqual(noLogin.status, 401)

        # Revoked: the token and the session are refused (the bouncer reads
        # revocations every second; the time is printed, not bounded: a
        # loaded machine must not fail the test).
        self.assertEqual(self.builders(bearer), 200)
        revoked = time.monotonic()
        self.revoke("alice")
        took = await waitFor(lambda: self.builders(bearer) == 401, "the refusal", 10)
        print(
            f"\n{self.id()}: token refused {time.monotonic() - revoked:.2f} s"
            f" after keycard revoke was started ({took:.2f} s after it returned)"
        )
        self.assertEqual(self.builders(cookie=cookie), 403)
        # A new login with the password still works.
        self.assertEqual(self.builders(basic("alice", USERS["alice"][0])), 200)

        # Throttled: past 3 failures, even the right password is refused.
        for _ in range(3):
            self.assertEqual(self.builders(basic("eve", "wrong")), 401)
        throttled = self.request(
            "GET", "/api/v2/builders", {"Authorization": basic("eve", USERS["eve"][0])}
        )
        self.assertEqual(throttled.status, 429, throttled.body)
        self.assertIn(b"too many failed logins", throttled.body)

        # Logging out ends the session: a copy of its cookie is anonymous.
        session = self.login("carol")
        self.assertEqual(self.builders(cookie=session), 200)
        out = self.request("GET", "/auth/logout", {"Cookie": session})
        self.assertEqual(out.status, 302)
        self.assertEqual(self.builders(cookie=session), 403)

        # A reconfiguration with the same arguments keeps the bouncer and
        # the sessions; one with others starts a new one, and the browser
        # sessions end.
        session = self.login("bob")
        self.assertEqual(self.builders(cookie=session), 200)
        await self.reconfig(auth)
        self.assertEqual(self.builders(cookie=session), 200)
        await self.reconfig(auth.replace("Throttle(3, 30)", "Throttle(4, 30)"))
        self.assertEqual(self.builders(cookie=session), 403)
        self.assertEqual(self.builders(basic("bob", USERS["bob"][0])), 200)

        assert self.process.proc is not None
        self.process.proc.send_signal(signal.SIGTERM)
        proc = self.process.proc
        await waitFor(lambda: proc.poll() is not None, "the master to stop")
        self.assertEqual(proc.returncode, 0)
        output = self.process.output()
        self.assertNotIn("Traceback", output)
        self.assertIn("issued to alice via buildbot-www", output)
        self.assertIn("for alice via buildbot-www from 127.0.0.1", output)
        self.assertIn("keycard refused: ", output)
        self.assertIn("web UI login of alice (Basic)", output)
        for password, _ in USERS.values():
            self.assertNotIn(password, output)
        self.assertNotIn(grant["token"], output)

    def test_browserLogin(self) -> Deferred[None]:
        """
        A real browser (headless chromium) logs in to the UI with the
        password its 401 asks for, as a user answers its prompt (here in
        the URL), checked against the data directory's SCRAM verifiers
        (C{keycard user add}), and the UI shows the user; after C{keycard
        revoke}, the UI is anonymous again.
        """
        return Deferred.fromCoroutine(self._browserLogin())

    async def _browserLogin(self) -> None:
        from selenium.webdriver.common.by import By

        browserTools()
        done = keycard(
            "user", "add", "--data-dir", str(self.data), "alice",
            stdin=USERS["alice"][0] + "\n",
        )  # fmt: skip
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        await self.startMaster('KeycardWebAuth("keycard-data")')
        browser = headlessBrowser(self, self.base / "profile")

        def user() -> Any:
            return browser.execute_script("return window.buildbotFrontendConfig.user")

        base = f"https://localhost:{self.port}"
        browser.get(base + "/")
        self.assertEqual(user(), {"anonymous": True})
        password = quote(USERS["alice"][0])
        browser.get(f"https://alice:{password}@localhost:{self.port}/auth/login")
        await waitFor(lambda: browser.current_url.startswith(base + "/#"), "the UI")
        self.assertEqual(user()["username"], "alice")
        # Wide enough for the top bar to name the user; the builders page
        # lists "b" only if the REST API lets the session in.
        browser.set_window_size(1400, 900)
        browser.get(base + "/#/builders")

        def shown() -> bool:
            text = browser.find_element(By.TAG_NAME, "body").text
            return "alice" in text and bool(browser.find_elements(By.LINK_TEXT, "b"))

        await waitFor(shown, "the UI to show alice and her builders")

        def apiStatus() -> int:
            status: int = browser.execute_async_script(
                "const done = arguments[arguments.length - 1];"
                " fetch('/api/v2/builders').then(r => done(r.status));"
            )
            return status

        self.assertEqual(apiStatus(), 200)
        # The UI's event stream opens through the check, and answers.
        pong = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            " const ws = new WebSocket(`wss://${location.host}/ws`);"
            " ws.onopen = () => ws.send(JSON.stringify({cmd: 'ping', _id: 1}));"
            " ws.onmessage = (e) => done(e.data);"
            " ws.onerror = () => done('error');"
        )
        self.assertEqual(json.loads(pong), {"_id": 1, "code": 200, "msg": "pong"})
        self.revoke("alice")

        def anonymous() -> bool:
            browser.get(base + "/")
            return bool(user() == {"anonymous": True})

        await waitFor(anonymous, "the session to end", 10)
        # The browser's own request to the REST API, with its cookie.
        self.assertEqual(apiStatus(), 403)
