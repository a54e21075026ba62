"""The public API is exactly what README.md documents: adding or removing a name is a choice."""

from __future__ import annotations

import importlib
import types

import requests_advanced_auth

TOP_LEVEL = {
    "DEFAULT_LEEWAY", "AdvancedAuth", "AdvancedAuthError", "CacheEntry", "ClientCredentialsAuth",
    "ConfigurationError", "FileTokenCache", "HeaderStyle", "InvalidClientError",
    "MemoryTokenCache", "OAuthError", "PageError", "RedisTokenCache", "Token", "TokenCache",
    "TokenEndpointUnreachableError", "TokenError", "TokenResponseError", "TokenState",
    "__version__",
}
PUBLIC_MODULES = {
    "exceptions": {"AdvancedAuthError", "ConfigurationError", "InvalidClientError", "OAuthError",
                   "PageError", "TokenEndpointUnreachableError", "TokenError",
                   "TokenResponseError"},
    "pagination": {"iter_transactions", "iter_statistics", "api_urls", "TRANSACTION_FIELDS",
                   "STATISTICS_FIELDS", "TRANSACTIONS_URL", "STATISTICS_URL", "DEFAULT_TIMEOUT",
                   "MAX_STATISTICS_PAGE_SIZE", "MAX_TRANSACTIONS_PAGE_SIZE"},
    "frames": {"transactions_to_dataframe", "statistics_to_dataframe", "STATISTICS_DTYPES",
               "TRANSACTION_DTYPES"},
    "testing": {"advanced_sandbox", "advanced_sandbox_auth"},
}
#: The sandbox is a test tool with many constants; these are the names README relies on.
SANDBOX_AT_LEAST = {"Sandbox", "SandboxProvider", "SITE_IDS", "TOKEN_PATH", "TRANSACTIONS_PATH",
                    "STATISTICS_PATH"}


def test_the_top_level_exports_exactly_the_documented_names():
    assert set(requests_advanced_auth.__all__) == TOP_LEVEL  # (ruff keeps __all__ sorted)
    for name in requests_advanced_auth.__all__:
        assert getattr(requests_advanced_auth, name) is not None


def test_nothing_public_is_exported_by_accident():
    """Every public top-level name that is not a module (submodules appear once imported)."""
    public = {
        name for name, value in vars(requests_advanced_auth).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == TOP_LEVEL - {"__version__"}


def test_public_modules_export_exactly_their_documented_names():
    for module_name, names in PUBLIC_MODULES.items():
        module = importlib.import_module(f"requests_advanced_auth.{module_name}")
        assert set(module.__all__) == names, module_name
        for name in module.__all__:
            assert hasattr(module, name), (module_name, name)


def test_the_sandbox_exports_what_readme_uses():
    from requests_advanced_auth import sandbox

    assert set(sandbox.__all__) >= SANDBOX_AT_LEAST
    for name in sandbox.__all__:
        assert hasattr(sandbox, name), name
