"""
A proxy that times the calls made to a store.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from twisted.internet.defer import Deferred
from zope.interface import directlyProvides, providedBy
from zope.interface.interface import Method

_S = TypeVar("_S")
_T = TypeVar("_T")


def timedStore(
    store: _S, observe: Callable[[str, float], None], timer: Callable[[], float]
) -> _S:
    """
    A proxy of C{store} that provides the same interfaces and reports, for
    each call of a method of those interfaces, the method's name and the
    seconds from the call until its L{Deferred} fired (with a result or a
    failure).  Other attributes are the store's own.

    @param observe: called with the method's name and the seconds taken.
    @param timer: the time in seconds, read before and after each call.
    """
    return cast(_S, _TimedStore(store, observe, timer))


class _TimedStore:
    """
    See L{timedStore}.
    """

    def __init__(
        self,
        store: object,
        observe: Callable[[str, float], None],
        timer: Callable[[], float],
    ) -> None:
        provided = providedBy(store)
        self._store = store
        self._observe = observe
        self._timer = timer
        self._methods = {
            name
            for interface in provided.flattened()
            for name, description in interface.namesAndDescriptions(all=True)
            if isinstance(description, Method)
        }
        directlyProvides(self, provided)

    def __repr__(self) -> str:
        return f"<timed {self._store!r}>"

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._store, name)
        if name not in self._methods or not callable(attribute):
            return attribute
        return self._timing(name, attribute)

    def _timing(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: object, **kwargs: object) -> Any:
            start = self._timer()
            result = method(*args, **kwargs)
            if isinstance(result, Deferred):

                def done(outcome: _T) -> _T:
                    self._observe(name, self._timer() - start)
                    return outcome

                result.addBoth(done)
            return result

        return call
