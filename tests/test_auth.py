"""``ClientCredentialsAuth`` / ``AdvancedAuth`` with the token endpoint and the APIs mocked.

requests-mock stands in for both the token endpoint and the APIs; time comes from the fake
``clock``. Concurrency tests start threads behind a ``threading.Barrier`` and hold the token
answer open until every thread has reached the single-flight guard (a counting lock put in
its place), so they are deterministic and never sleep. They mount a ``requests_mock.Adapter``
on their sessions (and pass one as ``token_session``) instead of using the ``Mocker``: the
Mocker serialises every ``Session.send`` behind one global lock, so a held answer would
block every other thread's request.
"""

from __future__ import annotations

import copy
import http.client
import io
import json
import logging
import os
import pickle
import threading
from urllib.parse import parse_qsl

import pytest
import requests
import requests_mock as requests_mock_module
import urllib3
from _helpers import CountingLock, run_threads

from requests_advanced_auth import (
    AdvancedAuth,
    ClientCredentialsAuth,
    ConfigurationError,
    InvalidClientError,
    MemoryTokenCache,
    TokenEndpointUnreachableError,
)

TOKEN_URL = "https://auth.advanced-store.com/oauth2/token"
IDP_URL = "https://idp.example.com/oauth2/token"
TRANSACTIONS = "https://api.advanced-store.com/publishers/transactions/2.0/"
STATISTICS = "https://advanced-store.cloud/function/api/statistics"
CLIENT_ID = "client-4711"
SECRET = "s3cr3tVALUEneverSHOWN"
WAIT = 10.0  # seconds; reached only when the behaviour under test is broken


@pytest.fixture(autouse=True)
def _watch_secret(leak_guard):
    leak_guard.watch(SECRET)


# -- the mocked provider ---------------------------------------------------------------------


class TokenEndpoint:
    """A token endpoint behind requests-mock: issues tok001…, counts every request."""

    def __init__(self, mocker, leak_guard, url=TOKEN_URL, lifetimes=(3600,)):
        self.lifetimes = list(lifetimes)  # one per token; the last one repeats
        self.issued: list[str] = []
        self.requests = 0
        self.failures: list[int] = []  # statuses to answer before issuing again
        self.before = None  # called (outside the lock) before each answer
        self.bodies: list[bytes] = []
        self._lock = threading.Lock()
        self._guard = leak_guard
        mocker.register_uri("POST", url, text=self._answer)

    def _answer(self, request, context):
        with self._lock:
            self.requests += 1
            self.bodies.append(request.body)
        if self.before is not None:
            self.before()
        with self._lock:
            if self.failures:
                context.status_code = self.failures.pop(0)
                context.headers["Content-Type"] = "text/html"
                return "<h1>Service Unavailable</h1>"
            token = f"tok{len(self.issued) + 1:03d}-QQQQQQQQQQQQ"
            lifetime = self.lifetimes[min(len(self.issued), len(self.lifetimes) - 1)]
            self.issued.append(token)
        self._guard.watch(token)
        context.headers["Content-Type"] = "application/json"
        body = {"access_token": token, "token_type": "bearer", "scope": ""}
        if lifetime is not None:
            body["expires_in"] = lifetime
        return json.dumps(body)


class Api:
    """Both APIs behind requests-mock: 200 for a live token, 401 otherwise."""

    def __init__(self, mocker, endpoint, urls=(TRANSACTIONS, STATISTICS)):
        self.endpoint = endpoint
        self.revoked: set[str] = set()
        self.reject_all = False
        self.seen: list[str | None] = []  # Authorization header of each request
        self.bodies: list[bytes] = []
        self.before = None  # called with the Authorization header before answering
        self._lock = threading.Lock()
        for url in urls:
            mocker.register_uri(requests_mock_module.ANY, url, text=self._answer)

    @property
    def requests(self) -> int:
        return len(self.seen)

    def _answer(self, request, context):
        header = request.headers.get("Authorization")
        body = read_body(request.body)
        with self._lock:
            self.seen.append(header)
            self.bodies.append(body)
        if self.before is not None:
            self.before(header)
        token = (header or "").replace("Bearer ", "", 1)
        if self.reject_all or token not in self.endpoint.issued or token in self.revoked:
            context.status_code = 401
            context.headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            return '{"error": "unauthorized"}'
        return json.dumps({"ok": True})


def read_body(body) -> bytes:
    """What a real adapter would have sent for this body (consuming streams)."""
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body)
    if hasattr(body, "read"):
        return body.read()
    return b"".join(body)


@pytest.fixture
def endpoint(requests_mock, leak_guard):
    return TokenEndpoint(requests_mock, leak_guard)


@pytest.fixture
def api(requests_mock, endpoint):
    return Api(requests_mock, endpoint)


class Threaded:
    """Token endpoint and APIs on a requests-mock Adapter: no global lock between threads."""

    def __init__(self, clock, leak_guard):
        self.adapter = requests_mock_module.Adapter()
        self.endpoint = TokenEndpoint(self.adapter, leak_guard)
        self.api = Api(self.adapter, self.endpoint)
        self.clock = clock

    def session(self, auth=None) -> requests.Session:
        session = requests.Session()
        session.mount("https://", self.adapter)
        session.mount("http://", self.adapter)
        session.auth = auth
        return session

    def auth(self, **options) -> AdvancedAuth:
        return advanced(self.clock, token_session=self.session(), **options)

    def get(self, auth, url=TRANSACTIONS) -> requests.Response:
        return self.session(auth).get(url)


@pytest.fixture
def threaded(clock, leak_guard):
    return Threaded(clock, leak_guard)


def advanced(clock, **options):
    return AdvancedAuth(CLIENT_ID, SECRET, clock=clock, **options)


def generic(clock, **options):
    options.setdefault("token_url", IDP_URL)
    return ClientCredentialsAuth(CLIENT_ID, SECRET, clock=clock, **options)


def session_with(auth) -> requests.Session:
    session = requests.Session()
    session.auth = auth
    return session


def bearer(n: int) -> str:
    return f"Bearer tok{n:03d}-QQQQQQQQQQQQ"


def raw(n: int) -> str:
    return f"tok{n:03d}-QQQQQQQQQQQQ"


def count_flight_entries(auth) -> CountingLock:
    guard = CountingLock()
    auth._flight._guard = guard
    return guard


def warnings_of(caplog):
    return [
        r for r in caplog.records
        if r.name.startswith("requests_advanced_auth") and r.levelno >= logging.WARNING
    ]


# == signing ==================================================================================


def test_advanced_auth_sends_bearer_to_transactions_and_the_raw_token_to_statistics(
    clock, endpoint, api
):
    session = session_with(advanced(clock))
    assert session.get(TRANSACTIONS, params={"page": 1}).status_code == 200
    assert session.get(STATISTICS, params={"page": 1}).status_code == 200
    assert api.seen == [bearer(1), raw(1)]
    assert endpoint.requests == 1


def test_advanced_auth_defaults_audience_and_token_url_on_the_wire(clock, endpoint, api):
    session_with(advanced(clock)).get(TRANSACTIONS)
    pairs = parse_qsl(endpoint.bodies[0].decode())
    assert ("audience", "api.ad4mat.net api.advanced-store.com") in pairs
    assert ("client_id", CLIENT_ID) in pairs


def test_header_styles_use_the_longest_matching_prefix(clock, requests_mock, leak_guard):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    urls = [
        "https://api.example.com/raw/report",
        "https://api.example.com/raw/but-bearer/x",
        "https://api.example.com/other",
        "https://other.example.com/raw/report",
    ]
    api = Api(requests_mock, endpoint, urls=urls)
    auth = generic(
        clock,
        header_styles={
            "https://api.example.com/raw/": "raw",
            "https://api.example.com/raw/but-bearer/": "bearer",
        },
    )
    session = session_with(auth)
    for url in urls:
        session.get(url)
    assert api.seen == [raw(1), bearer(1), bearer(1), bearer(1)]


def test_default_header_style_raw_applies_outside_the_prefixes(clock, requests_mock, leak_guard):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    urls = ["https://api.example.com/v1/x", "https://api.example.com/v2/x"]
    api = Api(requests_mock, endpoint, urls=urls)
    auth = generic(
        clock,
        header_styles={"https://api.example.com/v1/": "bearer"},
        default_header_style="raw",
    )
    session = session_with(auth)
    for url in urls:
        session.get(url)
    assert api.seen == [bearer(1), raw(1)]


def test_bad_header_style_is_a_configuration_error(clock):
    with pytest.raises(ConfigurationError, match="header styles"):
        generic(clock, header_styles={"https://api.example.com/": "Token"})
    with pytest.raises(ConfigurationError, match="header styles"):
        generic(clock, default_header_style="basic")


def test_host_names_match_case_insensitively(clock, endpoint, api):
    session_with(advanced(clock)).get(
        "https://API.Advanced-Store.com/publishers/transactions/2.0/"
    )
    assert api.seen == [bearer(1)]


def test_explicit_default_port_keeps_the_header_style(clock, endpoint, api):
    auth = advanced(clock)
    assert auth.headers_for("https://advanced-store.cloud:443/function/api/statistics") == {
        "Authorization": raw(1)
    }


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/",
        "https://advanced-store.com/",
        "https://www.advanced-store.cloud/function/api/statistics",
        "https://api.advanced-store.com.evil.example/publishers/transactions/2.0/",
        "https://evil.example/?next=https://api.advanced-store.com/",
    ],
)
def test_foreign_host_is_not_signed_and_triggers_no_token_request(
    clock, requests_mock, endpoint, url
):
    target = requests_mock.get(url, text="hello")
    response = session_with(advanced(clock)).get(url)
    assert response.status_code == 200
    assert "Authorization" not in target.last_request.headers
    assert endpoint.requests == 0


def test_allowed_hosts_narrow_client_credentials_auth(clock, requests_mock, leak_guard):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    allowed, other = "https://api.example.com/x", "https://cdn.example.com/x"
    api = Api(requests_mock, endpoint, urls=[allowed, other])
    session = session_with(generic(clock, allowed_hosts=["api.example.com"]))
    session.get(other)
    assert api.seen == [None]
    assert endpoint.requests == 0
    session.get(allowed)
    assert api.seen == [None, bearer(1)]


def test_allowed_host_with_a_port_matches_only_that_port(clock, requests_mock, leak_guard):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    urls = ["https://api.example.com:8443/x", "https://api.example.com/x"]
    api = Api(requests_mock, endpoint, urls=urls)
    session = session_with(generic(clock, allowed_hosts=["api.example.com:8443"]))
    for url in urls:
        session.get(url)
    assert api.seen == [bearer(1), None]


@pytest.mark.parametrize("entry", ["https://api.example.com", "api.example.com/path", ""])
def test_bad_allowed_hosts_entry_is_a_configuration_error(clock, entry):
    with pytest.raises(ConfigurationError, match="allowed_hosts"):
        generic(clock, allowed_hosts=[entry])


def test_plain_http_non_loopback_url_never_gets_the_token(
    clock, requests_mock, leak_guard, caplog
):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    target = requests_mock.get("http://api.example.com/data", text="ok")
    auth = generic(clock)  # every host allowed
    session = session_with(auth)
    session.get("http://api.example.com/data")
    session.get("http://api.example.com/data")
    assert "Authorization" not in target.last_request.headers
    assert endpoint.requests == 0
    assert auth.headers_for("http://api.example.com/data") == {}
    [warning] = warnings_of(caplog)  # decided once per origin, said once
    assert "plain http" in warning.getMessage()


def test_plain_http_to_an_advanced_store_host_is_not_signed(clock, requests_mock, endpoint):
    target = requests_mock.get("http://api.advanced-store.com/publishers/transactions/2.0/")
    session_with(advanced(clock)).get("http://api.advanced-store.com/publishers/transactions/2.0/")
    assert "Authorization" not in target.last_request.headers
    assert endpoint.requests == 0


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/api", "http://localhost:8080/api", "http://[::1]:8080/api"]
)
def test_plain_http_loopback_url_is_signed(clock, requests_mock, leak_guard, url):
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=IDP_URL)
    api = Api(requests_mock, endpoint, urls=[url])
    session_with(generic(clock)).get(url)
    assert api.seen == [bearer(1)]


def test_request_level_auth_overrides_the_session_auth(clock, requests_mock, endpoint, api):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS, auth=("user", "password"))
    assert api.seen[0].startswith("Basic ")
    assert endpoint.requests == 0
    session.get(TRANSACTIONS)
    assert api.seen[1] == bearer(1)


def test_auth_works_as_a_request_level_auth_without_a_session(clock, endpoint, api):
    assert requests.get(TRANSACTIONS, auth=advanced(clock)).status_code == 200
    assert api.seen == [bearer(1)]


def test_headers_for_gives_the_header_a_request_would_get(clock, endpoint, api):
    auth = advanced(clock)
    assert auth.headers_for("https://example.com/data.csv") == {}
    assert endpoint.requests == 0
    assert auth.headers_for(TRANSACTIONS) == {"Authorization": bearer(1)}
    assert auth.headers_for(STATISTICS + "?format=csv") == {"Authorization": raw(1)}
    assert endpoint.requests == 1


def test_redirect_to_another_host_does_not_carry_the_token(clock, requests_mock, endpoint, api):
    elsewhere = requests_mock.get("https://elsewhere.example/landing", text="hi")
    requests_mock.get(
        TRANSACTIONS + "moved", status_code=302,
        headers={"Location": "https://elsewhere.example/landing"},
    )
    response = session_with(advanced(clock)).get(TRANSACTIONS + "moved")
    assert response.status_code == 200
    assert "Authorization" not in elsewhere.last_request.headers
    assert response.history[0].request.headers["Authorization"] == bearer(1)


def test_redirect_on_the_same_host_keeps_the_token_and_a_401_there_is_retried(
    clock, requests_mock, endpoint, api
):
    requests_mock.get(
        TRANSACTIONS + "old", status_code=301, headers={"Location": TRANSACTIONS}
    )
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    response = session.get(TRANSACTIONS + "old")
    assert response.status_code == 200
    assert api.seen == [bearer(1), bearer(1), bearer(2)]
    assert response.request.headers["Authorization"] == bearer(2)
    # requests replaces the final response's history with the redirect chain
    assert [r.status_code for r in response.history] == [301]


def test_token_endpoint_error_reaches_the_caller_as_a_requests_exception(
    clock, requests_mock, api
):
    requests_mock.post(
        TOKEN_URL, status_code=401,
        json={"error": "invalid_client", "error_description": "Client authentication failed"},
    )
    session = session_with(advanced(clock))
    with pytest.raises(InvalidClientError):
        session.get(TRANSACTIONS)
    with pytest.raises(requests.RequestException):
        session.get(TRANSACTIONS)
    assert api.requests == 0


# == expiry and refresh with the fake clock ==================================================


def test_token_is_reused_while_fresh_and_refetched_after_expiry(clock, endpoint, api):
    session = session_with(advanced(clock))
    for _ in range(10):
        session.get(TRANSACTIONS)
        clock.advance(300)  # 0 … 2700 s: fresh (stale from 3540 s)
    assert endpoint.requests == 1
    clock.advance(3600 - 3000)  # at 3600 s: expired
    session.get(TRANSACTIONS)
    assert endpoint.requests == 2
    assert api.seen[-2:] == [bearer(1), bearer(2)]


def test_a_new_tokens_shorter_expiry_is_its_own(clock, requests_mock, leak_guard, api):
    endpoint = api.endpoint
    endpoint.lifetimes = [3600, 60]
    auth = advanced(clock)
    session = session_with(auth)
    session.get(TRANSACTIONS)
    clock.advance(3600)
    session.get(TRANSACTIONS)  # tok002 lives 60 s, not 3600
    assert auth.get_token().expires_at == clock.now + 60
    clock.advance(60)
    session.get(TRANSACTIONS)
    assert endpoint.requests == 3


def test_a_new_token_without_expires_in_does_not_inherit_the_old_expiry(clock, endpoint, api):
    endpoint.lifetimes = [60, None]
    auth = advanced(clock)
    session = session_with(auth)
    session.get(TRANSACTIONS)
    clock.advance(60)
    session.get(TRANSACTIONS)
    assert auth.get_token().expires_at is None
    clock.advance(10 * 86400)
    for _ in range(5):
        session.get(TRANSACTIONS)
    assert endpoint.requests == 2  # used until the API answers 401


@pytest.mark.parametrize(("lifetime", "fresh_for"), [(5, 3.7), (30, 22.4)])
def test_short_lived_tokens_are_not_refetched_on_every_call(clock, endpoint, api, lifetime,
                                                           fresh_for):
    endpoint.lifetimes = [lifetime]
    session = session_with(advanced(clock))  # default leeway: 60 s, more than the lifetime
    start = clock.now
    while clock.now - start <= fresh_for:
        session.get(TRANSACTIONS)
        clock.advance(0.1)
    assert endpoint.requests == 1
    assert api.requests > 30
    # Over 20 lifetimes, one fetch per 3/4 lifetime or so: never one per call.
    calls = 0
    while clock.now - start <= 20 * lifetime:
        session.get(TRANSACTIONS)
        clock.advance(lifetime / 50)
        calls += 1
    assert endpoint.requests <= 20 / (1 - 0.25) + 2
    assert calls > 30 * endpoint.requests


def test_leeway_zero_uses_the_token_until_its_stated_expiry(clock, endpoint, api):
    endpoint.lifetimes = [60]
    session = session_with(advanced(clock, leeway=0))
    session.get(TRANSACTIONS)
    clock.advance(59.9)
    session.get(TRANSACTIONS)
    assert endpoint.requests == 1
    clock.advance(0.1)
    session.get(TRANSACTIONS)
    assert endpoint.requests == 2


@pytest.mark.parametrize("leeway", [-1, float("nan"), float("inf"), "60"])
def test_bad_leeway_is_a_configuration_error(clock, leeway):
    with pytest.raises(ConfigurationError, match="leeway"):
        advanced(clock, leeway=leeway)


@pytest.mark.parametrize("lifetime", [0, -30])
def test_zero_lifetime_token_serves_its_request_then_is_refetched_once_per_request(
    clock, endpoint, api, lifetime
):
    endpoint.lifetimes = [lifetime]
    session = session_with(advanced(clock))
    for _ in range(5):
        assert session.get(TRANSACTIONS).status_code == 200
    assert endpoint.requests == 5  # one per request, never a tight loop
    assert api.seen == [bearer(n) for n in range(1, 6)]


def test_refresh_ahead_makes_one_fetch_while_other_callers_keep_the_current_token(
    clock, threaded
):
    endpoint, api = threaded.endpoint, threaded.api
    auth = threaded.auth()
    threaded.get(auth)
    clock.advance(3550)  # stale (3540 … 3580 s): still valid, time to fetch the next one
    started, release = threading.Event(), threading.Event()

    def hold():
        started.set()
        assert release.wait(WAIT)

    endpoint.before = hold
    refresher = threading.Thread(target=lambda: threaded.get(auth))
    refresher.start()
    assert started.wait(WAIT)
    # While the refresh is in flight, other callers neither wait nor fetch.
    others_done = threading.Event()

    def others():
        session = threaded.session(auth)
        for _ in range(10):
            session.get(TRANSACTIONS)
        others_done.set()

    other = threading.Thread(target=others)
    other.start()
    assert others_done.wait(WAIT), "callers blocked behind the early refresh"
    assert api.seen[1:] == [bearer(1)] * 10
    release.set()
    refresher.join(WAIT)
    other.join(WAIT)
    assert endpoint.requests == 2
    threaded.get(auth)
    assert api.seen[-1] == bearer(2)
    assert endpoint.requests == 2


def test_failed_early_refresh_is_logged_not_raised_and_retried_later_not_on_every_call(
    clock, endpoint, api, caplog
):
    auth = advanced(clock)
    session = session_with(auth)
    session.get(TRANSACTIONS)
    clock.advance(3550)  # stale
    endpoint.failures = [503] * 100
    for _ in range(100):
        assert session.get(TRANSACTIONS).status_code == 200
    assert endpoint.requests == 2  # the first fetch and ONE early attempt
    assert api.seen.count(bearer(1)) == 101
    [warning] = warnings_of(caplog)
    assert "early token refresh failed" in warning.getMessage()
    # Later, still before expiry (3580 s), it tries again: once.
    clock.advance(3579 - 3550)
    for _ in range(100):
        session.get(TRANSACTIONS)
    assert endpoint.requests == 3
    endpoint.failures = []
    clock.advance(1)  # expired now (3580 s): callers wait for a new token
    session.get(TRANSACTIONS)
    assert endpoint.requests == 4
    assert api.seen[-1] == bearer(1 + 1)


def test_expired_token_with_endpoint_down_raises_to_every_caller(clock, endpoint, api):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    clock.advance(3600)
    endpoint.failures = [503, 503]
    with pytest.raises(TokenEndpointUnreachableError):
        session.get(TRANSACTIONS)
    with pytest.raises(TokenEndpointUnreachableError):
        session.get(TRANSACTIONS)
    assert api.requests == 1  # the expired token was never sent


# == single flight ============================================================================


def test_twenty_threads_on_a_cold_cache_make_one_token_request(threaded):
    auth = threaded.auth()
    guard = count_flight_entries(auth)
    threaded.endpoint.before = lambda: guard.wait_for(20)  # answer once all 20 wait
    results = run_threads(20, lambda i: threaded.get(auth).status_code)
    assert results == [200] * 20
    assert threaded.endpoint.requests == 1
    assert threaded.api.seen == [bearer(1)] * 20


def test_expired_token_waiting_callers_share_one_fetch(clock, threaded):
    auth = threaded.auth()
    threaded.get(auth)
    clock.advance(3600)
    guard = count_flight_entries(auth)
    threaded.endpoint.before = lambda: guard.wait_for(10)
    results = run_threads(10, lambda i: threaded.get(auth).status_code)
    assert results == [200] * 10
    assert threaded.endpoint.requests == 2
    assert threaded.api.seen[1:] == [bearer(2)] * 10


def test_waiting_callers_share_the_fetch_error(threaded):
    auth = threaded.auth()
    guard = count_flight_entries(auth)
    threaded.endpoint.before = lambda: guard.wait_for(10)
    threaded.endpoint.failures = [503] * 10
    results = run_threads(10, lambda i: threaded.get(auth))
    assert all(isinstance(r, TokenEndpointUnreachableError) for r in results), results
    assert threaded.endpoint.requests == 1  # no stampede of retries by each waiter
    assert threaded.api.requests == 0


def test_twenty_threads_seeing_the_same_401_make_one_token_request(threaded):
    endpoint, api = threaded.endpoint, threaded.api
    auth = threaded.auth()
    auth.get_token()
    api.revoked.add(raw(1))
    all_arrived = threading.Event()
    arrivals = []
    lock = threading.Lock()

    def hold_401s(header):
        # Every thread's request reaches the API with tok001 before any 401 is answered.
        if header == bearer(1):
            with lock:
                arrivals.append(header)
                if len(arrivals) == 20:
                    all_arrived.set()
            assert all_arrived.wait(WAIT)

    api.before = hold_401s
    guard = count_flight_entries(auth)
    endpoint.before = lambda: guard.wait_for(20)
    results = run_threads(20, lambda i: threaded.get(auth))
    assert [r.status_code for r in results] == [200] * 20
    assert endpoint.requests == 2  # the first token and ONE replacement
    assert sorted(api.seen) == sorted([bearer(1)] * 20 + [bearer(2)] * 20)
    assert all([h.status_code for h in r.history] == [401] for r in results)


def test_invalidate_drops_only_the_current_token(clock, endpoint, api):
    auth = advanced(clock)
    old = auth.get_token()
    auth.invalidate()
    new = auth.get_token()
    assert endpoint.requests == 2
    auth.invalidate(old)  # someone reports the old token: the new one stays
    assert auth.get_token() is new
    assert auth.cache.get(auth._key) is new
    assert endpoint.requests == 2


def test_a_late_401_for_an_already_replaced_token_fetches_nothing(threaded):
    """Two requests carried tok001; the second 401 arrives after tok002 was adopted."""
    endpoint, api = threaded.endpoint, threaded.api
    auth = threaded.auth()
    auth.get_token()
    api.revoked.add(raw(1))
    both_sent, first_resent = threading.Event(), threading.Event()
    arrivals = []
    lock = threading.Lock()

    def order_the_401s(header):
        if header == bearer(2):
            first_resent.set()
            return
        with lock:
            arrivals.append(header)
            mine = len(arrivals)
            if mine == 2:
                both_sent.set()
        assert both_sent.wait(WAIT)
        if mine == 2:  # answer the second 401 only once the first was re-sent with tok002
            assert first_resent.wait(WAIT)

    api.before = order_the_401s
    results = run_threads(2, lambda i: threaded.get(auth))
    assert [r.status_code for r in results] == [200, 200]
    assert endpoint.requests == 2  # tok001 and tok002: the late 401 did not drop tok002
    assert sorted(api.seen) == [bearer(1), bearer(1), bearer(2), bearer(2)]


class _PausingFlight:
    """Wraps a SingleFlight: the second caller pauses on its way in until the first is done.

    That is a thread preempted between reading "no token" and reaching the flight: legal for
    any scheduler.
    """

    def __init__(self, real):
        self.real = real
        self.entered = 0
        self.first_done = threading.Event()
        self.second_in = threading.Event()
        self._lock = threading.Lock()

    @property
    def running(self):
        return self.real.running

    def try_run(self, call):
        return self.real.try_run(call)

    def run(self, call):
        with self._lock:
            self.entered += 1
            first = self.entered == 1
        if first:
            try:
                return self.real.run(call)
            finally:
                self.first_done.set()
        self.second_in.set()
        assert self.first_done.wait(WAIT)
        return self.real.run(call)


def test_a_caller_that_saw_no_token_uses_the_one_just_fetched(threaded):
    auth = threaded.auth()
    flight = auth._flight = _PausingFlight(auth._flight)
    threaded.endpoint.before = lambda: flight.second_in.wait(WAIT)
    results = run_threads(2, lambda i: threaded.get(auth).status_code)
    assert results == [200, 200]
    assert threaded.endpoint.requests == 1


# == one re-send on 401 =======================================================================


def test_401_is_absorbed_by_one_new_token_and_one_resend(clock, endpoint, api):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    response = session.get(TRANSACTIONS, params={"page": 2})
    assert response.status_code == 200
    assert [r.status_code for r in response.history] == [401]
    assert response.history[0].request.headers["Authorization"] == bearer(1)
    assert response.request.headers["Authorization"] == bearer(2)
    assert response.request.url == TRANSACTIONS + "?page=2"
    assert api.seen == [bearer(1), bearer(1), bearer(2)]
    assert endpoint.requests == 2


def test_401_on_statistics_is_resent_with_the_raw_token(clock, endpoint, api):
    session = session_with(advanced(clock))
    session.get(STATISTICS)
    api.revoked.add(raw(1))
    response = session.get(STATISTICS)
    assert response.status_code == 200
    assert api.seen == [raw(1), raw(1), raw(2)]


def test_second_401_is_returned_as_is(clock, endpoint, api):
    api.reject_all = True
    response = session_with(advanced(clock)).get(TRANSACTIONS)
    assert response.status_code == 401
    assert [r.status_code for r in response.history] == [401]
    assert api.requests == 2
    assert response.json() == {"error": "unauthorized"}
    with pytest.raises(requests.HTTPError) as info:
        response.raise_for_status()
    assert info.value.response is response


def test_api_rejecting_every_token_gets_one_resend_per_request_and_no_token_storm(
    clock, endpoint, api
):
    api.reject_all = True
    session = session_with(advanced(clock))
    n = 5
    responses = [session.get(TRANSACTIONS) for _ in range(n)]
    assert [r.status_code for r in responses] == [401] * n
    assert all(len(r.history) == 1 for r in responses)
    assert api.requests == 2 * n  # exactly one re-send per request
    # the first token, then at most one replacement per request that met a 401
    assert endpoint.requests <= n + 1
    assert endpoint.requests <= api.requests


def test_resend_uses_the_same_send_options(clock, endpoint, api, requests_mock):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    session.get(TRANSACTIONS, timeout=4.5, verify=False)
    first, resent = [r for r in requests_mock.request_history if r.method == "GET"][-2:]
    assert (first.headers["Authorization"], resent.headers["Authorization"]) == (
        bearer(1), bearer(2)
    )
    assert (first.timeout, first.verify) == (4.5, False)
    assert (resent.timeout, resent.verify) == (4.5, False)


def test_401_for_a_request_we_did_not_sign_is_not_retried(clock, requests_mock, endpoint):
    foreign = requests_mock.get("https://example.com/private", status_code=401)
    response = session_with(advanced(clock)).get("https://example.com/private")
    assert response.status_code == 401
    assert foreign.call_count == 1
    assert endpoint.requests == 0


class _SocketResponse:
    """The http.client response urllib3 wraps: requests reads Set-Cookie from its .msg."""

    def __init__(self, message: http.client.HTTPMessage) -> None:
        self.msg = message

    def isclosed(self) -> bool:
        return True

    def close(self) -> None:
        pass


def _raw_401_with_cookie(cookie: str) -> urllib3.HTTPResponse:
    """A 401 whose Set-Cookie is visible to requests' cookie extraction, as off a socket."""
    message = http.client.HTTPMessage()
    message["Set-Cookie"] = cookie
    message["Content-Type"] = "application/json"
    return urllib3.HTTPResponse(
        body=io.BytesIO(b'{"error": "unauthorized"}'),
        headers={"Set-Cookie": cookie, "Content-Type": "application/json"},
        status=401,
        reason="Unauthorized",
        preload_content=False,
        original_response=_SocketResponse(message),
    )


def test_cookies_set_by_the_401_are_carried_to_the_resend(clock, requests_mock, endpoint):
    api = requests_mock.get(
        TRANSACTIONS,
        [{"raw": _raw_401_with_cookie("lb=node-7; Path=/")}, {"text": "ok"}],
    )
    response = session_with(advanced(clock)).get(TRANSACTIONS)
    assert response.status_code == 200
    first, resent = api.request_history
    assert "Cookie" not in first.headers
    assert resent.headers["Cookie"] == "lb=node-7"
    assert resent.headers["Authorization"] == bearer(2)


class NonSeekable(io.RawIOBase):
    """A one-shot stream (a socket, a pipe, a decompressor): readable, not seekable."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._data.readinto(buffer)


def _file_mid_way(tmp_path):
    path = tmp_path / "upload.bin"
    path.write_bytes(b"SKIPPED-HEADER|" + bytes(range(256)) * 4)
    handle = path.open("rb")
    handle.seek(len(b"SKIPPED-HEADER|"))
    return handle


REPLAYABLE = {
    "bytes": (lambda tmp: {"data": b"\x00binary\xffbody"}, b"\x00binary\xffbody"),
    "str": (lambda tmp: {"data": "plain text body"}, b"plain text body"),
    "form dict": (lambda tmp: {"data": {"a": "1", "b": "x y"}}, b"a=1&b=x+y"),
    "json": (lambda tmp: {"json": {"page": 1, "ids": [25, 26]}}, b'{"page": 1, "ids": [25, 26]}'),
    "bytearray": (lambda tmp: {"data": bytearray(b"mutable")}, b"mutable"),
    "file mid-way": (lambda tmp: {"data": _file_mid_way(tmp)}, bytes(range(256)) * 4),
    "BytesIO mid-way": (
        lambda tmp: {"data": _seeked(io.BytesIO(b"0123456789"), 4)}, b"456789"
    ),
}


def _seeked(stream, position):
    stream.seek(position)
    return stream


@pytest.mark.parametrize("kind", list(REPLAYABLE))
def test_body_is_replayed_exactly_on_the_resend(clock, endpoint, api, tmp_path, kind):
    make, expected = REPLAYABLE[kind]
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    response = session.post(TRANSACTIONS, **make(tmp_path))
    assert response.status_code == 200
    assert len(response.history) == 1
    assert api.bodies[1:] == [expected, expected]
    assert response.request.headers.get("Content-Length") == (
        response.history[0].request.headers.get("Content-Length")
    )
    if "Content-Length" in response.request.headers:
        assert int(response.request.headers["Content-Length"]) == len(expected)


def test_multipart_upload_is_replayed_exactly(clock, endpoint, api):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    response = session.post(TRANSACTIONS, files={"report": ("r.csv", io.BytesIO(b"a,b\n1,2\n"))})
    assert response.status_code == 200
    assert api.bodies[1] == api.bodies[2]
    assert b"a,b\n1,2\n" in api.bodies[2]


def _pipe_reader(data: bytes):
    read_fd, write_fd = os.pipe()
    os.write(write_fd, data)
    os.close(write_fd)
    return os.fdopen(read_fd, "rb")


UNREPLAYABLE = {
    "generator": lambda: (chunk for chunk in [b"chunk-1,", b"chunk-2"]),
    "non-seekable stream": lambda: NonSeekable(b"one-shot body"),
    "pipe": lambda: _pipe_reader(b"from a pipe"),
}


@pytest.mark.parametrize("kind", list(UNREPLAYABLE))
def test_unreplayable_body_is_not_resent_and_one_warning_is_logged(
    clock, endpoint, api, caplog, kind
):
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    caplog.clear()
    body = UNREPLAYABLE[kind]()
    try:
        response = session.post(TRANSACTIONS, data=body)
    finally:
        if hasattr(body, "close"):
            body.close()
    assert response.status_code == 401
    assert response.history == []
    assert api.requests == 2  # the GET and this one POST, not re-sent
    [warning] = warnings_of(caplog)
    assert "not re-sent" in warning.getMessage()
    assert api.bodies[1] != b""  # it was sent once, whole


def test_a_401_on_an_unreplayable_body_still_drops_the_rejected_token(clock, endpoint, api):
    """The body cannot be re-sent, but the token was refused: the next request must not
    send it again (it would be refused until it expires, up to an hour later)."""
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.revoked.add(raw(1))
    assert session.post(TRANSACTIONS, data=UNREPLAYABLE["generator"]()).status_code == 401
    answer = session.get(TRANSACTIONS)
    assert answer.status_code == 200
    assert answer.history == []  # no 401 on the way: the refused token was not sent again
    assert api.seen[-1] == bearer(2)
    assert endpoint.requests == 2


def test_a_401_after_adopting_a_token_another_auth_stored_gets_one_more_round(
    clock, endpoint, api
):
    """Two auth objects share a cache (as two processes share a FileTokenCache). B stored
    tok002 before a revocation that also covers it; A, still on tok001, meets the 401,
    adopts tok002 from the cache, meets a second 401, and needs a token fetched after the
    rejection: one more round, so the caller gets 200."""
    cache = MemoryTokenCache()
    first, second = advanced(clock, cache=cache), advanced(clock, cache=cache)
    session_with(first).get(TRANSACTIONS)  # tok001, shared
    second.invalidate(first.get_token())  # B drops tok001 (after a 401 of its own) ...
    second.get_token()  # ... and stores tok002 in the shared cache
    api.revoked.update({raw(1), raw(2)})  # one revocation covers both
    answer = session_with(first).get(TRANSACTIONS)
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [401, 401]
    assert api.seen[-3:] == [bearer(1), bearer(2), bearer(3)]
    assert endpoint.requests == 3


def test_a_token_fetched_after_the_401_that_is_refused_too_ends_the_retries(
    clock, endpoint, api
):
    """If the token fetched because of this 401 is refused as well, that 401 is final: no
    second round, one token request per refused request."""
    session = session_with(advanced(clock))
    session.get(TRANSACTIONS)
    api.reject_all = True
    for _ in range(3):
        answer = session.get(TRANSACTIONS)
        assert answer.status_code == 401
        assert [r.status_code for r in answer.history] == [401]
    assert endpoint.requests == 4  # the first token, then one per refused request


def test_reprs_of_the_auth_and_its_parts_never_show_a_token_or_the_secret(clock, endpoint, api):
    auth = advanced(clock, client_auth="client_secret_basic")
    session_with(auth).get(TRANSACTIONS)
    texts = [repr(auth), repr(vars(auth)), repr(auth._slot), repr(vars(auth._fetcher)),
             str(vars(auth._fetcher)), repr(auth.cache), repr(auth._fetcher)]
    for text in texts:
        assert raw(1) not in text
        assert SECRET not in text
        assert "s3cr3t" not in text.lower()


class _Endless(io.RawIOBase):
    """A 401 body that never ends; counts what was read of it."""

    def __init__(self) -> None:
        self.served = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.served > 64 * 1024 * 1024:
            raise RuntimeError("the 401 body was read to no end")
        buffer[:] = b"x" * len(buffer)
        self.served += len(buffer)
        return len(buffer)


def test_a_401_with_an_endless_body_is_read_only_a_little_before_the_resend(
    clock, requests_mock, endpoint
):
    body = _Endless()
    requests_mock.get(TRANSACTIONS, [
        {"status_code": 401, "raw": urllib3.HTTPResponse(body=io.BufferedReader(body),
                                                         status=401, preload_content=False)},
        {"status_code": 200, "text": "ok"},
    ])
    answer = session_with(advanced(clock)).get(TRANSACTIONS)
    assert answer.status_code == 200
    assert body.served <= 1024 * 1024
    assert 0 < len(answer.history[0].content) <= 64 * 1024  # kept, and bounded


class _BrokenEcho(io.RawIOBase):
    """A 401 body whose reading fails with an error quoting the token (an echoing server)."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise ConnectionResetError(104, f"reset after echoing {bearer(1)}")


def test_a_401_whose_body_breaks_is_resent_without_keeping_it(clock, requests_mock, endpoint):
    requests_mock.get(TRANSACTIONS, [
        {"status_code": 401, "raw": urllib3.HTTPResponse(
            body=io.BufferedReader(_BrokenEcho()), status=401, preload_content=False)},
        {"status_code": 200, "text": "ok"},
    ])
    answer = session_with(advanced(clock)).get(TRANSACTIONS)
    assert answer.status_code == 200
    assert answer.history[0].content == b""


# == from_env =================================================================================

ENV = {"ADVANCED_STORE_CLIENT_ID": CLIENT_ID, "ADVANCED_STORE_CLIENT_SECRET": SECRET}


@pytest.mark.parametrize("missing", sorted(ENV))
@pytest.mark.parametrize("value", [None, "", "   "])
def test_from_env_names_the_missing_variable(missing, value):
    env = dict(ENV)
    if value is None:
        del env[missing]
    else:
        env[missing] = value
    with pytest.raises(ConfigurationError, match=missing) as info:
        AdvancedAuth.from_env(env)
    assert isinstance(info.value, ValueError)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("api_url", [
    "ftp://x.example", "http://", "file:///tmp", "http://h:99999", "http://127.0.0.1:0",
    "http://user:pw@127.0.0.1:8765",
    "http://api.example.com",  # plain http off loopback: the token would never be sent
])
def test_from_env_refuses_an_api_url_that_is_not_http_with_a_host(api_url):
    with pytest.raises(ConfigurationError, match="ADVANCED_STORE_API_URL"):
        AdvancedAuth.from_env({**ENV, "ADVANCED_STORE_API_URL": api_url})


@pytest.mark.parametrize(("api_url", "host"), [
    ("http://127.0.0.1:8765", "127.0.0.1:8765"), ("http://127.0.0.1", "127.0.0.1"),
    ("http://[::1]:8765/", "[::1]:8765"), ("https://Staging.Example.com/", "staging.example.com"),
])
def test_from_env_api_url_allows_exactly_its_host_and_port(api_url, host):
    auth = AdvancedAuth.from_env({**ENV, "ADVANCED_STORE_API_URL": api_url,
                                  "ADVANCED_STORE_TOKEN_URL": "http://127.0.0.1:9/t"})
    assert auth.allowed_hosts == (host,)


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_ID", CLIENT_ID)
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_SECRET", SECRET)
    for name in ("ADVANCED_STORE_AUDIENCE", "ADVANCED_STORE_TOKEN_URL", "ADVANCED_STORE_API_URL"):
        monkeypatch.delenv(name, raising=False)
    auth = AdvancedAuth.from_env()
    assert (auth.client_id, auth.token_url) == (CLIENT_ID, TOKEN_URL)
    assert auth.audience == ("api.ad4mat.net", "api.advanced-store.com")


def test_from_env_api_url_sets_the_allowed_host_and_the_raw_statistics_header(
    clock, requests_mock, leak_guard
):
    base = "http://127.0.0.1:8123"
    endpoint = TokenEndpoint(requests_mock, leak_guard, url=base + "/oauth2/token")
    transactions = base + "/publishers/transactions/2.0/"
    statistics = base + "/function/api/statistics"
    api = Api(requests_mock, endpoint, urls=[transactions, statistics, TRANSACTIONS])
    env = dict(
        ENV,
        ADVANCED_STORE_API_URL=base,
        ADVANCED_STORE_TOKEN_URL=base + "/oauth2/token",
        ADVANCED_STORE_AUDIENCE="aud.one  aud.two",
    )
    auth = AdvancedAuth.from_env(env, clock=clock)
    session = session_with(auth)
    session.get(transactions)
    session.get(statistics)
    session.get(TRANSACTIONS)  # the real host is no longer allowed
    assert api.seen == [bearer(1), raw(1), None]
    assert ("audience", "aud.one aud.two") in parse_qsl(endpoint.bodies[0].decode())


def test_from_env_keyword_options_win_over_the_environment():
    env = dict(ENV, ADVANCED_STORE_TOKEN_URL="https://env.example/token")
    auth = AdvancedAuth.from_env(env, token_url="https://kw.example/token", leeway=0)
    assert auth.token_url == "https://kw.example/token"
    assert auth.leeway == 0


def test_from_env_bad_token_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="token_url"):
        AdvancedAuth.from_env(dict(ENV, ADVANCED_STORE_TOKEN_URL="http://auth.example/token"))


# == display, copies ==========================================================================


def test_repr_and_str_show_url_and_client_id_but_never_secret_or_token(clock, endpoint, api):
    auth = advanced(clock, scope="read")
    session_with(auth).get(TRANSACTIONS)
    token = auth.get_token()
    for obj in (auth, token, auth._fetcher, auth.cache):
        for text in (repr(obj), str(obj)):
            assert SECRET not in text
            assert raw(1) not in text
    assert TOKEN_URL in repr(auth)
    assert CLIENT_ID in repr(auth)
    assert "read" in repr(auth)


def test_deepcopy_gets_its_own_lock_and_flight_and_no_cached_token(clock, endpoint, api):
    auth = advanced(clock)
    session_with(auth).get(TRANSACTIONS)
    clone = copy.deepcopy(auth)
    assert clone._flight is not auth._flight
    assert clone.cache is not auth.cache
    assert clone.cache.lock(clone._key) is not auth.cache.lock(auth._key)
    session_with(clone).get(TRANSACTIONS)
    assert endpoint.requests == 2  # the copy fetched its own token
    assert api.seen[-1] == bearer(2)
    session_with(auth).get(TRANSACTIONS)
    assert api.seen[-1] == bearer(1)  # the original keeps its token and works
    assert endpoint.requests == 2


def test_pickled_auth_works_without_the_cached_token(requests_mock, endpoint, api):
    auth = AdvancedAuth(CLIENT_ID, SECRET)  # the real clock: multiprocessing users pickle this
    session_with(auth).get(TRANSACTIONS)
    data = pickle.dumps(auth)
    assert raw(1).encode() not in data
    clone = pickle.loads(data)  # noqa: S301 - our own bytes
    assert repr(clone) == repr(auth)
    assert clone._flight is not auth._flight
    session_with(clone).get(STATISTICS)
    assert api.seen[-1] == raw(2)
    session_with(auth).get(TRANSACTIONS)
    assert api.seen[-1] == bearer(1)
    assert endpoint.requests == 2


def test_pickled_copy_keeps_its_configuration(clock, requests_mock, endpoint):
    auth = generic(
        clock, audience=["a.example"], scope="read", allowed_hosts=["api.example.com"],
        header_styles={"https://api.example.com/raw/": "raw"}, leeway=5,
    )
    clone = pickle.loads(pickle.dumps(auth))  # noqa: S301 - our own bytes
    assert (clone.audience, clone.scope, clone.allowed_hosts, clone.leeway) == (
        auth.audience, auth.scope, auth.allowed_hosts, auth.leeway,
    )
    assert clone.header_styles == auth.header_styles

