"""
Buildbot with keycards, in two lines (C{pip install
'twisted-keycard[buildbot]'}): in C{master.cfg}::

    from twisted_keycard.buildbot import useKeycards; useKeycards(c, "keycard-data")

and in each worker's C{buildbot.tac}::

    from twisted_keycard.buildbot import keycardWorker; keycardWorker()

See C{docs/howto/buildbot.rst}.
"""

from twisted_keycard.buildbot._master import (
    KeycardDispatcher,
    KeycardService,
    useKeycards,
)
from twisted_keycard.buildbot._worker import keycardWorker

__all__ = ["KeycardDispatcher", "KeycardService", "keycardWorker", "useKeycards"]
