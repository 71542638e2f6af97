"""
A bouncer in another process: the bouncer service's side (a realm whose
avatars are requesters) and the requester's side (an L{IBouncer} over PB).
"""

from twisted_keycard.remote._bouncerside import BouncerPerspective, BouncerRealm
from twisted_keycard.remote._requesterside import DROP_SPREAD, RemoteBouncer

__all__ = ["DROP_SPREAD", "BouncerPerspective", "BouncerRealm", "RemoteBouncer"]
