"""
The guard's link to its bouncer: each keycard handed over with the
requester's fields set, the bouncer's answers turned into HTTP refusals,
and the keycards removed when the guard lets them go.
"""

from __future__ import annotations

from typing import Any

from twisted.cred.error import LoginFailed
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from twisted_keycard._printable import printable
from twisted_keycard.bouncer._interfaces import IBouncer
from twisted_keycard.error import KeycardDenied
from twisted_keycard.keycard._keycard import Keycard, KeycardState
from twisted_keycard.web._challenges import Answers
from twisted_keycard.web._options import GuardOptions, WebLogin
from twisted_keycard.web._refusals import throttled, unavailable


class BouncerLink:
    """
    Hands keycards from HTTP requests to a bouncer.

    @ivar inFlight: the keycards of requests in progress that end with them.
    """

    log = Logger()

    def __init__(
        self,
        bouncer: IBouncer,
        requesterName: str,
        options: GuardOptions,
        answers: Answers,
    ) -> None:
        self.bouncer = bouncer
        self.requesterName = requesterName
        self.options = options
        self.answers = answers
        self.inFlight: set[str] = set()

    async def ask(
        self, request: IRequest, keycard: Keycard, bearerError: bool = False
    ) -> Keycard:
        """
        Hand a keycard from C{request} to the bouncer.

        @raise WebRefusal: a 401 if it is refused, a 429 if the bouncer will
            not take it now, a 503 if the bouncer failed.
        """
        keycard.address = self.options.proxies.clientAddress(request)
        keycard.requesterName = self.requesterName
        keycard.channelBindings = None
        try:
            result = await self.bouncer.authenticate(keycard)
        except KeycardDenied as e:
            raise throttled(self.options.retryAfter, str(e)) from None
        except LoginFailed:
            raise self.answers.unauthorized(request, bearerError=bearerError) from None
        except Exception:
            self.log.failure(
                "the bouncer failed a keycard from {address}",
                address=printable(keycard.address),
            )
            raise unavailable(self.options.retryAfter) from None
        if result.state is KeycardState.AUTHENTICATED and (
            result.id is None or result.avatarId is None
        ):
            raise unavailable(self.options.retryAfter)
        return result

    def oneShot(self, request: IRequest, issued: Keycard, scheme: str) -> WebLogin:
        """
        A login whose keycard is removed when the request ends.
        """
        keycardId = issued.id
        assert keycardId is not None and issued.avatarId is not None
        self.inFlight.add(keycardId)

        def ended(result: object) -> None:
            self.inFlight.discard(keycardId)
            self.remove(keycardId)

        finishing: Any = request
        finishing.notifyFinish().addBoth(ended)
        return WebLogin(
            issued.avatarId,
            keycardId,
            scheme,
            issued.expires,
            token=issued.token,
            oneShot=True,
        )

    def remove(self, keycardId: str) -> None:
        d = self.bouncer.removeKeycardId(keycardId)
        d.addErrback(lambda f: self.log.failure("removing a keycard failed", f))
