"""
The options of C{twistd keycard-bouncer}, checked as a whole: a bad one
stops twistd with one line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from twisted.cred import strcred
from twisted.python import usage

from twisted_keycard.bouncer._composite import AddressRule, CompositePolicy
from twisted_keycard.bouncer._expression import ExpressionError
from twisted_keycard.bouncer._policy import (
    TokenPolicy,
    Upkeep,
)
from twisted_keycard.service._datadir import DataDir, NoDataDir
from twisted_keycard.service._limitoptions import connectionLimits
from twisted_keycard.service._options import namedCoercions, oneLine
from twisted_keycard.service._optiontable import FLAGS, PARAMETERS
from twisted_keycard.service._startup import (
    PROGRAM,
    refuseExposed,
)
from twisted_keycard.service._stockcheckers import (
    checkPolicyKinds,
    servingKeycards,
)
from twisted_keycard.service._stores import (
    sqlitePath,
    storePassword,
)
from twisted_keycard.store.redis._url import RedisURL, isRedisURL, parseRedisURL
from twisted_keycard.web._peers import ProxyTrust


class Options(usage.Options, strcred.AuthOptionMixin):
    """
    Options of C{twistd keycard-bouncer}.
    """

    synopsis = "[options]"
    longdesc = (
        "Run a keycard bouncer: clients log in over Perspective Broker with "
        "keycards (SCRAM-SHA-256, tokens, ...), checked against the data "
        "directory's users (or any --auth checker) and recorded in its "
        "store (SQLite, or Redis for bouncers on several hosts).  Make a data "
        "directory with: keycard init DIR [--store redis://HOST:PORT/DB]"
    )
    optParameters = PARAMETERS
    optFlags = FLAGS

    def __init__(self) -> None:
        super().__init__()
        self["allow"] = []
        self["deny"] = []
        self.authNames: list[str] = []
        self["http-trust-proxy"] = []
        self["claims"] = {}
        namedCoercions(self)

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse the options; a bad one stops twistd with one line (twistd
        would print the whole usage and the error after it).

        @raise SystemExit: naming what is wrong.
        """
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            hint = " (see --help)" if "not recognized" in str(e) else ""
            raise SystemExit(f"{PROGRAM}: {oneLine(e)}{hint}") from None

    def opt_auth(self, description: str) -> None:
        """
        checker to log in against (repeatable): scram:FILE, srp:FILE,
        hmac:FILE, sshkeys:FILE, htpasswd:FILE, or any twisted.cred checker
        of user names and passwords (memory:..., file:FILE, unix), served
        through password keycards, over TLS only [default: the data
        directory's users]; --help-auth lists them
        """
        try:
            self.addChecker(strcred.makeChecker(description))
        except strcred.InvalidAuthType:
            raise usage.UsageError(
                f"unknown --auth type in {description!r}; --help-auth lists them"
            ) from None
        except Exception as e:
            raise usage.UsageError(
                f"bad --auth {description!r}: {oneLine(e)}"
            ) from None
        self.authNames.append(description)

    # usage.Options prints an option's docstring as it is: one line.
    opt_auth.__doc__ = " ".join((opt_auth.__doc__ or "").split())

    def opt_allow(self, cidr: str) -> None:
        """
        network the 'address' algorithm allows (repeatable; IPv4 or IPv6)
        """
        self["allow"].append(cidr)

    def opt_deny(self, cidr: str) -> None:
        """
        network the 'address' algorithm denies (repeatable)
        """
        self["deny"].append(cidr)

    def opt_http_trust_proxy(self, cidr: str) -> None:
        """
        network of reverse proxies whose X-Forwarded-For and
        X-Forwarded-Proto the HTTP face believes (repeatable)
        """
        self["http-trust-proxy"].append(cidr)

    def opt_claim(self, claim: str) -> None:
        """
        KEY=VALUE written in every token issued after a password login, and
        required of every token presented (repeatable; license servers:
        vendor, program, version)
        """
        key, equals, value = claim.partition("=")
        if not equals or not key:
            raise usage.UsageError(f"--claim takes KEY=VALUE, not {claim!r}")
        if key in self["claims"]:
            raise usage.UsageError(f"--claim {key} given twice")
        self["claims"][key] = value

    def _store(self) -> list[Path]:
        """
        Read C{--store} (or the data directory's store) and its password.

        @return: the files that hold the store's secrets.
        """
        store = self["store"] or self.dataDir.store
        self.storePath: str | None = None
        self.redisURL: RedisURL | None = None
        self.storePassword: str | None = None
        if self["tokens-when-store-down"] not in ("refuse", "accept"):
            raise usage.UsageError("--tokens-when-store-down takes refuse or accept")
        if not isRedisURL(store):
            try:
                path = self.storePath = sqlitePath(store)
            except ValueError as e:
                raise usage.UsageError(str(e)) from None
            return [Path(path + end) for end in ("", "-wal", "-shm")]
        try:
            self.redisURL = parseRedisURL(store)
        except ValueError as e:
            raise usage.UsageError(f"bad --store: {e}") from None
        passwordFile = self["store-password-file"]
        if passwordFile is None and not self["store"]:
            passwordFile = self.dataDir.storePasswordFile
        try:
            self.storePassword = storePassword(passwordFile)
        except (OSError, ValueError) as e:
            reason = e.strerror.lower() if isinstance(e, OSError) and e.strerror else e
            raise usage.UsageError(
                f"cannot read the store's password file: {reason}"
            ) from None
        return [] if passwordFile is None else [Path(passwordFile)]

    def postOptions(self) -> None:
        try:
            self.dataDir = DataDir.open(DataDir.default(self["data-dir"]))
        except NoDataDir as e:
            raise usage.UsageError(str(e)) from None
        secrets = [self.dataDir.path, *self._store()]
        if not self.get("credCheckers"):
            self.opt_auth(f"scram:{self.dataDir.users}")
            secrets.append(self.dataDir.users)
        try:
            self["credCheckers"] = servingKeycards(self["credCheckers"], self.authNames)
        except ValueError as e:
            raise usage.UsageError(str(e)) from None
        if not self["insecure-permissions"]:
            refuseExposed(secrets)
        if (self["seat-pool"] is None) != (self["seats"] is None):
            raise usage.UsageError("--seat-pool and --seats go together")
        for name in (
            "duration",
            "challenge-timeout",
            "requester-timeout",
            "ticket-timeout",
            "throttle-window",
            "max-family-lifetime",
            "lease-time",
        ):
            if not (math.isfinite(self[name]) and self[name] > 0):
                raise usage.UsageError(f"--{name} must be a positive number")
        try:
            self.upkeep = Upkeep(leaseTime=self["lease-time"])
        except ValueError:
            raise usage.UsageError(
                "--lease-time must be at least 2 seconds (two renewals)"
            ) from None
        self.limits = connectionLimits(self)
        self.tokens = None
        if not self["no-tokens"]:
            audiences = names(self["token-audiences"])
            if self["http"] is not None:
                # One service, one audience: its PB and HTTP faces take
                # each other's tokens.
                audiences |= {self["requester-name"], httpRequesterName(self)}
            try:
                self.tokens = TokenPolicy(
                    bindAddress=self["bind-tokens"],
                    claims=self["claims"],
                    audiences=audiences,
                    maxFamilyLifetime=self["max-family-lifetime"],
                )
            except ValueError as e:
                raise usage.UsageError(f"--claim: {e}") from None
        elif self["claims"]:
            raise usage.UsageError("--claim is written in tokens: drop --no-tokens")
        if self["http"] is not None and self["no-tokens"]:
            raise usage.UsageError("--http hands out tokens: drop --no-tokens")
        try:
            self.proxies = ProxyTrust(self["http-trust-proxy"])
        except ValueError as e:
            raise usage.UsageError(f"--http-trust-proxy: {e}") from None
        for name, least in (
            ("max-pending-per-connection", 1),
            ("hash-threads", 1),
            ("hash-queue", 0),
            ("max-password-bytes", 1),
        ):
            if self[name] < least:
                raise usage.UsageError(f"--{name} must be at least {least}")
        self.policy = None
        try:
            rule = AddressRule.fromStrings(self["allow"], self["deny"])
        except ValueError as e:
            raise usage.UsageError(f"bad --allow or --deny: {e}") from None
        if self["policy"] is not None:
            try:
                self.policy = CompositePolicy(self["policy"], address=rule)
            except ExpressionError as e:
                raise usage.UsageError(f"bad --policy: {oneLine(e)}") from None
            try:
                checkPolicyKinds(
                    self.policy, self["credCheckers"], not self["no-tokens"]
                )
            except ValueError as e:
                raise usage.UsageError(str(e)) from None


def httpRequesterName(options: Any) -> str:
    """
    The requester name of the service's HTTP face: its own, so that the
    bouncer tells each face about its own clients.
    """
    return f"{options['requester-name']}/http"


def names(text: str) -> set[str]:
    """
    The names in a comma-separated list.
    """
    return {n.strip() for n in text.split(",") if n.strip()}
