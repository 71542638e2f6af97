"""
The twistd plugin: C{twistd -n keycard-bouncer --data-dir DIR}.
"""

from twisted.application.service import ServiceMaker

keycardBouncer = ServiceMaker(
    "keycard bouncer",
    "twisted_keycard.service",
    "Authenticate keycards over Perspective Broker (twisted-keycard).",
    "keycard-bouncer",
)
