"""
Run the benchmarks: our code and the peer side by side in one run.

    python bench/run.py            # every figure
    python bench/run.py --quick    # every figure, shorter
    python bench/run.py --only P2  # one figure group

Prints a table, then one JSON line per figure.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

#: Figure groups, in order, and the module that measures each.
GROUPS = {
    "P1": "bench.p1_logins",
    "P2": "bench.p2_tokens",
    "P3": "bench.p3_revocations",
    "P4": "bench.p4_memory",
    "P5": "bench.p5_many",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    parser.add_argument("--only", metavar="ID", help="run one group, e.g. P2")
    args = parser.parse_args(argv)
    groups = GROUPS
    if args.only:
        key = args.only.upper()
        if key not in GROUPS:
            parser.error(f"unknown figure {args.only!r}; known: {', '.join(GROUPS)}")
        groups = {key: GROUPS[key]}
    print(
        f"# {platform.python_implementation()} {platform.python_version()},"
        f" {platform.machine()}, {platform.system()}"
    )
    figures = []
    for module in groups.values():
        figures.extend(importlib.import_module(module).run(args.quick))
    print(
        f"{'id':<4} {'measure':<58} {'ours':>14} {'peer':>14} {'unit':<10} {'ratio':>7}"
    )
    for f in figures:
        print(f.row())
    for f in figures:
        print(f.line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
