"""Issue 4 item 17: a seeded soak of one shared auth against the sandbox.

Small by default so it runs in every suite; scale it by hand::

    SOAK_REQUESTS=50000 python -m pytest -s -m soak

Time is a fake clock shared by the sandbox and the auth that moves forward a little with
every request, so many 2 s token lifetimes pass without sleeping; urllib3's backoff sleeps
are recorded instead of slept.

Revocations come at seeded request numbers and are carried out at once, whatever the auth
is doing then: during a refresh-ahead overlap (requests in flight with two tokens), while a
token request is running, between the sandbox issuing a token and the auth storing it. Only
two revocations within one request's re-send are kept apart (``MIN_GAP``, see there).
Each costs one token request, except one that comes while a token request is running whose
token the sandbox issues after it: that token is good and replaces the revoked one anyway.
The test orders revocations and the starts of token requests under one lock, so it knows
which revocations cost a token and can check the count to within one.
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
# Fewest requests between two revocations. A request refused because of one revocation is
# re-sent once, with a token fetched for it; if a second revocation hits that token before
# the re-send is answered, the caller gets the 401 (the auth fetches one token per refused
# request: it cannot tell this from an API that refuses every token). That window closes
# once the ~32 requests in flight at the first revocation are re-sent; 256 leave room.
# SOAK_MIN_GAP=0 makes the times fully random, and then that 401 shows up now and then.
MIN_GAP = int(os.environ.get("SOAK_MIN_GAP", str(8 * THREADS)))
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


def revocation_schedule(rng: random.Random, span: int, count: int, gap: int) -> set[int]:
    """``count`` request numbers below ``span``, uniformly random but ``gap`` or more apart."""
    gap = min(gap, span // count)
    slots = sorted(rng.sample(range(span - (count - 1) * gap), count))
    return {slot + n * gap for n, slot in enumerate(slots)}


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
    leak_guard, monkeypatch, caplog, capsys
):
    caplog.set_level(logging.INFO, logger="urllib3")  # its per-request DEBUG lines cost ~15%
    rng = random.Random(SEED)
    waits: list[float] = []
    monkeypatch.setattr(_fetch, "_sleep", waits.append)
    clock = SharedClock()
    # Revoke just before these requests start, in the first 90% so that each one is met.
    revoke_before = revocation_schedule(rng, REQUESTS * 9 // 10, REVOCATIONS, MIN_GAP)
    failures = failure_schedule(rng, blocks=1000)
    lock = threading.Lock()
    state: dict[str, Any] = {"next": 0, "token_attempts": 0, "fetches": 0}
    issued_at: list[float] = []  # each token's issued_at, as the auth dated it
    # (when, tokens it revoked, token requests begun by then)
    revocations: list[tuple[float, int, int]] = []
    # Each token serves until refresh-ahead replaces it: 1.5 s of its 2 s (see _token.py).
    period = Token.issued("x", issued_at=0, expires_in=LIFETIME).stale_at(DEFAULT_LEEWAY)

    class RecordingCache(MemoryTokenCache):
        """The auth's own store, counting the token requests begun and the tokens stored."""

        @contextlib.contextmanager
        def lock(self, key: str) -> Iterator[None]:
            with super().lock(key):  # the auth fetches under it, after a re-check
                with lock:
                    state["fetches"] += 1
                yield

        def set(self, key: str, token: Token) -> None:
            super().set(key, token)
            with lock:
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

        def revoke() -> None:
            # Under the lock that counts token requests begun: the sandbox orders this against
            # the tokens it issues, the lock against the token requests the auth begins.
            with lock:
                revocations.append((clock(), sb.provider.revoke_all(), state["fetches"]))

        def worker(problems: list[Any]) -> None:
            with requests.Session() as session:
                while True:
                    with lock:
                        i = state["next"]
                        state["next"] += 1
                    if i >= REQUESTS:
                        return
                    if i in revoke_before:
                        revoke()
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
        concurrent = sb.provider.max_concurrent_token_requests
    problems = [p for per_thread in outcomes for p in per_thread]
    to_callers = sum(1 for p in problems if isinstance(p, tuple) and p[0] == 401)
    scheduled_failures = sum(failures[:attempts])

    # Which revocations cost a token. Every revocation revokes all tokens issued before it,
    # so the running total of what they revoked is the number of tokens issued before each.
    # A revocation costs one if it revoked the token in use (it found one issued since the
    # last revocation) and no token request was running whose token came after it.
    costly: list[float] = []
    in_flight = empty = 0
    issued_before = 0
    for at, revoked, begun in revocations:
        issued_before += revoked
        assert begun - issued_before in (0, 1)  # one token request at a time
        if not revoked:
            empty += 1
        elif begun > issued_before:
            in_flight += 1
        else:
            costly.append(at)
    # Between costly revocations, one token per refresh-ahead period, counted from the first
    # token after the revocation.
    bounds = [started_at, *costly, clock()]
    lifetimes = 0
    for low, high in zip(bounds, bounds[1:]):
        first = min((t for t in issued_at if low <= t < high), default=high)
        lifetimes += math.floor((high - first) / period)
    expected = 1 + lifetimes + len(costly)  # the first token, one per lifetime and revocation
    with capsys.disabled():  # shown in every run, -s or not, so CI logs have the figures
        print(
            f"\nsoak: {REQUESTS} requests, {THREADS} threads, seed {SEED}, revocations "
            f"{MIN_GAP}+ requests apart, {wall:.2f} s wall, "
            f"{span:.1f} s fake = {span / LIFETIME:.1f} lifetimes of {LIFETIME:g} s "
            f"({lifetimes} refresh-ahead periods of {period:g} s between revocations); "
            f"{len(revocations)} revocations at random times: {len(costly)} cost a token, "
            f"{in_flight} came while a token request ran and cost none, {empty} found "
            f"nothing to revoke; token requests {attempts}: {tokens} answered (expected "
            f"{expected}), {attempts - tokens} failed with 503 and were retried; 401s "
            f"absorbed {absorbed}, 401s to callers {to_callers}, other problems "
            f"{len(problems) - to_callers}; backoff waits {len(waits)}"
        )
    assert not any(thread.is_alive() for thread in threads)
    assert problems == []  # no exception and no 401 reached a caller
    assert len(revocations) == REVOCATIONS
    assert absorbed >= len(costly)  # each costly revocation met at least one 401, absorbed
    assert concurrent == 1  # single flight: never two token requests at once
    assert scheduled_failures >= 1
    assert attempts - tokens == scheduled_failures  # every 503 retried, nothing else failed
    assert len(waits) == scheduled_failures
    assert len(issued_at) == tokens
    # No token without a cause: each one follows a costly revocation, or a token that served
    # its whole refresh-ahead period.
    events = sorted([(t, "token") for t in issued_at] + [(t, "revoked") for t in costly])
    previous, revoked = None, False
    for at, what in events:
        if what == "revoked":
            revoked = True
            continue
        if previous is not None and not revoked:
            assert at - previous >= period - 1e-9, f"a token {at - previous:.3f} s after the last"
        previous, revoked = at, False
    assert abs(tokens - expected) <= 1, (tokens, expected)
