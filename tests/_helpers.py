"""Small test helpers shared by several test files: threads, a counting lock, a child process."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable

WAIT = 10.0  # seconds; reached only when the behaviour under test is broken


def run_threads(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(i)`` in n threads released together by a Barrier; return results/errors.

    A thread's exception is its result (reported to the test, not lost in the thread).
    """
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def target(i: int) -> None:
        try:
            barrier.wait(WAIT)
            results[i] = work(i)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=target, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 6)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


class CountingLock:
    """A lock that counts how often it was entered, so a test can wait for N callers.

    Put in place of a SingleFlight's guard, it shows how many callers reached it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition()
        self.entries = 0

    def __enter__(self) -> bool:
        self._lock.acquire()
        with self._cond:
            self.entries += 1
            self._cond.notify_all()
        return True

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def wait_for(self, n: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.entries >= n, timeout=WAIT)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def child_process(
    argv: Sequence[str], env: Mapping[str, str], wait: float
) -> Iterator[subprocess.Popen[str]]:
    """A child with piped text stdout/stderr, killed after ``wait`` seconds at the latest.

    The child starts with Ctrl-C at its default even when this run ignores it (a background
    job, nohup): Python would otherwise ignore the SIGINT a test sends to stop a server.
    On leaving, the child is killed if it still runs and its pipes are closed.
    """
    process = subprocess.Popen(
        list(argv),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(env),
        preexec_fn=_default_sigint if os.name == "posix" else None,
    )
    watchdog = threading.Timer(wait, process.kill)
    watchdog.start()
    try:
        yield process
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


def read_exports(
    lines: Iterable[str], done: Callable[[str, dict[str, str]], bool]
) -> dict[str, str]:
    """The ``export NAME=value`` lines of a sandbox banner, read until ``done(line, exports)``."""
    exports: dict[str, str] = {}
    for line in lines:
        if line.startswith("export "):
            name, _, value = line[len("export "):].strip().partition("=")
            exports[name] = value
        if done(line, exports):
            break
    return exports
