"""Run the benchmarks: ``python -m tests.benchmarks.run [NAME ...] [--quick] [--json-dir DIR]``.

NAME is one of overhead, loopback, expiry, revoke, import, caches, or all (the default). Each
benchmark prints a markdown table with its notes and target checks, and writes
``DIR/NAME.json`` (everything measured, every sample) and ``DIR/NAME.md`` (the table).
Peers come from the ``bench`` extra (``pip install -e ".[bench]"``); a missing peer is left
out with a note, ours and the floor always run. Timings are compared only within one run:
the machine is shared and noisy, so the tables show ratios to the floor measured alongside.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from . import caches, expiry, imports, loopback, overhead
from .common import write_json

BENCHMARKS: dict[str, Callable[..., dict[str, Any]]] = {
    "overhead": overhead.run,
    "loopback": loopback.run,
    "expiry": expiry.run,
    "revoke": lambda **kw: expiry.run(revoke=True, **kw),
    "import": imports.run,
    "caches": caches.run,
}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.benchmarks.run",
        description="Benchmarks of requests-advanced-auth against its peers (see README, "
        "'Performance').",
    )
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} or all (the default)",
    )
    parser.add_argument(
        "--quick", action="store_true",
        help="tiny sizes: proves the suite runs, the numbers mean nothing",
    )
    parser.add_argument(
        "--json-dir", type=Path, default=Path("bench-results"),
        help="where NAME.json and NAME.md go (default: %(default)s)",
    )
    parser.add_argument(
        "--repeats", type=int, default=0, metavar="N",
        help="repeats per measurement (default: each benchmark's own)",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - {*BENCHMARKS, "all"})
    if unknown:
        parser.error(f"unknown benchmark {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}, all")
    if args.repeats < 0:
        parser.error("--repeats must be >= 0")
    wanted = args.names or ["all"]
    names = list(BENCHMARKS) if "all" in wanted else list(dict.fromkeys(wanted))
    for name in names:
        started = time.perf_counter()
        print(f"running {name}{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        outcome = BENCHMARKS[name](quick=args.quick, repeats=args.repeats)
        outcome["seconds"] = time.perf_counter() - started
        outcome["quick"] = args.quick
        text = outcome.pop("text")
        path = write_json(args.json_dir, name, outcome)
        path.with_suffix(".md").write_text(text + "\n", encoding="utf-8")
        print(text, flush=True)
        print(f"\n({name}: {outcome['seconds']:.0f} s; wrote {path})\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
