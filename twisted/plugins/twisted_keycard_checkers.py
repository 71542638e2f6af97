"""
strcred checker factories of twisted-keycard: C{--auth scram:FILE},
C{--auth hmac:FILE}, C{--auth sshkeys:FILE}.
"""

from twisted_keycard.checkerfactories import (
    HMACCheckerFactory,
    SCRAMCheckerFactory,
    SSHKeysCheckerFactory,
)

scramCheckerFactory = SCRAMCheckerFactory()
hmacCheckerFactory = HMACCheckerFactory()
sshkeysCheckerFactory = SSHKeysCheckerFactory()
