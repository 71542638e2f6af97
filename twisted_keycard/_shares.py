"""
Fair shares of a bounded table: entries owned by someone (an address group,
an avatar), where one owner can never push the others out; and the checks
of the limits such tables and budgets are given (a positive count, a
positive number, or none).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

import attrs

_K = TypeVar("_K", bound=Hashable)
_O = TypeVar("_O", bound=Hashable)
_V = TypeVar("_V")


@attrs.define
class GroupSizes(Generic[_O]):
    """
    The number of entries of each owner, with the largest owner found in
    constant time (sizes change by one at a time).
    """

    _sizes: dict[_O, int] = attrs.field(factory=dict)
    _bySize: dict[int, dict[_O, None]] = attrs.field(factory=dict)
    _largest: int = 0

    def __getitem__(self, owner: _O) -> int:
        return self._sizes.get(owner, 0)

    def add(self, owner: _O, change: int) -> None:
        old = self._sizes.get(owner, 0)
        new = old + change
        if old:
            bucket = self._bySize[old]
            del bucket[owner]
            if not bucket:
                del self._bySize[old]
        if new:
            self._sizes[owner] = new
            self._bySize.setdefault(new, {})[owner] = None
        else:
            del self._sizes[owner]
        if new > self._largest:
            self._largest = new
        while self._largest and self._largest not in self._bySize:
            self._largest -= 1

    def largest(self) -> tuple[_O | None, int]:
        """
        An owner of the largest size, and that size (C{0} when empty).
        """
        if not self._largest:
            return None, 0
        return next(iter(self._bySize[self._largest])), self._largest


def checkCount(name: str, value: object) -> None:
    """
    Refuse C{value}, the setting C{name}, unless it is a positive integer
    (not a C{bool}), with a C{ValueError} that names it.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, not {value!r}")


def count(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """
    An attrs validator: see L{checkCount}.
    """
    checkCount(attribute.name, value)


def positive(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """
    An attrs validator: a positive number (an C{int} or a C{float}, not a
    C{bool}), with a C{ValueError} that names the setting.
    """
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def positiveOrNone(
    instance: object, attribute: attrs.Attribute[Any], value: object
) -> None:
    """
    An attrs validator: a positive number (see L{positive}), or C{None} for
    no limit.
    """
    if value is not None:
        positive(instance, attribute, value)


@attrs.define
class FairShares(Generic[_K, _O, _V]):
    """
    Entries by key, each of one owner, at most C{size} in all and
    C{perOwner} of one owner; each owner's entries in order, oldest (or
    least recently L{used}) first.

    A new entry never pushes out another owner's while its own owner is
    at C{perOwner}, or holds as many entries as any other: then its own
    oldest goes.  Only when the table is full and another owner holds more
    does the oldest of an owner holding the most go.  So an owner's flood
    only ever costs itself, and an owner with few entries always gets in.
    """

    size: int = attrs.field(validator=count)
    perOwner: int = attrs.field(validator=count)
    _entries: dict[_K, tuple[_O, _V]] = attrs.field(factory=dict, init=False)
    _byOwner: dict[_O, OrderedDict[_K, None]] = attrs.field(factory=dict, init=False)
    _sizes: GroupSizes[_O] = attrs.field(factory=GroupSizes, init=False)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __iter__(self) -> Iterator[_K]:
        return iter(self._entries)

    def get(self, key: _K) -> _V | None:
        found = self._entries.get(key)
        return None if found is None else found[1]

    def owned(self, owner: _O) -> int:
        """
        The number of entries of C{owner}.
        """
        return self._sizes[owner]

    def used(self, key: _K) -> None:
        """
        Make C{key} its owner's most recently used entry, the last to go.
        """
        found = self._entries.get(key)
        if found is not None:
            self._byOwner[found[0]].move_to_end(key)

    def victim(self, owner: _O) -> _K | None:
        """
        The entry a new entry of C{owner} would push out, if any.
        """
        held = self._sizes[owner]
        if held >= self.perOwner:
            return next(iter(self._byOwner[owner]))
        if len(self._entries) < self.size:
            return None
        largest, most = self._sizes.largest()
        if held >= most:
            largest = owner
        assert largest is not None
        return next(iter(self._byOwner[largest]))

    def put(self, key: _K, owner: _O, value: _V) -> list[tuple[_K, _V]]:
        """
        Add (or replace) the entry C{key}, the newest of its owner's.

        @return: the entries pushed out to make room (a replaced entry
            first), each as its key and value.
        """
        pushed = []
        old = self.pop(key)
        if old is not None:
            pushed.append((key, old))
        while (victim := self.victim(owner)) is not None:
            gone = self.pop(victim)
            assert gone is not None
            pushed.append((victim, gone))
        self._entries[key] = (owner, value)
        self._byOwner.setdefault(owner, OrderedDict())[key] = None
        self._sizes.add(owner, 1)
        return pushed

    def pop(self, key: _K) -> _V | None:
        """
        Remove the entry C{key}.

        @return: its value, if it was there.
        """
        found = self._entries.pop(key, None)
        if found is None:
            return None
        owner, value = found
        keys = self._byOwner[owner]
        del keys[key]
        if not keys:
            del self._byOwner[owner]
        self._sizes.add(owner, -1)
        return value
