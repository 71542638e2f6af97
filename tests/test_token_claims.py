"""
Tests for the claims of tokens: a bouncer refuses a token whose claims
differ from its own, and a child token keeps its family's claims.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred

from twisted_keycard.bouncer import TokenPolicy
from twisted_keycard.bouncer._bouncer import Bouncer
from twisted_keycard.tokens import verify

from .test_tokens_bouncer import TokenLogins


class TokenClaimsTests(TokenLogins):
    def bouncerWith(self, name: str, claims: Mapping[str, str]) -> Bouncer:
        return self.makeBouncer(name, tokens=TokenPolicy(claims=claims))

    def claimsOf(self, token: str | None) -> Mapping[str, str]:
        assert token is not None and self.bouncer.keys is not None
        keys = self.bouncer.keys
        keyring = self.successResultOf(Deferred.fromCoroutine(keys.current()))
        return verify(token, keyring, self.clock.seconds()).claims

    def test_otherValueRefused(self) -> None:
        """
        A token for program C{flux} is refused by a bouncer for program
        C{zzz}, and issues no child there.
        """
        flux = self.bouncerWith("flux", {"program": "flux"})
        zzz = self.bouncerWith("zzz", {"program": "zzz"})
        token = self.login(flux).token
        self.refused(token, zzz)
        self.assertEqual(zzz.held, {})
        self.present(token, flux)

    def test_missingClaimRefused(self) -> None:
        """
        A token without one of the bouncer's claims is refused, as is one
        with no claims at all.
        """
        acme = self.bouncerWith("acme", {"vendor": "acme"})
        strict = self.bouncerWith("strict", {"vendor": "acme", "program": "flux"})
        plain = self.bouncerWith("plain", {})
        self.refused(self.login(acme).token, strict)
        self.refused(self.login(plain).token, acme)

    def test_childKeepsFamilyClaims(self) -> None:
        """
        A bouncer that requires some of a token's claims takes it, and the
        child it issues keeps every claim of the family, not the presenting
        bouncer's alone; so does a bouncer that requires none.
        """
        issuer = self.bouncerWith("issuer", {"vendor": "acme", "program": "flux"})
        acme = self.bouncerWith("acme", {"vendor": "acme"})
        plain = self.bouncerWith("plain", {})
        root = self.login(issuer)
        child = self.present(root.token, acme)
        grandchild = self.present(child.token, plain)
        family = {"vendor": "acme", "program": "flux"}
        for token in (root.token, child.token, grandchild.token):
            self.assertEqual(dict(self.claimsOf(token)), family)
        self.present(grandchild.token, issuer)

    def test_passwordLoginTakesBouncerClaims(self) -> None:
        """
        A password login's token carries the claims of the bouncer that
        issued it.
        """
        zzz = self.bouncerWith("zzz", {"program": "zzz"})
        self.assertEqual(dict(self.claimsOf(self.login(zzz).token)), {"program": "zzz"})

    def test_badClaimsRefusedAtOnce(self) -> None:
        """
        Claims a token cannot carry are refused when the policy is made.
        """
        for claims in [{"": "x"}, {"a=b": "x"}, {"a": "x\ny"}, {"a\0": "x"}]:
            self.assertRaises(ValueError, TokenPolicy, claims=claims)
