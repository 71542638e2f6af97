"""
strcred checker factories, so that C{--auth scram:FILE} works in any twistd
plugin that uses L{twisted.cred.strcred.AuthOptionMixin}, and
C{strcred.makeChecker("scram:FILE")} gives a checker.

They are published as plugins by C{twisted/plugins/twisted_keycard_checkers.py}.
"""

from __future__ import annotations

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.strcred import ICheckerFactory
from twisted.plugin import IPlugin
from zope.interface import implementer

from .scram import ISCRAMExchange, SCRAMVerifiers


@implementer(ICheckerFactory, IPlugin)
class SCRAMCheckerFactory:
    """
    C{scram:FILE}: SCRAM-SHA-256 keycards checked against FILE, lines of
    C{name:SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>} (the format
    PostgreSQL stores; C{keycard user add} writes it).  FILE is read again
    when it changes.
    """

    authType = "scram"
    authHelp = __doc__
    argStringFormat = "scram:FILE (lines of name:SCRAM-SHA-256$...)"
    credentialInterfaces = (ISCRAMExchange,)

    def generateChecker(self, argstring: str = "") -> ICredentialsChecker:
        if not argstring:
            raise ValueError("scram: needs a file, as in scram:users.scram")
        return SCRAMVerifiers.fromFile(argstring)
