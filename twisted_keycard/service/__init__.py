"""
The bouncer service: the twistd plugin's options and service, the strcred
checker factories, the data directory and a development certificate.
"""

from twisted_keycard.service._datadir import DataDir, NoDataDir
from twisted_keycard.service._devcert import makeDevCertificate
from twisted_keycard.service._tap import Options, makeService

__all__ = ["DataDir", "NoDataDir", "Options", "makeDevCertificate", "makeService"]
