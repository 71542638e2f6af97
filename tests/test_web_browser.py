"""
A real browser against the bouncer service's HTTP face: Debian's chromium,
headless, driven by selenium through chromium-driver, logs in through the
form, loads a protected page, and is refused after C{keycard revoke}.

Skipped where chromium or its driver is missing, except in CI (C{CI} set),
where that is a failure: scripts/test installs them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.trial.unittest import SkipTest

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
]


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


@pytest.mark.integration
class BrowserTests(HTTPFaceCase):
    def browser(self, profile: Path) -> Any:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        chromium, driver = browserTools()
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in [*FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        browser = webdriver.Chrome(options=options, service=Service(driver))
        self.addCleanup(browser.quit)
        browser.set_page_load_timeout(30)
        return browser

    def logIn(self, url: str) -> Any:
        """
        A new browser that fills in and sends the login form at C{url}.
        """
        from selenium.webdriver.common.by import By

        browser = self.browser(self.dir / "profile")
        browser.get(url)
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
            text = browser.find_element(By.TAG_NAME, "body").text
            match = re.search(r"\{.*\}", text, re.DOTALL)
            assert match is not None, text
            self.assertEqual(json.loads(match.group(0))["avatarId"], "alice")
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
        The browser logs in at C{/login} with no C{next}, lands on C{/},
        which sends it back to C{/login}, showing its login; its Log out
        button ends the session and the keycard (issue 23: a browser could
        not log out on the service's face).
        """
        from selenium.webdriver.common.by import By

        browserTools()

        async def go() -> None:
            base = await self.startService()
            browser = self.logIn(base + "/login")
            await waitFor(
                lambda: bool(browser.find_elements(By.ID, "logout")), "logged in"
            )
            self.assertEqual(urlparse(browser.current_url).path, "/login")
            self.assertEqual(browser.find_element(By.ID, "avatar").text, "alice")
            data = ("--data-dir", str(self.data))
            listing = keycard("list", *data, "--json", "--avatar", "alice")
            [entry] = json.loads(listing.stdout)
            self.assertTrue(entry["held"], entry)
            browser.find_element(By.ID, "logout").click()
            await waitFor(
                lambda: bool(browser.find_elements(By.ID, "username")), "logged out"
            )
            browser.get(base + "/whoami")
            self.assertIn("Login required", browser.page_source)
            # Its keycard is no longer held by the HTTP face.
            listing = keycard("list", *data, "--json", "--avatar", "alice")
            [entry] = json.loads(listing.stdout)
            self.assertFalse(entry["held"], entry)

        return ensureDeferred(go())
