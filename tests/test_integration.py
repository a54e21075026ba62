"""Every main behaviour of the auth, through the real loopback sandbox socket.

The sandbox is the oracle (it shares no code with the package); where a case needs an API
the sandbox does not have (redirects, POST bodies, a foreign host), a tiny stdlib server on
127.0.0.1 stands in front of it and asks the sandbox's provider whether a token is good.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import pickle
import threading
from collections.abc import Iterator
from typing import Any, Callable
from urllib.parse import parse_qs

import pytest
import requests
from _helpers import CountingLock, run_threads
from _servers import Answer, FrontServer, Seen, record_requests, sandbox_verdict

from requests_advanced_auth import (
    AdvancedAuth,
    InvalidClientError,
    MemoryTokenCache,
    OAuthError,
    Token,
)
from requests_advanced_auth.sandbox import TOKEN_PATH, Sandbox

TX_PARAMS = {"page": 1, "size": 5, "siteIds": "25", "startDate": 1704067200,
             "endDate": 1706745599}
STATS_PARAMS = {"page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-07"}
TIMEOUT = 10


# -- helpers --------------------------------------------------------------------------------


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        yield s


def token_of(response: requests.Response) -> str:
    """The access token a response's request carried (either header style)."""
    header = response.request.headers["Authorization"]
    return header[len("Bearer "):] if header.startswith("Bearer ") else header


def echo_behind_sandbox(sb: Sandbox) -> Callable[[Seen], Answer]:
    """401 (with a cookie) unless the sandbox accepts the token; else echo the body."""

    def respond(seen: Seen) -> Answer:
        if sandbox_verdict(sb, seen) == 401:
            return 401, {"WWW-Authenticate": 'Bearer error="invalid_token"',
                         "Set-Cookie": "affinity=node-7; Path=/"}, b""
        ctype = seen.headers.get("content-type", "application/octet-stream")
        return 200, {"Content-Type": ctype}, seen.body

    return respond


# -- audience encodings -----------------------------------------------------------------------


def test_joined_audience_goes_on_the_wire_as_one_space_separated_value(sandbox, session):
    seen = record_requests(sandbox, TOKEN_PATH)
    session.auth = sandbox.auth()  # default audience_encoding="joined"
    assert session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT).ok
    (token_request,) = seen
    body = token_request.body
    form = parse_qs(body.decode("ascii"))
    assert form["audience"] == ["api.ad4mat.net api.advanced-store.com"]
    assert b"audience=api.ad4mat.net+api.advanced-store.com" in body


def test_repeated_audience_goes_on_the_wire_as_one_parameter_per_audience(sandbox, session):
    seen = record_requests(sandbox, TOKEN_PATH)
    session.auth = sandbox.auth(audience_encoding="repeated")
    assert session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT).ok
    assert session.get(sandbox.statistics_url, params=STATS_PARAMS, timeout=TIMEOUT).ok
    (token_request,) = seen
    body = token_request.body
    audience = parse_qs(body.decode("ascii"))["audience"]
    assert audience == ["api.ad4mat.net", "api.advanced-store.com"]


@pytest.mark.parametrize("encoding", ["joined", "repeated"])
def test_each_audience_item_reaches_the_provider_separately(sandbox, session, encoding):
    """A client allowed one audience: asking for it works, asking for both names the other."""
    sandbox.register_client("one-audience", "one-audience-secret",
                            audiences=["api.advanced-store.com"])
    narrow = {"client_id": "one-audience", "client_secret": "one-audience-secret"}
    good = AdvancedAuth(**narrow, **_sandbox_options(sandbox), audience="api.advanced-store.com",
                        audience_encoding=encoding)
    assert session.get(sandbox.transactions_url, params=TX_PARAMS, auth=good,
                       timeout=TIMEOUT).status_code == 200
    both = AdvancedAuth(**narrow, **_sandbox_options(sandbox), audience_encoding=encoding)
    with pytest.raises(OAuthError) as info:
        both.get_token()
    assert info.value.error == "invalid_request"
    assert info.value.status_code == 400
    assert 'audience "api.ad4mat.net" has not been whitelisted' in info.value.error_description


def _sandbox_options(sb: Sandbox) -> dict[str, Any]:
    return {
        "token_url": sb.token_url,
        "allowed_hosts": [f"127.0.0.1:{sb.port}"],
        "header_styles": {sb.statistics_url: "raw", sb.transactions_url: "bearer"},
    }


# -- client authentication --------------------------------------------------------------------


def test_basic_client_with_client_secret_basic_gets_data(sandbox, session):
    seen = record_requests(sandbox, TOKEN_PATH)
    session.auth = AdvancedAuth(sandbox.basic_client_id, sandbox.basic_client_secret,
                                client_auth="client_secret_basic", **_sandbox_options(sandbox))
    answer = session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.json()["totalEntries"] > 0
    (token_request,) = seen
    headers, body = token_request.headers, token_request.body
    assert headers["authorization"].startswith("Basic ")
    assert b"client_secret" not in body


def test_post_client_using_basic_gets_invalid_client_that_suggests_the_other_method(sandbox):
    auth = sandbox.auth(client_auth="client_secret_basic")
    with pytest.raises(InvalidClientError) as info:
        auth.get_token()
    message = str(info.value)
    assert info.value.status_code == 401
    assert "only supports client authentication method 'client_secret_post'" in message
    assert "client_auth='client_secret_basic' or 'client_secret_post'" in message
    assert sandbox.provider.token_requests == 1  # a 4xx answer is not retried


def test_basic_client_using_post_gets_invalid_client_naming_basic(sandbox):
    auth = AdvancedAuth(sandbox.basic_client_id, sandbox.basic_client_secret,
                        **_sandbox_options(sandbox))
    with pytest.raises(InvalidClientError, match="'client_secret_basic'"):
        auth.get_token()


# -- header styles --------------------------------------------------------------------------


def test_statistics_get_the_raw_token_and_transactions_get_bearer(sandbox, session):
    session.auth = sandbox.auth()
    stats = session.get(sandbox.statistics_url, params=STATS_PARAMS, timeout=TIMEOUT)
    tx = session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    assert stats.status_code == 200
    assert stats.json()["success"] is True
    assert tx.status_code == 200
    assert not stats.history
    assert not tx.history
    raw = stats.request.headers["Authorization"]
    assert " " not in raw
    assert tx.request.headers["Authorization"] == "Bearer " + raw
    assert sandbox.provider.token_requests == 1


def test_bearer_on_statistics_is_refused_by_the_sandbox(sandbox, session):
    """The header style matters: with Bearer everywhere, statistics answers 401 (re-sent once)."""
    session.auth = sandbox.auth(header_styles={})
    stats = session.get(sandbox.statistics_url, params=STATS_PARAMS, timeout=TIMEOUT)
    assert stats.status_code == 401
    assert [r.status_code for r in stats.history] == [401]
    assert "without 'Bearer'" in stats.text


# -- allowed hosts ------------------------------------------------------------------------------


def test_foreign_loopback_host_is_not_signed_and_costs_no_token_request(sandbox, session):
    with FrontServer(lambda seen: (200, {}, b"hello")) as foreign:
        session.auth = sandbox.auth()  # allows only the sandbox's port
        answer = session.get(foreign.url + "/anything", timeout=TIMEOUT)
    assert answer.text == "hello"
    assert "authorization" not in foreign.seen[0].headers
    assert sandbox.provider.token_requests == 0


# -- expiry with the shared fake clock -------------------------------------------------------


def test_short_lived_tokens_are_fetched_once_per_lifetime(make_sandbox, clock):
    lifetime = 30
    sb = make_sandbox(token_lifetime=lifetime)
    auth = sb.auth(clock=clock)
    first_used: dict[str, float] = {}
    last_used: dict[str, float] = {}
    for _ in range(301):  # one request per fake second for 10 lifetimes, as a script would
        answer = requests.get(sb.statistics_url, params=STATS_PARAMS, auth=auth, timeout=TIMEOUT)
        assert answer.status_code == 200
        assert not answer.history
        token = token_of(answer)
        first_used.setdefault(token, clock())
        last_used[token] = clock()
        clock.advance(1)
    assert sb.provider.token_requests == len(first_used)
    assert sb.provider.unauthorized == 0
    # Each token served about three quarters of its life (refresh ahead), never one request.
    spans = [last_used[t] - first_used[t] for t in first_used][:-1]
    assert all(0.75 * lifetime - 1 <= span < lifetime for span in spans), spans
    assert 10 <= len(first_used) <= 15


def test_stale_token_one_caller_fetches_while_others_keep_going(make_sandbox, clock):
    sb = make_sandbox(token_lifetime=40)  # margin 10 s: stale at 30 s, expired at 36.7 s
    auth = sb.auth(clock=clock)
    arrived, gate = threading.Event(), threading.Event()
    handle = sb.provider.handle

    def gated(method, path, query, headers, body):  # type: ignore[no-untyped-def]
        if path == TOKEN_PATH and sb.provider.token_requests >= 1:
            arrived.set()
            assert gate.wait(TIMEOUT), "the test never opened the gate"
        return handle(method, path, query, headers, body)

    sb.provider.handle = gated  # type: ignore[method-assign]
    with requests.Session() as s:
        first = token_of(s.get(sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT))
    clock.advance(31)
    fetcher: dict[str, requests.Response] = {}

    def refresh() -> None:
        with requests.Session() as s:
            fetcher["answer"] = s.get(sb.transactions_url, params=TX_PARAMS, auth=auth,
                                      timeout=TIMEOUT)

    thread = threading.Thread(target=refresh)
    thread.start()
    try:
        assert arrived.wait(TIMEOUT)  # the refresh is in flight, held at the token endpoint
        with requests.Session() as s:
            others = [s.get(sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
                      for _ in range(5)]
        assert thread.is_alive()  # the others did not wait for it
        assert [(a.status_code, token_of(a)) for a in others] == [(200, first)] * 5
    finally:
        gate.set()
        thread.join(TIMEOUT)
    second = token_of(fetcher["answer"])
    assert fetcher["answer"].status_code == 200
    assert second != first
    with requests.Session() as s:
        after = s.get(sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
    assert token_of(after) == second
    assert sb.provider.token_requests == 2


def test_expired_token_is_not_sent_and_one_new_token_is_fetched(make_sandbox, clock, session):
    sb = make_sandbox(token_lifetime=40)
    session.auth = sb.auth(clock=clock)
    first = token_of(session.get(sb.transactions_url, params=TX_PARAMS, timeout=TIMEOUT))
    clock.advance(45)  # past the sandbox's expiry too: the old token would get a 401
    answer = session.get(sb.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert not answer.history
    assert token_of(answer) != first
    assert sb.provider.token_requests == 2
    assert sb.provider.unauthorized == 0


# -- 401 handling -------------------------------------------------------------------------------


def test_revoked_token_costs_one_absorbed_401(sandbox, session):
    session.auth = sandbox.auth()
    first = session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    sandbox.provider.revoke_all()
    answer = session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert [r.status_code for r in answer.history] == [401]
    assert answer.history[0].headers["WWW-Authenticate"].startswith("Bearer")
    assert token_of(answer.history[0]) == token_of(first) != token_of(answer)
    assert sandbox.provider.token_requests == 2
    assert sandbox.provider.unauthorized == 1
    answer.raise_for_status()


def test_twenty_threads_on_a_cold_cache_make_one_token_request(sandbox):
    auth = sandbox.auth()
    # The sandbox holds the token request until all 20 callers are in the auth's single
    # flight (the leader that is fetching and 19 waiting), so they do overlap.
    flight = auth._flight._guard = CountingLock()
    overlapped: list[bool] = []
    sandbox.provider.on_token_request = lambda: overlapped.append(flight.wait_for(20))

    def call(i: int) -> tuple[int, str]:
        with requests.Session() as s:
            answer = s.get(sandbox.transactions_url, params=TX_PARAMS, auth=auth,
                           timeout=TIMEOUT)
        return answer.status_code, token_of(answer)

    results = run_threads(20, call)
    assert overlapped == [True]
    assert len(set(results)) == 1, results
    assert results[0][0] == 200
    assert sandbox.provider.token_requests == 1
    assert sandbox.provider.max_concurrent_token_requests == 1


def test_twenty_threads_seeing_the_same_revocation_make_one_more_token_request(sandbox):
    auth = sandbox.auth()
    sessions = [requests.Session() for _ in range(20)]
    try:
        warm = [s.get(sandbox.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
                for s in sessions]  # every thread has a warm connection and the token
        sandbox.provider.revoke_all()

        def call(i: int) -> requests.Response:
            return sessions[i].get(sandbox.transactions_url, params=TX_PARAMS, auth=auth,
                                   timeout=TIMEOUT)

        results = run_threads(20, call)
    finally:
        for s in sessions:
            s.close()
    assert all(isinstance(r, requests.Response) for r in results), results
    assert [r.status_code for r in results] == [200] * 20
    assert sandbox.provider.token_requests == 2
    assert len({token_of(r) for r in results}) == 1
    assert token_of(results[0]) != token_of(warm[0])
    absorbed = sum(len(r.history) for r in results)
    assert absorbed == sandbox.provider.unauthorized >= 1


def test_a_revocation_between_issuing_and_storing_a_refreshed_token_reaches_no_caller(
    make_sandbox, clock
):
    """Revoked after the sandbox issued the next token, before the auth stored it."""
    sb = make_sandbox(token_lifetime=40)  # refresh-ahead from 30 s on
    armed: list[bool] = []
    revoking = threading.Event()
    flight = CountingLock()
    waited: list[bool] = []

    class RevokingCache(MemoryTokenCache):
        """Revokes at the sandbox while the refreshed token is on its way into the store."""

        def set(self, key: str, token: Token) -> None:
            if armed:
                armed.pop()
                sb.provider.revoke_all()  # the old token and the one just issued
                revoking.set()
                # Store only once the other caller, refused meanwhile, waits in the flight
                # (entries: this refresh, the caller passing the running refresh, its 401).
                waited.append(flight.wait_for(3))
            super().set(key, token)

    auth = sb.auth(clock=clock, cache=RevokingCache())
    first = auth.get_token().access_token
    auth._flight._guard = flight  # counts from here on
    clock.advance(31)  # stale: the next caller fetches the next token
    armed.append(True)
    refreshing: list[requests.Response] = []
    thread = threading.Thread(target=lambda: refreshing.append(
        requests.get(sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)))
    thread.start()
    try:
        assert revoking.wait(TIMEOUT)
        other = requests.get(sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
    finally:
        thread.join(TIMEOUT)
    assert waited == [True]
    assert token_of(other.history[0]) == first  # sent with the token still current
    assert other.status_code == 200
    assert [r.status_code for r in other.history] == [401, 401]
    assert refreshing[0].status_code == 200
    assert sb.provider.token_requests == 3  # the first, the refresh, one for the revocation


# -- redirects -----------------------------------------------------------------------------------


def test_same_host_redirect_keeps_the_header_and_its_401_is_handled(sandbox, session):
    def respond(seen: Seen) -> Answer:
        if seen.path == "/old":
            return 307, {"Location": "/new"}, b""
        status = sandbox_verdict(sandbox, seen)
        return status, {}, b'{"hop": "new"}' if status == 200 else b""

    with FrontServer(respond) as api:
        session.auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        session.get(api.url + "/new", timeout=TIMEOUT)  # a token in hand
        sandbox.provider.revoke_all()
        answer = session.get(api.url + "/old", timeout=TIMEOUT)
    assert answer.status_code == 200
    assert answer.json() == {"hop": "new"}
    # requests rebuilds the history of a redirect chain from the hops' final answers, so the
    # absorbed 401 shows on the server's side only.
    assert [r.status_code for r in answer.history] == [307]
    old_hop, new_hop_401, new_hop = api.seen[1:]
    assert (old_hop.path, new_hop_401.path, new_hop.path) == ("/old", "/new", "/new")
    # The redirected hop kept the (revoked) header; the re-send carried the new token.
    assert new_hop_401.headers["authorization"] == old_hop.headers["authorization"]
    assert new_hop.headers["authorization"] != old_hop.headers["authorization"]
    assert sandbox.provider.token_requests == 2


def test_redirect_to_another_host_does_not_carry_the_token(sandbox, session):
    with FrontServer(lambda seen: (401, {}, b"who are you")) as other:

        def respond(seen: Seen) -> Answer:
            return 302, {"Location": other.url + "/elsewhere"}, b""

        with FrontServer(respond) as api:
            session.auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
            answer = session.get(api.url + "/start", timeout=TIMEOUT)
    assert api.seen[0].headers["authorization"].startswith("Bearer ")
    assert "authorization" not in other.seen[0].headers
    # The other host's 401 is not ours to retry: returned as is, no new token.
    assert answer.status_code == 401
    assert len(other.seen) == 1
    assert sandbox.provider.token_requests == 1


# -- bodies replayed after a 401 -----------------------------------------------------------------


class _SeekableUpload(io.BytesIO):
    """An in-memory 'file' as users pass it: seekable, read from its current position."""


@pytest.mark.parametrize(
    ("kind", "make_kwargs", "expected"),
    [
        ("bytes", lambda: {"data": b"\x00\x01binary\xff"}, b"\x00\x01binary\xff"),
        ("str", lambda: {"data": "caf\u00e9 au lait"}, "caf\u00e9 au lait".encode()),
        ("json", lambda: {"json": {"a": [1, 2], "b": "\u00fc"}},
         json.dumps({"a": [1, 2], "b": "\u00fc"}).encode()),
        ("form", lambda: {"data": {"x": "1", "y": "a b&c"}}, b"x=1&y=a+b%26c"),
        ("seekable file", lambda: {"data": _SeekableUpload(b"line 1\nline 2\n" * 100)},
         b"line 1\nline 2\n" * 100),
        ("file at an offset", lambda: {"data": _at(_SeekableUpload(b"HEADERpayload"), 6)},
         b"payload"),
    ],
)
def test_post_body_is_replayed_byte_for_byte_after_a_401(
    sandbox, session, kind, make_kwargs, expected
):
    with FrontServer(echo_behind_sandbox(sandbox)) as api:
        session.auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        session.auth.get_token()
        sandbox.provider.revoke_all()
        answer = session.post(api.url + "/upload", timeout=TIMEOUT, **make_kwargs())
    assert answer.status_code == 200, kind
    assert [r.status_code for r in answer.history] == [401]
    rejected, accepted = api.seen
    assert rejected.body == accepted.body == expected == answer.content
    assert rejected.headers.get("content-type") == accepted.headers.get("content-type")
    assert accepted.headers["cookie"] == "affinity=node-7"  # cookies from the 401 carried over
    assert sandbox.provider.token_requests == 2


def _at(stream: io.BytesIO, position: int) -> io.BytesIO:
    stream.seek(position)
    return stream


def test_generator_body_gets_its_401_back_and_one_warning(sandbox, session, caplog):
    with FrontServer(echo_behind_sandbox(sandbox)) as api:
        session.auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        session.auth.get_token()
        sandbox.provider.revoke_all()
        caplog.clear()
        answer = session.post(api.url + "/upload", data=(c for c in (b"one,", b"two")),
                              timeout=TIMEOUT)
    assert answer.status_code == 401
    assert not answer.history
    assert [seen.body for seen in api.seen] == [b"one,two"]
    warnings = [r for r in caplog.records
                if r.name == "requests_advanced_auth" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be replayed" in warnings[0].getMessage()
    assert sandbox.provider.token_requests == 1  # nothing to re-send, so no new token


# -- request-level auth, headers_for, from_env, copies ------------------------------------------


def test_request_level_auth_overrides_the_session_auth(sandbox, session):
    with FrontServer(lambda seen: (200, {}, b"ok")) as api:
        session.auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        session.get(api.url + "/x", auth=("user", "pass"), timeout=TIMEOUT)
    assert api.seen[0].headers["authorization"].startswith("Basic ")
    assert sandbox.provider.token_requests == 0


def test_request_level_advanced_auth_overrides_a_broken_session_auth(sandbox, session):
    session.auth = AdvancedAuth("nobody", "wrong", **_sandbox_options(sandbox))
    answer = session.get(sandbox.transactions_url, params=TX_PARAMS, auth=sandbox.auth(),
                         timeout=TIMEOUT)
    assert answer.status_code == 200
    assert sandbox.provider.tokens_issued == 1


def test_headers_for_works_with_plain_requests(sandbox):
    auth = sandbox.auth()
    stats = requests.get(sandbox.statistics_url, params=STATS_PARAMS,
                         headers=auth.headers_for(sandbox.statistics_url), timeout=TIMEOUT)
    tx = requests.get(sandbox.transactions_url, params=TX_PARAMS,
                      headers=auth.headers_for(sandbox.transactions_url), timeout=TIMEOUT)
    assert stats.status_code == tx.status_code == 200
    assert tx.request.headers["Authorization"] == "Bearer " + stats.request.headers["Authorization"]
    assert auth.headers_for("http://127.0.0.1:9/elsewhere") == {}
    assert sandbox.provider.token_requests == 1


def test_from_env_with_the_sandbox_environment_works_end_to_end(sandbox, session):
    session.auth = AdvancedAuth.from_env(environ=sandbox.environment())
    stats = session.get(sandbox.statistics_url, params=STATS_PARAMS, timeout=TIMEOUT)
    tx = session.get(sandbox.transactions_url, params=TX_PARAMS, timeout=TIMEOUT)
    assert (stats.status_code, tx.status_code) == (200, 200)
    assert not stats.request.headers["Authorization"].startswith("Bearer ")
    assert tx.request.headers["Authorization"].startswith("Bearer ")
    assert sandbox.provider.token_requests == 1


def _pickled(auth: AdvancedAuth) -> AdvancedAuth:
    return pickle.loads(pickle.dumps(auth))  # noqa: S301 - our own bytes


@pytest.mark.parametrize("duplicate", [copy.deepcopy, _pickled], ids=["deepcopy", "pickle"])
def test_a_copy_of_a_used_auth_fetches_its_own_token_and_works(sandbox, duplicate):
    auth = sandbox.auth()
    with requests.Session() as s:
        original = token_of(s.get(sandbox.transactions_url, params=TX_PARAMS, auth=auth,
                                   timeout=TIMEOUT))
        twin = duplicate(auth)
        answer = s.get(sandbox.transactions_url, params=TX_PARAMS, auth=twin, timeout=TIMEOUT)
        again = s.get(sandbox.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
    assert answer.status_code == 200
    assert token_of(answer) != original
    assert sandbox.provider.token_requests == 2
    assert token_of(again) == original  # the original keeps its own token
    twin.close()
    auth.close()
