"""
A real browser against the bouncer service's HTTP face: Debian's chromium,
headless, driven by selenium through chromium-driver, logs in through the
form, lands on the landing page, reads C{/whoami}, logs out, meets the
404 and 405 pages (never a twisted.web stock page), and is refused after
C{keycard revoke}.

With C{KEYCARD_SCREENSHOTS=DIR} set, the pages are saved there as PNGs
(login.png, landing.png, whoami.png, logged-out.png, 401.png, 404.png,
405.png; a relative C{DIR} is from the top of the checkout): the
screenshots of docs/howto/web.rst, taken with
C{KEYCARD_SCREENSHOTS=docs/_static/web}.

Skipped where chromium or its driver is missing, except in CI (C{CI} set),
where that is a failure: scripts/test installs them.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SkipTest, TestCase

from ._procs import keycard, waitFor
from .test_web_service import PASSWORD, HTTPFaceCase

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # The development certificate is self-signed: only this test ignores it.
    "--ignore-certificate-errors",
    "--window-size=900,640",
    "--hide-scrollbars",
]
#: Where to save the pages' screenshots, if anywhere: a relative path is
#: from the top of the checkout (the tests run in a temporary directory).
_SHOTS = os.environ.get("KEYCARD_SCREENSHOTS")
SCREENSHOTS = Path(__file__).resolve().parent.parent / _SHOTS if _SHOTS else None
#: Text of twisted.web's stock pages, which the browser must never meet.
STOCK = ["No Such Resource", "Your browser approached me", "Method Not Allowed"]


def browserTools() -> tuple[str, str]:
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium is None or driver is None:
        if os.environ.get("CI"):
            raise AssertionError(
                "chromium, chromium-driver or selenium is missing;"
                " scripts/test installs them"
            )
        raise SkipTest("chromium, chromium-driver or selenium is not installed")
    return chromium, driver


def headlessBrowser(case: TestCase, profile: Path) -> Any:
    """
    A headless chromium driven by selenium, with its profile in
    C{profile}, quit when C{case} ends.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browserTools()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in [*FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=Service(driver))
    case.addCleanup(browser.quit)
    browser.set_page_load_timeout(30)
    return browser


@pytest.mark.integration
class BrowserTests(HTTPFaceCase):
    def browser(self, profile: Path) -> Any:
        return headlessBrowser(self, profile)

    def page(self, browser: Any, name: str | None, title: str) -> str:
        """
        The text of the browser's page, checked to be the project's page
        titled C{title}, not a stock page; saved as C{name}.png in
        C{$KEYCARD_SCREENSHOTS} if that is set (and C{name} is not
        C{None}).
        """
        from selenium.webdriver.common.by import By

        source = browser.page_source
        for stock in STOCK:
            self.assertNotIn(stock, source)
        self.assertEqual(browser.title, title)
        self.assertTrue(browser.find_elements(By.TAG_NAME, "style"), source)
        if SCREENSHOTS is not None and name is not None:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            self.assertTrue(browser.save_screenshot(str(SCREENSHOTS / f"{name}.png")))
        text: str = browser.find_element(By.TAG_NAME, "body").text
        return text

    def logIn(self, url: str, screenshot: bool = False) -> Any:
        """
        A new browser that fills in and sends the login form at C{url}.
        """
        from selenium.webdriver.common.by import By

        browser = self.browser(self.dir / "profile")
        browser.get(url)
        if screenshot:
            self.page(browser, "login", "Log in")
        browser.find_element(By.ID, "username").send_keys("alice")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        browser.find_element(By.ID, "submit").click()
        return browser

    def test_loginThenRevoked(self) -> Deferred[None]:
        """
        The browser logs in through the form and reads /whoami with its
        session cookie (HttpOnly, Secure, SameSite=Strict); after
        C{keycard revoke --avatar alice}, the same page answers "Login
        required".
        """
        from selenium.webdriver.common.by import By

        browserTools()

        async def go() -> None:
            base = await self.startService()
            browser = self.logIn(base + "/login?next=/whoami")
            await waitFor(
                lambda: urlparse(browser.current_url).path == "/whoami", "whoami"
            )
            text = self.page(browser, None, "Who am I")
            self.assertIn("alice", text)
            self.assertEqual(browser.find_element(By.ID, "avatar").text, "alice")
            (cookie,) = [
                c for c in browser.get_cookies() if c["name"] == "__Host-keycard"
            ]
            self.assertTrue(cookie["httpOnly"])
            self.assertTrue(cookie["secure"])
            self.assertEqual(cookie["sameSite"], "Strict")

            revoke = keycard(
                "revoke", "--data-dir", str(self.data), "--avatar", "alice"
            )
            self.assertEqual(revoke.returncode, 0, revoke.stderr)

            def refused() -> bool:
                browser.get(base + "/whoami")
                return "Login required" in browser.page_source

            await waitFor(refused, "the browser refused")
            self.assertNotIn("alice", browser.find_element(By.TAG_NAME, "body").text)

        return ensureDeferred(go())

    def test_loginThenLogout(self) -> Deferred[None]:
        """
        The browser logs in at C{/login} with no C{next} and lands on C{/}:
        the landing page names it, says when its session ends (ISO 8601
        and in words); C{/whoami} is a page; the Log out button ends the
        session and the keycard, and the form says it is logged out; an
        unknown page is the 404 page, C{GET /logout} the 405 page, never a
        twisted.web stock page (issue 27).
        """
        from selenium.webdriver.common.by import By

        browserTools()

        async def go() -> None:
            base = await self.startService()
            browser = self.logIn(base + "/login", screenshot=True)
            await waitFor(
                lambda: bool(browser.find_elements(By.ID, "logout")), "logged in"
            )
            self.assertEqual(urlparse(browser.current_url).path, "/")
            landing = self.page(browser, "landing", "Logged in")
            self.assertEqual(browser.find_element(By.ID, "avatar").text, "alice")
            ends = browser.find_element(By.ID, "expires")
            self.assertRegex(
                ends.get_attribute("datetime"),
                r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00\Z",
            )
            self.assertRegex(
                browser.find_element(By.ID, "expires-words").text,
                r"\Ain \d+ (minutes|hours)\Z",
            )
            self.assertIn("Session ends", landing)
            data = ("--data-dir", str(self.data))
            listing = keycard("list", *data, "--json", "--avatar", "alice")
            [entry] = json.loads(listing.stdout)
            self.assertTrue(entry["held"], entry)

            browser.get(base + "/whoami")
            self.page(browser, "whoami", "Who am I")
            self.assertEqual(browser.find_element(By.ID, "avatar").text, "alice")
            self.assertEqual(browser.find_element(By.ID, "scheme").text, "session")

            browser.get(base + "/")
            browser.find_element(By.ID, "logout").click()
            await waitFor(
                lambda: bool(browser.find_elements(By.ID, "username")), "logged out"
            )
            out = self.page(browser, "logged-out", "Log in")
            self.assertIn("You are logged out.", out)
            # Its keycard is no longer held by the HTTP face.
            listing = keycard("list", *data, "--json", "--avatar", "alice")
            [entry] = json.loads(listing.stdout)
            self.assertFalse(entry["held"], entry)

            browser.get(base + "/whoami")
            self.assertIn(
                "Log in to see this page.", self.page(browser, "401", "Login required")
            )
            browser.get(base + "/")
            self.assertEqual(urlparse(browser.current_url).path, "/login")
            browser.get(base + "/no/such/page")
            text = self.page(browser, "404", "Not found")
            self.assertIn("There is no page at this address", text)
            browser.get(base + "/logout")
            self.assertIn(
                "This page takes POST only",
                self.page(browser, "405", "Method not allowed"),
            )

        return ensureDeferred(go())
