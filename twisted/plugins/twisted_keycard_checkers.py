"""
strcred checker factories of twisted-keycard: C{--auth scram:FILE}.
"""

from twisted_keycard.checkerfactories import SCRAMCheckerFactory

scramCheckerFactory = SCRAMCheckerFactory()
