"""
Buildbot with keycards, in two lines (C{pip install
'twisted-keycard[buildbot]'}): in C{master.cfg}::

    from twisted_keycard.buildbot import useKeycards; useKeycards(c, "keycard-data")

and in each worker's C{buildbot.tac}::

    from twisted_keycard.buildbot import keycardWorker; keycardWorker()

The web UI and the REST API check keycard tokens and passwords (an
htpasswd file in any format, or SCRAM verifiers) with L{KeycardWebAuth}::

    c["www"]["auth"] = KeycardWebAuth("keycard-data", htpasswd="web.htpasswd")

See C{docs/howto/buildbot.rst}.
"""

from twisted_keycard.buildbot._master import (
    KeycardDispatcher,
    KeycardService,
    useKeycards,
)
from twisted_keycard.buildbot._worker import keycardWorker
from twisted_keycard.buildbot._www import CheckedResource, KeycardWebAuth

__all__ = [
    "CheckedResource",
    "KeycardDispatcher",
    "KeycardService",
    "KeycardWebAuth",
    "keycardWorker",
    "useKeycards",
]
