"""Small test helpers shared by several test files: threads, a counting lock, a child process."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import traceback
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable, ContextManager

import pytest

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


# -- fork ------------------------------------------------------------------------------------

needs_fork = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork()")
# Python 3.12+ warns on fork() with threads running, which is exactly the case under test.
forking_with_threads = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def run_in_forked_child(
    body: Callable[[], None], *, in_parent: Callable[[], object] = lambda: None
) -> tuple[int, str]:
    """Run ``body()`` in a child made by a real ``os.fork()``; its exit code and its report.

    ``in_parent`` runs in the parent right after the fork, while the child runs. The child
    is killed by SIGALRM after ``3 * WAIT`` seconds, so a child that hangs fails the test
    instead of hanging it; 0 means ``body`` returned, else the report is its traceback.
    """
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: whatever happens, never return into pytest
        code, report = 1, "the child did not finish"
        try:
            os.close(read_end)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(int(3 * WAIT))
            body()
            code, report = 0, "ok"
        except BaseException:
            report = traceback.format_exc()
        finally:
            try:
                os.write(write_end, report.encode("utf-8", "replace"))
            finally:
                os._exit(code)
    os.close(write_end)
    in_parent()
    with os.fdopen(read_end, "rb") as pipe:  # end of file: the child exited or was killed
        report = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), report


@contextlib.contextmanager
def logged_warnings() -> Iterator[list[str]]:
    """The package's WARNING (and worse) messages while the block runs (also in a child)."""
    messages: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: messages.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("requests_advanced_auth")
    logger.addHandler(handler)
    try:
        yield messages
    finally:
        logger.removeHandler(handler)


@contextlib.contextmanager
def held_by_another_thread(lock: ContextManager[object]) -> Iterator[threading.Event]:
    """``lock`` entered by another thread, as a fetch in progress holds it, until the block
    ends or the event it yields is set."""
    inside, release = threading.Event(), threading.Event()

    def holder() -> None:
        with lock:
            inside.set()
            release.wait(WAIT)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(WAIT), "the other thread never got the lock"
        yield release
    finally:
        release.set()
        thread.join(WAIT)
