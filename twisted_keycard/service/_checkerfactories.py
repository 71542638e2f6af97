"""
strcred checker factories, so that C{--auth scram:FILE} works in any twistd
plugin that uses L{twisted.cred.strcred.AuthOptionMixin}, and
C{strcred.makeChecker("scram:FILE")} gives a checker.

They are published as plugins by C{twisted/plugins/twisted_keycard_checkers.py}.
"""

from __future__ import annotations

import re
import textwrap

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.strcred import ICheckerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer

from twisted_keycard.hmackeys import HMACKeys, IHMACExchange
from twisted_keycard.passwords import PasswordFile
from twisted_keycard.scram import ISCRAMExchange, SCRAMVerifiers
from twisted_keycard.srp import ISRPExchange, SRPVerifiers
from twisted_keycard.sshkeys import ISSHExchange, SSHKeys

_MARKUP = re.compile(r"\b[BCILU]\{([^{}]*)\}")


def plainHelp(docstring: str | None) -> str:
    """
    A docstring as C{--help-auth-type} prints it: dedented, with epytext
    markup (C{C{...}}, C{L{...}}) reduced to its text.
    """
    return _MARKUP.sub(r"\1", textwrap.dedent(docstring or "")).strip()


@implementer(ICheckerFactory, IPlugin)
class SCRAMCheckerFactory:
    """
    C{scram:FILE}: SCRAM-SHA-256 keycards checked against FILE, lines of
    C{name:SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>} (the format
    PostgreSQL stores; C{keycard user add} writes it).  FILE is read again
    when it changes.
    """

    authType = "scram"
    authHelp = plainHelp(__doc__)
    argStringFormat = "scram:FILE (lines of name:SCRAM-SHA-256$...)"
    credentialInterfaces = (ISCRAMExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("scram: needs a file, as in scram:users.scram")
        return SCRAMVerifiers.fromFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class HMACCheckerFactory:
    """
    C{hmac:FILE}: HMAC-SHA256 pre-shared keys, one per client, from FILE,
    lines of C{name:base64key} (16 to 64 bytes).  The bouncer sends a nonce;
    the client answers with the MAC of it and of the exchange; a mismatch
    drops the connection.  FILE is read again when it changes.
    """

    authType = "hmac"
    authHelp = plainHelp(__doc__)
    argStringFormat = "hmac:FILE (lines of name:base64key)"
    credentialInterfaces = (IHMACExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("hmac: needs a file, as in hmac:clients.keys")
        return HMACKeys.fromFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class SSHKeysCheckerFactory:
    """
    C{sshkeys:FILE}: public-key signatures checked against FILE, lines of
    C{name} and an OpenSSH public key (C{ssh-ed25519 AAAA...}, ECDSA or
    RSA of 2048 bits or more), as in C{authorized_keys}.  No shared secret
    on the server.  FILE is read again when it changes.
    """

    authType = "sshkeys"
    authHelp = plainHelp(__doc__)
    argStringFormat = "sshkeys:FILE (lines of name ssh-ed25519 AAAA...)"
    credentialInterfaces = (ISSHExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("sshkeys: needs a file, as in sshkeys:authorized_keys")
        return SSHKeys.fromFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class HtpasswdCheckerFactory:
    """
    C{htpasswd:FILE}: passwords checked against FILE, an Apache htpasswd
    file in any format Apache's htpasswd writes (bcrypt, apr1, SHA, crypt,
    SHA-256/512 crypt), shadow-like C{name:$6$...} lines, or argon2id PHC
    strings.  Takes twisted.cred's IUsernamePassword credentials and
    password keycards (sent only over TLS).
    """

    authType = "htpasswd"
    authHelp = plainHelp(__doc__)
    argStringFormat = "htpasswd:FILE (an Apache htpasswd file)"
    credentialInterfaces = PasswordFile.credentialInterfaces

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("htpasswd: needs a file, as in htpasswd:/etc/app.htpasswd")
        return PasswordFile(argstring)


@implementer(ICheckerFactory, IPlugin)
class SRPCheckerFactory:
    """
    C{srp:FILE}: SRP-6a (a PAKE) against FILE, lines of
    C{name:SRP-SHA256-2048$<salt>$<verifier>}: an eavesdropper who records
    the exchange cannot try passwords offline.
    """

    authType = "srp"
    authHelp = plainHelp(__doc__)
    argStringFormat = "srp:FILE (lines of name:SRP-SHA256-2048$salt$verifier)"
    credentialInterfaces = (ISRPExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("srp: needs a file, as in srp:users.srp")
        return SRPVerifiers.fromFile(argstring)
