"""Token stores and single flight.

Rules:

* A :class:`TokenCache` maps a key (a hash of token URL, client id, audiences, scope and extra
  parameters; never the secret) to the newest :class:`Token`. ``invalidate`` drops a token only
  if the store still holds *that* token, so N callers that saw the same stale token cause one
  token request, not N.
* ``lock(key)`` serialises fetches for one key across everything that shares the store (threads
  for the memory store, processes for a file, machines for Redis). Whoever takes it must
  re-check ``get`` before fetching: someone else may just have stored a fresh token.
* :class:`SingleFlight` shares one call's outcome (token *or* error) with every thread that
  arrives while it runs; a failure is not retried by each waiter in turn.
* Reading the memory store takes no lock (a dict lookup is atomic); writes take a short one.
* fork() copies only the thread that called it: a lock another thread held, or a flight it
  was running, would stay taken in the child forever. Every object here that owns locks
  registers with :func:`reset_after_fork`, and the child gets fresh locks and no flight in
  progress (as CPython's ``logging`` does for its handlers' locks). Tokens are kept.
"""

from __future__ import annotations

import os
import threading
import weakref
from concurrent.futures import Future
from typing import (
    Any,
    Callable,
    ContextManager,
    Final,
    Generic,
    Optional,
    Protocol,
    TypeVar,
    runtime_checkable,
)

from ._token import Token

T = TypeVar("T")

#: Upper bound of the shared caches' ``lock_timeout``: waiting a day for another process's
#: token request is surely a mistake (milliseconds?), and far larger values overflow the
#: lock itself (``OverflowError`` above ``threading.TIMEOUT_MAX``, ~49 days on Windows).
MAX_LOCK_TIMEOUT: Final = 86400.0


class ForkSafe(Protocol):
    """An object whose locks and in-progress state must be rebuilt in a fork()ed child."""

    def _after_fork_in_child(self) -> None:
        """Replace every lock and in-progress state with a fresh one (one thread runs)."""


# Weak: registering never keeps an object alive. Only this process's live objects are in it.
_FORK_SAFE: weakref.WeakSet[Any] = weakref.WeakSet()


def reset_after_fork(obj: ForkSafe) -> None:
    """Have ``obj._after_fork_in_child()`` called in the child of every later ``os.fork()``."""
    _FORK_SAFE.add(obj)


def _reset_in_child() -> None:
    for obj in list(_FORK_SAFE):
        obj._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # POSIX; without fork there is nothing to reset
    os.register_at_fork(after_in_child=_reset_in_child)


@runtime_checkable
class TokenCache(Protocol):
    """Where tokens live between requests; pass one to share tokens deliberately.

    Implement these four methods to plug in another store::

        class DictCache:
            def get(self, key): ...
            def set(self, key, token): ...
            def invalidate(self, key, token): ...   # drop only if it still holds `token`
            def lock(self, key): ...                 # a context manager
    """

    def get(self, key: str) -> Optional[Token]:
        """The stored token for ``key``, or None."""

    def set(self, key: str, token: Token) -> None:
        """Store ``token`` as the newest for ``key``."""

    def invalidate(self, key: str, token: Token) -> bool:
        """Drop ``key`` only if it still holds ``token``; True if it did."""

    def lock(self, key: str) -> ContextManager[object]:
        """A lock held while fetching a token for ``key`` (single flight)."""


class MemoryTokenCache:
    """Tokens in this process's memory: the default, one per auth object unless shared."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}
        self._after_fork_in_child()
        reset_after_fork(self)

    def _after_fork_in_child(self) -> None:
        self._write = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def get(self, key: str) -> Optional[Token]:
        return self._tokens.get(key)

    def set(self, key: str, token: Token) -> None:
        with self._write:
            self._tokens[key] = token

    def invalidate(self, key: str, token: Token) -> bool:
        with self._write:
            held = self._tokens.get(key)
            if held is None or held.access_token != token.access_token:
                return False
            del self._tokens[key]
            return True

    def lock(self, key: str) -> threading.Lock:
        with self._write:
            return self._locks.setdefault(key, threading.Lock())

    def __repr__(self) -> str:
        return f"MemoryTokenCache(keys={len(self._tokens)})"

    # A copy (pickle, deepcopy) starts empty with its own locks: tokens stay in this process.
    def __getstate__(self) -> dict[str, object]:
        return {}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__()  # type: ignore[misc]


class SingleFlight(Generic[T]):
    """At most one call at a time; threads arriving meanwhile get its result or its error."""

    def __init__(self) -> None:
        self._after_fork_in_child()
        reset_after_fork(self)

    def _after_fork_in_child(self) -> None:
        # A flight another thread was running is nobody's in a child: its Future would
        # never be completed.
        self._guard = threading.Lock()
        self._running: Optional[Future[T]] = None

    @property
    def running(self) -> bool:
        return self._running is not None

    def run(self, call: Callable[[], T]) -> T:
        """Run ``call``, or wait for the run in progress and share its outcome."""
        with self._guard:
            future = self._running
            leader = future is None
            if future is None:
                future = self._running = Future()
        if not leader:
            return future.result()
        try:
            result = call()
        except BaseException as exc:  # waiters must wake up even on KeyboardInterrupt
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            self._finish(future)

    def try_run(self, call: Callable[[], T]) -> bool:
        """Run ``call`` unless a run is in progress (then return False at once)."""
        with self._guard:
            if self._running is not None:
                return False
            future: Future[T] = Future()
            self._running = future
        try:
            future.set_result(call())
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            self._finish(future)
        return True

    def _finish(self, future: Future[T]) -> None:
        # Only our own: after a fork in the middle of a run, the child may have a new flight.
        with self._guard:
            if self._running is future:
                self._running = None
