"""
The worker's side of Buildbot with keycards: one line in C{buildbot.tac}
makes the worker log in with a SCRAM keycard, on each connection, through
its own factory and retry policy.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import MethodType
from typing import Any

from buildbot_worker.pb import Worker
from twisted.internet.defer import Deferred
from twisted.spread import pb

from twisted_keycard.pb import KeycardLogin, keycardLogin
from twisted_keycard.scram import SCRAMAnswerer


def _findWorker(namespace: Mapping[str, object]) -> Any:
    """
    The one Buildbot worker among the values of a C{buildbot.tac}'s
    namespace.

    @raise ValueError: if there is none, or more than one.
    """
    workers = {id(v): v for v in namespace.values() if isinstance(v, Worker)}
    if len(workers) != 1:
        raise ValueError(
            "keycardWorker() found no single Worker in buildbot.tac: call it"
            " after the line that makes the Worker, or pass it"
        )
    return next(iter(workers.values()))


def keycardWorker(
    worker: Any = None,
    *,
    password: str | bytes | None = None,
    channelBinding: str = "prefer",
) -> Any:
    """
    Make a Buildbot worker log in with a SCRAM keycard instead of PB's MD5
    challenge; the rest of the worker (its reconnections, its retry policy,
    its keepalives) is Buildbot's.

    A refusal or a denial is an C{UnauthorizedLogin}, which the worker
    tries again after, with its backoff; a master that cannot prove it
    knows the worker's password (L{ServerAuthenticationFailed}) stops the
    worker, as any other error does.

    @param worker: the C{buildbot_worker.bot.Worker}; by default the one
        in the calling C{buildbot.tac}'s namespace.
    @param password: the password; by default the one the worker was given
        (C{passwd} in C{buildbot.tac}).
    @param channelBinding: see L{SCRAMAnswerer}.
    @return: the worker.
    @raise ValueError: if no single worker is found, or for a name or
        password SCRAM cannot carry.
    """
    if worker is None:
        worker = _findWorker(sys._getframe(1).f_globals)
    factory = worker.bf
    credentials = factory._credentials
    answerer = SCRAMAnswerer(
        credentials.username,
        credentials.password if password is None else password,
        channelBinding=channelBinding,
    )

    def doLogin(
        self: Any, root: pb.RemoteReference, broker: pb.Broker
    ) -> Deferred[Any]:
        d: Deferred[Any] = keycardLogin(root, [answerer], self._client)
        d.addCallback(_perspective)
        d.addCallbacks(
            self.gotPerspective, self.failedToGetPerspective, errbackArgs=(broker,)
        )
        return d

    factory.doLogin = MethodType(doLogin, factory)
    return worker


def _perspective(login: KeycardLogin) -> pb.RemoteReference:
    return login.perspective
