"""Unit tests of the token store and of single flight (``_cache``)."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest
from _helpers import (
    CountingLock,
    forking_with_threads,
    needs_fork,
    run_in_forked_child,
    run_threads,
)

from requests_advanced_auth import MemoryTokenCache, Token, TokenCache
from requests_advanced_auth._cache import SingleFlight

THREADS = 20
WAIT = 10.0  # seconds; only reached when the behaviour under test is broken


def token(value: str, expires_in: float = 3600.0) -> Token:
    return Token.issued(value, issued_at=1000.0, expires_in=expires_in)


# -- MemoryTokenCache ------------------------------------------------------------------------


def test_memory_cache_is_a_token_cache():
    assert isinstance(MemoryTokenCache(), TokenCache)


def test_memory_cache_get_returns_what_was_set_per_key():
    cache = MemoryTokenCache()
    assert cache.get("k") is None
    t1, t2 = token("one"), token("two")
    cache.set("k", t1)
    cache.set("other", t2)
    assert cache.get("k") is t1
    assert cache.get("other") is t2
    cache.set("k", t2)
    assert cache.get("k") is t2


def test_memory_cache_invalidate_drops_only_the_token_it_still_holds():
    cache = MemoryTokenCache()
    old, new = token("old"), token("new")
    cache.set("k", new)
    assert cache.invalidate("k", old) is False  # someone already replaced the rejected token
    assert cache.get("k") is new
    assert cache.invalidate("k", new) is True
    assert cache.get("k") is None
    assert cache.invalidate("k", new) is False  # nothing left to drop


def test_memory_cache_invalidate_compares_the_token_value_not_the_object():
    cache = MemoryTokenCache()
    cache.set("k", token("same", expires_in=60))
    assert cache.invalidate("k", token("same", expires_in=3600)) is True
    assert cache.get("k") is None


def test_memory_cache_gives_one_lock_per_key():
    cache = MemoryTokenCache()
    assert cache.lock("a") is cache.lock("a")
    assert cache.lock("a") is not cache.lock("b")
    with cache.lock("a"):
        assert not cache.lock("a").acquire(blocking=False)
        assert cache.lock("b").acquire(blocking=False)
        cache.lock("b").release()


def test_memory_cache_repr_shows_no_token():
    cache = MemoryTokenCache()
    cache.set("k", token("tok-must-not-show"))
    assert "tok-must-not-show" not in repr(cache)
    assert "keys=1" in repr(cache)


def test_no_repr_in_the_token_and_cache_modules_shows_a_token(tmp_path, leak_guard):
    from requests_advanced_auth._filecache import CacheEntry, FileTokenCache

    secret = "tok-never-in-any-repr"
    leak_guard.watch(secret)
    held = token(secret)
    memory, flight = MemoryTokenCache(), SingleFlight()
    memory.set("k", held)
    flight.run(lambda: held)
    files = FileTokenCache(tmp_path / "tokens.json", clock=lambda: 1000.0)
    files.set("k", held)
    entry = CacheEntry("k", held.fingerprint, 1.0)
    objects = [held, memory, flight, files, *files.entries(), entry]
    for shown in objects:
        assert secret not in repr(shown)
        assert secret not in str(shown)


@pytest.mark.parametrize(
    "duplicate",
    [lambda c: pickle.loads(pickle.dumps(c)), copy.deepcopy, copy.copy],  # noqa: S301
)
def test_copied_memory_cache_is_empty_with_its_own_locks(duplicate):
    cache = MemoryTokenCache()
    cache.set("k", token("secret-token"))
    clone = duplicate(cache)
    assert isinstance(clone, MemoryTokenCache)
    assert clone.get("k") is None
    assert clone.lock("k") is not cache.lock("k")
    assert cache.get("k") is not None  # the original is untouched
    clone.set("k", token("fresh"))
    assert clone.get("k").access_token == "fresh"
    assert b"secret-token" not in pickle.dumps(cache)


# -- SingleFlight ----------------------------------------------------------------------------


def test_single_flight_runs_the_call_and_returns_its_result():
    flight: SingleFlight[int] = SingleFlight()
    assert flight.run(lambda: 42) == 42
    assert not flight.running
    assert flight.run(lambda: 43) == 43  # sequential runs each run


def _run_threads(flight, call, n=THREADS):
    """Start n threads behind a barrier; each runs ``flight.run(call)``; return outcomes."""

    def work(i: int) -> tuple[str, object]:
        try:
            return ("ok", flight.run(call))
        except Exception as exc:
            return ("error", exc)

    return run_threads(n, work)


def test_single_flight_twenty_threads_make_one_call_and_all_get_its_result():
    flight: SingleFlight[object] = SingleFlight()
    guard = CountingLock()
    flight._guard = guard  # type: ignore[assignment]  # to know when all 20 have arrived
    calls = []
    result = object()

    def slow_call():
        calls.append(threading.get_ident())
        # Hold the call open until every thread is inside run(): they must wait, not call.
        assert guard.wait_for(THREADS)
        return result

    outcomes = _run_threads(flight, slow_call)
    assert len(calls) == 1
    assert outcomes == [("ok", result)] * THREADS
    assert not flight.running


def test_single_flight_failure_is_shared_by_every_waiter_without_a_retry():
    flight: SingleFlight[object] = SingleFlight()
    guard = CountingLock()
    flight._guard = guard  # type: ignore[assignment]
    calls = []
    error = RuntimeError("token endpoint down")

    def failing_call():
        calls.append(1)
        assert guard.wait_for(THREADS)
        raise error

    outcomes = _run_threads(flight, failing_call)
    assert len(calls) == 1
    assert [kind for kind, _ in outcomes] == ["error"] * THREADS
    assert all(exc is error for _, exc in outcomes)
    # The flight is over: the next caller runs a new call.
    assert flight.run(lambda: "recovered") == "recovered"


def test_single_flight_wakes_waiters_even_on_base_exception():
    flight: SingleFlight[object] = SingleFlight()
    started, waiter_done = threading.Event(), threading.Event()
    seen: list[BaseException] = []

    def interrupted():
        started.set()
        # let the waiter get inside run() before failing
        assert guard.wait_for(2)
        raise KeyboardInterrupt

    guard = CountingLock()
    flight._guard = guard  # type: ignore[assignment]

    def waiter():
        started.wait(WAIT)
        try:
            flight.run(lambda: "never")
        except BaseException as exc:
            seen.append(exc)
        waiter_done.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    with pytest.raises(KeyboardInterrupt):
        flight.run(interrupted)
    assert waiter_done.wait(WAIT)
    thread.join(WAIT)
    assert len(seen) == 1
    assert isinstance(seen[0], KeyboardInterrupt)


def test_try_run_returns_false_at_once_while_a_run_is_in_progress():
    flight: SingleFlight[str] = SingleFlight()
    inside, release = threading.Event(), threading.Event()

    def slow():
        inside.set()
        assert release.wait(WAIT)
        return "done"

    results = []
    leader = threading.Thread(target=lambda: results.append(flight.run(slow)))
    leader.start()
    assert inside.wait(WAIT)
    assert flight.running
    skipped = []
    assert flight.try_run(lambda: skipped.append(1) or "x") is False
    assert skipped == []
    release.set()
    leader.join(WAIT)
    assert results == ["done"]
    ran = []
    assert flight.try_run(lambda: ran.append(1)) is True
    assert ran == [1]


def test_try_run_propagates_the_error_and_frees_the_flight():
    flight: SingleFlight[str] = SingleFlight()

    def boom():
        raise ValueError("nope")

    with pytest.raises(ValueError, match="nope"):
        flight.try_run(boom)
    assert not flight.running
    assert flight.try_run(lambda: "ok") is True


def test_run_waiters_share_the_result_of_a_try_run_in_progress():
    flight: SingleFlight[str] = SingleFlight()
    guard = CountingLock()
    flight._guard = guard  # type: ignore[assignment]
    calls = []
    inside = threading.Event()

    def slow():
        calls.append(1)
        inside.set()
        assert guard.wait_for(2)  # the try_run's entry and the waiter's
        return "early"

    out = []
    leader = threading.Thread(target=lambda: out.append(flight.try_run(slow)))
    leader.start()
    assert inside.wait(WAIT)
    assert flight.run(lambda: "late") == "early"
    leader.join(WAIT)
    assert out == [True]
    assert calls == [1]


# -- fork ------------------------------------------------------------------------------------

@needs_fork
@forking_with_threads
def test_a_child_forked_while_a_thread_runs_a_flight_runs_its_own_and_exits():
    """The child inherits neither the running flight nor the locks held by other threads."""
    flight: SingleFlight[str] = SingleFlight()
    cache = MemoryTokenCache()
    cache.set("k", token("before-fork"))
    inside, release = threading.Event(), threading.Event()

    def slow_fetch() -> str:
        with cache.lock("k"):  # held, like a token fetch holds it, at fork time
            inside.set()
            assert release.wait(WAIT)
        return "parent's"

    results: list[str] = []
    leader = threading.Thread(target=lambda: results.append(flight.run(slow_fetch)))
    leader.start()
    try:
        assert inside.wait(WAIT)

        def child() -> None:
            assert not flight.running
            assert flight.run(lambda: "child's own") == "child's own"
            assert flight.try_run(lambda: "again") is True
            lock = cache.lock("k")
            assert lock.acquire(timeout=WAIT), "the lock held by the parent's thread is free"
            lock.release()
            assert cache.get("k") == token("before-fork")  # the tokens are inherited
            cache.set("k", token("child's"))
            assert cache.get("k") == token("child's")

        code, report = run_in_forked_child(child)
    finally:
        release.set()
        leader.join(WAIT)
    assert code == 0, report
    assert results == ["parent's"]  # the parent's flight is not disturbed
    assert cache.get("k") == token("before-fork")
    assert flight.run(lambda: "next") == "next"


@needs_fork
@forking_with_threads
def test_a_child_forked_during_a_token_fetch_gets_its_own_token(sandbox):
    auth = sandbox.auth()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:  # the parent's token request stays in progress across the fork
        if not inside.is_set():
            inside.set()
            assert release.wait(WAIT)

    sandbox.provider.on_token_request = hold
    fetched: list[object] = []
    fetcher = threading.Thread(target=lambda: fetched.append(auth.get_token()))
    fetcher.start()
    try:
        assert inside.wait(WAIT)

        def child() -> None:  # its own token request is answered at once (see hold)
            assert auth.get_token().access_token

        code, report = run_in_forked_child(child)
    finally:
        release.set()
        fetcher.join(WAIT)
    assert code == 0, report
    assert len(fetched) == 1
    assert sandbox.provider.token_requests == 2  # the parent's and the child's
