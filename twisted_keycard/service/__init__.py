"""
The bouncer service: the twistd plugin's options and service, the strcred
checker factories, stock twisted.cred checkers served through password
keycards, the data directory and a development certificate; and
L{BouncerService}, a data directory's bouncer and store as one service for
applications that embed it.
"""

from twisted_keycard.service._checkers import PasswordChallenger
from twisted_keycard.service._datadir import (
    DataDir,
    KeyFileError,
    NoDataDir,
    makeDevCertificate,
)
from twisted_keycard.service._services import BouncerService
from twisted_keycard.service._startup import (
    StartupError,
    clientEndpoint,
    openStore,
    sqlitePath,
    storePassword,
)
from twisted_keycard.service._tap import Options, makeService

__all__ = [
    "BouncerService",
    "DataDir",
    "KeyFileError",
    "NoDataDir",
    "Options",
    "PasswordChallenger",
    "StartupError",
    "clientEndpoint",
    "makeDevCertificate",
    "makeService",
    "openStore",
    "sqlitePath",
    "storePassword",
]
