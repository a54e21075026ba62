"""Type-checked by CI (`mypy tests/typing/api.py`), never run: the public API as users write it."""

from __future__ import annotations

import requests

from requests_advanced_auth import (
    AdvancedAuth,
    AdvancedAuthError,
    ClientCredentialsAuth,
    FileTokenCache,
    InvalidClientError,
    MemoryTokenCache,
    OAuthError,
    RedisTokenCache,
    Token,
    TokenCache,
    TokenEndpointUnreachableError,
    TokenState,
)


def quick_start(client_id: str, client_secret: str) -> int:
    session = requests.Session()
    session.auth = AdvancedAuth(client_id, client_secret)
    r = session.get("https://api.advanced-store.com/publishers/transactions/2.0/", timeout=30)
    return r.status_code


def generic(cache: TokenCache) -> ClientCredentialsAuth:
    return ClientCredentialsAuth(
        "id",
        "secret",
        token_url="https://idp.example/oauth2/token",
        audience=["a", "b"],
        audience_encoding="repeated",
        scope="read write",
        client_auth="client_secret_basic",
        allowed_hosts=["api.example:8443"],
        header_styles={"https://api.example:8443/raw/": "raw"},
        leeway=30.0,
        cache=cache,
        timeout=(2.0, 5.0),
        retries=2,
        max_retry_after=10.0,
        verify="/etc/ssl/ca.pem",
    )


def token_facts(auth: ClientCredentialsAuth, now: float) -> tuple[str, TokenState, dict[str, str]]:
    token: Token = auth.get_token()
    auth.invalidate(token)
    return token.fingerprint, token.state(now, auth.leeway), auth.headers_for("https://x/")


def errors(auth: AdvancedAuth) -> str:
    try:
        auth.get_token()
    except InvalidClientError as exc:
        return exc.error + (exc.error_description or "")
    except OAuthError as exc:
        return f"{exc.status_code} {exc.error}"
    except TokenEndpointUnreachableError as exc:
        return str(exc.retry_after)
    except AdvancedAuthError as exc:
        return str(exc)
    return ""


def caches(redis_client: object) -> list[TokenCache]:
    import redis

    assert isinstance(redis_client, redis.Redis)
    return [MemoryTokenCache(), FileTokenCache(), FileTokenCache("/tmp/t.json"),
            RedisTokenCache(redis_client, prefix="x:")]


def from_env() -> AdvancedAuth:
    return AdvancedAuth.from_env({"ADVANCED_STORE_CLIENT_ID": "x"}, cache=MemoryTokenCache())
