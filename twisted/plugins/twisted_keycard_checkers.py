"""
strcred checker factories of twisted-keycard: C{--auth scram:FILE},
C{--auth hmac:FILE}, C{--auth sshkeys:FILE}, C{--auth htpasswd:FILE}.
"""

from twisted_keycard.checkerfactories import (
    HMACCheckerFactory,
    HtpasswdCheckerFactory,
    SCRAMCheckerFactory,
    SSHKeysCheckerFactory,
)

scramCheckerFactory = SCRAMCheckerFactory()
hmacCheckerFactory = HMACCheckerFactory()
sshkeysCheckerFactory = SSHKeysCheckerFactory()
htpasswdCheckerFactory = HtpasswdCheckerFactory()
