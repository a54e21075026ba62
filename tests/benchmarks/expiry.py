"""``expiry`` and ``revoke``: 32 threads x 50 requests against a slow token endpoint.

``expiry``: tokens live 1 s and the token endpoint takes 100 ms (real time: this is a
benchmark). Per contender: token requests against ceil(run time / refresh interval), the most
token requests in progress at once, 401s and exceptions reaching the callers, p50/p99
latency. The floor sends the same requests with a constant header holding a long-lived
token from a second sandbox, so it never waits for a token.

``revoke``: tokens live an hour (so every token request in the run is caused by the
revocation), the token endpoint still takes 100 ms, and a timer thread revokes every token
once half of the requests have completed.

Contenders run one after another (never at the same time), in a shuffled order per repeat.
"""

from __future__ import annotations

import math
import random
import threading
import time
from typing import Any, Callable

from . import peers
from .common import (
    fmt,
    markdown_table,
    median,
    percentile,
    refresh_interval,
    run_load,
    verdict,
)
from .server import SandboxProcess

TOKEN_LATENCY = 0.1
EXPIRY_LIFETIME = 1.0
REVOKE_LIFETIME = 3600.0
CONTROL = "constant header (floor, run again)"


def _one_run(
    factory: Callable[[Any, float], peers.Adapter],
    server: SandboxProcess,
    *,
    threads: int,
    per_thread: int,
    early: float,
    revoke: bool,
) -> dict[str, Any]:
    adapter = factory(server, early)
    try:
        warm = adapter.get()  # the first token is fetched before the clock starts
        if warm.status_code != 200:
            raise RuntimeError(f"{adapter.name}: warm-up answered {warm.status_code}")
        server.reset_counters()
        halfway = threading.Event() if revoke else None
        revoked_at: list[float] = []
        revoker = None
        if halfway is not None:
            def revoke_when_halfway() -> None:
                if halfway.wait(300):
                    server.revoke_all()
                    revoked_at.append(time.perf_counter())

            revoker = threading.Thread(target=revoke_when_halfway, daemon=True)
            revoker.start()
        started = time.perf_counter()
        result = run_load(adapter.get, threads=threads, per_thread=per_thread, halfway=halfway)
        if revoker is not None:
            revoker.join(10)
        state = server.state()
    finally:
        adapter.close()
    summary = result.summary()
    summary["latencies"] = result.latencies  # pooled over runs below, then dropped
    summary.update({
        "token_requests": state["token_requests"],
        "max_concurrent_token_requests": state["max_concurrent_token_requests"],
        "server_401s": state["unauthorized"],
        "revoked_after_s": (revoked_at[0] - started) if revoked_at else None,
    })
    return summary


def run(*, quick: bool = False, repeats: int = 0, revoke: bool = False) -> dict[str, Any]:
    threads, per_thread = (4, 10) if quick else (32, 50)
    latency = 0.02 if quick else TOKEN_LATENCY
    repeats = repeats or (1 if quick else 5)
    lifetime = REVOKE_LIFETIME if revoke else EXPIRY_LIFETIME
    interval = refresh_interval(lifetime)
    early = lifetime - interval
    installed, missing = peers.available()
    # The floor twice: the second copy measures how much the same contender moves between
    # runs on this machine, the noise band any p99 ratio has to be read against.
    names = [peers.FLOOR, CONTROL, peers.OURS, *installed]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    with SandboxProcess(token_lifetime=lifetime, token_latency=latency) as server, \
            SandboxProcess(token_lifetime=REVOKE_LIFETIME, token_latency=latency) as steady:
        order = random.Random(2024)  # seeded: the same shuffles every run
        for _ in range(repeats):
            for name in order.sample(names, len(names)):
                floor = name in (peers.FLOOR, CONTROL)
                runs[name].append(_one_run(
                    peers.FACTORIES[peers.FLOOR if floor else name], steady if floor else server,
                    threads=threads, per_thread=per_thread, early=early,
                    revoke=revoke and not floor,
                ))

    # Each run is compared with the floor's run of the same repeat (the closest in time);
    # the medians over repeats are reported, so one run spoiled by a neighbour's burst does
    # not decide. Pooled percentiles (every request of every run) go to the JSON as well.
    pooled = {n: [x for r in runs[n] for x in r.pop("latencies")] for n in names}
    floor_p99 = [r["p99_ms"] for r in runs[peers.FLOOR]]
    results: list[dict[str, Any]] = []
    rows = []
    for name in names:
        mine = runs[name]
        ideal = [math.ceil(r["elapsed_s"] / interval) for r in mine]
        row: dict[str, Any] = {
            "name": name,
            "runs": mine,
            "ideal_token_requests": ideal,
            "p50_ms": median([r["p50_ms"] for r in mine]),
            "p99_ms": median([r["p99_ms"] for r in mine]),
            "p99_ratio_to_floor": median([r["p99_ms"] / f for r, f in zip(mine, floor_p99)]),
            "p99_over_floor_ms": median([r["p99_ms"] - f for r, f in zip(mine, floor_p99)]),
            "pooled_p50_ms": percentile(pooled[name], 50) * 1000,
            "pooled_p99_ms": percentile(pooled[name], 99) * 1000,
        }
        results.append(row)
        floor = name in (peers.FLOOR, CONTROL)
        token_cell = "-" if floor else " / ".join(str(r["token_requests"]) for r in mine)
        cells = [name, token_cell]
        if not revoke:
            cells.append("-" if floor else " / ".join(str(i) for i in ideal))
        cells += [
            "-" if floor else str(max(r["max_concurrent_token_requests"] for r in mine)),
            " / ".join(str(r["unauthorized"]) for r in mine),
            " / ".join(str(r["exceptions"]) for r in mine),
            fmt(row["p50_ms"], 1), fmt(row["p99_ms"], 1),
            fmt(row["p99_ratio_to_floor"]) + "x",
        ]
        if revoke:
            cells.append(f"{row['p99_over_floor_ms']:+.0f}")
        rows.append(cells)
    headers = ["auth", "token requests (each run)"]
    if not revoke:
        headers.append("ideal: ceil(run time / refresh interval)")
    headers += ["most at once", "401s to callers (each run)", "exceptions (each run)",
                "p50 ms", "p99 ms", "p99 / floor p99"]
    if revoke:
        headers.append("p99 - floor p99, ms")
    table = markdown_table(headers, rows)

    ours_row = results[names.index(peers.OURS)]
    ours, ours_ideal = ours_row["runs"], ours_row["ideal_token_requests"]
    if revoke:
        title = "### revoke: every token revoked halfway through the run"
        targets = {
            "exactly one extra token request": all(r["token_requests"] == 1 for r in ours),
            "zero 401s to callers": all(r["unauthorized"] == 0 for r in ours),
            f"p99 <= floor p99 + one token round trip ({latency * 1000:.0f} ms)":
                ours_row["p99_over_floor_ms"] <= latency * 1000,
        }
        setting = (f"tokens live {lifetime:g} s (no refresh is due: every token request "
                   "comes from the revocation)")
    else:
        title = "### expiry: tokens that expire every second"
        targets = {
            "token requests within one of ceil(run time / refresh interval) (every run)": all(
                abs(r["token_requests"] - i) <= 1 for r, i in zip(ours, ours_ideal)
            ),
            "never more than one token request at once": all(
                r["max_concurrent_token_requests"] <= 1 for r in ours
            ),
            "zero 401s and zero exceptions": all(
                r["unauthorized"] == 0 and r["exceptions"] == 0 for r in ours
            ),
            "p99 within 1.2x of the floor's": ours_row["p99_ratio_to_floor"] <= 1.2,
        }
        setting = (f"tokens live {lifetime:g} s; ours' refresh interval = lifetime - "
                   f"min(leeway, lifetime / 4) = {interval:g} s")
    notes = [
        f"- {threads} threads x {per_thread} requests, started together; {repeats} runs per "
        f"contender, interleaved; token endpoint latency {latency * 1000:.0f} ms; {setting}",
        "- peers with an early-expiry knob get ours' margin "
        f"({early:g} s); the floor runs against a second sandbox holding a long-lived token",
        "- run time per contender (s): " + "; ".join(
            f"{n}: " + " / ".join(fmt(r["elapsed_s"]) for r in runs[n]) for n in names
        ),
        "- p50, p99: medians over runs; p99 / floor p99 and p99 - floor p99: medians of the "
        f"per-repeat comparison with the floor's run; {CONTROL!r} is the floor run a second "
        "time in each repeat: its distance from the floor is this machine's noise",
        "- 401 handling: " + "; ".join(
            f"{n}: {peers.ON_401[n]}" for n in names if n not in (peers.FLOOR, CONTROL)
        ),
    ]
    if revoke:
        notes.append("- revoked after (s): " + "; ".join(
            f"{n}: " + " / ".join(fmt(r["revoked_after_s"]) for r in runs[n])
            for n in names if n not in (peers.FLOOR, CONTROL)
        ))
    notes += [f"- {name}: not installed (`pip install -e \".[bench]\"`)" for name in missing]
    text = "\n".join([
        title, "", table, "", *notes, "",
        *[f"- target: {k}: {verdict(v)}" for k, v in targets.items()],
    ])
    return {
        "text": text,
        "params": {"threads": threads, "requests_per_thread": per_thread,
                   "token_lifetime_s": lifetime, "token_latency_s": latency,
                   "refresh_interval_s": interval, "peer_early_expiry_s": early,
                   "repeats": repeats},
        "results": results,
        "missing_peers": missing,
        "targets": targets,
    }
