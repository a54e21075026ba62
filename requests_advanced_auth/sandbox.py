"""A local emulator of Advanced-Store's advanced API, for tests and offline work.

Standard library only, and the server shares no code with the rest of this package: it is
the oracle the package is tested against. The one exception is the convenience
:meth:`Sandbox.auth`, which imports ``AdvancedAuth`` when it is called, to build a client for
the sandbox (the server itself never uses it).

::

    with Sandbox() as sb:
        answer = requests.post(sb.token_url, data={
            "grant_type": "client_credentials", "audience": "api.advanced-store.com",
            "client_id": sb.client_id, "client_secret": sb.client_secret,
        })

Two layers:

- :class:`SandboxProvider` is pure and thread-safe: clients, tokens, lifetime, clock,
  counters and fault knobs, and one ``handle()`` that turns a request into a
  :class:`SandboxResponse`. No sockets.
- :class:`Sandbox` is a thin ``http.server`` front end on ``127.0.0.1:0`` (HTTP/1.1
  keep-alive, a deep accept queue for bursts) and a context manager.

Endpoints: ``POST /oauth2/token`` (answers like Ory Hydra), ``GET
/publishers/transactions/2.0/`` (``Authorization: Bearer <token>``), ``GET
/function/api/statistics`` (``authorization: <token>``, no ``Bearer``), and an admin API
under ``/_sandbox/`` (``state``, ``config``, ``fail``, ``revoke``, ``reset``) that needs no
authentication: it exists for tests and the sandbox listens on loopback (never pass another
``host`` on a shared network).

401 answers of both APIs. The specification asks for ``WWW-Authenticate: Bearer
error="invalid_token"`` for a missing, unknown, expired or revoked token, or one whose
audience does not cover the API; RFC 6750 §3.1 adds that a request without any credentials
SHOULD NOT get an error code. So the challenge depends on whether a token was sent:

- no token at all (no ``Authorization`` header; on transactions also a scheme other than
  ``Bearer``, which RFC 6750 §3.1 counts as no authentication): ``Bearer realm="sandbox"``;
- a token that was sent and refused (unknown, expired, revoked, wrong audience; on
  statistics also ``Bearer <token>`` instead of the raw token): ``Bearer realm="sandbox",
  error="invalid_token", error_description="<why>"``, the same text as in the JSON body.

Assumptions where the provider's documentation is silent (the real service may differ):

- Token endpoint: "both client authentication methods at once" means a Basic header plus a
  ``client_secret`` in the body; a body ``client_id`` equal to the Basic one is accepted
  (requests-oauthlib sends it). A token lacking an API's audience gets 401 ``invalid_token``
  there (RFC 7519 ``aud`` mismatch), not 403 ``insufficient_scope``.
- Transactions: ``page`` is 1-based; ``startDate``/``endDate`` are epoch seconds and both
  ends are inclusive; ``pageSize`` echoes the requested size; ``size`` may be 1..1000;
  ``statusId`` is ``pending``/``confirmed``/``revoked`` or its number ``1``/``2``/``3``;
  ``siteIds`` may also be repeated; a page past the last is empty with the same totals;
  dates above year 9999 are refused as probable milliseconds.
- Statistics: ``size`` is optional (default 100); ``ctr``, ``confirmationRate`` are
  percentages, ``eCpm`` is commission per 1000 impressions; a day's transactions are those
  whose ``transactionDate`` falls on it (UTC); ``totalRevokedCommission`` is null on days
  without revoked transactions; days outside 2024, unknown sites and unknown programs have
  no rows. Either audience (``api.ad4mat.net`` or ``api.advanced-store.com``) is accepted.
  Its 401 answers carry the same ``Bearer`` challenges as transactions, although the header
  it reads holds the raw token (the documentation shows no 401 of this API).
- Data exists for calendar year 2024 (UTC) only, sites 25, 26, 27 and eight programs.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import csv
import datetime as _dt
import functools
import hmac
import io
import json
import math
import random
import secrets
import shlex
import socket
import struct
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Final, Literal, cast
from urllib.parse import parse_qsl, unquote_plus, urlsplit

if TYPE_CHECKING:  # for the annotation of Sandbox.auth() only; never imported at run time
    from requests_advanced_auth import AdvancedAuth

__all__ = [
    "ADMIN_PREFIX",
    "AUDIENCES",
    "BASIC_CLIENT_ID",
    "CLIENT_ID",
    "DEFAULT_SEED",
    "DEFAULT_TOKEN_LIFETIME",
    "SITE_IDS",
    "STATISTICS_COLUMNS",
    "STATISTICS_PATH",
    "TOKEN_PATH",
    "TRANSACTIONS_PATH",
    "TRANSACTION_STATUSES",
    "Sandbox",
    "SandboxProvider",
    "SandboxResponse",
    "main",
]

TOKEN_PATH: Final = "/oauth2/token"
TRANSACTIONS_PATH: Final = "/publishers/transactions/2.0/"
STATISTICS_PATH: Final = "/function/api/statistics"
ADMIN_PREFIX: Final = "/_sandbox/"

AUDIENCES: Final = ("api.ad4mat.net", "api.advanced-store.com")
TRANSACTIONS_AUDIENCES: Final = frozenset({"api.advanced-store.com"})
STATISTICS_AUDIENCES: Final = frozenset(AUDIENCES)

CLIENT_ID: Final = "sandbox-client"
BASIC_CLIENT_ID: Final = "sandbox-basic-client"
AUTH_METHODS: Final = ("client_secret_post", "client_secret_basic")
DEFAULT_TOKEN_LIFETIME: Final = 3600.0  # the provider's documented expires_in
DEFAULT_SEED: Final = 2024
REALM: Final = "sandbox"

SITE_IDS: Final = (25, 26, 27)
TRANSACTION_COUNT: Final = 4000
# statusId accepts the name or this number (assumption: the documentation names no ids).
TRANSACTION_STATUSES: Final[Mapping[str, str]] = {
    "1": "pending",
    "2": "confirmed",
    "3": "revoked",
}
MAX_TRANSACTIONS_PAGE_SIZE: Final = 1000  # the documentation recommends 250 at most
MAX_STATISTICS_PAGE_SIZE: Final = 100  # documented maximum
DEFAULT_STATISTICS_PAGE_SIZE: Final = 100
STATISTICS_COLUMNS: Final = (
    "date",
    "totalImpressions",
    "totalClicks",
    "ctr",
    "totalTransactions",
    "transactionsPc",
    "transactionsPv",
    "eCpm",
    "totalCommission",
    "confirmationRate",
    "totalPendingCommission",
    "pendingTransactionCount",
    "totalRevokedCommission",
    "revokedTransactionCount",
    "totalConfirmedCommission",
    "confirmedTransactionCount",
)
FAULT_MODES: Final = ("status", "reset", "hang", "redirect")
REDIRECT_TARGET: Final = ADMIN_PREFIX + "login"  # default Location of mode="redirect"

_TOKEN_CONTENT_TYPE: Final = "application/json;charset=UTF-8"
_STATISTICS_CONTENT_TYPE: Final = "application/vnd.api+json"
_NO_STORE: Final = (("Cache-Control", "no-store"), ("Pragma", "no-cache"))
_MAX_BODY: Final = 1 << 20
_MAX_EPOCH_SECONDS: Final = 253402300799  # 9999-12-31: larger values are milliseconds

_YEAR_START: Final = _dt.date(2024, 1, 1)
_YEAR_DAYS: Final = 366
_YEAR_START_S: Final = 1704067200  # 2024-01-01T00:00:00Z
_YEAR_END_S: Final = _YEAR_START_S + _YEAR_DAYS * 86400  # 2025-01-01T00:00:00Z
_FIRST_TRANSACTION_ID: Final = 70_000_000
_PROGRAMS: Final = (
    ("1001", "Demo Fashion Store", 0.08),
    ("1002", "Demo Electronics", 0.03),
    ("1003", "Demo Travel", 0.05),
    ("1004", "Demo Insurance", 0.02),
    ("1005", "Demo Books", 0.06),
    ("1006", "Demo Shoes", 0.10),
    ("1007", "Demo Telecom", 0.04),
    ("1008", "Demo Home & Garden", 0.07),
)
_TRANSACTION_TYPES: Final = ("sale(PC)", "sale(PV)", "lead(PC)")
_TRACKING_CATEGORIES: Final = ("default", "voucher", "cashback", "content", "comparison")
_SUB_IDS: Final = ("", "", "newsletter", "homepage-banner", "sidebar", "app")

# Hydra (fosite) error texts, so client code meets the wording it will meet in production.
_INVALID_REQUEST: Final = (
    "The request is missing a required parameter, includes an invalid parameter value, "
    "includes a parameter more than once, or is otherwise malformed."
)
_INVALID_CLIENT: Final = (
    "Client authentication failed (e.g., unknown client, no client authentication "
    "included, or unsupported authentication method)."
)
_UNSUPPORTED_GRANT: Final = (
    "The authorization grant type is not supported by the authorization server."
)
_LOGIN_PAGE: Final = b"<!doctype html><html><body><h1>Sign in</h1></body></html>\n"


@dataclass(frozen=True)
class SandboxResponse:
    """One answer of :class:`SandboxProvider`.

    When ``fault`` is set the front end sends nothing: ``"reset"`` aborts the connection
    (TCP RST), ``"hang"`` keeps it open and silent until the sandbox stops; ``status`` is
    then 0.
    """

    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    fault: Literal["reset", "hang"] | None = None

    def header(self, name: str) -> str | None:
        """The first header called ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        return next((v for k, v in self.headers if k.lower() == wanted), None)

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class _Client:
    client_id: str
    secret: str
    auth_method: str
    audiences: frozenset[str]


@dataclass
class _Token:
    client_id: str
    audiences: tuple[str, ...]
    expires_at: float
    revoked: bool = False


@dataclass(frozen=True)
class _Failure:
    mode: str
    status: int
    retry_after: float | None
    body: bytes | None
    content_type: str


@dataclass(frozen=True)
class _Dataset:
    by_updated_at: list[dict[str, Any]]
    by_transaction_date: list[dict[str, Any]]
    by_site_day: dict[tuple[str, int], list[dict[str, Any]]]
    traffic: dict[tuple[str, int, str], tuple[int, int]]  # impressions, clicks


class _OAuthError(Exception):
    def __init__(
        self, status: int, error: str, description: str, hint: str = "", *, basic: bool = False
    ) -> None:
        super().__init__(hint or description)
        self.status, self.error, self.description, self.hint = status, error, description, hint
        self.basic = basic


class _ParamError(Exception):
    pass


def _json_response(
    status: int,
    payload: Any,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
) -> SandboxResponse:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    return SandboxResponse(status, [("Content-Type", content_type), *headers], body)


def _oauth_error_response(exc: _OAuthError) -> SandboxResponse:
    # RFC 6749 §5.2 body. Hydra appends its hint to the description and also sends it alone.
    payload = {"error": exc.error, "error_description": exc.description}
    if exc.hint:
        payload["error_description"] = f"{exc.description} {exc.hint}"
        payload["error_hint"] = exc.hint
    headers = list(_NO_STORE)
    if exc.basic and exc.status == 401:
        # RFC 6749 §5.2: a client that tried the Authorization header gets a matching challenge.
        headers.append(("WWW-Authenticate", f'Basic realm="{REALM}"'))
    if exc.status == 405:
        headers.append(("Allow", "POST"))
    return _json_response(exc.status, payload, _TOKEN_CONTENT_TYPE, headers)


def _bearer_challenge(problem: str | None = None) -> tuple[str, str]:
    """The ``WWW-Authenticate`` header of an API's 401 (RFC 6750 §3).

    Without credentials (``problem`` None) the challenge is bare: §3.1 says a server SHOULD
    NOT give an error code to a request that carried no authentication. A token that was
    sent but refused gets ``error="invalid_token"`` and ``problem`` as its description
    (which therefore must not contain ``"`` or ``\\``, §3's charset).
    """
    challenge = f'Bearer realm="{REALM}"'
    if problem is not None:
        challenge += f', error="invalid_token", error_description="{problem}"'
    return ("WWW-Authenticate", challenge)


def _lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        lowered.setdefault(name.lower(), value)
    return lowered


def _multi(query: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        values.setdefault(name, []).append(value)
    return values


def _requested_audiences(values: list[str]) -> list[str]:
    # Hydra (fosite GetAudiences): several `audience` parameters are taken whole; a single
    # one is split on U+0020 only. Empty items are dropped.
    if len(values) == 1:
        values = values[0].split(" ")
    return list(dict.fromkeys(item for item in values if item))


def _parse_basic(value: str) -> tuple[str, str] | None:
    scheme, _, credentials = value.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        decoded = ""
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _OAuthError(
            400,
            "invalid_request",
            _INVALID_REQUEST,
            "The client credentials in the HTTP authorization header could not be parsed.",
        )
    # RFC 6749 §2.3.1: id and secret are form-urlencoded before base64, so decode both.
    return unquote_plus(client_id), unquote_plus(secret)


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def _first(values: Mapping[str, list[str]], name: str) -> str | None:
    found = values.get(name)
    return found[0] if found else None


def _int_param(
    query: Mapping[str, list[str]],
    name: str,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int:
    raw = (_first(query, name) or "").strip()
    if not raw:
        if default is not None:
            return default
        raise _ParamError(f"Required parameter '{name}' is missing.")
    try:
        number = int(raw)
    except ValueError:
        raise _ParamError(f"Parameter '{name}' must be an integer, got {raw!r}.") from None
    if minimum is not None and number < minimum:
        raise _ParamError(f"Parameter '{name}' must be >= {minimum}, got {number}.")
    if maximum is not None and number > maximum:
        raise _ParamError(f"Parameter '{name}' must be <= {maximum}, got {number}.")
    return number


def _date_param(query: Mapping[str, list[str]], name: str) -> _dt.date:
    raw = (_first(query, name) or "").strip()
    if not raw:
        raise _ParamError(f"Required parameter '{name}' is missing.")
    try:
        if len(raw) != 10:
            raise ValueError(raw)
        return _dt.datetime.strptime(raw, "%Y-%m-%d").date()
    except ValueError:
        raise _ParamError(f"Parameter '{name}' must be a date YYYY-MM-DD, got {raw!r}.") from None


def _conversion_time(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days}d {hours}h {minutes}m {secs}s"


@functools.lru_cache(maxsize=4)
def _generate(seed: int) -> _Dataset:
    """Deterministic synthetic 2024 data: the same seed gives the same rows.

    Cached per seed, so every sandbox of a process shares one dataset: it is read-only once
    built (answers select into new lists and go out as JSON; nothing writes to a row).
    """
    rng = random.Random(seed)
    drafts = []
    for _ in range(TRANSACTION_COUNT):
        site = rng.choice(SITE_IDS)
        program_id, program_name, rate = rng.choice(_PROGRAMS)
        transaction_ms = rng.randrange(_YEAR_START_S * 1000, _YEAR_END_S * 1000)
        delay = min(int(rng.expovariate(1 / 7200)) + 5, 30 * 86400)
        kind = rng.choices(_TRANSACTION_TYPES, weights=(70, 15, 15))[0]
        if kind.startswith("lead"):
            basket, commission = 0.0, rng.choice((2.5, 5.0, 7.5, 10.0))
        else:
            basket = round(rng.uniform(5, 400), 2)
            commission = round(basket * rate, 2)
        status = rng.choices(("pending", "confirmed", "revoked"), weights=(40, 45, 15))[0]
        if status == "pending":
            updated_ms = transaction_ms + rng.randrange(60_000)
        else:
            updated_ms = transaction_ms + rng.randrange(86_400_000, 45 * 86_400_000)
        updated_ms = min(updated_ms, _YEAR_END_S * 1000 - 1)  # keep every date in 2024
        drafts.append(
            (
                transaction_ms,
                {
                    "commission": commission,
                    "basketValue": basket,
                    "clickTime": transaction_ms - delay * 1000,
                    "program": program_name,
                    "programId": program_id,
                    "site": f"Demo Site {site}",
                    "siteId": str(site),
                    "status": status,
                    "subIdOrText": rng.choice(_SUB_IDS),
                    "transactionId": "",  # numbered below, once sorted by date
                    "transactionType": kind,
                    "trackingCategory": rng.choice(_TRACKING_CATEGORIES),
                    "updatedAt": updated_ms,
                    "conversionTime": _conversion_time(delay),
                },
            )
        )
    drafts.sort(key=lambda draft: draft[0])  # ids grow with time, as a real ledger's do
    rows: list[dict[str, Any]] = []
    by_site_day: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for number, (transaction_ms, draft) in enumerate(drafts):
        row: dict[str, Any] = {"transactionDate": transaction_ms, **draft}
        row["transactionId"] = str(_FIRST_TRANSACTION_ID + number)
        rows.append(row)
        day = (transaction_ms // 1000 - _YEAR_START_S) // 86400
        by_site_day.setdefault((row["siteId"], day), []).append(row)
    traffic: dict[tuple[str, int, str], tuple[int, int]] = {}
    for site in SITE_IDS:
        for day in range(_YEAR_DAYS):
            for program_id, _, _ in _PROGRAMS:
                impressions = rng.randint(100, 2500)
                clicks = round(impressions * rng.uniform(0.005, 0.04))
                traffic[(str(site), day, program_id)] = (impressions, clicks)
    return _Dataset(
        by_updated_at=sorted(rows, key=lambda r: (r["updatedAt"], r["transactionId"])),
        by_transaction_date=sorted(rows, key=lambda r: (r["transactionDate"], r["transactionId"])),
        by_site_day=by_site_day,
        traffic=traffic,
    )


def _statistics_row(data: _Dataset, site: str, day: int, program: str | None) -> dict[str, Any]:
    transactions = [
        t for t in data.by_site_day.get((site, day), ()) if program in (None, t["programId"])
    ]
    programs = [program] if program is not None else [p for p, _, _ in _PROGRAMS]
    impressions = sum(data.traffic[(site, day, p)][0] for p in programs)
    clicks = sum(data.traffic[(site, day, p)][1] for p in programs)

    def of(status: str) -> list[dict[str, Any]]:
        return [t for t in transactions if t["status"] == status]

    def money(rows: list[dict[str, Any]]) -> float:
        return round(float(sum(t["commission"] for t in rows)), 2)

    pending, confirmed, revoked = of("pending"), of("confirmed"), of("revoked")
    commission = money(transactions)
    return {
        "date": (_YEAR_START + _dt.timedelta(days=day)).isoformat(),
        "totalImpressions": impressions,
        "totalClicks": clicks,
        "ctr": round(clicks / impressions * 100, 2) if impressions else 0.0,
        "totalTransactions": len(transactions),
        "transactionsPc": sum(t["transactionType"].endswith("(PC)") for t in transactions),
        "transactionsPv": sum(t["transactionType"].endswith("(PV)") for t in transactions),
        "eCpm": round(commission / impressions * 1000, 2) if impressions else 0.0,
        "totalCommission": commission,
        "confirmationRate": (
            round(len(confirmed) / len(transactions) * 100, 2) if transactions else 0.0
        ),
        "totalPendingCommission": money(pending),
        "pendingTransactionCount": len(pending),
        "totalRevokedCommission": money(revoked) if revoked else None,
        "revokedTransactionCount": len(revoked),
        "totalConfirmedCommission": money(confirmed),
        "confirmedTransactionCount": len(confirmed),
    }


def _seconds_knob(name: str, doc: str) -> Any:
    """A property in seconds kept in ``_<name>``; every assignment is checked by _number."""
    attribute = "_" + name

    def get(provider: object) -> float:
        return cast(float, getattr(provider, attribute))

    def set_(provider: object, value: float) -> None:
        setattr(provider, attribute, _number(value, name))

    return property(get, set_, doc=doc)


class SandboxProvider:
    """The emulated provider without sockets: thread-safe state and :meth:`handle`.

    Knobs: ``token_lifetime``, ``token_latency``, ``api_latency`` (seconds),
    ``token_overrides`` (merged into every token answer until cleared; a None value
    removes the key), ``on_token_request`` (see below), :meth:`fail_next`,
    :meth:`revoke_all`. Counters are read-only properties; :meth:`reset_counters` zeroes
    them, :meth:`reset` also clears the knobs.

    ``on_token_request``, if set, is called with no arguments by every POST to the token
    endpoint, in the thread serving it, while it counts as in progress (see
    :attr:`max_concurrent_token_requests`) and before it is answered (before
    ``token_latency``; a :meth:`fail_next` failure is already assigned to it). Tests hold
    token requests there instead of sleeping, e.g. ``provider.on_token_request =
    barrier.wait``. An exception it raises becomes a 500 answer.
    """

    def __init__(
        self,
        *,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        seed: int = DEFAULT_SEED,
    ) -> None:
        self._lock = threading.Lock()
        self.clock = clock
        self.seed = seed
        self._initial_lifetime = _number(token_lifetime, "token_lifetime")
        self._token_lifetime = self._initial_lifetime
        self._token_latency = 0.0
        self._api_latency = 0.0
        self.token_overrides: dict[str, Any] = {}
        self.on_token_request: Callable[[], object] | None = None
        self._clients: dict[str, _Client] = {}
        self._tokens: dict[str, _Token] = {}
        self._failures: deque[_Failure] = deque()
        self._data: _Dataset | None = None
        self._data_lock = threading.Lock()
        self._in_flight = 0
        self._token_requests = 0
        self._tokens_issued = 0
        self._api_requests = 0
        self._unauthorized = 0
        self._max_in_flight = 0

    # -- knobs ------------------------------------------------------------------------

    token_lifetime: float = _seconds_knob(
        "token_lifetime",
        "Seconds a new token lives; answered as ``expires_in`` = int(round(lifetime)).",
    )
    token_latency: float = _seconds_knob(
        "token_latency", "Seconds each token request sleeps before it is answered."
    )
    api_latency: float = _seconds_knob(
        "api_latency", "Seconds each API request sleeps before it is answered."
    )

    def register_client(
        self,
        client_id: str,
        secret: str,
        *,
        auth_method: str = "client_secret_post",
        audiences: Sequence[str] = AUDIENCES,
    ) -> None:
        """Register (or replace) a client allowed one auth method and these audiences."""
        if auth_method not in AUTH_METHODS:
            raise ValueError(f"auth_method must be one of {AUTH_METHODS}, got {auth_method!r}")
        if isinstance(audiences, str):
            audiences = audiences.split(" ")
        client = _Client(client_id, secret, auth_method, frozenset(audiences))
        with self._lock:
            self._clients[client_id] = client

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        retry_after: float | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
        mode: str = "status",
    ) -> None:
        """Make the next ``n`` token requests fail (queued after failures already pending).

        ``mode``: ``"status"`` answers ``status`` (``Retry-After`` if given; ``body``
        defaults to an RFC 6749 §5.2 JSON), ``"reset"`` aborts the connection, ``"hang"``
        never answers (until the sandbox stops), ``"redirect"`` answers 302 (or ``status``
        if it is 3xx) to the URL in ``body``, by default ``/_sandbox/login``, an HTML page.
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        if mode not in FAULT_MODES:
            raise ValueError(f"mode must be one of {FAULT_MODES}, got {mode!r}")
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"status must be an HTTP status code, got {status!r}")
        if retry_after is not None:
            retry_after = _number(retry_after, "retry_after")
        if body is not None and not isinstance(body, bytes):
            raise ValueError("body must be bytes")
        failure = _Failure(mode, status, retry_after, body, content_type)
        with self._lock:
            self._failures.extend([failure] * n)

    def revoke_all(self) -> int:
        """Invalidate every token issued so far; returns how many were still valid."""
        with self._lock:
            fresh = [t for t in self._tokens.values() if not t.revoked]
            for token in fresh:
                token.revoked = True
        return len(fresh)

    def issued_tokens(self) -> list[str]:
        """Every access token issued so far, revoked and expired ones included.

        For leak checks: tests can assert that none of them shows up in logs.
        """
        with self._lock:
            return list(self._tokens)

    def reset_counters(self) -> None:
        """Zero the counters (requests in progress keep counting toward the maximum)."""
        with self._lock:
            self._token_requests = self._tokens_issued = 0
            self._api_requests = self._unauthorized = 0
            self._max_in_flight = self._in_flight

    def reset(self) -> None:
        """Zero the counters and clear the knobs; clients and tokens are kept."""
        with self._lock:
            self._failures.clear()
            self.token_overrides.clear()  # in place: callers may hold the dict
            self._token_lifetime = self._initial_lifetime
            self._token_latency = self._api_latency = 0.0
            self.on_token_request = None
        self.reset_counters()

    # -- counters ---------------------------------------------------------------------

    @property
    def token_requests(self) -> int:
        """POSTs to the token endpoint, failed ones included."""
        return self._token_requests

    @property
    def tokens_issued(self) -> int:
        """Successful token answers."""
        return self._tokens_issued

    @property
    def api_requests(self) -> int:
        """Requests to the transactions and statistics APIs."""
        return self._api_requests

    @property
    def unauthorized(self) -> int:
        """401 answers sent by the two APIs."""
        return self._unauthorized

    @property
    def max_concurrent_token_requests(self) -> int:
        """The most token requests that were in progress at the same time."""
        return self._max_in_flight

    def state(self) -> dict[str, Any]:
        """Counters and knobs as one JSON-ready dict (``GET /_sandbox/state``)."""
        with self._lock:
            return {
                "token_requests": self._token_requests,
                "tokens_issued": self._tokens_issued,
                "api_requests": self._api_requests,
                "unauthorized": self._unauthorized,
                "max_concurrent_token_requests": self._max_in_flight,
                "token_lifetime": self._token_lifetime,
                "token_latency": self._token_latency,
                "api_latency": self._api_latency,
                "token_overrides": dict(self.token_overrides),
                "pending_failures": len(self._failures),
            }

    # -- requests ---------------------------------------------------------------------

    def handle(
        self,
        method: str,
        path: str,
        query_string: str,
        headers: Mapping[str, str],
        body: bytes,
    ) -> SandboxResponse:
        """Answer one HTTP request; header names are matched case-insensitively."""
        method = method.upper()
        lowered = _lower_keys(headers)
        if path == TOKEN_PATH:
            return self._token_endpoint(method, lowered, body)
        if path in (TRANSACTIONS_PATH, TRANSACTIONS_PATH.rstrip("/")):
            return self._api(method, lowered, query_string, statistics=False)
        if path in (STATISTICS_PATH, STATISTICS_PATH + "/"):
            return self._api(method, lowered, query_string, statistics=True)
        if path.startswith(ADMIN_PREFIX):
            return self._admin(method, path[len(ADMIN_PREFIX) :], body)
        return _json_response(404, {"error": "not_found", "message": f"No route for {path}."})

    # -- token endpoint ---------------------------------------------------------------

    def _token_endpoint(self, method: str, headers: dict[str, str], body: bytes) -> SandboxResponse:
        if method != "POST":
            hint = f"HTTP method '{method}' is not allowed: the token endpoint takes POST."
            error = _OAuthError(405, "invalid_request", _INVALID_REQUEST, hint)
            return _oauth_error_response(error)
        with self._lock:
            self._token_requests += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            latency = self._token_latency
            failure = self._failures.popleft() if self._failures else None
            hook = self.on_token_request
        try:
            if hook is not None:
                hook()
            if latency:
                time.sleep(latency)
            if failure is not None:
                return self._failure_response(failure)
            try:
                return self._issue_token(headers, body)
            except _OAuthError as exc:
                return _oauth_error_response(exc)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _failure_response(self, failure: _Failure) -> SandboxResponse:
        if failure.mode == "reset":
            return SandboxResponse(0, fault="reset")
        if failure.mode == "hang":
            return SandboxResponse(0, fault="hang")
        if failure.mode == "redirect":
            status = failure.status if 300 <= failure.status < 400 else 302
            location = failure.body.decode("utf-8") if failure.body else REDIRECT_TARGET
            return SandboxResponse(status, [("Location", location), *_NO_STORE])
        headers = [("Content-Type", failure.content_type), *_NO_STORE]
        if failure.retry_after is not None:
            headers.append(("Retry-After", _format_seconds(failure.retry_after)))
        body = failure.body
        if body is None:
            error = "temporarily_unavailable" if failure.status in (429, 503) else "server_error"
            description = f"Sandbox failure injected by fail_next (HTTP {failure.status})."
            payload = {"error": error, "error_description": description}
            body = json.dumps(payload).encode("utf-8")
        return SandboxResponse(failure.status, headers, body)

    def _issue_token(self, headers: dict[str, str], body: bytes) -> SandboxResponse:
        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/x-www-form-urlencoded":
            raise _OAuthError(
                400,
                "invalid_request",
                _INVALID_REQUEST,
                "The POST body must be application/x-www-form-urlencoded (RFC 6749 §4.4.2), "
                f"got Content-Type '{media_type}'.",
            )
        try:
            form = _multi(body.decode("utf-8"))
        except UnicodeDecodeError:
            raise _OAuthError(
                400, "invalid_request", _INVALID_REQUEST, "The POST body is not UTF-8."
            ) from None
        for name in ("grant_type", "client_id", "client_secret"):
            if len(form.get(name, ())) > 1:
                # RFC 6749 §3.2: parameters MUST NOT be included more than once.
                raise _OAuthError(
                    400,
                    "invalid_request",
                    _INVALID_REQUEST,
                    f"Request parameter '{name}' must not be included more than once.",
                )
        grant_type = _first(form, "grant_type")
        if not grant_type:
            raise _OAuthError(
                400,
                "invalid_request",
                _INVALID_REQUEST,
                "Request parameter 'grant_type' is missing.",
            )
        # Hydra authenticates the client before it looks at the grant type.
        client = self._authenticate(headers, form)
        if grant_type != "client_credentials":
            raise _OAuthError(
                400,
                "unsupported_grant_type",
                _UNSUPPORTED_GRANT,
                f"The grant type '{grant_type}' is not supported; use 'client_credentials'.",
            )
        audiences = _requested_audiences(form.get("audience", []))
        for audience in audiences:
            if audience not in client.audiences:
                raise _OAuthError(
                    400,
                    "invalid_request",
                    _INVALID_REQUEST,
                    f'Requested audience "{audience}" has not been whitelisted by the '
                    "OAuth 2.0 Client.",
                )
        with self._lock:
            overrides = dict(self.token_overrides)
            lifetime = self._token_lifetime
        token = overrides.get("access_token")
        if not isinstance(token, str) or not token:
            token = "sbx_" + secrets.token_urlsafe(32)
        record = _Token(client.client_id, tuple(audiences), self.clock() + lifetime)
        with self._lock:
            self._tokens[token] = record
            self._tokens_issued += 1
        # RFC 6749 §5.1 success body; "scope" is "" whatever was asked, as the provider answers.
        payload: dict[str, Any] = {
            "access_token": token,
            "expires_in": round(lifetime),
            "scope": "",
            "token_type": "bearer",
        }
        for key, value in overrides.items():
            if value is None:
                payload.pop(key, None)
            else:
                payload[key] = value
        return _json_response(200, payload, _TOKEN_CONTENT_TYPE, _NO_STORE)

    def _authenticate(self, headers: dict[str, str], form: dict[str, list[str]]) -> _Client:
        basic = _parse_basic(headers.get("authorization", ""))
        body_id = _first(form, "client_id")
        if basic is not None:
            if "client_secret" in form:
                raise _OAuthError(
                    400,
                    "invalid_request",
                    _INVALID_REQUEST,
                    "Client credentials were sent both in the Authorization header and in "
                    "the request body; use exactly one method (RFC 6749 §2.3).",
                )
            if body_id is not None and body_id != basic[0]:
                raise _OAuthError(
                    400,
                    "invalid_request",
                    _INVALID_REQUEST,
                    "The client_id in the body does not match the HTTP Basic client id.",
                )
            client_id, secret, method = basic[0], basic[1], "client_secret_basic"
        elif "client_secret" in form:
            client_id, secret = body_id or "", _first(form, "client_secret") or ""
            method = "client_secret_post"
        else:
            client_id, secret, method = body_id or "", "", "none"
        with self._lock:
            client = self._clients.get(client_id)
        is_basic = basic is not None
        if client is None:
            raise _OAuthError(
                401,
                "invalid_client",
                _INVALID_CLIENT,
                "The requested OAuth 2.0 Client does not exist.",
                basic=is_basic,
            )
        if client.auth_method != method:
            raise _OAuthError(
                401,
                "invalid_client",
                _INVALID_CLIENT,
                "This requested OAuth 2.0 client only supports client authentication method "
                f"'{client.auth_method}', however method '{method}' was requested.",
                basic=is_basic,
            )
        if not hmac.compare_digest(client.secret.encode("utf-8"), secret.encode("utf-8")):
            raise _OAuthError(
                401,
                "invalid_client",
                _INVALID_CLIENT,
                "The provided client secret did not match.",
                basic=is_basic,
            )
        return client

    # -- data APIs --------------------------------------------------------------------

    def _dataset(self) -> _Dataset:
        with self._data_lock:
            if self._data is None:
                self._data = _generate(self.seed)
            return self._data

    def _token_problem(self, token: str, accepted: frozenset[str]) -> str | None:
        """Why ``token`` may not be used here, or None. No quotes: RFC 6750 §3 charset."""
        with self._lock:
            record = self._tokens.get(token)
            revoked = record.revoked if record is not None else False
        if record is None:
            return "The access token is unknown."
        if revoked:
            return "The access token was revoked."
        if self.clock() >= record.expires_at:
            return "The access token expired."
        if not accepted.intersection(record.audiences):
            return f"The access token is not valid for audience {' or '.join(sorted(accepted))}."
        return None

    def _api(
        self, method: str, headers: dict[str, str], query_string: str, *, statistics: bool
    ) -> SandboxResponse:
        with self._lock:
            self._api_requests += 1
            latency = self._api_latency
        if latency:
            time.sleep(latency)
        if method not in ("GET", "HEAD"):
            payload = {"error": "method_not_allowed", "message": "Use GET."}
            response = _json_response(405, payload, headers=[("Allow", "GET")])
        elif statistics:
            response = self._statistics(headers, _multi(query_string))
        else:
            response = self._transactions(headers, _multi(query_string))
        if response.status == 401:
            with self._lock:
                self._unauthorized += 1
        return response

    def _transactions(
        self, headers: dict[str, str], query: dict[str, list[str]]
    ) -> SandboxResponse:
        scheme, _, token = headers.get("authorization", "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            # RFC 6750 §3.1: no credentials, or an unsupported scheme (a raw token): a bare
            # challenge without an error code.
            message = (
                "Send Authorization: Bearer <token> (RFC 6750 §2.1)."
                if scheme
                else "The request carries no access token."
            )
            return _json_response(
                401,
                {"error": "unauthorized", "error_description": message},
                headers=[_bearer_challenge()],
            )
        problem = self._token_problem(token.strip(), TRANSACTIONS_AUDIENCES)
        if problem is not None:
            return _json_response(
                401,
                {"error": "invalid_token", "error_description": problem},
                headers=[_bearer_challenge(problem)],
            )
        try:
            payload = self._transactions_page(query)
        except _ParamError as exc:
            return _json_response(400, {"error": "invalid_parameter", "message": str(exc)})
        return _json_response(200, payload)

    def _transactions_page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        page = _int_param(query, "page", minimum=1)
        size = _int_param(query, "size", minimum=1, maximum=MAX_TRANSACTIONS_PAGE_SIZE)
        # Accept both siteIds=25,26 and siteIds=25&siteIds=26 (Spring binds both).
        raw_sites = ",".join(query.get("siteIds", ())).strip()
        if not raw_sites:
            raise _ParamError("Required parameter 'siteIds' is missing.")
        try:
            sites = {str(int(item)) for item in raw_sites.split(",")}
        except ValueError:
            raise _ParamError(
                f"Parameter 'siteIds' must be comma-separated integers, got {raw_sites!r}."
            ) from None
        start = _int_param(query, "startDate", minimum=0, maximum=_MAX_EPOCH_SECONDS)
        end = _int_param(query, "endDate", minimum=0, maximum=_MAX_EPOCH_SECONDS)
        if end < start:
            raise _ParamError("Parameter 'endDate' must not be before 'startDate'.")
        program = None
        if (_first(query, "programId") or "").strip():
            program = str(_int_param(query, "programId"))
        status = None
        raw_status = (_first(query, "statusId") or "").strip().lower()
        if raw_status:
            status = TRANSACTION_STATUSES.get(raw_status, raw_status)
            if status not in TRANSACTION_STATUSES.values():
                raise _ParamError(
                    "Parameter 'statusId' must be one of pending, confirmed, revoked "
                    f"(or 1, 2, 3), got {raw_status!r}."
                )
        range_type = (_first(query, "dateRangeType") or "updatedAt").strip()
        if range_type not in ("updatedAt", "transactionDate"):
            raise _ParamError(
                "Parameter 'dateRangeType' must be updatedAt or transactionDate, "
                f"got {range_type!r}."
            )
        data = self._dataset()
        rows = data.by_updated_at if range_type == "updatedAt" else data.by_transaction_date
        low, high = start * 1000, end * 1000 + 999  # both ends inclusive, to the second
        selected = [
            row
            for row in rows
            if low <= row[range_type] <= high
            and row["siteId"] in sites
            and program in (None, row["programId"])
            and status in (None, row["status"])
        ]
        return {
            "totalEntries": len(selected),
            "currentPage": page,
            "totalPageCount": math.ceil(len(selected) / size),
            "pageSize": size,
            "transactionDataList": selected[(page - 1) * size : page * size],
        }

    def _statistics(self, headers: dict[str, str], query: dict[str, list[str]]) -> SandboxResponse:
        def failure(
            status: int, message: str, challenge: Sequence[tuple[str, str]] = ()
        ) -> SandboxResponse:
            payload = {"data": None, "errors": [{"message": message}], "success": False}
            return _json_response(status, payload, _STATISTICS_CONTENT_TYPE, challenge)

        token = headers.get("authorization", "").strip()
        if not token:
            return failure(401, "The request carries no access token.", [_bearer_challenge()])
        if " " in token:
            # The provider documents `authorization: <token>`; be strict so a client sending
            # `Bearer <token>` here is caught by tests. A token was sent: invalid_token.
            message = "Send the raw access token, without 'Bearer'."
            return failure(401, message, [_bearer_challenge(message)])
        problem = self._token_problem(token, STATISTICS_AUDIENCES)
        if problem is not None:
            return failure(401, problem, [_bearer_challenge(problem)])
        try:
            page = _int_param(query, "page", minimum=1)
            size = _int_param(
                query,
                "size",
                minimum=1,
                maximum=MAX_STATISTICS_PAGE_SIZE,
                default=DEFAULT_STATISTICS_PAGE_SIZE,
            )
            site = str(_int_param(query, "siteId"))
            start = _date_param(query, "startDate")
            end = _date_param(query, "endDate")
            if end < start:
                raise _ParamError("Parameter 'endDate' must not be before 'startDate'.")
            program = None
            if (_first(query, "programId") or "").strip():
                program = str(_int_param(query, "programId"))
            output = (_first(query, "format") or "json").strip().lower()
            if output not in ("json", "csv"):
                raise _ParamError(f"Parameter 'format' must be json or csv, got {output!r}.")
        except _ParamError as exc:
            return failure(400, str(exc))
        first = max((start - _YEAR_START).days, 0)
        last = min((end - _YEAR_START).days, _YEAR_DAYS - 1)
        known = int(site) in SITE_IDS and program in (None, *(p for p, _, _ in _PROGRAMS))
        days = list(range(first, last + 1)) if known else []
        data = self._dataset()
        rows = [
            _statistics_row(data, site, day, program)
            for day in days[(page - 1) * size : page * size]
        ]
        if output == "csv":
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180 line ends
            writer.writerow(STATISTICS_COLUMNS)
            for row in rows:
                writer.writerow(["" if row[c] is None else row[c] for c in STATISTICS_COLUMNS])
            body = buffer.getvalue().encode("utf-8")
            return SandboxResponse(200, [("Content-Type", "text/csv; charset=utf-8")], body)
        payload = {"data": {"data": rows}, "errors": None, "success": True}
        return _json_response(200, payload, _STATISTICS_CONTENT_TYPE)

    # -- admin API --------------------------------------------------------------------

    def _admin(self, method: str, name: str, body: bytes) -> SandboxResponse:
        if name == "login":  # where mode="redirect" sends clients: an HTML "sign in" page
            return SandboxResponse(200, [("Content-Type", "text/html; charset=utf-8")], _LOGIN_PAGE)
        actions: dict[str, tuple[str, Callable[[Any], Any]]] = {
            "state": ("GET", lambda _: None),
            "revoke": ("POST", lambda _: self.revoke_all()),
            "config": ("POST", self._admin_config),
            "fail": ("POST", self._admin_fail),
            "reset": ("POST", lambda _: self.reset()),
        }
        if name not in actions:
            payload = {"error": "not_found", "message": f"No admin action {name!r}."}
            return _json_response(404, payload)
        expected, action = actions[name]
        if method != expected:
            payload = {"error": "method_not_allowed", "message": f"Use {expected}."}
            return _json_response(405, payload, headers=[("Allow", expected)])
        try:
            options = json.loads(body.decode("utf-8")) if body.strip() else {}
            if not isinstance(options, dict):
                raise ValueError("the body must be a JSON object")
            result = action(options)
        except (ValueError, TypeError) as exc:
            return _json_response(400, {"error": "bad_request", "message": str(exc)})
        state = self.state()
        if name == "revoke":
            state["revoked"] = result
        return _json_response(200, state)

    def _admin_config(self, options: dict[str, Any]) -> None:
        unknown = set(options) - {
            "token_lifetime",
            "token_latency",
            "api_latency",
            "token_overrides",
        }
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        overrides = options.get("token_overrides")
        if "token_overrides" in options and not isinstance(overrides, dict):
            raise ValueError("token_overrides must be a JSON object")
        # Validate everything before changing anything.
        values = {k: _number(options[k], k) for k in options if k != "token_overrides"}
        for key, value in values.items():
            setattr(self, key, value)
        if isinstance(overrides, dict):
            with self._lock:
                self.token_overrides.clear()
                self.token_overrides.update(overrides)

    def _admin_fail(self, options: dict[str, Any]) -> None:
        unknown = set(options) - {"count", "status", "retry_after", "mode", "body", "content_type"}
        if unknown:
            raise ValueError(f"unknown settings: {sorted(unknown)}")
        body = options.get("body")
        if body is not None and not isinstance(body, str):
            raise ValueError("body must be a string")
        content_type = options.get("content_type", "application/json")
        if not isinstance(content_type, str):
            raise ValueError("content_type must be a string")
        self.fail_next(
            options.get("count", 1),
            status=options.get("status", 503),
            retry_after=options.get("retry_after"),
            body=body.encode("utf-8") if body is not None else None,
            content_type=content_type,
            mode=options.get("mode", "status"),
        )


# -- HTTP front end -------------------------------------------------------------------


class _BodyError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for hanging handlers
    request_queue_size = 128  # listen() backlog: bursts of connections must not be refused

    def __init__(self, address: tuple[str, int], provider: SandboxProvider) -> None:
        self.provider = provider
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def track(self, connection: socket.socket, active: bool) -> None:
        with self._connections_lock:
            if active:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)

    def close_connections(self) -> None:
        """Wake handlers blocked on idle keep-alive connections: a stopped sandbox is silent."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, resets) are expected in fault tests: stay quiet.
        if isinstance(sys.exc_info()[1], OSError) or self.stopping.is_set():
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive; every answer has a Content-Length
    server_version = "advanced-store-sandbox"
    # Headers and body are separate writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK, ~40 ms per request on a keep-alive connection.
    disable_nagle_algorithm = True

    def _server(self) -> _Server:
        return cast(_Server, self.server)

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self._server().track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._server().track(self.connection, False)

    def log_message(self, format: str, *args: Any) -> None:
        """Access logging is silenced: tests send thousands of requests."""

    def _dispatch(self) -> None:
        try:
            body = self._read_body()
        except _BodyError as exc:
            payload = {"error": "invalid_request", "error_description": str(exc)}
            self._send(_json_response(exc.status, payload), close=True)
            return
        parts = urlsplit(self.path)
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            headers.setdefault(name.lower(), value)  # the first of repeated headers wins
        try:
            response = self._server().provider.handle(
                self.command, parts.path, parts.query, headers, body
            )
        except Exception as exc:  # a sandbox bug: answer 500, keep serving
            traceback.print_exc()
            payload = {"error": "server_error", "error_description": f"sandbox bug: {exc!r}"}
            response = _json_response(500, payload)
        if response.fault == "reset":
            self._reset()
        elif response.fault == "hang":
            self._server().stopping.wait()
            self.close_connection = True
        else:
            self._send(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _dispatch

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._read_chunked()
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            size = int(length)
            if size < 0:
                raise ValueError(length)
        except ValueError:
            raise _BodyError(400, f"Invalid Content-Length {length!r}.") from None
        if size > _MAX_BODY:
            raise _BodyError(413, "Request body too large.")
        return self.rfile.read(size)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        total = 0
        while True:
            line = self.rfile.readline(65537)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BodyError(400, "Invalid chunked body.") from None
            if size == 0:
                while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                    pass  # skip trailers
                return b"".join(chunks)
            total += size
            if total > _MAX_BODY:
                raise _BodyError(413, "Request body too large.")
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: SandboxResponse, *, close: bool = False) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN: the client
        # sees "connection reset by peer", as behind a crashing load balancer.
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()


class Sandbox:
    """A running local Advanced-Store API; ``with Sandbox() as sb:`` or start()/stop().

    Two clients are registered, both allowed ``api.ad4mat.net`` and
    ``api.advanced-store.com``: ``client_id``/``client_secret`` for
    ``client_secret_post`` and ``basic_client_id``/``basic_client_secret`` for
    ``client_secret_basic``. Secrets are random per instance.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        token_lifetime: float = DEFAULT_TOKEN_LIFETIME,
        clock: Callable[[], float] = time.time,
        seed: int = DEFAULT_SEED,
    ) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.provider = SandboxProvider(token_lifetime=token_lifetime, clock=clock, seed=seed)
        self.client_id = CLIENT_ID
        self.client_secret = secrets.token_urlsafe(24)
        self.basic_client_id = BASIC_CLIENT_ID
        self.basic_client_secret = secrets.token_urlsafe(24)
        self.register_client(self.client_id, self.client_secret)
        self.register_client(
            self.basic_client_id, self.basic_client_secret, auth_method="client_secret_basic"
        )

    def register_client(
        self,
        client_id: str,
        secret: str,
        *,
        auth_method: str = "client_secret_post",
        audiences: Sequence[str] = AUDIENCES,
    ) -> None:
        """Register another client (see :meth:`SandboxProvider.register_client`)."""
        self.provider.register_client(
            client_id, secret, auth_method=auth_method, audiences=audiences
        )

    @property
    def port(self) -> int:
        """The TCP port; known once started."""
        if self._port is None:
            raise RuntimeError("the sandbox has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    @property
    def transactions_url(self) -> str:
        return self.url + TRANSACTIONS_PATH

    @property
    def statistics_url(self) -> str:
        return self.url + STATISTICS_PATH

    @property
    def admin_url(self) -> str:
        """Base of the admin API: ``state``, ``config``, ``fail``, ``revoke``, ``reset``."""
        return self.url + ADMIN_PREFIX

    def environment(self) -> dict[str, str]:
        """The ``ADVANCED_STORE_*`` variables that point a client at this sandbox."""
        return {
            "ADVANCED_STORE_CLIENT_ID": self.client_id,
            "ADVANCED_STORE_CLIENT_SECRET": self.client_secret,
            "ADVANCED_STORE_TOKEN_URL": self.token_url,
            "ADVANCED_STORE_API_URL": self.url,
            # For the examples: the sites they pull by default (the sandbox has SITE_IDS).
            "ADVANCED_STORE_SITE_IDS": ",".join(str(site) for site in SITE_IDS[:2]),
        }

    def auth(self, **overrides: Any) -> AdvancedAuth:
        """An ``AdvancedAuth`` for this sandbox; keyword ``overrides`` go to its constructor."""
        from requests_advanced_auth import AdvancedAuth  # lazy: the oracle stays independent

        options: dict[str, Any] = {
            "token_url": self.token_url,
            "allowed_hosts": [f"127.0.0.1:{self.port}"],
            "header_styles": {self.statistics_url: "raw", self.transactions_url: "bearer"},
        }
        options.update(overrides)
        return AdvancedAuth(self.client_id, self.client_secret, **options)

    def start(self) -> Sandbox:
        """Listen and serve in a daemon thread; returns once connections are accepted."""
        if self._server is not None:
            raise RuntimeError("the sandbox is already running")
        server = _Server((self.host, self._requested_port), self.provider)
        # The socket listens once the server is built: connections queue in the backlog
        # until serve_forever() picks them up, so nobody is refused from here on.
        self._port = int(server.server_address[1])
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # shutdown() waits up to one poll interval
            name=f"advanced-store-sandbox-{self._port}",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (hanging ones too); idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        server.close_connections()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> Sandbox:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<Sandbox {where} client_id={self.client_id!r}>"


def _banner(sandbox: Sandbox) -> str:
    lines = [
        f"Advanced-Store sandbox running at {sandbox.url}",
        f"  token URL:        {sandbox.token_url}",
        f"  transactions URL: {sandbox.transactions_url}",
        f"  statistics URL:   {sandbox.statistics_url}",
        f"  admin API:        {sandbox.admin_url}state (no auth: loopback only)",
        f"  client_secret_post client:  {sandbox.client_id} / {sandbox.client_secret}",
        f"  client_secret_basic client: {sandbox.basic_client_id} / {sandbox.basic_client_secret}",
        "",
    ]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sandbox.environment().items()]
    lines += ["", "Serving until Ctrl-C."]
    return "\n".join(lines)


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m requests_advanced_auth.sandbox"
) -> int:
    """``python -m requests_advanced_auth.sandbox``: serve until Ctrl-C, return 0."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a local emulator of Advanced-Store's advanced API on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: any free one)")
    parser.add_argument(
        "--token-lifetime",
        type=float,
        default=DEFAULT_TOKEN_LIFETIME,
        metavar="S",
        help="seconds a token lives (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the demo data")
    args = parser.parse_args(argv)
    if not math.isfinite(args.token_lifetime) or args.token_lifetime < 0:
        parser.error("--token-lifetime must be a number of seconds >= 0")
    sandbox = Sandbox(port=args.port, token_lifetime=args.token_lifetime, seed=args.seed)
    try:
        sandbox.start()
    except OSError as exc:
        print(f"{parser.prog}: error: cannot listen on 127.0.0.1:{args.port}: {exc} (choose "
              "another with --port, or --port 0 for any free one)", file=sys.stderr)
        return 1
    try:
        print(_banner(sandbox), flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        sandbox.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
