"""One small adapter per contender: ours, the floor, and the peers from the ``bench`` extra.

Each adapter sends the same GET (a one-row transactions page) through one shared session the
way its library documents, and exposes its signing step alone for the overhead benchmark.
Every peer that has an early-expiry knob gets the margin ours uses for the same token
lifetime (``early``), so all refresh on the same schedule. Peers are optional: a missing
one raises :class:`Unavailable` and its column is left out with a note.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Optional
from urllib.parse import urlencode

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from requests_advanced_auth import AdvancedAuth
from requests_advanced_auth.sandbox import Sandbox

from .common import (
    AUDIENCE,
    REQUEST_TIMEOUT,
    TRANSACTION_PARAMS,
    ConstantHeaderAuth,
    fetch_token,
    pooled,
)

FLOOR = "constant header (floor)"
OURS = "requests-advanced-auth"
OURS_ONE_STYLE = "requests-advanced-auth, one header style per host"
PEER_NAMES = ("requests-auth", "authlib", "requests-oauthlib", "google-auth")
_OURS_401 = "one token request for all threads, then re-sends once"
#: What a 401 from the API turns into, per contender.
ON_401 = {
    FLOOR: "returns the 401",
    OURS: _OURS_401,
    OURS_ONE_STYLE: _OURS_401,
    "requests-auth": "returns the 401",
    "authlib": "returns the 401",
    "requests-oauthlib": "returns the 401",
    "google-auth": "refreshes (each thread that got a 401: no lock) and re-sends, up to 2 times",
}


class Unavailable(Exception):
    """The peer library is not installed (``pip install -e ".[bench]"``)."""


@dataclass
class Adapter:
    name: str
    session: requests.Session  # the shared session every request goes through
    get: Callable[[], requests.Response]  # one API call, the way the library is used
    sign: Callable[[requests.PreparedRequest], Any]  # the signing step alone
    sign_note: str  # what ``sign`` measures
    on_401: str  # what a 401 from the API turns into
    note: str = ""  # configuration worth knowing

    def close(self) -> None:
        self.session.close()


def _getter(session: requests.Session, url: str) -> Callable[[], requests.Response]:
    def get() -> requests.Response:
        return session.get(url, params=TRANSACTION_PARAMS, timeout=REQUEST_TIMEOUT)

    return get


def sandbox_auth(server: Any, **overrides: Any) -> AdvancedAuth:
    """Exactly what ``Sandbox.auth()`` builds, for a sandbox in another process (the method
    only reads URLs, the port and the credentials, which ``SandboxProcess`` also has)."""
    return Sandbox.auth(server, **overrides)


# -- ours and the floor -----------------------------------------------------------------


def floor(server: Any, early: float) -> Adapter:
    auth = ConstantHeaderAuth("Bearer " + fetch_token(server))
    session = pooled(requests.Session())
    session.auth = auth
    return Adapter(
        FLOOR, session, _getter(session, server.transactions_url), auth,
        "`AuthBase` that sets one precomputed header", ON_401[FLOOR],
        "token fetched once before the run",
    )


def ours(server: Any, early: float) -> Adapter:
    auth = sandbox_auth(server)  # default leeway: margin = min(60 s, lifetime / 4) = early
    session = pooled(requests.Session())
    session.auth = auth
    return Adapter(
        OURS, session, _getter(session, server.transactions_url), auth,
        "`AdvancedAuth.__call__` (`sb.auth()`: statistics path raw, the rest Bearer)",
        ON_401[OURS],
    )


def ours_one_style(server: Any, early: float) -> Adapter:
    auth = sandbox_auth(server, header_styles={server.url + "/": "bearer"})
    session = pooled(requests.Session())
    session.auth = auth
    return Adapter(
        OURS_ONE_STYLE, session, _getter(session, server.transactions_url), auth,
        "`AdvancedAuth.__call__`, one style for the host, as `AdvancedAuth()`'s defaults "
        "give each of the two real API hosts",
        ON_401[OURS_ONE_STYLE],
    )


# -- peers ------------------------------------------------------------------------------


def requests_auth(server: Any, early: float) -> Adapter:
    try:
        from requests_auth import OAuth2, OAuth2ClientCredentials
    except ImportError as exc:
        raise Unavailable("requests-auth") from exc
    OAuth2.token_cache.clear()  # a class-level cache: start every run cold
    auth = OAuth2ClientCredentials(
        server.token_url, server.basic_client_id, server.basic_client_secret,
        early_expiry=early, audience=AUDIENCE,  # extra keywords go into the token request
    )
    session = pooled(requests.Session())
    session.auth = auth
    return Adapter(
        "requests-auth", session, _getter(session, server.transactions_url), auth,
        "`OAuth2ClientCredentials.__call__`", ON_401["requests-auth"],
        f"early_expiry={early:g}; fetches serialised by a lock, without re-checking the cache",
    )


def authlib(server: Any, early: float) -> Adapter:
    try:
        from authlib.integrations.requests_client import OAuth2Session
    except ImportError as exc:
        raise Unavailable("authlib") from exc

    class AudienceSession(OAuth2Session):  # type: ignore[misc]
        # authlib re-fetches client-credentials tokens by itself, without extra parameters;
        # the sandbox (like the provider) needs the audience in every token request.
        def fetch_token(self, url: Optional[str] = None, **kwargs: Any) -> Any:
            kwargs.setdefault("audience", AUDIENCE)
            return super().fetch_token(url, **kwargs)

    session = AudienceSession(
        server.basic_client_id, server.basic_client_secret,
        token_endpoint=server.token_url, grant_type="client_credentials", leeway=early,
    )
    session.fetch_token()
    pooled(session)
    return Adapter(
        "authlib", session, _getter(session, server.transactions_url), session.token_auth,
        "`OAuth2Auth.__call__` (the auth `OAuth2Session.request` applies)",
        ON_401["authlib"],
        f"`OAuth2Session`, leeway={early:g}; no lock: every thread that sees an expired token "
        "fetches; `expires_at` is truncated to whole seconds",
    )


def requests_oauthlib(server: Any, early: float) -> Adapter:
    try:
        from oauthlib.oauth2 import BackendApplicationClient, TokenExpiredError
        from requests_oauthlib import OAuth2Session
    except ImportError as exc:
        raise Unavailable("requests-oauthlib") from exc
    # oauthlib refuses http:// URLs without this process-wide switch; the sandbox is
    # http://127.0.0.1. Set in the benchmark process only (never by the package).
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"
    session = pooled(OAuth2Session(client=BackendApplicationClient(server.basic_client_id)))

    def fetch() -> None:
        session.fetch_token(
            server.token_url, client_secret=server.basic_client_secret, audience=AUDIENCE
        )

    fetch()
    lock = threading.Lock()
    url = server.transactions_url

    def get() -> requests.Response:
        # requests-oauthlib only refreshes with a refresh token; for client credentials
        # add_token raises TokenExpiredError at expiry. The re-fetch is ours to write: one
        # thread fetches (lock + re-check), the others reuse its token.
        seen = session.access_token
        try:
            return session.get(url, params=TRANSACTION_PARAMS, timeout=REQUEST_TIMEOUT)
        except TokenExpiredError:
            with lock:
                if session.access_token == seen:
                    fetch()
            return session.get(url, params=TRANSACTION_PARAMS, timeout=REQUEST_TIMEOUT)

    client = session._client

    def sign(r: requests.PreparedRequest) -> Any:
        r.url, r.headers, r.body = client.add_token(
            r.url, http_method=r.method, body=r.body, headers=r.headers
        )
        return r

    return Adapter(
        "requests-oauthlib", session, get, sign,
        "`BackendApplicationClient.add_token` (what `OAuth2Session.request` calls per "
        "request; the session is the auth)",
        ON_401["requests-oauthlib"],
        "`OAuth2Session` + `BackendApplicationClient`; no early-expiry knob (uses the token "
        "to its last second); hand-written re-fetch on `TokenExpiredError` (lock + re-check)",
    )


def google_auth(server: Any, early: float) -> Adapter:
    try:
        from google.auth import _helpers
        from google.auth import credentials as gcredentials
        from google.auth import exceptions as gexceptions
        from google.auth.transport.requests import AuthorizedSession
        from google.auth.transport.requests import Request as GoogleRequest
    except ImportError as exc:
        raise Unavailable("google-auth") from exc
    # google-auth's refresh margin is a module constant (3 min 45 s), longer than a 1 s
    # token: give it the margin ours uses. Benchmark process only.
    _helpers.REFRESH_THRESHOLD = _dt.timedelta(seconds=early)

    class ClientCredentials(gcredentials.Credentials):
        """Minimal client-credentials credentials: google-auth core has none."""

        def refresh(self, request: Any) -> None:
            body = urlencode({
                "grant_type": "client_credentials", "audience": AUDIENCE,
                "client_id": server.client_id, "client_secret": server.client_secret,
            })
            answer = request(
                url=server.token_url, method="POST", body=body,
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
            if answer.status != 200:
                raise gexceptions.RefreshError(f"token endpoint answered {answer.status}")
            payload = json.loads(answer.data)
            self.token = payload["access_token"]
            # As google-auth's own credentials do: expiry counted from the answer's arrival.
            self.expiry = _helpers.utcnow() + _dt.timedelta(seconds=payload["expires_in"])

    credentials = ClientCredentials()
    if hasattr(credentials, "with_non_blocking_refresh"):
        credentials.with_non_blocking_refresh()
    session = pooled(AuthorizedSession(credentials))
    token_request = GoogleRequest(requests.Session())
    credentials.refresh(token_request)

    def sign(r: requests.PreparedRequest) -> Any:
        return credentials.before_request(token_request, "GET", r.url, r.headers)

    return Adapter(
        "google-auth", session, _getter(session, server.transactions_url), sign,
        "`Credentials.before_request` (what `AuthorizedSession.request` calls per request)",
        ON_401["google-auth"],
        f"`AuthorizedSession`, a 25-line `Credentials` subclass, non-blocking refresh "
        f"(background thread when stale), REFRESH_THRESHOLD={early:g} s",
    )


FACTORIES: dict[str, Callable[[Any, float], Adapter]] = {
    FLOOR: floor,
    OURS: ours,
    OURS_ONE_STYLE: ours_one_style,
    "requests-auth": requests_auth,
    "authlib": authlib,
    "requests-oauthlib": requests_oauthlib,
    "google-auth": google_auth,
}


def available(names: tuple[str, ...] = PEER_NAMES) -> tuple[list[str], list[str]]:
    """(installed, missing) peer names; the import check only, nothing is built."""
    modules = {
        "requests-auth": "requests_auth",
        "authlib": "authlib.integrations.requests_client",
        "requests-oauthlib": "requests_oauthlib",
        "google-auth": "google.auth.transport.requests",
    }
    installed, missing = [], []
    for name in names:
        try:
            __import__(modules[name])
        except ImportError:
            missing.append(name)
        else:
            installed.append(name)
    return installed, missing


# -- a transport without I/O, to time the whole per-request path ------------------------


class NoIOAdapter(BaseAdapter):
    """Answers 200 ``{}`` at once: times a session's per-request path without a socket."""

    signed = False  # whether the last request carried an Authorization header

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        self.signed = "authorization" in {k.lower() for k in request.headers}
        response = requests.Response()
        response.status_code = 200
        response.reason = "OK"
        response.headers = CaseInsensitiveDict({"Content-Type": "application/json"})
        response._content = b"{}"
        response.encoding = "utf-8"
        response.url = request.url or ""
        response.request = request
        response.connection = self
        return response

    def close(self) -> None:
        pass
