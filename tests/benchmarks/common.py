"""Shared pieces of the benchmarks: statistics, load drivers, the floor auth, tables, JSON."""

from __future__ import annotations

import datetime as _dt
import gc
import itertools
import json
import math
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Optional

import requests
from requests.adapters import HTTPAdapter
from requests.auth import AuthBase

from requests_advanced_auth import Token
from requests_advanced_auth._token import DEFAULT_LEEWAY

#: Every API call of every benchmark is this one small transactions page.
TRANSACTION_PARAMS = {
    "page": 1,
    "size": 1,
    "siteIds": "25",
    "startDate": 1704067200,  # 2024-01-01
    "endDate": 1706745599,  # 2024-01-31
}
AUDIENCE = "api.advanced-store.com"
REQUEST_TIMEOUT = 30.0

DISTRIBUTIONS = (
    "requests-advanced-auth", "requests", "urllib3", "oauthlib",
    "requests-auth", "authlib", "requests-oauthlib", "google-auth",
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, no interpolation."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def refresh_interval(lifetime: float, leeway: float = DEFAULT_LEEWAY) -> float:
    """Seconds ours uses a token before fetching the next: lifetime - margin (see _token.py)."""
    token = Token.issued("x", issued_at=0.0, expires_in=lifetime)
    return token.stale_at(leeway)


class ConstantHeaderAuth(AuthBase):
    """The floor: set one precomputed header, nothing else."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = self.value
        return r


def fetch_token(server: Any) -> str:
    """One token straight from the sandbox's token endpoint (for the floor)."""
    answer = requests.post(
        server.token_url,
        data={
            "grant_type": "client_credentials",
            "audience": AUDIENCE,
            "client_id": server.client_id,
            "client_secret": server.client_secret,
        },
        timeout=REQUEST_TIMEOUT,
    )
    answer.raise_for_status()
    return str(answer.json()["access_token"])


def pooled(session: requests.Session, size: int = 64) -> requests.Session:
    """Mount a connection pool big enough for every thread (same for every adapter)."""
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=size)
    session.mount("http://", adapter)
    return session


# -- timing a call in a loop ------------------------------------------------------------


def time_calls(call: Callable[[], Any], n: int) -> float:
    """Seconds per call of ``call``, n calls in a row, garbage collection paused."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in itertools.repeat(None, n):
            call()
        return (time.perf_counter() - start) / n
    finally:
        if was_enabled:
            gc.enable()


def interleaved(
    calls: dict[str, Callable[[], Any]], n: int, repeats: int
) -> dict[str, list[float]]:
    """Per name, ``repeats`` timings (seconds per call); each repeat visits every name once,
    in a shuffled order (seeded), so drift on a shared machine, and whatever the previous
    batch left behind, hits every name alike."""
    names = list(calls)
    samples: dict[str, list[float]] = {name: [] for name in names}
    order = random.Random(2024)
    for _ in range(repeats):
        order.shuffle(names)
        for name in names:
            gc.collect()
            samples[name].append(time_calls(calls[name], n))
    return samples


# -- load -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    threads: int
    requests: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    exceptions: list[str] = field(default_factory=list)

    @property
    def unauthorized(self) -> int:
        return self.statuses.get(401, 0)

    @property
    def other_failures(self) -> int:
        return sum(n for status, n in self.statuses.items() if status not in (200, 401))

    def summary(self) -> dict[str, Any]:
        return {
            "threads": self.threads,
            "requests": self.requests,
            "elapsed_s": self.elapsed,
            "requests_per_s": self.requests / self.elapsed if self.elapsed else math.nan,
            "p50_ms": percentile(self.latencies, 50) * 1000,
            "p99_ms": percentile(self.latencies, 99) * 1000,
            "max_ms": max(self.latencies, default=math.nan) * 1000,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "unauthorized": self.unauthorized,
            "exceptions": len(self.exceptions),
            "exception_samples": sorted(set(self.exceptions))[:5],
        }


def _describe(exc: BaseException) -> str:
    # The type and the start of the message: never a header (tokens stay out of the output).
    return f"{type(exc).__name__}: {str(exc)[:120]}"


def run_load(
    get: Callable[[], requests.Response],
    *,
    threads: int,
    per_thread: Optional[int] = None,
    duration: Optional[float] = None,
    halfway: Optional[threading.Event] = None,
) -> LoadResult:
    """``threads`` threads released together by a barrier, each calling ``get`` either
    ``per_thread`` times (latencies recorded) or until ``duration`` seconds have passed.
    ``halfway`` is set when half of all ``per_thread`` requests have completed."""
    if (per_thread is None) == (duration is None):
        raise ValueError("pass per_thread or duration")
    result = LoadResult(threads)
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)
    done = itertools.count(1)
    half = (threads * per_thread) // 2 if per_thread else 0
    clock = time.perf_counter
    deadline = [math.inf]

    def worker() -> None:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        errors: list[str] = []
        barrier.wait()
        stop = deadline[0]
        count = 0
        while (count < per_thread) if per_thread is not None else (clock() < stop):
            start = clock()
            try:
                status = get().status_code
            except Exception as exc:
                errors.append(_describe(exc))
            else:
                statuses[status] = statuses.get(status, 0) + 1
            latencies.append(clock() - start)
            count += 1
            if halfway is not None and next(done) == half:
                halfway.set()
        with lock:
            result.latencies.extend(latencies)
            result.exceptions.extend(errors)
            for status, n in statuses.items():
                result.statuses[status] = result.statuses.get(status, 0) + n

    workers = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    for thread in workers:
        thread.start()
    if duration is not None:
        deadline[0] = clock() + duration
    start = clock()
    barrier.wait()
    for thread in workers:
        thread.join()
    result.elapsed = clock() - start
    result.requests = len(result.latencies)
    return result


# -- output -----------------------------------------------------------------------------


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def versions() -> dict[str, Optional[str]]:
    found: dict[str, Optional[str]] = {}
    for name in DISTRIBUTIONS:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def environment() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "versions": versions(),
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def write_json(json_dir: Path, name: str, payload: dict[str, Any]) -> Path:
    json_dir.mkdir(parents=True, exist_ok=True)
    path = json_dir / f"{name}.json"
    document = {"benchmark": name, "environment": environment(), **payload}
    path.write_text(json.dumps(document, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def verdict(met: bool) -> str:
    return "met" if met else "**MISSED**"
