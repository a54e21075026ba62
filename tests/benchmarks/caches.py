"""``caches``: one token for many processes: memory store vs FileTokenCache vs RedisTokenCache.

Three measurements:

* fleet: 8 spawned processes x 200 requests each, paced evenly over 3 token lifetimes, every
  token revoked once, 40 % in; token requests counted at the sandbox. Each process keeps its
  own auth object (as separate cron jobs or pool workers would); only the cache is shared.
* warm signing: µs per signing call with a warm token for each cache, interleaved, as the
  ratio to the memory store (a shared cache is not consulted while the local copy is fresh).
* consultation: what reading the shared cache costs when the local copy is missing, near
  expiry or just failed (``cache.get`` as the auth calls it), next to one loopback round trip
  to Redis (``PING``) and one token request to the sandbox on loopback.

Redis rows need ``redis-server`` on PATH (and the ``redis`` package); without it they are left
out with a note.
"""

from __future__ import annotations

import math
import multiprocessing
import queue
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Optional

import requests

from requests_advanced_auth import FileTokenCache, MemoryTokenCache

from .common import (
    TRANSACTION_PARAMS,
    fmt,
    interleaved,
    markdown_table,
    median,
    refresh_interval,
    time_calls,
    verdict,
)
from .overhead import _signing_call
from .peers import sandbox_auth
from .server import SandboxProcess

MEMORY = "MemoryTokenCache (default)"
FILE = "FileTokenCache"
REDIS = "RedisTokenCache"
WAIT = 120.0  # seconds: a bound for a broken run, never reached when things work


# -- a redis-server of our own ----------------------------------------------------------------


class RedisProcess:
    """``redis-server`` on 127.0.0.1:<free port>, nothing persisted, killed at exit."""

    def __init__(self, binary: str, directory: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        client = self.client()
        while True:
            try:
                client.ping()
                break
            except Exception:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)
        client.close()

    def client(self) -> Any:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2,
                           retry=Retry(NoBackoff(), 1))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


def _redis_binary() -> Optional[str]:
    try:
        import redis  # noqa: F401
    except ImportError:
        return None
    return shutil.which("redis-server")


# -- the fleet ----------------------------------------------------------------------------------


def fleet_worker(
    environ: dict[str, str],
    url: str,
    cache: Any,
    requests_per_process: int,
    interval: float,
    barrier: Any,
    results: Any,
) -> None:
    """``requests_per_process`` GETs, one every ``interval`` seconds from the barrier on."""
    from requests_advanced_auth import AdvancedAuth

    statuses: Counter[int] = Counter()
    errors: list[str] = []
    try:
        with requests.Session() as session:
            session.auth = AdvancedAuth.from_env(environ, cache=cache)
            barrier.wait(WAIT)
            start = time.monotonic()
            for i in range(requests_per_process):
                delay = start + i * interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)  # pacing the load (a benchmark, not a test)
                try:
                    statuses[session.get(url, params=TRANSACTION_PARAMS, timeout=30)
                             .status_code] += 1
                except Exception as exc:
                    errors.append(type(exc).__name__)
    finally:
        results.put((dict(statuses), errors))


def _fleet(
    server: SandboxProcess, cache: Any, *, processes: int, per_process: int, duration: float
) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes + 1)
    results = ctx.Queue()
    interval = duration / per_process
    workers = [
        ctx.Process(
            target=fleet_worker,
            args=(server.environment(), server.transactions_url, cache, per_process, interval,
                  barrier, results),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    try:
        server.reset_counters()
        barrier.wait(WAIT)  # every process has built its auth; none has a token yet
        started = time.monotonic()
        # Off the refresh schedule (2.4 s of 2 s tokens renewed every 1.5 s), so that the
        # revocation's token never stands in for a renewal that was due anyway.
        time.sleep(duration * 0.4)
        server.revoke_all()
        revoked_after = time.monotonic() - started
        for _ in workers:
            try:
                seen, failed = results.get(timeout=WAIT)
            except queue.Empty:
                raise RuntimeError("a fleet process did not report") from None
            statuses.update({int(k): v for k, v in seen.items()})
            errors.extend(failed)
        elapsed = time.monotonic() - started
        state = server.state()
    finally:
        barrier.abort()
        for worker in workers:
            worker.join(10)
            if worker.is_alive():
                worker.kill()
    return {
        "token_requests": state["token_requests"],
        "max_concurrent_token_requests": state["max_concurrent_token_requests"],
        "server_401s": state["unauthorized"],
        "elapsed_s": elapsed,
        "revoked_after_s": revoked_after,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "non_200_to_callers": sum(v for k, v in statuses.items() if k != 200),
        "exceptions": len(errors),
    }


# -- warm signing and consultation ----------------------------------------------------------------


def run(*, quick: bool = False, repeats: int = 0) -> dict[str, Any]:
    processes, per_process = (2, 10) if quick else (8, 200)
    lifetime = 1.0 if quick else 2.0
    lifetimes = 3
    duration = lifetime * lifetimes
    n_sign, sign_repeats = (300, 2) if quick else (5000, repeats or 31)
    n_get = 20 if quick else 2000
    interval = refresh_interval(lifetime)
    redis_binary = _redis_binary()
    notes: list[str] = []
    fleet: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        redis_server = None
        if redis_binary is None:
            notes.append("- RedisTokenCache: left out (needs redis-server on PATH and "
                         '`pip install -e ".[redis]"`)')
        else:
            redis_server = RedisProcess(redis_binary, folder)
            stack.callback(redis_server.stop)
        server = stack.enter_context(SandboxProcess(token_lifetime=lifetime))

        def caches() -> dict[str, Any]:
            made: dict[str, Any] = {MEMORY: MemoryTokenCache(),
                                    FILE: FileTokenCache(folder / f"{len(fleet)}.json")}
            if redis_server is not None:
                from requests_advanced_auth import RedisTokenCache

                made[REDIS] = RedisTokenCache(redis_server.client(),
                                              prefix=f"bench{len(fleet)}")
            return made

        for name, cache in caches().items():
            fleet[name] = _fleet(server, cache, processes=processes, per_process=per_process,
                                 duration=duration)
            # One shared token: one request per refresh interval before the revocation, and
            # the revocation starts the schedule again (its token is the first of the rest).
            run = fleet[name]
            run["ideal"] = math.ceil(run["revoked_after_s"] / interval) + math.ceil(
                (run["elapsed_s"] - run["revoked_after_s"]) / interval
            )
            if hasattr(cache, "client"):
                cache.client.flushall()

        # Warm signing: every auth holds a fresh token (long lifetime from here on).
        server.configure(token_lifetime=3600.0)
        auths = {name: sandbox_auth(server, cache=cache) for name, cache in caches().items()}
        calls = {}
        for name, auth in auths.items():
            auth.get_token()
            prep = requests.Session().prepare_request(
                requests.Request("GET", server.transactions_url, params=TRANSACTION_PARAMS)
            )
            calls[name] = _signing_call(auth, prep)
            calls[name]()
        sign = {name: median(v) * 1e6
                for name, v in interleaved(calls, n_sign, sign_repeats).items()}

        # Consultation: the auth's cache.get when its own copy cannot be used.
        consult: dict[str, float] = {}
        file_auth = auths[FILE]
        key = file_auth._key
        consult[f"{FILE}.get, file unchanged since the last read (one lstat)"] = median(
            [time_calls(lambda: file_auth.cache.get(key), n_get) for _ in range(5)]) * 1e6
        def reread() -> Any:
            file_auth.cache._state = (None, {})  # as if another process had written the file
            return file_auth.cache.get(key)

        consult[f"{FILE}.get, file changed (lstat, open, read, JSON parse)"] = median(
            [time_calls(reread, n_get) for _ in range(5)]) * 1e6
        if redis_server is not None:
            redis_cache = auths[REDIS].cache
            probe = redis_server.client()
            consult[f"{REDIS}.get (one GET, JSON parse)"] = median(
                [time_calls(lambda: redis_cache.get(key), n_get) for _ in range(5)]) * 1e6
            consult["Redis PING on loopback (one round trip)"] = median(
                [time_calls(probe.ping, n_get) for _ in range(5)]) * 1e6
            probe.close()
        fetcher = auths[MEMORY]._fetcher
        consult["one token request to the sandbox on loopback"] = median(
            [time_calls(fetcher.fetch, max(n_get // 20, 5)) for _ in range(5)]) * 1e6
        for auth in auths.values():
            auth.close()

    fleet_rows = []
    for name, r in fleet.items():
        per_lifetime = r["token_requests"] / (r["elapsed_s"] / lifetime)
        fleet_rows.append([
            name, str(r["token_requests"]), str(r["ideal"]), fmt(per_lifetime, 1),
            str(r["max_concurrent_token_requests"]), str(r["server_401s"]),
            str(r["non_200_to_callers"]), str(r["exceptions"]), fmt(r["elapsed_s"], 1),
        ])
    fleet_table = markdown_table(
        ["cache", "token requests", "ideal for one shared token", "per token lifetime of run",
         "most at once", "401s sent by the API", "non-200 to callers", "exceptions", "run s"],
        fleet_rows,
    )
    sign_rows = [[name, fmt(us), fmt(us / sign[MEMORY]) + "x"] for name, us in sign.items()]
    sign_table = markdown_table(["cache", "µs per signing call", "x memory store"], sign_rows)
    consult_table = markdown_table(
        ["what", "µs per call"], [[k, fmt(v, 1)] for k, v in consult.items()]
    )
    shared = [n for n in (FILE, REDIS) if n in fleet]
    targets: dict[str, bool] = {
        f"{n}: token requests within one of {fleet[n]['ideal']} (one per refresh interval, "
        "counted afresh from the revocation)": abs(fleet[n]["token_requests"]
                                                     - fleet[n]["ideal"]) <= 1
        for n in shared
    }
    targets.update({
        f"{n}: zero non-200 answers and zero exceptions to callers":
            fleet[n]["non_200_to_callers"] == 0 and fleet[n]["exceptions"] == 0
        for n in fleet
    })
    targets.update({
        f"{n}: warm signing within 10 % of the memory store": sign[n] <= 1.10 * sign[MEMORY]
        for n in sign if n != MEMORY
    })
    targets[f"{FILE}: a consultation under 200 µs"] = (
        consult[f"{FILE}.get, file changed (lstat, open, read, JSON parse)"] < 200
    )
    if REDIS in sign:
        targets[f"{REDIS}: a consultation under one loopback round trip (the token request)"] = (
            consult[f"{REDIS}.get (one GET, JSON parse)"]
            < consult["one token request to the sandbox on loopback"]
        )
    notes = [
        f"- fleet: {processes} spawned processes x {per_process} requests, paced evenly over "
        f"{lifetimes} token lifetimes of {lifetime:g} s (refresh interval {interval:g} s); "
        "every token revoked once, 40 % into the run; each process has its own AdvancedAuth, "
        "the cache is the only thing shared",
        f"- warm signing: medians of {sign_repeats} interleaved batches of {n_sign} calls",
        "- consultation: medians of 5 batches; the Redis PING is the floor of any Redis "
        "command, the token request is what a consultation saves",
        *notes,
    ]
    text = "\n".join([
        "### caches: one token for many processes", "", fleet_table, "", sign_table, "",
        consult_table, "", *notes, "",
        *[f"- target: {k}: {verdict(v)}" for k, v in targets.items()],
    ])
    return {
        "text": text,
        "params": {"processes": processes, "requests_per_process": per_process,
                   "token_lifetime_s": lifetime, "lifetimes": lifetimes,
                   "refresh_interval_s": interval, "signing_calls": n_sign,
                   "signing_batches": sign_repeats},
        "results": [{"name": n, **fleet[n], "sign_us": sign.get(n)} for n in fleet],
        "consultation_us": consult,
        "missing_peers": [],
        "targets": targets,
    }

