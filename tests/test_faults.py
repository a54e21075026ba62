"""Issue 4's fault matrix, over the real loopback socket of the sandbox.

Backoff never sleeps here: ``requests_advanced_auth._fetch._sleep`` is replaced by a
recorder and the tests assert the waits it was asked for. The one real wait is the hanging
server, where the timeout itself is the behaviour under test.
"""

from __future__ import annotations

import copy
import io
import itertools
import json
import logging
import pickle
import socket
import sys
import threading
import time
from typing import Any

import pytest
import requests
from _helpers import run_threads
from _servers import Answer, FrontServer, Seen, closed_port, guarded_by, record_requests

from requests_advanced_auth import (
    DEFAULT_LEEWAY,
    AdvancedAuth,
    ClientCredentialsAuth,
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    TokenEndpointUnreachableError,
    TokenResponseError,
    _fetch,
)
from requests_advanced_auth._token import MAX_LIFETIME
from requests_advanced_auth.sandbox import TOKEN_PATH, Sandbox

TX_PARAMS = {"page": 1, "size": 5, "siteIds": "25", "startDate": 1704067200,
             "endDate": 1706745599}
TIMEOUT = 10
F, J, CAP = _fetch.BACKOFF_FACTOR, _fetch.BACKOFF_JITTER, _fetch.BACKOFF_MAX


# -- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """Every backoff/Retry-After wait the token request asked for, instead of sleeping."""
    recorded: list[float] = []
    monkeypatch.setattr(_fetch, "_sleep", recorded.append)
    return recorded


def get(sb: Sandbox, auth: Any, session: requests.Session | None = None) -> requests.Response:
    return (session or requests).get(sb.transactions_url, params=TX_PARAMS, auth=auth,
                                     timeout=TIMEOUT)


def bearer_of(response: requests.Response) -> str:
    return response.request.headers["Authorization"].split(" ")[-1]


def assert_chained_and_ours(error: BaseException) -> None:
    """Our type on top, the transport error chained below it, no bare urllib3/socket error."""
    assert isinstance(error, TokenEndpointUnreachableError)
    assert isinstance(error, requests.RequestException)  # existing handlers still catch it
    assert isinstance(error.__cause__, requests.RequestException)
    assert type(error).__module__ == "requests_advanced_auth.exceptions"


# -- 1. 5xx then success -----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_then_success_is_retried_with_exponential_backoff_and_jitter(
    sandbox, waits, status
):
    sandbox.provider.fail_next(3, status=status)
    token = sandbox.auth().get_token()  # default retries=3: the 4th attempt succeeds
    assert token.access_token in sandbox.provider.issued_tokens()
    assert sandbox.provider.token_requests == 4
    # Before retry n: BACKOFF_FACTOR * 2**(n-1), capped, plus up to BACKOFF_JITTER.
    assert len(waits) == 3
    for wait, base in zip(waits, (F, F * 2, F * 4)):
        assert base <= wait <= base + J
    assert len(set(waits)) == 3  # jittered: a fleet that failed together spreads out


def test_backoff_is_capped_and_the_number_of_retries_is_configurable(sandbox, waits):
    sandbox.provider.fail_next(7, status=503)
    sandbox.auth(retries=7).get_token()
    assert sandbox.provider.token_requests == 8
    bases = [min(F * 2 ** n, CAP) for n in range(7)]  # 0.5, 1, 2, 4, 8, 8, 8
    assert len(waits) == 7
    for wait, base in zip(waits, bases):
        assert base <= wait <= base + J
    assert sum(waits) <= sum(bases) + 7 * J  # the total wait is bounded too


def test_retries_zero_makes_one_attempt(sandbox, waits):
    sandbox.provider.fail_next(1, status=503, body=b"busy", content_type="text/plain")
    with pytest.raises(TokenEndpointUnreachableError) as info:
        sandbox.auth(retries=0).get_token()
    assert info.value.status_code == 503
    assert sandbox.provider.token_requests == 1
    assert waits == []


def test_5xx_persisting_past_the_retries_with_a_text_body_is_the_unreachable_error(
    sandbox, waits
):
    sandbox.provider.fail_next(4, status=502, body=b"Bad Gateway", content_type="text/plain")
    with pytest.raises(TokenEndpointUnreachableError, match="answered 502 even after retries"):
        sandbox.auth().get_token()
    assert sandbox.provider.token_requests == 4


def test_5xx_persisting_past_the_retries_with_an_oauth_json_body_is_the_unreachable_error(
    sandbox, waits
):
    sandbox.provider.fail_next(4, status=503)  # the sandbox answers Hydra's JSON error body
    with pytest.raises(TokenEndpointUnreachableError) as info:
        sandbox.auth().get_token()
    assert info.value.status_code == 503
    assert "temporarily_unavailable" in str(info.value)
    assert sandbox.provider.token_requests == 4


# -- 2. 429 and Retry-After --------------------------------------------------------------------


def test_429_with_retry_after_1_waits_one_second_then_succeeds(sandbox, waits):
    sandbox.provider.fail_next(1, status=429, retry_after=1)
    sandbox.auth().get_token()
    assert waits == [1]
    assert sandbox.provider.token_requests == 2


def test_retry_after_within_max_retry_after_is_waited_for(sandbox, waits):
    sandbox.provider.fail_next(1, status=503, retry_after=90)
    sandbox.auth(max_retry_after=120).get_token()
    assert waits == [90]


def test_retry_after_above_max_fails_fast_with_the_servers_value(sandbox, waits):
    sandbox.provider.fail_next(1, status=429, retry_after=120, body=b"slow down",
                               content_type="text/plain")
    with pytest.raises(TokenEndpointUnreachableError) as info:
        sandbox.auth().get_token()
    assert info.value.retry_after == 120
    assert info.value.status_code == 429
    assert "retry after 120 s, more than max_retry_after=30 s" in str(info.value)
    assert waits == []
    assert sandbox.provider.token_requests == 1


def test_retry_after_above_max_with_an_oauth_json_body_fails_fast_with_the_servers_value(
    sandbox, waits
):
    sandbox.provider.fail_next(1, status=429, retry_after=120)  # Hydra-shaped JSON body
    with pytest.raises(TokenEndpointUnreachableError) as info:
        sandbox.auth().get_token()
    assert info.value.retry_after == 120
    assert waits == []
    assert sandbox.provider.token_requests == 1


# -- 3. connection refused, reset, DNS ---------------------------------------------------------


def test_connection_refused_is_retried_then_unreachable_with_the_cause_chained(waits):
    auth = AdvancedAuth("id", "secret", token_url=f"http://127.0.0.1:{closed_port()}/token")
    with pytest.raises(TokenEndpointUnreachableError) as info:
        auth.get_token()
    assert_chained_and_ours(info.value)
    assert "Connection refused" in str(info.value)
    assert len(waits) == _fetch.DEFAULT_RETRIES  # retried, with a backoff before each


def test_connection_reset_mid_answer_is_retried(sandbox, waits):
    sandbox.provider.fail_next(1, mode="reset")
    assert sandbox.auth().get_token().access_token in sandbox.provider.issued_tokens()
    assert sandbox.provider.token_requests == 2


def test_connection_reset_every_time_is_unreachable_with_the_cause_chained(sandbox, waits):
    sandbox.provider.fail_next(4, mode="reset")
    with pytest.raises(TokenEndpointUnreachableError) as info:
        sandbox.auth().get_token()
    assert_chained_and_ours(info.value)
    assert "reset" in str(info.value).lower()
    assert sandbox.provider.token_requests == 4


def test_dns_failure_is_unreachable_with_the_cause_chained(waits, monkeypatch):
    # The resolver answers "no such host" at once: no dependence on this machine's DNS.
    lookups = []

    def no_such_host(host, *args, **kwargs):
        lookups.append(host)
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    auth = AdvancedAuth("id", "secret", token_url="https://nonexistent.invalid/oauth2/token",
                        retries=1)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        auth.get_token()
    assert_chained_and_ours(info.value)
    assert "nonexistent.invalid" in str(info.value)
    assert lookups == ["nonexistent.invalid"] * 2  # the first attempt and one retry
    assert len(waits) == 1  # one backoff between them


# -- 4. a server that never answers ------------------------------------------------------------


def test_silent_token_endpoint_is_bounded_by_the_timeout(sandbox, waits):
    sandbox.provider.fail_next(2, mode="hang")
    auth = sandbox.auth(timeout=(0.5, 0.5), retries=1)
    started = time.monotonic()
    with pytest.raises(TokenEndpointUnreachableError) as info:
        auth.get_token()
    elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 5  # two attempts of 0.5 s each, nothing unbounded
    assert_chained_and_ours(info.value)
    assert "timed out" in str(info.value)
    assert sandbox.provider.token_requests == 2


# -- 5. answers that are not a usable token ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "content_type", "needle"),
    [
        (b"<!doctype html><html><body><h1>Sign in</h1>" + b"<p>corporate proxy</p>" * 50
         + b"</body></html>", "text/html; charset=utf-8", "text/html"),
        (b'{"access_token": "abc", "expires_in": ', "application/json", "no JSON"),
        (b"", "application/json", "no JSON"),
        (b'["not", "an", "object"]', "application/json", "JSON"),
    ],
    ids=["html", "invalid json", "empty body", "json array"],
)
def test_unusable_200_answer_is_token_response_error_with_a_short_excerpt(
    sandbox, body, content_type, needle
):
    sandbox.provider.fail_next(1, status=200, body=body, content_type=content_type)
    with pytest.raises(TokenResponseError) as info:
        sandbox.auth().get_token()
    error, message = info.value, str(info.value)
    assert error.status_code == 200
    assert error.content_type == content_type
    assert f"answered 200 with {content_type}" in message
    assert needle in message
    assert len(message) < 500  # a short excerpt, never the whole page
    assert sandbox.client_secret not in message
    assert sandbox.provider.token_requests == 1  # a 200 is not retried


@pytest.mark.parametrize(
    "overrides",
    [{"access_token": None}, {"access_token": ""}, {"access_token": "   "},
     {"access_token": 12345}, {"access_token": ["a", "b"]}],
    ids=["missing", "empty", "blank", "number", "list"],
)
def test_missing_empty_or_non_string_access_token_is_token_response_error(sandbox, overrides):
    sandbox.provider.token_overrides.update(overrides)
    with pytest.raises(TokenResponseError) as info:
        sandbox.auth().get_token()
    message = str(info.value)
    assert "without a usable access_token" in message
    assert "200 application/json" in message
    assert info.value.status_code == 200
    assert sandbox.provider.token_requests == 1


def test_other_token_type_is_token_response_error(sandbox):
    sandbox.provider.token_overrides["token_type"] = "mac"
    with pytest.raises(TokenResponseError, match="token_type is 'mac'"):
        sandbox.auth().get_token()


# -- 6. expires_in -----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["3600", 3600.0, "3600.0", 3600])
def test_numeric_expires_in_forms_are_accepted(make_sandbox, clock, value):
    sb = make_sandbox()
    sb.provider.token_overrides["expires_in"] = value
    auth = sb.auth(clock=clock)
    token = auth.get_token()
    assert token.expires_at == token.issued_at + 3600
    with requests.Session() as s:
        for _ in range(3):
            assert get(sb, auth, s).status_code == 200
            clock.advance(1000)  # 3000 s of use: still the first token
        assert sb.provider.token_requests == 1
        clock.advance(600)  # past its expiry
        assert get(sb, auth, s).status_code == 200
    assert sb.provider.token_requests == 2


def test_missing_expires_in_token_is_used_until_a_401(make_sandbox, clock):
    sb = make_sandbox(token_lifetime=10**8)
    sb.provider.token_overrides["expires_in"] = None
    auth = sb.auth(clock=clock)
    with requests.Session() as s:
        for _ in range(5):
            assert get(sb, auth, s).status_code == 200
            clock.advance(7 * 86400)  # weeks pass: no expiry known, none assumed
        assert sb.provider.token_requests == 1
        sb.provider.revoke_all()
        answer = get(sb, auth, s)
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [401]
    assert sb.provider.token_requests == 2


@pytest.mark.parametrize("value", [0, -5, "-1", 0.0])
def test_zero_or_negative_expires_in_serves_one_request_per_token(sandbox, value):
    sandbox.provider.token_overrides["expires_in"] = value
    auth = sandbox.auth()
    with requests.Session() as s:
        answers = [get(sandbox, auth, s) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert not any(a.history for a in answers)
    # Each token is used for the request that fetched it: N requests, at most N tokens.
    assert sandbox.provider.token_requests == 5
    assert len({bearer_of(a) for a in answers}) == 5


def test_zero_expires_in_with_threads_fetches_at_most_one_token_per_request(sandbox):
    sandbox.provider.token_overrides["expires_in"] = 0
    auth = sandbox.auth()

    def work(i: int) -> list[int]:
        with requests.Session() as s:
            return [get(sandbox, auth, s).status_code for _ in range(3)]

    results = run_threads(8, work)
    assert results == [[200] * 3] * 8
    assert sandbox.provider.token_requests <= 24


@pytest.mark.parametrize("value", ["soon", "3600s", True, [3600], {"s": 1}, "nan"])
def test_non_numeric_expires_in_is_token_response_error(sandbox, value):
    sandbox.provider.token_overrides["expires_in"] = value
    with pytest.raises(TokenResponseError, match="expires_in must be a number"):
        sandbox.auth().get_token()
    assert sandbox.provider.token_requests == 1


def test_absurdly_large_expires_in_is_capped_at_max_lifetime(make_sandbox, clock):
    sb = make_sandbox(token_lifetime=10**9)
    sb.provider.token_overrides["expires_in"] = 10**12
    auth = sb.auth(clock=clock)
    token = auth.get_token()
    assert token.expires_at == token.issued_at + MAX_LIFETIME
    with requests.Session() as s:
        clock.advance(MAX_LIFETIME - DEFAULT_LEEWAY - 1)
        assert get(sb, auth, s).status_code == 200
        assert sb.provider.token_requests == 1
        clock.advance(2)  # within the leeway of the capped expiry: refreshed
        assert get(sb, auth, s).status_code == 200
    assert sb.provider.token_requests == 2


# -- 7. OAuth error answers --------------------------------------------------------------------


def test_audience_not_allowed_is_invalid_request_naming_it_and_not_retried(sandbox, waits):
    sandbox.register_client("narrow", "narrow-secret", audiences=["api.advanced-store.com"])
    auth = AdvancedAuth("narrow", "narrow-secret", token_url=sandbox.token_url)
    with pytest.raises(OAuthError) as info:
        auth.get_token()
    error = info.value
    assert not isinstance(error, InvalidClientError)  # distinguishable from bad credentials
    assert (error.error, error.status_code) == ("invalid_request", 400)
    assert '"api.ad4mat.net"' in error.error_description
    assert "check the audience" in str(error)
    assert sandbox.provider.token_requests == 1
    assert waits == []


def test_wrong_secret_is_invalid_client_and_not_retried(sandbox, waits):
    auth = AdvancedAuth(sandbox.client_id, "not-the-secret", token_url=sandbox.token_url)
    with pytest.raises(InvalidClientError) as info:
        auth.get_token()
    error = info.value
    assert (error.error, error.status_code) == ("invalid_client", 401)
    assert "secret did not match" in error.error_description
    assert "check the client id and secret" in str(error)
    assert sandbox.provider.token_requests == 1
    assert waits == []


@pytest.mark.parametrize(
    ("code", "hint"),
    [("unauthorized_client", "client_credentials grant"), ("invalid_scope", "scope")],
)
def test_other_oauth_errors_are_typed_with_error_description_and_status(
    sandbox, waits, code, hint
):
    body = json.dumps({"error": code, "error_description": f"The sandbox says {code}."})
    sandbox.provider.fail_next(1, status=400, body=body.encode())
    with pytest.raises(OAuthError) as info:
        sandbox.auth().get_token()
    error = info.value
    assert (error.error, error.status_code) == (code, 400)
    assert error.error_description == f"The sandbox says {code}."
    assert hint in str(error)
    assert sandbox.provider.token_requests == 1
    assert waits == []


# -- 8. a redirecting token endpoint -----------------------------------------------------------


@pytest.mark.parametrize("status", [302, 307, 308])
def test_redirect_from_the_token_endpoint_is_not_followed(sandbox, status):
    seen = record_requests(sandbox)
    sandbox.provider.fail_next(1, mode="redirect", status=status)
    with pytest.raises(TokenResponseError) as info:
        sandbox.auth().get_token()
    assert info.value.status_code == status
    assert "redirect to /_sandbox/login" in str(info.value)
    assert "not followed" in str(info.value)
    assert [r.path for r in seen] == [TOKEN_PATH]  # the secret was not carried to the login page


# -- 9-12. API faults --------------------------------------------------------------------------


def test_revoked_token_is_one_absorbed_401(sandbox):
    auth = sandbox.auth()
    with requests.Session() as s:
        get(sandbox, auth, s)
        sandbox.provider.revoke_all()
        answer = get(sandbox, auth, s)
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [401]
    assert (sandbox.provider.token_requests, sandbox.provider.api_requests) == (2, 3)
    assert sandbox.provider.unauthorized == 1


def test_api_refusing_every_token_gets_one_resend_per_request(sandbox):
    # A token for api.ad4mat.net only: the transactions API refuses every one of them.
    auth = sandbox.auth(audience="api.ad4mat.net")
    n = 4
    with requests.Session() as s:
        answers = [get(sandbox, auth, s) for _ in range(n)]
    assert [a.status_code for a in answers] == [401] * n
    assert all([r.status_code for r in a.history] == [401] for a in answers)
    assert sandbox.provider.api_requests == 2 * n  # exactly one re-send each
    # One token to start with, one per re-send: never more than the requests sent.
    assert sandbox.provider.token_requests == n + 1 <= sandbox.provider.api_requests
    with pytest.raises(requests.HTTPError):
        answers[-1].raise_for_status()


def test_64_threads_with_a_revocation_mid_run_cost_one_token_request(sandbox):
    """Every token is revoked while the threads keep sending: once a third of all requests
    have been answered, a revoker thread (woken by a response hook) revokes, and requests in
    flight meet the 401 as it happens."""
    auth = sandbox.auth()
    threads, per_thread = 64, 6
    answered = itertools.count(1)
    third = threading.Event()
    revoked = threading.Event()

    def count(response, **kwargs):
        if next(answered) == threads * per_thread // 3:
            third.set()
        return response

    def revoker() -> None:
        if third.wait(TIMEOUT):
            sandbox.provider.revoke_all()
            revoked.set()

    sessions = [requests.Session() for _ in range(threads)]
    for s in sessions:
        s.hooks["response"].append(count)
    reviser = threading.Thread(target=revoker)
    reviser.start()
    try:
        results = run_threads(
            threads, lambda i: [get(sandbox, auth, sessions[i]) for _ in range(per_thread)]
        )
    finally:
        third.set()
        reviser.join(TIMEOUT)
        for s in sessions:
            s.close()
    assert revoked.is_set()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert errors == []
    answers = [a for per_thread_answers in results for a in per_thread_answers]
    assert [a.status_code for a in answers] == [200] * threads * per_thread
    assert sandbox.provider.token_requests == 2  # the first token, and ONE after revoking
    absorbed = sum(len(a.history) for a in answers)
    assert absorbed == sandbox.provider.unauthorized >= 1


class _Pipe(io.RawIOBase):
    """A readable stream that cannot seek, like a pipe or a socket file."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


@pytest.mark.parametrize(
    "make_body",
    [lambda: (part for part in (b"a=1", b"&b=2")), lambda: _Pipe(b"a=1&b=2")],
    ids=["generator", "non-seekable stream"],
)
def test_unreplayable_body_gets_its_401_back_and_one_warning(sandbox, caplog, make_body):
    with FrontServer(guarded_by(sandbox)) as api:
        auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        auth.get_token()
        sandbox.provider.revoke_all()
        caplog.clear()
        answer = requests.post(api.url + "/upload", data=make_body(), auth=auth,
                               timeout=TIMEOUT)
    assert answer.status_code == 401
    assert answer.history == []
    assert [seen.body for seen in api.seen] == [b"a=1&b=2"]  # sent once, not re-sent
    warnings = [r for r in caplog.records
                if r.name == "requests_advanced_auth" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be replayed" in warnings[0].getMessage()


# -- 14. where the token may go ----------------------------------------------------------------


def test_token_goes_only_to_allowed_hosts(sandbox):
    with FrontServer(lambda seen: (200, {}, b"")) as foreign:
        answer = requests.get(foreign.url + "/", auth=sandbox.auth(), timeout=TIMEOUT)
    assert answer.status_code == 200
    assert "authorization" not in foreign.seen[0].headers
    assert sandbox.provider.token_requests == 0


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/publishers/transactions/2.0/",
        "https://api.advanced-store.com.evil.example/publishers/transactions/2.0/",
        "https://evil.example/?next=https://api.advanced-store.com/",
        "http://api.advanced-store.com/publishers/transactions/2.0/",  # plain http
    ],
)
def test_advanced_auth_signs_only_its_own_https_hosts(sandbox, url):
    auth = AdvancedAuth(sandbox.client_id, sandbox.client_secret, token_url=sandbox.token_url)
    prepared = requests.Request("GET", url, auth=auth).prepare()
    assert "Authorization" not in prepared.headers
    assert auth.headers_for(url) == {}
    assert sandbox.provider.token_requests == 0


def test_advanced_auth_signs_its_documented_hosts(sandbox):
    auth = AdvancedAuth(sandbox.client_id, sandbox.client_secret, token_url=sandbox.token_url)
    tx = requests.Request(
        "GET", "https://api.advanced-store.com/publishers/transactions/2.0/", auth=auth
    ).prepare()
    stats = requests.Request(
        "GET", "https://advanced-store.cloud/function/api/statistics", auth=auth
    ).prepare()
    token = auth.get_token().access_token
    assert tx.headers["Authorization"] == "Bearer " + token
    assert stats.headers["Authorization"] == token
    assert sandbox.provider.token_requests == 1


def test_plain_http_to_a_non_loopback_host_is_never_signed_even_if_allowed(sandbox, caplog):
    auth = ClientCredentialsAuth(sandbox.client_id, sandbox.client_secret,
                                 token_url=sandbox.token_url)  # every host allowed
    plain = requests.Request("GET", "http://api.example.com/data", auth=auth).prepare()
    assert "Authorization" not in plain.headers
    assert sandbox.provider.token_requests == 0
    assert any("plain http" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)
    secure = requests.Request("GET", "https://api.example.com/data", auth=auth).prepare()
    assert secure.headers["Authorization"].startswith("Bearer ")


def test_redirect_to_another_host_does_not_carry_the_token(sandbox):
    with FrontServer(lambda seen: (200, {}, b"elsewhere")) as other:
        location = {"Location": other.url + "/landing"}
        with FrontServer(lambda seen: (302, location, b"")) as api:
            auth = sandbox.auth(
                allowed_hosts=[f"127.0.0.1:{api.port}", f"127.0.0.1:{other.port}"]
            )
            answer = requests.get(api.url + "/start", auth=auth, timeout=TIMEOUT)
    assert answer.text == "elsewhere"
    assert [r.status_code for r in answer.history] == [302]
    assert api.seen[0].headers["authorization"].startswith("Bearer ")
    # Even though the other port is allowed, requests strips the header on a host change
    # and the auth is not asked again for the redirected hop.
    assert "authorization" not in other.seen[0].headers


# -- 15. token_url transport -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["http://auth.advanced-store.com/oauth2/token", "http://nonexistent.invalid",
     "http://10.0.0.1/token", "http://127.0.0.1.example.com/token", "ftp://127.0.0.1/token",
     "auth.advanced-store.com/oauth2/token"],
)
def test_token_url_without_https_to_a_non_loopback_host_is_refused_at_construction(
    url, leak_guard
):
    secret = "s3cr3t-" + "x" * 20
    leak_guard.watch(secret)
    with pytest.raises(ConfigurationError) as info:
        AdvancedAuth("id", secret, token_url=url)
    assert isinstance(info.value, ValueError)
    assert "token_url" in str(info.value)
    assert secret not in str(info.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/token", "http://127.1.2.3:9/token", "http://localhost:9/token",
     "http://[::1]:9/token", "https://auth.example.com/token"],
)
def test_token_url_over_https_or_to_loopback_is_accepted(url):
    assert AdvancedAuth("id", "secret", token_url=url).token_url == url


# -- 16. copies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "duplicate",
    [copy.deepcopy, lambda auth: pickle.loads(pickle.dumps(auth))],  # noqa: S301
    ids=["deepcopy", "pickle"],
)
def test_copy_works_has_its_own_lock_and_no_cached_token(sandbox, duplicate):
    auth = sandbox.auth()
    first = auth.get_token().access_token
    assert first.encode() not in pickle.dumps(auth)
    twin = duplicate(auth)
    assert twin.cache is not auth.cache
    assert twin.cache.lock("k") is not auth.cache.lock("k")
    answer = get(sandbox, twin)
    assert answer.status_code == 200
    assert bearer_of(answer) != first
    assert sandbox.provider.token_requests == 2
    assert get(sandbox, auth).status_code == 200
    assert sandbox.provider.token_requests == 2


def test_copy_made_while_the_original_is_fetching_is_not_blocked(sandbox):
    auth = sandbox.auth()
    arrived, gate = threading.Event(), threading.Event()
    handle, calls = sandbox.provider.handle, []

    def gated(method, path, query, headers, body):  # type: ignore[no-untyped-def]
        if path == TOKEN_PATH:
            calls.append(path)
            if len(calls) == 1:
                arrived.set()
                gate.wait(TIMEOUT)
        return handle(method, path, query, headers, body)

    sandbox.provider.handle = gated  # type: ignore[method-assign]
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(auth.get_token()))
    thread.start()
    try:
        assert arrived.wait(TIMEOUT)  # the original holds its fetch lock now
        twin = pickle.loads(pickle.dumps(auth))  # noqa: S301
        assert twin.get_token().access_token in sandbox.provider.issued_tokens()
        assert thread.is_alive()
    finally:
        gate.set()
        thread.join(TIMEOUT)
    assert outcome
    assert outcome[0].access_token != twin.get_token().access_token


# -- single flight under preemption ------------------------------------------------------------


def test_caller_preempted_after_seeing_the_expired_token_does_not_fetch_again(
    make_sandbox, clock
):
    sb = make_sandbox(token_lifetime=60)
    paused, resume = threading.Event(), threading.Event()

    def preempting_clock() -> float:
        # Pause the thread named "late" right after it has read the expired token and
        # before it joins the single flight: the moment a busy scheduler may preempt it.
        if (threading.current_thread().name == "late"
                and sys._getframe(1).f_code.co_name == "_refresh_slot"):
            paused.set()
            resume.wait(TIMEOUT)
        return clock()

    auth = sb.auth(clock=preempting_clock)
    auth.get_token()
    clock.advance(61)  # expired at the sandbox and for the auth
    answers: list[requests.Response] = []
    late = threading.Thread(target=lambda: answers.append(get(sb, auth)), name="late")
    late.start()
    try:
        assert paused.wait(TIMEOUT)
        assert get(sb, auth).status_code == 200  # meanwhile another caller refreshes
    finally:
        resume.set()
        late.join(TIMEOUT)
    assert answers[0].status_code == 200
    assert sb.provider.token_requests == 2


def test_revocation_during_the_refresh_overlap_is_absorbed(make_sandbox, clock):
    """A request still carrying the old token when one revocation also hits the new one."""
    sb = make_sandbox(token_lifetime=40)  # refresh-ahead from 30 s on
    arrived, gate = threading.Event(), threading.Event()

    def respond(seen: Seen) -> Answer:
        if seen.path == "/slow" and not gate.is_set():
            arrived.set()  # hold this request (it carries the first token) at the server
            gate.wait(TIMEOUT)
        return guarded_by(sb)(seen)

    with FrontServer(respond) as api:
        auth = sb.auth(clock=clock, allowed_hosts=[f"127.0.0.1:{api.port}"])
        first = auth.get_token().access_token
        slow: list[requests.Response] = []
        thread = threading.Thread(
            target=lambda: slow.append(requests.get(api.url + "/slow", auth=auth,
                                                    timeout=TIMEOUT)))
        thread.start()
        try:
            assert arrived.wait(TIMEOUT)
            clock.advance(31)  # stale: the next caller fetches the second token
            fresh = requests.get(api.url + "/fast", auth=auth, timeout=TIMEOUT)
            assert fresh.status_code == 200
            assert bearer_of(fresh) != first
            sb.provider.revoke_all()  # both tokens: the old one is still in flight
        finally:
            gate.set()
            thread.join(TIMEOUT)
    assert slow[0].status_code == 200
    # The old token's 401, then the pre-existing new token's 401, then a token fetched after.
    assert [r.status_code for r in slow[0].history] == [401, 401]
    assert sb.provider.token_requests == 3
