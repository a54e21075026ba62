"""Many clients sharing one token cache: spawned child processes, or threads.

The process code runs in spawned children (spawn imports it by module name). Children get
plain arguments (URLs, credentials as an environment mapping, a picklable cache) and report
through a queue; the parent counts token requests at the sandbox.
"""

from __future__ import annotations

import multiprocessing
import queue
from dataclasses import dataclass, field
from typing import Any

from _helpers import run_threads

#: A small transactions page: every API call in these tests is this one request.
TRANSACTION_PARAMS = {
    "page": 1,
    "size": 1,
    "siteIds": "25",
    "startDate": 1704067200,  # 2024-01-01
    "endDate": 1706745599,  # 2024-01-31
}
WAIT = 60.0  # seconds: a bound for a broken test, never reached when things work


def fleet_worker(
    environ: dict[str, str],
    url: str,
    cache: Any,
    barrier: Any,
    revoked: Any,
    results: Any,
) -> None:
    """Two API requests, each started together with the other workers.

    1. Cold cache: every worker needs a token at the same moment.
    2. After the parent revoked every token: every worker gets 401 for the same token.
    """
    import requests

    from requests_advanced_auth import AdvancedAuth

    try:
        session = requests.Session()
        session.auth = AdvancedAuth.from_env(environ, cache=cache)
        barrier.wait(WAIT)
        first = session.get(url, params=TRANSACTION_PARAMS, timeout=WAIT)
        results.put(("cold", first.status_code, len(first.history)))
        if not revoked.wait(WAIT):
            raise RuntimeError("the parent never revoked the tokens")
        barrier.wait(WAIT)
        second = session.get(url, params=TRANSACTION_PARAMS, timeout=WAIT)
        results.put(("revoked", second.status_code, [r.status_code for r in second.history]))
    except BaseException as exc:
        results.put(("error", repr(exc), None))
        raise


@dataclass
class FleetRun:
    """What the parent saw: token requests per phase and each worker's answers."""

    cold_token_requests: int = 0
    revocation_token_requests: int = 0
    cold: list[tuple[Any, Any]] = field(default_factory=list)
    revoked: list[tuple[Any, Any]] = field(default_factory=list)
    exit_codes: list[Any] = field(default_factory=list)


def run_fleet(sandbox: Any, cache: Any, processes: int = 8) -> FleetRun:
    """Start ``processes`` spawned workers sharing ``cache``; revoke all tokens in between."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    revoked = ctx.Event()
    results = ctx.Queue()
    workers = [
        ctx.Process(
            target=fleet_worker,
            args=(sandbox.environment(), sandbox.transactions_url, cache, barrier, revoked,
                  results),
            daemon=True,
        )
        for _ in range(processes)
    ]
    run = FleetRun()
    try:
        for worker in workers:
            worker.start()
        run.cold = _collect(results, processes, "cold")
        run.cold_token_requests = sandbox.provider.token_requests
        sandbox.provider.revoke_all()
        sandbox.provider.reset_counters()
        revoked.set()
        run.revoked = _collect(results, processes, "revoked")
        run.revocation_token_requests = sandbox.provider.token_requests
        for worker in workers:
            worker.join(WAIT)
        run.exit_codes = [worker.exitcode for worker in workers]
    finally:
        barrier.abort()
        for worker in workers:
            if worker.is_alive():
                worker.kill()
                worker.join(5)
    return run


def _collect(results: Any, count: int, phase: str) -> list[tuple[Any, Any]]:
    collected = []
    for _ in range(count):
        try:
            kind, status, history = results.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"a worker did not report in the {phase} phase") from None
        if kind == "error":
            raise AssertionError(f"a worker failed: {status}")
        assert kind == phase, (kind, phase)
        collected.append((status, history))
    return collected


def run_thread_fleet(sandbox: Any, cache: Any, threads: int = 8) -> list[Any]:
    """One API request from each of ``threads`` threads, released together.

    Each thread has its own session and auth; all of them share ``cache``. Returns each
    thread's status code (or the exception it raised).
    """
    import requests

    sessions = [requests.Session() for _ in range(threads)]
    try:
        for session in sessions:
            session.auth = sandbox.auth(cache=cache)

        def work(i: int) -> int:
            answer = sessions[i].get(sandbox.transactions_url, params=TRANSACTION_PARAMS,
                                     timeout=WAIT)
            return answer.status_code

        return run_threads(threads, work)
    finally:
        for session in sessions:
            session.close()


def run_lifetimes(
    sandbox: Any,
    make_cache: Any,
    clock: Any,
    *,
    lifetime: float,
    auths: int = 8,
    lifetimes: int = 3,
    steps: int = 10,
    revoke_at: Any = None,
) -> list[int]:
    """``auths`` separate auth objects, each on its own ``make_cache()`` (as separate
    processes would be), all on one fake ``clock``: every step moves the clock by
    ``lifetime / steps`` and each auth sends one request. At step ``revoke_at`` (if given)
    every token is revoked first. Returns the status of every request.
    """
    import requests

    sessions = [requests.Session() for _ in range(auths)]
    statuses = []
    try:
        for session in sessions:
            session.auth = sandbox.auth(cache=make_cache(), clock=clock)
        for step in range(lifetimes * steps + 1):
            if step == revoke_at:
                sandbox.provider.revoke_all()
            for session in sessions:
                answer = session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS,
                                     timeout=WAIT)
                statuses.append(answer.status_code)
            clock.advance(lifetime / steps)
    finally:
        for session in sessions:
            session.close()
    return statuses
