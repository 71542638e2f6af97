"""
Shared pieces of the benchmarks: timing with repeats, CPU time from the
scheduler, pooled percentiles, the load on the machine around each group of
figures, and the result line every figure prints.
"""

from __future__ import annotations

import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs

#: The load average above which a group's figures are flagged.
LOAD_LIMIT = 0.5


@attrs.frozen
class Figure:
    """
    One measured figure: ours beside the peer's, in one run.

    @ivar name: what is measured, in which configuration.
    @ivar ratio: ours/peer, in the sense where higher is better.
    @ivar goal: the goal this figure is held to, if any, in words.
    @ivar met: whether it met it.
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
    goal: str | None = None
    met: bool | None = None

    def line(self) -> str:
        return json.dumps(attrs.asdict(self))

    def row(self) -> str:
        peer = "-" if self.peer is None else f"{self.peer:,.1f}"
        ratio = "-" if self.ratio is None else f"{self.ratio:.2f}"
        goal = ""
        if self.goal is not None:
            goal = f"{self.goal}: {'met' if self.met else 'MISSED'}"
        return (
            f"{self.id:<4} {self.name:<96} {self.ours:>12,.1f} {peer:>12}"
            f" {self.unit:<9} {ratio:>6}  {goal}"
        ).rstrip()

    def held(self, goal: str, met: bool) -> Figure:
        """
        This figure, held to C{goal}.
        """
        return attrs.evolve(self, goal=goal, met=met)

    def ratioAtLeast(self, minimum: float) -> Figure:
        """
        This figure, held to a ratio of at least C{minimum}.
        """
        met = self.ratio is not None and self.ratio >= minimum
        return self.held(f"ratio >= {minimum:g}", met)


HEADER = (
    f"{'id':<4} {'measure':<96} {'ours':>12} {'peer':>12} {'unit':<9}"
    f" {'ratio':>6}  goal"
)


def single(id: str, name: str, value: float, unit: str) -> Figure:
    """
    A figure with no peer, measured once.
    """
    return Figure(id, name, value, None, unit, None, 1, value, value)


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
    if theirs and mine:
        ratio = mine / theirs if higherIsBetter else theirs / mine
    return Figure(id, name, mine, theirs, unit, ratio, len(ours), min(ours), max(ours))


async def asyncRate(fn: Callable[[], Awaitable[object]], seconds: float) -> float:
    """
    Calls of C{fn} per second over about C{seconds}, awaiting each call's
    result before the next call.
    """
    count = 0
    batch = 1
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(batch):
            await fn()
        count += batch
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)
        batch = min(batch * 2, 1000)


async def interleaved(
    measures: dict[str, Callable[[], Awaitable[float]]], runs: int
) -> dict[str, list[float]]:
    """
    Run every measure C{runs} times, one of each in turn, starting each
    round one further along, so that none always runs first or right after
    the same neighbour.
    """
    names = list(measures)
    results: dict[str, list[float]] = {name: [] for name in names}
    for round in range(runs):
        shift = round % len(names)
        for name in names[shift:] + names[:shift]:
            results[name].append(await measures[name]())
    return results


def percentile(samples: Sequence[float], q: float) -> float:
    """
    The nearest-rank C{q}-quantile (0 < C{q} <= 1) of all C{samples}.
    """
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


def cpuNs(pid: int) -> int:
    """
    CPU time of process C{pid} in nanoseconds: the sum, over its threads,
    of the first field of C{/proc/PID/task/TID/schedstat} (time on a CPU,
    as the scheduler counts it).  A thread that ended is no longer counted,
    so take differences only across threads that live on (a store's
    database thread does).
    """
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def _busySeconds() -> float:
    """
    CPU seconds every process on the machine used since boot (C{/proc/stat}).
    """
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _ownSeconds() -> float:
    """
    CPU seconds of this process and of the children it waited for.
    """
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


@attrs.frozen
class GroupLoad:
    """
    The load on the machine around one group of figures.

    @ivar before: the 1-minute load average when the group started.
    @ivar after: the same when it ended (it includes the group's own work).
    @ivar ownCores: CPUs the group's own processes kept busy, on average.
    @ivar otherCores: CPUs everything else kept busy meanwhile, on average.
    """

    group: str
    before: float
    after: float
    seconds: float
    ownCores: float
    otherCores: float

    def summary(self) -> str:
        return (
            f"# {self.group}: load average {self.before:.2f} before,"
            f" {self.after:.2f} after; {self.seconds:.0f} s; this benchmark used"
            f" {self.ownCores:.2f} CPUs on average, other processes"
            f" {self.otherCores:.2f}"
        )

    def warnings(self) -> list[str]:
        if max(self.before, self.after) <= LOAD_LIMIT:
            return []
        return [
            f"WARNING {self.group}: load average above {LOAD_LIMIT} ({self.before:.2f}"
            f" before, {self.after:.2f} after the group; other processes used"
            f" {self.otherCores:.2f} CPUs meanwhile): its figures may be disturbed"
        ]

    def line(self) -> str:
        return json.dumps({"load": attrs.asdict(self)})


class LoadWatch:
    """
    Records L{GroupLoad} around a group: C{start()}, then C{stop()}.
    """

    def __init__(self, group: str) -> None:
        self.group = group
        self._before = os.getloadavg()[0]
        self._wall = time.monotonic()
        self._busy = _busySeconds()
        self._own = _ownSeconds()

    def stop(self) -> GroupLoad:
        seconds = max(time.monotonic() - self._wall, 1e-9)
        own = _ownSeconds() - self._own
        busy = _busySeconds() - self._busy
        return GroupLoad(
            self.group,
            self._before,
            os.getloadavg()[0],
            seconds,
            own / seconds,
            max(0.0, busy - own) / seconds,
        )


def settle(limit: float, timeout: float) -> float:
    """
    Wait, at most C{timeout} seconds, for the 1-minute load average to fall
    to C{limit}.

    @return: the load average when done waiting.
    """
    deadline = time.monotonic() + timeout
    while os.getloadavg()[0] > limit and time.monotonic() < deadline:
        time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
    return os.getloadavg()[0]


#: The checkout, on the children's path.
ROOT = Path(__file__).resolve().parent.parent


def inChild(module: str, *args: str) -> Any:
    """
    Run C{python -m MODULE child ARGS} (a fresh process, so that one
    group's memory and threads do not weigh on the next) and return the
    JSON value its last line prints.
    """
    done = subprocess.run(
        [sys.executable, "-m", module, "child", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])
