"""
strcred checker factories of twisted-keycard: C{--auth scram:FILE}, C{--auth hmac:FILE}.
"""

from twisted_keycard.checkerfactories import HMACCheckerFactory, SCRAMCheckerFactory

scramCheckerFactory = SCRAMCheckerFactory()
hmacCheckerFactory = HMACCheckerFactory()
