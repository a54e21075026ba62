"""``RedisTokenCache``: one token for a fleet of workers on several machines.

Rules:

* A token is stored under ``<prefix><key>`` as the JSON of :meth:`Token.to_dict`, with a TTL
  equal to its remaining lifetime (``PX``), so Redis drops it when it expires; a token
  without a stated lifetime is stored without TTL (until a 401 invalidates it).
* Single flight across the fleet: ``lock(key)`` is ``SET <prefix><key>:lock <owner> NX PX``
  with a random owner, polled briefly until ``lock_timeout`` (at most a day,
  ``_cache.MAX_LOCK_TIMEOUT``), and released by a Lua compare-and-delete, so a holder whose
  lock expired never deletes the next holder's lock.
  The lock's TTL is ``lock_timeout`` (at least 1 s): a crashed holder blocks the others no
  longer than they would wait anyway. Threads of one process first queue on a local lock
  (new ones in a fork()ed child: see ``_cache``).
* ``invalidate`` is a Lua compare-and-delete too: the token is dropped only if Redis still
  holds the one that failed, so a fleet that sees one revoked token makes one token request.
* A value at the token key that is not our token (other JSON, another Redis type: GET
  answers WRONGTYPE) is foreign, not an outage: one warning, ``get`` answers None, and the
  next ``set`` replaces it (SET overwrites a value of any type).
* The cache must never break auth: on any Redis error ``get`` answers None, ``set`` and
  ``invalidate`` do nothing and ``lock`` does not lock. One WARNING per outage (an INFO when
  Redis answers again); during an outage Redis is tried again at most every
  ``RETRY_INTERVAL`` seconds, so requests do not each wait for a dead server.
* ``redis`` is imported lazily: the package works without it; whoever passes a client has it.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import pickle
import secrets
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Final, Iterator, Optional

from ._cache import MAX_LOCK_TIMEOUT, reset_after_fork
from ._checks import checked_clock, checked_seconds
from ._token import Token
from .exceptions import ConfigurationError

if TYPE_CHECKING:
    import redis

log = logging.getLogger("requests_advanced_auth")

DEFAULT_PREFIX: Final = "requests-advanced-auth:"
#: See _filecache.DEFAULT_LOCK_TIMEOUT: a token request with retries takes up to ~30 s.
DEFAULT_LOCK_TIMEOUT: Final = 30.0
#: After a Redis error, Redis is left alone this long (tokens are fetched directly): a dead
#: or unreachable server then costs one failed command per interval, not one per request.
RETRY_INTERVAL: Final = 5.0
#: The lock never lives shorter than this, whatever ``lock_timeout`` is (PX must be > 0).
MIN_LOCK_TTL: Final = 1.0
#: Polling for a busy lock starts at POLL_FIRST seconds and doubles up to POLL_MAX: the
#: holder's token request takes tens of milliseconds on a good day.
POLL_FIRST: Final = 0.002
POLL_MAX: Final = 0.05

# KEYS[1]: the lock; ARGV[1]: its owner. Delete it only if we still own it. pcall: GET on
# a value of another type (a hash, ...) is a WRONGTYPE error, which is simply not our lock.
_RELEASE: Final = """
if redis.pcall('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS[1]: the token entry; ARGV[1]: the access token that failed. Delete only if the entry
# still holds that token (a foreign value is left for the next set to overwrite). GET gives
# false for no value and, through pcall, an error table for a value of another type.
_INVALIDATE: Final = """
local value = redis.pcall('GET', KEYS[1])
if type(value) ~= 'string' then
    return 0
end
local ok, data = pcall(cjson.decode, value)
if ok and type(data) == 'table' and data['access_token'] == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

# Connection settings that may travel in a pickle: plain values only (sockets, locks, event
# handlers and sentinel objects must not, and a sentinel would come back as a different one).
_PLAIN: Final = (type(None), bool, int, float, str, bytes)
_PICKLED_OBJECTS: Final = ("retry", "retry_on_error")


def _redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    # OSError: socket errors redis-py did not wrap (builtin ConnectionError, TimeoutError).
    return (redis.exceptions.RedisError, OSError)


class RedisTokenCache:
    """Tokens in Redis, shared by every worker that uses the same server and prefix.

    ::

        import redis
        client = redis.Redis(host="cache.internal", socket_timeout=1, socket_connect_timeout=1)
        session.auth = AdvancedAuth(client_id, client_secret, cache=RedisTokenCache(client))

    Redis holds access tokens (never the client secret) under ``prefix`` + a hash of token
    URL, client id, audiences, scope and extra parameters. Give the client short socket
    timeouts: if Redis hangs, a token refresh waits for them (then goes on without Redis).

    Pickling (``multiprocessing`` with spawn) sends the client's connection settings (host,
    port, db, username, password, timeouts, SSL file paths, ...: its plain
    ``connection_pool.connection_kwargs``, plus its retry policy) and builds a new client with
    them in the receiving process. Settings that are objects (credential providers, SSL
    contexts, event hooks) are not sent; create the cache in each worker instead if you use
    them. Cluster and Sentinel clients are not supported for pickling.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = DEFAULT_PREFIX,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not callable(getattr(client, "register_script", None)):
            raise ConfigurationError(
                f"client must be a redis.Redis, got {type(client).__name__}"
            )
        if _is_asyncio(client):
            kind = f"{type(client).__module__}.{type(client).__qualname__}"
            raise ConfigurationError(
                f"client must be a synchronous redis.Redis, got the asyncio client {kind}: "
                "requests signs each request synchronously; create the client with "
                "redis.Redis(...) instead of redis.asyncio.Redis(...)"
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a str, got {type(prefix).__name__}")
        self.client = client
        self.prefix = prefix
        self.lock_timeout = checked_seconds(lock_timeout, "lock_timeout", MAX_LOCK_TIMEOUT)
        self._clock = checked_clock(clock)
        self._release = client.register_script(_RELEASE)
        self._invalidate = client.register_script(_INVALIDATE)
        self._after_fork_in_child()
        self._down = False  # in an outage: warned, waiting for Redis to answer again
        self._retry_at = -math.inf
        self._warned_value: Optional[tuple[str, int]] = None
        reset_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # Locks other threads held at fork time would stay taken in a child. (The client's
        # connection pool resets itself in a child: redis-py checks the process id.)
        self._guard = threading.Lock()
        self._local_locks: dict[str, threading.Lock] = {}

    # -- TokenCache -------------------------------------------------------------------------

    def get(self, key: str) -> Optional[Token]:
        if self._resting():
            return None
        try:
            raw = self.client.get(self.prefix + key)
        except _redis_errors() as exc:
            if not _wrong_type(exc):
                self._failed("read", exc)
                return None
            # Redis answered: the key holds a hash, a list, ...; SET in the next set()
            # replaces it. Not an outage, which would stop sharing until Redis "answers".
            self._answered()
            self._ignore_value(key, -1, "a value of another Redis type")
            return None
        self._answered()
        if raw is None:
            return None
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
            data = json.loads(text)
            if not isinstance(data, dict):
                raise TypeError
            return Token.from_dict(data)
        except (UnicodeDecodeError, KeyError, TypeError, ValueError, RecursionError):
            # RecursionError: json.loads on deeply nested JSON ([[[[...]]]]).
            self._ignore_value(key, len(raw), "not a token stored by requests-advanced-auth")
            return None

    def _ignore_value(self, key: str, size: int, what: str) -> None:
        """One warning per foreign value (key and size); nothing of it is logged: it may
        hold a token."""
        if self._warned_value != (key, size):
            self._warned_value = (key, size)
            log.warning(
                "ignoring the value at Redis key %s: %s; it will be replaced on the next write",
                self.prefix + key, what,
            )

    def set(self, key: str, token: Token) -> None:
        if self._resting():
            return
        payload = json.dumps(token.to_dict(), separators=(",", ":"))
        try:
            if token.expires_at is None:
                self.client.set(self.prefix + key, payload)
            else:
                ttl_ms = int((token.expires_at - self._clock()) * 1000)
                if ttl_ms > 0:
                    self.client.set(self.prefix + key, payload, px=ttl_ms)
                else:  # already expired: nothing worth sharing, and the old one is older
                    self.client.delete(self.prefix + key)
        except _redis_errors() as exc:
            self._failed("write", exc)
            return
        self._answered()

    def invalidate(self, key: str, token: Token) -> bool:
        if self._resting():
            return False
        try:
            deleted = self._invalidate(keys=[self.prefix + key], args=[token.access_token])
        except _redis_errors() as exc:
            self._failed("invalidate", exc)
            return False
        self._answered()
        return bool(deleted)

    @contextlib.contextmanager
    def lock(self, key: str) -> Iterator[None]:
        """Fleet-wide lock for fetching ``key``'s token, waited for at most ``lock_timeout``."""
        deadline = time.monotonic() + self.lock_timeout
        local = self._local_lock(key)
        has_local = local.acquire(timeout=self.lock_timeout)
        owner: Optional[str] = None
        try:
            if has_local:
                owner = self._acquire(key, deadline)
            else:
                log.warning(
                    "waited %.1f s for another thread fetching a token; going on without the "
                    "lock (a token request may be repeated)", self.lock_timeout,
                )
            yield
        finally:
            try:
                if owner is not None:
                    self._release_lock(key, owner)
            finally:
                if has_local:
                    local.release()

    # -- lock -------------------------------------------------------------------------------

    def _local_lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._local_locks.setdefault(key, threading.Lock())

    def _acquire(self, key: str, deadline: float) -> Optional[str]:
        """Our owner value once the Redis lock is ours; None to go on without it."""
        name = self.prefix + key + ":lock"
        owner = secrets.token_hex(16)
        ttl_ms = int(max(self.lock_timeout, MIN_LOCK_TTL) * 1000)
        pause = POLL_FIRST
        while True:
            if self._resting():
                return None
            try:
                taken = self.client.set(name, owner, nx=True, px=ttl_ms)
            except _redis_errors() as exc:
                self._failed("lock", exc)
                return None
            self._answered()
            if taken:
                return owner
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.warning(
                    "waited %.1f s for the Redis lock %s (another worker is fetching a "
                    "token); going on without it (a token request may be repeated)",
                    self.lock_timeout, name,
                )
                return None
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, POLL_MAX)

    def _release_lock(self, key: str, owner: str) -> None:
        try:
            self._release(keys=[self.prefix + key + ":lock"], args=[owner])
        except _redis_errors() as exc:
            self._failed("unlock", exc)  # the lock's TTL frees it
        else:
            self._answered()

    # -- outages ----------------------------------------------------------------------------

    def _resting(self) -> bool:
        """True during an outage, until it is time to try Redis again."""
        return self._down and self._clock() < self._retry_at

    def _failed(self, action: str, exc: BaseException) -> None:
        with self._guard:
            first = not self._down
            self._down = True
            self._retry_at = self._clock() + RETRY_INTERVAL
        if first:
            log.warning(
                "Redis token cache %s unavailable (%s failed: %s: %s); fetching tokens "
                "directly until it answers again",
                self._where(), action, type(exc).__name__, exc,
            )
        else:
            log.debug("Redis token cache %s still unavailable (%s failed: %s)",
                      self._where(), action, type(exc).__name__)

    def _answered(self) -> None:
        if self._down:
            with self._guard:
                was_down, self._down = self._down, False
            if was_down:
                log.info("Redis token cache %s answers again", self._where())

    # -- display and copies -----------------------------------------------------------------

    def _where(self) -> str:
        kwargs = _connection_kwargs(self.client)
        if "path" in kwargs:
            return f"unix:{kwargs['path']} db={kwargs.get('db', 0)}"
        return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')} db={kwargs.get('db', 0)}"

    def __repr__(self) -> str:
        return f"RedisTokenCache(redis={self._where()!r}, prefix={self.prefix!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            raise TypeError("only a RedisTokenCache over a redis.Redis client can be pickled")
        settings: dict[str, Any] = {}
        for name, value in _connection_kwargs(self.client).items():
            if isinstance(value, _PLAIN):
                settings[name] = value
            elif name in _PICKLED_OBJECTS:
                with contextlib.suppress(Exception):
                    pickle.dumps(value)
                    settings[name] = value
        clock = None if self._clock is time.time else self._clock
        return (
            _rebuild,
            (pool.connection_class, settings, self.prefix, self.lock_timeout, clock),
        )


def _wrong_type(exc: BaseException) -> bool:
    """Redis's WRONGTYPE answer: the key holds a value of another type than a string."""
    import redis.exceptions

    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("WRONGTYPE")


def _is_asyncio(client: Any) -> bool:
    """redis.asyncio's clients (Redis, RedisCluster, ...) or any whose commands are coroutines:
    their ``get`` returns a coroutine, which would fail much later as a TypeError."""
    if type(client).__module__.split(".")[:2] == ["redis", "asyncio"]:
        return True
    return inspect.iscoroutinefunction(getattr(client, "execute_command", None))


def _connection_kwargs(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    return kwargs if isinstance(kwargs, dict) else {}


def _rebuild(
    connection_class: Any,
    settings: dict[str, Any],
    prefix: str,
    lock_timeout: float,
    clock: Optional[Callable[[], float]],
) -> RedisTokenCache:
    import redis

    pool = redis.ConnectionPool(connection_class=connection_class, **settings)
    return RedisTokenCache(
        redis.Redis(connection_pool=pool),
        prefix=prefix,
        lock_timeout=lock_timeout,
        clock=clock or time.time,
    )
