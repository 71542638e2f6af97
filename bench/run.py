"""
Run the benchmarks: our code and the peers side by side in one run, each
figure through the public interfaces, in the configuration its row names.

    python bench/run.py              # every figure
    python bench/run.py --quick      # every figure, shorter
    python bench/run.py --only P2    # one figure group (any case: p1t)
    python bench/run.py --settle 120 # first wait for a quiet machine

Prints each group's configurations and goals, the load on the machine
around each group (with a warning when the load average was above 0.5),
the table, then one JSON line per figure and per group's load.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import HEADER, LOAD_LIMIT, LoadWatch, settle  # noqa: E402

#: Figure groups, in order, and the module that measures each.
GROUPS = {
    "P1": "bench.p1_logins",
    "P1t": "bench.p1t_tokens",
    "P2": "bench.p2_tokens",
    "P3": "bench.p3_revocations",
    "P4": "bench.p4_memory",
    "P5": "bench.p5_many",
    "P6": "bench.p6_redis",
    "P7": "bench.login_weight",
    "P8": "bench.scram_compare",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", metavar="ID", help="run one group, e.g. P2")
    parser.add_argument(
        "--settle",
        metavar="SECONDS",
        type=float,
        default=0.0,
        help=f"before each group, wait up to SECONDS for the load average to"
        f" fall to {LOAD_LIMIT} (default: do not wait)",
    )
    args = parser.parse_args(argv)
    groups = GROUPS
    if args.only:
        keys = [key for key in GROUPS if key.upper() == args.only.upper()]
        if not keys:
            parser.error(f"unknown figure {args.only!r}; known: {', '.join(GROUPS)}")
        groups = {keys[0]: GROUPS[keys[0]]}
    print(
        f"# {platform.python_implementation()} {platform.python_version()},"
        f" {platform.machine()}, {platform.system()}",
        flush=True,
    )
    figures = []
    notes: list[str] = []
    loads = []
    for group, name in groups.items():
        if args.settle:
            settle(LOAD_LIMIT, args.settle)
        module = importlib.import_module(name)
        watch = LoadWatch(group)
        figures.extend(module.run(args.quick))
        load = watch.stop()
        loads.append(load)
        notes.extend(getattr(module, "NOTES", []))
        print(load.summary(), flush=True)
        for warning in load.warnings():
            print(warning, flush=True)
    print()
    for note in notes:
        print(f"# {note}")
    for load in loads:
        print(load.summary())
        for warning in load.warnings():
            print(warning)
    print(HEADER)
    for f in figures:
        print(f.row())
    for f in figures:
        print(f.line())
    for load in loads:
        print(load.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
