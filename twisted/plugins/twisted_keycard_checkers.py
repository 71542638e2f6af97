"""
strcred checker factories of twisted-keycard: C{--auth scram:FILE},
C{--auth hmac:FILE}, C{--auth sshkeys:FILE}, C{--auth htpasswd:FILE},
C{--auth srp:FILE}.
"""

from twisted_keycard.service._checkers import (
    HMACCheckerFactory,
    HtpasswdCheckerFactory,
    SCRAMCheckerFactory,
    SRPCheckerFactory,
    SSHKeysCheckerFactory,
)

scramCheckerFactory = SCRAMCheckerFactory()
hmacCheckerFactory = HMACCheckerFactory()
sshkeysCheckerFactory = SSHKeysCheckerFactory()
htpasswdCheckerFactory = HtpasswdCheckerFactory()
srpCheckerFactory = SRPCheckerFactory()
