"""
The bouncer service: the twistd plugin's options and service, the strcred
checker factories, stock twisted.cred checkers served through password
keycards, the data directory and a development certificate; and
L{BouncerService}, a data directory's bouncer and store as one service for
applications that embed it.
"""

from twisted_keycard.service._bouncerservice import BouncerService
from twisted_keycard.service._datadir import DataDir, NoDataDir
from twisted_keycard.service._devcert import makeDevCertificate
from twisted_keycard.service._startup import StartupError
from twisted_keycard.service._stockcheckers import PasswordChallenger
from twisted_keycard.service._tap import makeService
from twisted_keycard.service._tapoptions import Options

__all__ = [
    "BouncerService",
    "DataDir",
    "NoDataDir",
    "Options",
    "PasswordChallenger",
    "StartupError",
    "makeDevCertificate",
    "makeService",
]
