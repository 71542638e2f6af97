"""
Shared pieces of the benchmarks: timing with repeats, and the result line
every figure prints.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable

import attrs


@attrs.frozen
class Figure:
    """
    One measured figure: ours beside the peer's, in one run.

    @ivar ratio: ours/peer, in the sense where higher is better.
    """

    id: str
    name: str
    ours: float
    peer: float | None
    unit: str
    ratio: float | None
    runs: int
    min: float
    max: float

    def line(self) -> str:
        return json.dumps(attrs.asdict(self))

    def row(self) -> str:
        peer = "-" if self.peer is None else f"{self.peer:,.1f}"
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        return (
            f"{self.id:<4} {self.name:<58} {self.ours:>14,.1f} {peer:>14}"
            f" {self.unit:<10} {ratio:>7}"
        )


def rate(fn: Callable[[], object], seconds: float) -> float:
    """
    Calls of C{fn} per second, over about C{seconds}.
    """
    count = 0
    batch = 1
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
        batch = min(batch * 2, 10_000)


def rates(fn: Callable[[], object], seconds: float, runs: int) -> list[float]:
    return [rate(fn, seconds / runs) for _ in range(runs)]


def figure(
    id: str,
    name: str,
    ours: list[float],
    peer: list[float] | None,
    unit: str,
    higherIsBetter: bool = True,
) -> Figure:
    """
    Summarise repeated measurements (medians; min and max of ours).
    """
    mine = statistics.median(ours)
    theirs = statistics.median(peer) if peer else None
    ratio = None
    if theirs:
        ratio = mine / theirs if higherIsBetter else theirs / mine
    return Figure(id, name, mine, theirs, unit, ratio, len(ours), min(ours), max(ours))
