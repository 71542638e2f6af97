"""
Why the bouncer refuses a keycard, for its log and its metrics only: the
peer always gets the same opaque refusal.
"""


class Refusal(Exception):
    """
    A keycard is refused; the message says why, in the bouncer's log.

    @ivar reason: a fixed word for the metrics (a key of
        L{twisted_keycard.bouncer._metrics.REASONS}), never a peer's text.
    """

    def __init__(self, message: str, reason: str = "protocol") -> None:
        super().__init__(message)
        self.reason = reason
