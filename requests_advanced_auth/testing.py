"""Opt-in pytest fixtures that run the local Advanced-Store sandbox.

Enable them in a ``conftest.py`` (there is deliberately no ``pytest11`` entry point)::

    pytest_plugins = ["requests_advanced_auth.testing"]

Then::

    def test_statistics(advanced_sandbox, advanced_sandbox_auth):
        response = requests.get(
            advanced_sandbox.statistics_url,
            params={"page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-31"},
            auth=advanced_sandbox_auth,
        )
        assert response.ok
        assert advanced_sandbox.provider.tokens_issued == 1

``advanced_sandbox`` is a running :class:`~requests_advanced_auth.sandbox.Sandbox`, new for
each test (fresh clients, tokens and counters); its knobs are on ``.provider``.
``advanced_sandbox_auth`` is ``advanced_sandbox.auth()``, an ``AdvancedAuth`` pointed at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from requests_advanced_auth.sandbox import Sandbox

if TYPE_CHECKING:
    from requests_advanced_auth import AdvancedAuth

__all__ = ["advanced_sandbox", "advanced_sandbox_auth"]


@pytest.fixture
def advanced_sandbox() -> Iterator[Sandbox]:
    """A running sandbox for one test, stopped afterwards."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture
def advanced_sandbox_auth(advanced_sandbox: Sandbox) -> AdvancedAuth:
    """An ``AdvancedAuth`` configured for ``advanced_sandbox``."""
    return advanced_sandbox.auth()
