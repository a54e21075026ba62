"""Shared fixtures: a fake clock, a leak guard scanning every test's logs for secrets, sandboxes."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import pytest

from requests_advanced_auth.sandbox import Sandbox

pytest_plugins = ["requests_advanced_auth.testing"]


class FakeClock:
    """An injectable clock: tests move time instead of sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class LeakGuard:
    """Strings that must never show up in logs or warnings (secrets, whole tokens)."""

    def __init__(self) -> None:
        self.watched: set[str] = set()
        self.sandboxes: list[object] = []

    def watch(self, *values: str) -> None:
        self.watched.update(v for v in values if v)

    def all_watched(self) -> set[str]:
        values = set(self.watched)
        for sandbox in self.sandboxes:
            values.update(_sandbox_secrets(sandbox))
        return values


def _sandbox_secrets(sandbox: object) -> set[str]:
    provider = getattr(sandbox, "provider", None)
    found = {
        getattr(sandbox, "client_secret", ""),
        getattr(sandbox, "basic_client_secret", ""),
    }
    issued = getattr(provider, "issued_tokens", None)
    if callable(issued):
        found.update(issued())
    return {v for v in found if v}


@pytest.fixture(autouse=True)
def leak_guard(caplog: pytest.LogCaptureFixture) -> Iterator[LeakGuard]:
    """Capture every log record at DEBUG and every warning; fail if a watched string leaks."""
    guard = LeakGuard()
    caplog.set_level(logging.DEBUG)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield guard
    texts = [caplog.text]
    texts += [r.getMessage() + (r.exc_text or "") for r in caplog.records]
    texts += [str(w.message) for w in caught]
    for value in guard.all_watched():
        for text in texts:
            assert value not in text, "a secret or token leaked into a log record or warning"


@pytest.fixture
def sandbox(advanced_sandbox, leak_guard: LeakGuard):  # type: ignore[no-untyped-def]
    """The package's sandbox fixture, with its secrets and tokens under the leak guard."""
    leak_guard.sandboxes.append(advanced_sandbox)
    return advanced_sandbox


@pytest.fixture
def make_sandbox(clock: FakeClock, leak_guard: LeakGuard) -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes sharing the test's FakeClock; their secrets and tokens are watched."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> Sandbox:
            options.setdefault("clock", clock)
            sb = stack.enter_context(Sandbox(**options))
            leak_guard.sandboxes.append(sb)
            return sb

        yield start
