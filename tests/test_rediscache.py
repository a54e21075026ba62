"""RedisTokenCache against a real redis-server started by these tests."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
import socket
import subprocess
import time

import pytest
import requests
from _helpers import (
    WAIT,
    forking_with_threads,
    held_by_another_thread,
    logged_warnings,
    needs_fork,
    run_in_forked_child,
)
from _procs import TRANSACTION_PARAMS, run_fleet, run_lifetimes, run_thread_fleet

from requests_advanced_auth import ConfigurationError, Token, TokenCache
from requests_advanced_auth._rediscache import RETRY_INTERVAL, RedisTokenCache

redis = pytest.importorskip("redis")
from redis.backoff import NoBackoff  # noqa: E402
from redis.retry import Retry  # noqa: E402

pytestmark = pytest.mark.redis

KEY = "a" * 32
OTHER_KEY = "b" * 32
PREFIX = "requests-advanced-auth:"


def token(value: str, issued_at: float = 1_700_000_000.0, lifetime: float | None = 3600.0):
    return Token.issued(value, issued_at=issued_at, expires_in=lifetime)


def warnings_in(caplog):
    return [r for r in caplog.records if r.levelno == logging.WARNING]


# -- a real redis-server ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class RedisServer:
    """``redis-server`` on 127.0.0.1 without persistence, in a temporary directory."""

    def __init__(self, binary: str, directory) -> None:
        self.binary, self.directory = binary, directory
        self.port = _free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        probe = redis.Redis(port=self.port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        while True:  # bounded wait for the server to accept connections
            try:
                probe.ping()
                break
            except redis.exceptions.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.01)
        probe.close()
        return self

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def client(self, **options) -> redis.Redis:
        # No retries with backoff: a dead server must fail at once in these tests.
        options.setdefault("retry", Retry(NoBackoff(), 0))
        return redis.Redis(port=self.port, socket_timeout=2, socket_connect_timeout=2, **options)


@pytest.fixture(scope="session")
def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed: CI must run the Redis tests (.ci/run)")
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return binary


@pytest.fixture(scope="module")
def redis_server(redis_binary, tmp_path_factory):
    server = RedisServer(redis_binary, tmp_path_factory.mktemp("redis")).start()
    yield server
    server.kill()


@pytest.fixture
def client(redis_server):
    client = redis_server.client()
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def cache(client, clock):
    return RedisTokenCache(client, clock=clock)


# -- the store ------------------------------------------------------------------------------


def test_redis_cache_is_a_token_cache(cache):
    assert isinstance(cache, TokenCache)


def test_a_token_set_through_one_client_is_read_through_another(
    redis_server, client, clock, leak_guard
):
    leak_guard.watch("tok-fleet")
    RedisTokenCache(client, clock=clock).set(KEY, token("tok-fleet", clock()))
    other = RedisTokenCache(redis_server.client(decode_responses=True), clock=clock)
    assert other.get(KEY) == token("tok-fleet", clock())
    assert other.get(OTHER_KEY) is None


def test_the_ttl_is_the_remaining_lifetime(cache, client, clock, leak_guard):
    leak_guard.watch("tok-ttl")
    cache.set(KEY, token("tok-ttl", issued_at=clock() - 30, lifetime=150))  # 120 s left
    assert 119_000 < client.pttl(PREFIX + KEY) <= 120_000


def test_a_token_without_expiry_is_stored_without_ttl(cache, client, clock, leak_guard):
    leak_guard.watch("tok-forever")
    cache.set(KEY, token("tok-forever", clock(), None))
    assert client.ttl(PREFIX + KEY) == -1
    assert cache.get(KEY) == token("tok-forever", clock(), None)


def test_an_already_expired_token_is_not_stored_and_removes_the_older_one(
    cache, client, clock, leak_guard
):
    leak_guard.watch("tok-older", "tok-dead")
    cache.set(KEY, token("tok-older", clock()))
    cache.set(KEY, token("tok-dead", clock(), 0))
    assert client.exists(PREFIX + KEY) == 0


def test_invalidate_drops_the_token_only_if_redis_still_holds_it(cache, clock, leak_guard):
    leak_guard.watch("tok-old", "tok-new")
    cache.set(KEY, token("tok-new", clock()))
    assert cache.invalidate(KEY, token("tok-old", clock())) is False
    assert cache.get(KEY) == token("tok-new", clock())
    assert cache.invalidate(KEY, token("tok-new", clock())) is True
    assert cache.get(KEY) is None
    assert cache.invalidate(KEY, token("tok-new", clock())) is False


def test_a_foreign_value_is_ignored_with_one_warning_kept_by_invalidate_and_replaced_on_set(
    cache, client, clock, caplog, leak_guard
):
    leak_guard.watch("tok-fresh")
    client.set(PREFIX + KEY, b"\x00 not a token")
    for _ in range(3):
        assert cache.get(KEY) is None
    assert cache.invalidate(KEY, token("tok-fresh", clock())) is False
    assert client.get(PREFIX + KEY) == b"\x00 not a token"
    [warning] = warnings_in(caplog)
    assert PREFIX + KEY in warning.getMessage()
    cache.set(KEY, token("tok-fresh", clock()))
    assert cache.get(KEY) == token("tok-fresh", clock())


FOREIGN_VALUES = {
    # json.loads raises RecursionError on these, not ValueError
    "deeply nested JSON": b"[" * 100_000 + b"]" * 100_000,
    "a deeply nested object": b'{"access_token": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    # a NaN or infinite expiry would keep the token FRESH forever
    "NaN expires_at": b'{"access_token": "planted", "issued_at": 0, "expires_at": NaN}',
    "infinite expires_at": b'{"access_token": "planted", "issued_at": 0, "expires_at": 1e400}',
    "400-digit expires_at": (
        b'{"access_token": "planted", "issued_at": 0, "expires_at": ' + b"9" * 400 + b"}"
    ),
    "NaN issued_at": b'{"access_token": "planted", "issued_at": NaN, "expires_at": 10}',
}


@pytest.mark.parametrize("value", FOREIGN_VALUES.values(), ids=FOREIGN_VALUES.keys())
def test_a_corrupt_or_non_finite_value_is_ignored_with_one_warning_and_replaced_on_set(
    cache, client, clock, caplog, leak_guard, value
):
    leak_guard.watch("tok-replacing", "planted")
    client.set(PREFIX + KEY, value)
    for _ in range(3):
        assert cache.get(KEY) is None
    [warning] = warnings_in(caplog)
    assert PREFIX + KEY in warning.getMessage()
    cache.set(KEY, token("tok-replacing", clock()))
    assert cache.get(KEY) == token("tok-replacing", clock())


def test_a_value_of_another_redis_type_is_a_foreign_value_not_an_outage(
    cache, client, clock, caplog, leak_guard
):
    """GET on a hash answers WRONGTYPE: Redis is up, the value is just not a token."""
    leak_guard.watch("tok-repairs")
    client.hset(PREFIX + KEY, "field", "value")
    for _ in range(3):
        assert cache.get(KEY) is None
    assert cache.invalidate(KEY, token("tok-repairs", clock())) is False
    assert client.type(PREFIX + KEY) == b"hash"  # kept by invalidate, as any foreign value
    [warning] = warnings_in(caplog)
    assert PREFIX + KEY in warning.getMessage()
    assert "replaced on the next write" in warning.getMessage()
    assert "unavailable" not in caplog.text
    cache.set(KEY, token("tok-repairs", clock()))  # SET replaces a value of any type
    assert client.type(PREFIX + KEY) == b"string"
    assert RedisTokenCache(client, clock=clock).get(KEY) == token("tok-repairs", clock())
    assert len(warnings_in(caplog)) == 1


def test_auths_share_tokens_again_after_a_hash_was_planted_at_the_token_key(
    sandbox, client, caplog
):
    def signed_request() -> None:
        with requests.Session() as session:
            session.auth = sandbox.auth(cache=RedisTokenCache(client))
            assert session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS).ok

    signed_request()
    [name] = client.keys(PREFIX + "*")
    client.delete(name)
    client.hset(name, "planted", "1")
    signed_request()  # finds the hash: fetches a token, and stores it over the hash
    signed_request()  # another worker: takes the shared token
    assert sandbox.provider.token_requests == 2
    assert client.type(name) == b"string"
    assert len(warnings_in(caplog)) == 1
    assert "fetching tokens directly" not in caplog.text


def test_caches_with_different_prefixes_do_not_share(client, clock, leak_guard):
    leak_guard.watch("tok-a")
    RedisTokenCache(client, prefix="app-a:", clock=clock).set(KEY, token("tok-a", clock()))
    assert RedisTokenCache(client, prefix="app-b:", clock=clock).get(KEY) is None
    assert client.exists("app-a:" + KEY) == 1


# -- the lock -------------------------------------------------------------------------------


def test_lock_is_a_set_nx_key_with_a_ttl_removed_at_the_end(client, clock):
    cache = RedisTokenCache(client, lock_timeout=7, clock=clock)
    with cache.lock(KEY):
        assert 6_000 < client.pttl(PREFIX + KEY + ":lock") <= 7_000
    assert client.exists(PREFIX + KEY + ":lock") == 0


def test_lock_release_never_deletes_a_lock_that_another_owner_took_meanwhile(cache, client):
    with cache.lock(KEY):
        # Our lock expired during a long fetch, and another worker took it.
        client.set(PREFIX + KEY + ":lock", "other-worker")
    assert client.get(PREFIX + KEY + ":lock") == b"other-worker"


def test_lock_release_leaves_a_value_of_another_type_and_is_no_outage(cache, client, caplog):
    with cache.lock(KEY):
        # Our lock expired, and something else put a hash there: not ours to delete.
        client.delete(PREFIX + KEY + ":lock")
        client.hset(PREFIX + KEY + ":lock", "field", "value")
    assert client.type(PREFIX + KEY + ":lock") == b"hash"
    assert warnings_in(caplog) == []


def test_a_busy_lock_is_given_up_after_lock_timeout_with_a_warning(client, clock, caplog):
    client.set(PREFIX + KEY + ":lock", "other-worker", px=60_000)
    cache = RedisTokenCache(client, lock_timeout=0, clock=clock)
    entered = False
    with cache.lock(KEY):
        entered = True
    assert entered
    assert client.get(PREFIX + KEY + ":lock") == b"other-worker"
    [warning] = warnings_in(caplog)
    assert "going on without it" in warning.getMessage()


@needs_fork
@forking_with_threads
def test_a_child_forked_while_a_thread_holds_the_lock_takes_the_lock_and_writes(
    client, clock, leak_guard
):
    """The child does not inherit the local lock held by the parent's thread: it waits for
    the parent to release the Redis lock, then holds it itself."""
    leak_guard.watch("tok-child")
    cache = RedisTokenCache(client, lock_timeout=WAIT, clock=clock)

    def child() -> None:
        with logged_warnings() as warned:
            with cache.lock(KEY):
                assert client.pttl(PREFIX + KEY + ":lock") > 0  # ours now
                cache.set(KEY, token("tok-child", clock()))
            assert client.exists(PREFIX + KEY + ":lock") == 0
        assert warned == []

    # A fetch in progress in another thread at fork time holds the lock.
    with held_by_another_thread(cache.lock(KEY)) as release:
        code, report = run_in_forked_child(child, in_parent=release.set)
    assert code == 0, report
    assert cache.get(KEY) == token("tok-child", clock())


# -- configuration, display, copies -----------------------------------------------------------


def test_repr_shows_server_and_prefix_but_never_the_password():
    cache = RedisTokenCache(redis.Redis(host="cache.internal", port=6380, password="hunter2"))
    assert repr(cache) == (
        "RedisTokenCache(redis='cache.internal:6380 db=0', prefix='requests-advanced-auth:')"
    )


def test_a_pickled_copy_builds_a_client_for_the_same_server(redis_server, clock, leak_guard):
    leak_guard.watch("tok-copied")
    original = RedisTokenCache(
        redis_server.client(db=3, retry=Retry(NoBackoff(), 2)), prefix="p:", lock_timeout=4
    )
    copy = pickle.loads(pickle.dumps(original))  # noqa: S301
    settings = copy.client.connection_pool.connection_kwargs
    assert (settings["port"], settings["db"], settings["socket_timeout"]) == (
        redis_server.port, 3, 2
    )
    assert settings["retry"].get_retries() == 2
    assert (copy.prefix, copy.lock_timeout) == ("p:", 4.0)
    original.set(KEY, token("tok-copied", time.time()))
    assert copy.get(KEY) == token("tok-copied", original.get(KEY).issued_at)


def test_client_must_be_a_redis_client():
    with pytest.raises(ConfigurationError, match=r"redis\.Redis"):
        RedisTokenCache("redis://localhost")  # type: ignore[arg-type]


def test_an_asyncio_client_is_refused_with_a_hint_to_use_redis_redis():
    import redis.asyncio

    with pytest.raises(ConfigurationError, match=r"synchronous redis\.Redis") as info:
        RedisTokenCache(redis.asyncio.Redis())  # type: ignore[arg-type]
    assert "redis.asyncio" in str(info.value)


def test_any_client_whose_commands_are_coroutines_is_refused():
    class AsyncLookalike:  # a third-party asyncio client with the same methods
        def register_script(self, script):
            return None

        async def execute_command(self, *args, **options):
            return None

    with pytest.raises(ConfigurationError, match=r"synchronous redis\.Redis"):
        RedisTokenCache(AsyncLookalike())  # type: ignore[arg-type]


def test_repr_never_shows_a_stored_token(cache, clock, leak_guard):
    leak_guard.watch("tok-not-in-repr")
    cache.set(KEY, token("tok-not-in-repr", clock()))
    assert cache.get(KEY) is not None
    assert "tok-not-in-repr" not in repr(cache)
    assert "tok-not-in-repr" not in repr(cache.__dict__.get("_warned_value"))


@pytest.mark.parametrize("bad", [-1, float("nan"), "3"])
def test_lock_timeout_must_be_a_non_negative_number(bad):
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        RedisTokenCache(redis.Redis(), lock_timeout=bad)


@pytest.mark.parametrize(
    "bad",
    [86400.001, 1e10, 1e17, 10**400, 10**5000],
    ids=["just over a day", "1e10", "1e17", "a 401-digit int", "a 5001-digit int"],
)
def test_lock_timeout_above_a_day_is_a_configuration_error(bad):
    """Far above a day, waiting for the lock would overflow (OverflowError from threading)."""
    with pytest.raises(ConfigurationError, match=r"lock_timeout must be .* at most 86400 "):
        RedisTokenCache(redis.Redis(), lock_timeout=bad)


def test_a_lock_timeout_of_a_day_is_accepted_and_is_the_lock_ttl(client, clock):
    cache = RedisTokenCache(client, lock_timeout=86400, clock=clock)
    with cache.lock(KEY):
        assert 86_399_000 < client.pttl(PREFIX + KEY + ":lock") <= 86_400_000


@pytest.mark.parametrize("bad", [None, "time.time", 1_700_000_000.0])
def test_clock_must_be_callable(bad):
    with pytest.raises(ConfigurationError, match="clock must be a callable"):
        RedisTokenCache(redis.Redis(), clock=bad)


# -- with the auth, against the sandbox -----------------------------------------------------


def test_eight_auths_over_three_lifetimes_make_one_token_request_per_refresh_with_redis(
    make_sandbox, redis_server, client, clock
):
    """As with the file cache: 100 s tokens renewed after 75 s, requests every 10 s over
    300 s, a revocation at t = 120: tokens at t = 0, 80, 120, 200, 280, shared by all."""
    sandbox = make_sandbox(token_lifetime=100)
    clients = []

    def make_cache():  # a client (a connection pool) of its own, as each process has
        clients.append(redis_server.client())
        return RedisTokenCache(clients[-1], clock=clock)

    statuses = run_lifetimes(sandbox, make_cache, clock, lifetime=100, revoke_at=12)
    for own in clients:
        own.close()
    assert statuses == [200] * 8 * 31
    assert sandbox.provider.token_requests == 5


def test_eight_threads_with_their_own_auth_on_one_cache_make_one_token_request(sandbox, client):
    statuses = run_thread_fleet(sandbox, RedisTokenCache(client))
    assert statuses == [200] * 8
    assert sandbox.provider.token_requests == 1


def test_eight_processes_make_one_token_request_cold_and_one_more_after_a_revocation(
    sandbox, client
):
    """8 spawned processes share Redis: 1 token request on a cold cache; after every token
    is revoked, each sees 401, drops the shared token only if it is still the failed one,
    and together they make 1 more token request."""
    run = run_fleet(sandbox, RedisTokenCache(client))
    assert run.cold == [(200, 0)] * 8
    assert run.cold_token_requests == 1
    assert run.revoked == [(200, [401])] * 8  # every process met the revoked token
    assert run.revocation_token_requests == 1
    assert run.exit_codes == [0] * 8
    for name in client.keys("*"):
        assert sandbox.client_secret.encode() not in client.get(name)


def test_requests_still_succeed_when_redis_dies_with_one_warning_and_sharing_resumes(
    sandbox, redis_binary, tmp_path, clock, caplog
):
    server = RedisServer(redis_binary, tmp_path).start()
    try:
        client = server.client()
        session = requests.Session()
        session.auth = sandbox.auth(cache=RedisTokenCache(client, clock=clock), clock=clock)

        def fetch_page():
            response = session.get(sandbox.transactions_url, params=TRANSACTION_PARAMS)
            assert response.status_code == 200
            return response

        fetch_page()
        assert len(client.keys(PREFIX + "*")) == 1

        server.kill()
        sandbox.provider.revoke_all()  # the next request meets a 401: invalidate, fetch
        assert [r.status_code for r in fetch_page().history] == [401]
        clock.advance(3600 + RETRY_INTERVAL)  # the token expired: Redis is tried again
        fetch_page()
        assert sandbox.provider.token_requests == 3
        [warning] = warnings_in(caplog)
        assert "fetching tokens directly" in warning.getMessage()

        server.start()  # same port
        clock.advance(3600 + RETRY_INTERVAL)
        fetch_page()
        assert sandbox.provider.token_requests == 4
        assert len(client.keys(PREFIX + "*")) == 1  # shared again
        assert "answers again" in caplog.text
        assert len(warnings_in(caplog)) == 1
    finally:
        server.kill()
