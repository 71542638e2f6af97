"""
Coroutines run at once as far as they go (L{runNow}, L{deferNow}), and the
login that uses them: answered in the call that takes its message when no
step waits, through a L{Deferred} when one does.
"""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from twisted_keycard._files import deferNow, runNow
from twisted_keycard.testing import KeycardTestConnection, KeycardTestServer

from ._passphrase import PassphraseAnswerer, PassphraseChecker
from ._realm import AvatarRealm

#: The first item of the root's answers (docs/protocol.rst).
CHALLENGE = b"challenge"
LOGGED_IN = b"logged_in"


class Boom(Exception):
    pass


async def ready(value: object) -> object:
    return value


async def failing() -> object:
    raise Boom("at once")


async def waiting(d: Deferred[int], fails: bool = False) -> int:
    value = await d
    if fails:
        raise Boom("after waiting")
    return value + 1


class RunNowTests(SynchronousTestCase):
    def test_readyResult(self) -> None:
        """
        A coroutine that never waits gives its result itself, no
        L{Deferred}; L{deferNow} gives it in a fired one.
        """
        self.assertEqual(runNow(ready(7)), 7)
        self.assertEqual(self.successResultOf(deferNow(ready(7))), 7)

    def test_readyFailure(self) -> None:
        """
        A coroutine that raises without waiting gives a failed L{Deferred}
        from either, never an exception from the call.
        """
        result = runNow(failing())
        assert isinstance(result, Deferred)
        self.assertEqual(str(self.failureResultOf(result, Boom).value), "at once")
        self.failureResultOf(deferNow(failing()), Boom)

    def test_waits(self) -> None:
        """
        A coroutine that waits gives a L{Deferred} that fires when the
        rest of it has run, with what it returns or raises.
        """
        d: Deferred[int] = Deferred()
        result = runNow(waiting(d))
        assert isinstance(result, Deferred)
        self.assertNoResult(result)
        d.callback(1)
        self.assertEqual(self.successResultOf(result), 2)
        later: Deferred[int] = Deferred()
        failed = deferNow(waiting(later, fails=True))
        self.assertNoResult(failed)
        later.callback(1)
        self.failureResultOf(failed, Boom)

    def test_cancelWhileWaiting(self) -> None:
        """
        Cancelling the L{Deferred} of a coroutine that waits cancels what
        it waits on, as L{Deferred.fromCoroutine} does.
        """
        d: Deferred[int] = Deferred()
        result = runNow(waiting(d))
        assert isinstance(result, Deferred)
        result.cancel()
        self.assertTrue(d.called)
        self.failureResultOf(result, CancelledError)


@attrs.define
class LaterRealm(AvatarRealm):
    """
    A realm whose avatars come when the test fires C{requests}.
    """

    requests: list[Deferred[Any]] = attrs.field(factory=list)

    def requestAvatar(  # type: ignore[override]
        self, avatarId: Any, mind: object, *interfaces: Any
    ) -> Deferred[Any]:
        login = super().requestAvatar(avatarId, mind, *interfaces)
        d: Deferred[Any] = Deferred()
        self.requests.append(d)
        d.addCallback(lambda _: login)
        return d


class LoginAnsweredAtOnceTests(SynchronousTestCase):
    """
    L{KeycardRoot.login} and L{KeycardRoot.answer}, as PB's remote methods
    may, answer at once when nothing on the way waits, and with a
    L{Deferred} when something does; the client logs in either way.
    """

    def loginRecorded(
        self, realm: AvatarRealm
    ) -> tuple[KeycardTestConnection, Deferred[Any], list[Any]]:
        """
        Start a login to a server with C{realm}, recording what the root's
        C{login} and C{answer} return.
        """
        checker = PassphraseChecker({"alice": "wonderland"})
        server = KeycardTestServer.build([checker], realm)
        root = server.root
        answers: list[Any] = []
        for name in ("login", "answer"):
            original = getattr(root, name)

            def call(*args: Any, original: Any = original) -> Any:
                answer = original(*args)
                answers.append(answer)
                return answer

            self.patch(root, name, call)
        connection = server.connect()
        d = connection.login([PassphraseAnswerer("alice", "wonderland")])
        return connection, d, answers

    def test_answeredAtOnce(self) -> None:
        _, d, answers = self.loginRecorded(AvatarRealm())
        self.successResultOf(d)
        self.assertEqual([type(answer) for answer in answers], [tuple, tuple])
        self.assertEqual([answer[0] for answer in answers], [CHALLENGE, LOGGED_IN])

    def test_answeredLater(self) -> None:
        realm = LaterRealm()
        connection, d, answers = self.loginRecorded(realm)
        self.assertNoResult(d)
        challenge, later = answers
        self.assertEqual(challenge[0], CHALLENGE)
        self.assertIsInstance(later, Deferred)
        self.assertNoResult(later)
        realm.requests[0].callback(None)
        connection.flush()
        self.successResultOf(d)

    def test_coroutineRealm(self) -> None:
        """
        A realm whose C{requestAvatar} is a coroutine function (which
        twisted.cred's own L{Portal.login} does not take) is awaited.
        """

        @attrs.define
        class CoroutineRealm(AvatarRealm):
            async def requestAvatar(  # type: ignore[override]
                self, avatarId: Any, mind: object, *interfaces: Any
            ) -> Any:
                return super().requestAvatar(avatarId, mind, *interfaces)

        realm = CoroutineRealm()
        _, d, answers = self.loginRecorded(realm)
        self.successResultOf(d)
        self.assertEqual([answer[0] for answer in answers], [CHALLENGE, LOGGED_IN])
        self.assertEqual([avatar.avatarId for avatar in realm.avatars], ["alice"])
