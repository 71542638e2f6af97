"""
Why the bouncer refuses a keycard, for its log only: the peer always gets
the same opaque refusal.
"""


class Refusal(Exception):
    """
    A keycard is refused; the message says why, in the bouncer's log.
    """
