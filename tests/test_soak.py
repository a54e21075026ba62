"""Issue 4 item 17: a seeded soak of one shared auth against the sandbox.

Small by default so it runs in every suite; scale it by hand::

    SOAK_REQUESTS=50000 python -m pytest -s -m soak

Time is a fake clock shared by the sandbox and the auth that moves forward a little with
every request, so many 2 s token lifetimes pass without sleeping; urllib3's backoff sleeps
are recorded instead of slept.

Revocations come from a seeded schedule, and each one is carried out at the first moment
when the current token is fresh, every request in flight carries it, and no token request is
running, so that the token count can be checked exactly.
A revocation that also hits requests still carrying the previous token during a
refresh-ahead overlap is a separate case (both tokens revoked at once): see
``test_revocation_during_the_refresh_overlap_is_absorbed`` in test_faults.py.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from requests_advanced_auth import DEFAULT_LEEWAY, MemoryTokenCache, Token, _fetch
from requests_advanced_auth.sandbox import TOKEN_PATH, Sandbox

THREADS = 32
REQUESTS = int(os.environ.get("SOAK_REQUESTS", "5000"))
LIFETIME = 2.0
TICK = 0.004  # fake seconds per request: 5,000 requests span 20 s, ten lifetimes
SEED = int(os.environ.get("SOAK_SEED", "17"))
REVOCATIONS = max(1, REQUESTS // 500)
FAILURE_BLOCK = 20  # one token request in every 20 answers 503
TIMEOUT = 10
STATS_PARAMS = {"page": 1, "siteId": 26, "startDate": "2024-03-01", "endDate": "2024-03-02"}
TX_PARAMS = {"page": 1, "size": 1, "siteIds": "26", "startDate": 1709251200,
             "endDate": 1709337600}


class SharedClock:
    """A fake clock that many threads read and advance."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def failure_schedule(rng: random.Random, blocks: int) -> list[bool]:
    """Which token requests answer 503: one in each block of 20, at a seeded place in its
    first half (so even a short run meets one); never two in a row.
    """
    schedule: list[bool] = []
    for _ in range(blocks):
        block = [False] * FAILURE_BLOCK
        block[rng.randrange(FAILURE_BLOCK // 2)] = True
        schedule += block
    return schedule


@pytest.mark.soak
def test_soak_shared_auth_absorbs_expiry_revocations_and_token_failures(
    leak_guard, monkeypatch, caplog
):
    caplog.set_level(logging.INFO, logger="urllib3")  # its per-request DEBUG lines cost ~15%
    rng = random.Random(SEED)
    waits: list[float] = []
    monkeypatch.setattr(_fetch, "_sleep", waits.append)
    clock = SharedClock()
    # In the first 90%: a revocation waits for a quiet moment, which must still come.
    revoke_after = set(rng.sample(range(REQUESTS * 9 // 10), REVOCATIONS))
    failures = failure_schedule(rng, blocks=1000)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "token_attempts": 0, "fetching": 0, "current": None,
                             "pending_revocations": 0}
    in_flight: dict[int, str] = {}  # thread -> Authorization header of its request
    issued_at: list[float] = []  # each token's issued_at, as the auth dated it
    revoked_at: list[float] = []
    # Each token serves until refresh-ahead replaces it: 1.5 s of its 2 s (see _token.py).
    period = Token.issued("x", issued_at=0, expires_in=LIFETIME).stale_at(DEFAULT_LEEWAY)

    class RecordingCache(MemoryTokenCache):
        """The auth's own store, noting when it fetches and which token is current."""

        @contextlib.contextmanager
        def lock(self, key: str) -> Iterator[None]:
            with super().lock(key):  # held by the auth for the whole fetch
                with lock:
                    state["fetching"] += 1
                try:
                    yield
                finally:
                    with lock:
                        state["fetching"] -= 1

        def set(self, key: str, token: Token) -> None:
            super().set(key, token)
            with lock:
                state["current"] = token.access_token
                issued_at.append(token.issued_at)

    with Sandbox(token_lifetime=LIFETIME, clock=clock) as sb:
        leak_guard.sandboxes.append(sb)
        handle = sb.provider.handle

        def flaky(method, path, query, headers, body):  # type: ignore[no-untyped-def]
            if path == TOKEN_PATH:
                with lock:
                    fail = failures[state["token_attempts"]]
                    state["token_attempts"] += 1
                if fail:
                    sb.provider.fail_next(1, status=503)
            return handle(method, path, query, headers, body)

        sb.provider.handle = flaky  # type: ignore[method-assign]
        auth = sb.auth(clock=clock, cache=RecordingCache())

        class TrackingSession(requests.Session):
            """Knows which token each thread's request carries while it is in flight."""

            def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
                me = threading.get_ident()
                with lock:
                    in_flight[me] = request.headers.get("Authorization", "")
                try:
                    return super().send(request, **kwargs)
                finally:
                    with lock:
                        in_flight.pop(me, None)

        def maybe_revoke() -> None:
            # Revoke only the current token, while it is fresh: every request in flight
            # carries it and no token request is running (else one revocation would hit two
            # tokens at once, or coincide with the refresh it would otherwise count apart).
            with lock:
                current = state["current"]
                quiet = (
                    state["fetching"] == 0
                    and current is not None
                    and clock() - issued_at[-1] < period - 0.1
                    and all(header.endswith(current) for header in in_flight.values())
                )
                if not (state["pending_revocations"] and quiet):
                    return
                state["pending_revocations"] -= 1
                state["current"] = None  # until the auth fetches the next one
                if sb.provider.revoke_all():
                    revoked_at.append(clock())

        def worker(problems: list[Any]) -> None:
            with TrackingSession() as session:
                while True:
                    with lock:
                        i = state["next"]
                        state["next"] += 1
                    if i >= REQUESTS:
                        return
                    clock.advance(TICK)
                    url, params = ((sb.transactions_url, TX_PARAMS) if i % 50 == 0
                                   else (sb.statistics_url, STATS_PARAMS))
                    try:
                        answer = session.get(url, params=params, auth=auth, timeout=TIMEOUT)
                    except Exception as exc:  # counted: none may reach a caller
                        problems.append(exc)
                        continue
                    if answer.status_code != 200:
                        problems.append((answer.status_code, answer.text[:100]))
                    if i in revoke_after:
                        with lock:
                            state["pending_revocations"] += 1
                    maybe_revoke()

        outcomes: list[list[Any]] = [[] for _ in range(THREADS)]
        started_at, wall = clock(), time.monotonic()
        threads = [threading.Thread(target=worker, args=(outcomes[n],)) for n in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        wall = time.monotonic() - wall
        span = clock() - started_at
        tokens, attempts = sb.provider.tokens_issued, sb.provider.token_requests
        absorbed = sb.provider.unauthorized
    problems = [p for per_thread in outcomes for p in per_thread]
    to_callers = sum(1 for p in problems if isinstance(p, tuple) and p[0] == 401)
    scheduled_failures = sum(failures[:attempts])

    bounds = [started_at, *revoked_at, clock()]
    lifetimes = sum(math.floor((b - a) / period) for a, b in zip(bounds, bounds[1:]))
    revocations = len(revoked_at)
    expected = 1 + lifetimes + revocations  # first token, one per lifetime, one per revocation
    print(
        f"\nsoak: {REQUESTS} requests, {THREADS} threads, {wall:.2f} s wall, {span:.1f} s fake "
        f"= {span / LIFETIME:.1f} lifetimes of {LIFETIME:g} s ({lifetimes} refresh-ahead "
        f"periods of {period:g} s between revocations), {revocations} revocations; "
        f"token requests {attempts}: {tokens} answered (expected {expected}), "
        f"{attempts - tokens} failed with 503 and were retried; 401s absorbed {absorbed}, "
        f"401s to callers {to_callers}, other problems {len(problems) - to_callers}; "
        f"backoff waits {len(waits)}"
    )
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []  # no exception and no 401 reached a caller
    assert revocations + state["pending_revocations"] == REVOCATIONS
    assert revocations == REVOCATIONS
    assert absorbed >= revocations  # each revocation met at least one 401, absorbed
    assert scheduled_failures >= 1
    assert attempts - tokens == scheduled_failures  # every 503 retried, nothing else failed
    assert len(waits) == scheduled_failures
    assert len(issued_at) == tokens
    # No token without a cause: each one follows a revocation, or a token that served its
    # whole refresh-ahead period.
    events = sorted([(t, "token") for t in issued_at] + [(t, "revoked") for t in revoked_at])
    previous, revoked = None, False
    for at, what in events:
        if what == "revoked":
            revoked = True
            continue
        if previous is not None and not revoked:
            assert at - previous >= period - 1e-9, f"a token {at - previous:.3f} s after the last"
        previous, revoked = at, False
    assert abs(tokens - expected) <= max(1, revocations // 10), (tokens, expected)
