"""``loopback``: requests per second through one shared ``Session`` at 1, 8 and 32 threads.

Every contender sends the same one-row transactions page to the same sandbox (in its own
process) for a fixed time; contenders and thread counts are interleaved, the order shuffled
each repeat, and each contender's ratio to the floor is taken within a repeat, then the
median over repeats is reported. Tokens live an hour: no refresh happens here.
"""

from __future__ import annotations

import math
import random
from typing import Any

from . import peers
from .common import fmt, markdown_table, median, refresh_interval, run_load
from .server import SandboxProcess

LIFETIME = 3600.0
THREADS = (1, 8, 32)


def run(*, quick: bool = False, repeats: int = 0) -> dict[str, Any]:
    threads_list = (1, 4) if quick else THREADS
    duration = 0.05 if quick else 0.2
    repeats = repeats or (1 if quick else 12)
    installed, missing = peers.available()
    names = [peers.FLOOR, peers.OURS, *installed]
    early = LIFETIME - refresh_interval(LIFETIME)
    rates: dict[str, dict[int, list[float]]] = {n: {t: [] for t in threads_list} for n in names}
    failures: dict[str, dict[str, int]] = {n: {} for n in names}
    with SandboxProcess(token_lifetime=LIFETIME) as server:
        adapters = {name: peers.FACTORIES[name](server, early) for name in names}
        try:
            for adapter in adapters.values():  # warm: token, connections, the sandbox's data
                run_load(adapter.get, threads=max(threads_list), per_thread=2)
            order = random.Random(2024)  # seeded: the same shuffles every run
            for _ in range(repeats):
                for threads in threads_list:
                    for name in order.sample(names, len(names)):
                        result = run_load(adapters[name].get, threads=threads, duration=duration)
                        ok = result.statuses.get(200, 0)
                        rates[name][threads].append(ok / result.elapsed)
                        for status, n in result.statuses.items():
                            if status != 200:
                                failures[name][str(status)] = failures[name].get(str(status), 0) + n
                        for description in result.exceptions:
                            failures[name][description] = failures[name].get(description, 0) + 1
        finally:
            for adapter in adapters.values():
                adapter.close()

    results = []
    rows = []
    for name in names:
        row: dict[str, Any] = {"name": name, "failures": failures[name], "by_threads": {}}
        cells = [name]
        for threads in threads_list:
            mine, base = rates[name][threads], rates[peers.FLOOR][threads]
            ratios = [a / b for a, b in zip(mine, base) if b]
            entry = {
                "requests_per_s": median(mine),
                "ratio_to_floor": median(ratios) if ratios else math.nan,
                "samples": mine,
            }
            row["by_threads"][threads] = entry
            cells.append(f"{fmt(entry['requests_per_s'], 0)} ({fmt(entry['ratio_to_floor'])}x)")
        cells.append(", ".join(f"{k}: {v}" for k, v in failures[name].items()) or "none")
        rows.append(cells)
        results.append(row)
    table = markdown_table(
        ["auth", *[f"{t} thread{'s' if t > 1 else ''}: req/s (x floor)" for t in threads_list],
         "non-200 answers, exceptions"],
        rows,
    )
    ours = results[1]["by_threads"]
    notes = [f"- **{adapters[n].name}**: {adapters[n].note}" for n in names if adapters[n].note]
    notes += [f"- {name}: not installed (`pip install -e \".[bench]\"`)" for name in missing]
    notes.append(
        f"- {duration} s per measurement, medians of {repeats} interleaved repeats; one shared "
        "session per contender (its own kind: `requests.Session`, `OAuth2Session`, "
        "`AuthorizedSession`) with a 64-connection pool; the sandbox runs in its own process, "
        "so at 8 and 32 threads its single interpreter is the bottleneck for everyone"
    )
    worst = min(entry["ratio_to_floor"] for entry in ours.values())
    notes.append(f"- ours' lowest ratio to the floor: {fmt(worst)}x (no target: for reference)")
    text = "\n".join(
        ["### loopback: requests/s through one shared session", "", table, "", *notes]
    )
    return {
        "text": text,
        "params": {"threads": list(threads_list), "seconds_per_measurement": duration,
                   "repeats": repeats, "token_lifetime_s": LIFETIME},
        "results": results,
        "missing_peers": missing,
        "targets": {},
    }
