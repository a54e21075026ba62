"""The token request on the wire and every kind of token endpoint answer (``_fetch``).

Two mock layers:

* requests-mock (its ``requests_mock`` fixture, a ``Mocker``, or an ``Adapter`` mounted on a
  user session) replaces the whole transport: exact bytes on the wire, answers of every shape.
* ``wire`` replaces only the socket, below urllib3's retry loop (``HTTPConnectionPool.
  _make_request``), so retries, backoff and ``Retry-After`` run for real. requests-mock cannot
  test those: it short-circuits the adapter that holds the ``Retry``.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import logging
import re
import socket
import threading
import traceback
import warnings
from urllib.parse import parse_qsl, quote, quote_plus, unquote_plus

import pytest
import requests
import requests_mock as requests_mock_module
import urllib3
from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import NewConnectionError, ProtocolError, ReadTimeoutError

from requests_advanced_auth import (
    AdvancedAuth,
    ClientCredentialsAuth,
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    TokenEndpointUnreachableError,
    TokenResponseError,
    TokenState,
    _fetch,
)
from requests_advanced_auth._fetch import (
    BACKOFF_FACTOR,
    BACKOFF_JITTER,
    BACKOFF_MAX,
    DEFAULT_TIMEOUT,
    TokenFetcher,
)

TOKEN_URL = "https://auth.advanced-store.com/oauth2/token"
IDP_URL = "https://idp.example.com/oauth2/token"
CLIENT_ID = "client-4711"
SECRET = "s3cr3tVALUEneverSHOWN"
TOKEN = "tokAAAAneverSHOWNinLOGS"
# Base64-style secrets contain characters that form encoding changes: the server may echo
# the encoded form, which is the secret all the same.
ODD_SECRET = "Zm9v+YmFy/cXV4=="


@pytest.fixture(autouse=True)
def _watch(leak_guard):
    leak_guard.watch(SECRET, TOKEN, ODD_SECRET, quote_plus(ODD_SECRET))


@pytest.fixture
def waits(monkeypatch):
    """Every wait the token session's retry asks for, instead of sleeping it."""
    recorded: list[float] = []
    monkeypatch.setattr(_fetch, "_sleep", recorded.append)
    return recorded


def answer(**overrides):
    """A token endpoint success body; a None value removes the key."""
    body = {"access_token": TOKEN, "expires_in": 3600, "token_type": "bearer", "scope": ""}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def make_auth(cls=ClientCredentialsAuth, **options):
    options.setdefault("token_url", IDP_URL if cls is ClientCredentialsAuth else TOKEN_URL)
    options.setdefault("client_secret", SECRET)
    secret = options.pop("client_secret")
    return cls(options.pop("client_id", CLIENT_ID), secret, **options)


def form(request) -> list[tuple[str, str]]:
    """The decoded form pairs of a recorded request, in order, duplicates kept."""
    body = request.body
    if isinstance(body, bytes):
        body = body.decode("ascii")
    return parse_qsl(body, keep_blank_values=True, strict_parsing=True)


def chain(exc: BaseException):
    seen = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def assert_no_secret_anywhere(error: BaseException, *secrets: str) -> None:
    secrets = secrets or (SECRET, TOKEN)
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    for exc in chain(error):
        text += str(exc) + repr(exc) + repr(exc.args)
        request = getattr(exc, "request", None)
        if request is not None:  # a PreparedRequest of the token POST carries the secret
            text += repr(getattr(request, "body", "")) + repr(getattr(request, "headers", ""))
    for secret in secrets:
        assert secret not in text
        assert quote_plus(secret) not in text
        assert quote(secret, safe="") not in text


# -- the wire stub ---------------------------------------------------------------------------


class Wire:
    """Stands in for the network under urllib3's retry loop; each attempt takes one outcome.

    An outcome is ``(status, headers, body)`` or an exception to raise as the socket would.
    """

    def __init__(self, outcomes):
        self.outcomes = list(outcomes)
        self.attempts: list[dict] = []

    def make_request(self, pool, conn, method, url, body=None, headers=None, retries=None, **_):
        self.attempts.append({"method": method, "url": url, "body": body, "headers": headers})
        assert self.outcomes, "more attempts than the test expected"
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        status, response_headers, payload = outcome
        if isinstance(payload, io.RawIOBase):  # a body that misbehaves while it is read
            body = io.BufferedReader(payload, buffer_size=len(payload.chunks[0]))
        else:
            if not isinstance(payload, bytes):
                payload = json.dumps(payload).encode()
                response_headers = {"Content-Type": "application/json", **response_headers}
            body = io.BytesIO(payload)
        return urllib3.HTTPResponse(
            body=body,
            headers=response_headers,
            status=status,
            preload_content=False,
            decode_content=False,
            request_method=method,
            request_url=url,
            retries=retries,
            pool=pool,
            connection=conn,
        )


@pytest.fixture
def wire(monkeypatch):
    def install(*outcomes):
        stub = Wire(outcomes)

        def make_request(pool, conn, method, url, **kw):
            return stub.make_request(pool, conn, method, url, **kw)

        monkeypatch.setattr(HTTPConnectionPool, "_make_request", make_request)
        return stub

    return install


OK = (200, {}, answer())


def refused(pool_conn=None):
    return NewConnectionError(pool_conn, "Failed to establish a new connection: [Errno 111]")


# == the request on the wire ==================================================================


def test_joined_audience_is_one_space_joined_value_on_the_wire(requests_mock, clock):
    requests_mock.post(TOKEN_URL, json=answer())
    make_auth(AdvancedAuth, clock=clock).get_token()
    raw = requests_mock.last_request.body
    assert b"audience=api.ad4mat.net+api.advanced-store.com" in raw
    assert raw.count(b"audience=") == 1
    assert b"%5B" not in raw  # not oauthlib's repr of a list: audience=['a', 'b']
    assert [v for k, v in form(requests_mock.last_request) if k == "audience"] == [
        "api.ad4mat.net api.advanced-store.com"
    ]


def test_repeated_audience_sends_one_parameter_per_audience(requests_mock, clock):
    requests_mock.post(TOKEN_URL, json=answer())
    make_auth(AdvancedAuth, audience_encoding="repeated", clock=clock).get_token()
    raw = requests_mock.last_request.body
    assert b"audience=api.ad4mat.net&audience=api.advanced-store.com" in raw
    assert [v for k, v in form(requests_mock.last_request) if k == "audience"] == [
        "api.ad4mat.net",
        "api.advanced-store.com",
    ]


@pytest.mark.parametrize("audience", ["a.example b.example", ["a.example", "b.example"],
                                      ("a.example", "b.example"), iter(["a.example", "b.example"])])
def test_audience_as_string_or_iterable_gives_the_same_body(requests_mock, clock, audience):
    requests_mock.post(IDP_URL, json=answer())
    make_auth(audience=audience, clock=clock).get_token()
    assert ("audience", "a.example b.example") in form(requests_mock.last_request)


def test_no_audience_sends_no_audience_parameter(requests_mock, clock):
    requests_mock.post(IDP_URL, json=answer())
    make_auth(clock=clock).get_token()
    assert "audience" not in dict(form(requests_mock.last_request))


def test_client_secret_post_puts_id_and_secret_in_the_form_body(requests_mock, clock):
    requests_mock.post(TOKEN_URL, json=answer())
    make_auth(AdvancedAuth, clock=clock).get_token()
    request = requests_mock.last_request
    pairs = dict(form(request))
    assert pairs["grant_type"] == "client_credentials"
    assert pairs["client_id"] == CLIENT_ID
    assert pairs["client_secret"] == SECRET
    assert "Authorization" not in request.headers
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.method == "POST"


def test_client_secret_basic_form_encodes_id_and_secret_and_keeps_them_out_of_the_body(
    requests_mock, clock, leak_guard
):
    client_id, secret = "my client:1", "p@ss w:rd+/=é"
    leak_guard.watch(secret)
    requests_mock.post(IDP_URL, json=answer())
    make_auth(
        client_id=client_id, client_secret=secret, client_auth="client_secret_basic", clock=clock,
        audience="api.example",
    ).get_token()
    request = requests_mock.last_request
    scheme, _, credentials = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    decoded = base64.b64decode(credentials).decode("ascii")
    # RFC 6749 §2.3.1: each part form-encoded first, so the ":" inside the id is not the
    # separator and a server's form decoding gets the exact strings back.
    user, sep, password = decoded.partition(":")
    assert sep == ":"
    assert (unquote_plus(user), unquote_plus(password)) == (client_id, secret)
    pairs = dict(form(request))
    assert "client_secret" not in pairs
    assert pairs["grant_type"] == "client_credentials"
    assert pairs["audience"] == "api.example"
    body = request.body.decode("ascii")
    for form_of_secret in (secret, quote_plus(secret), quote(secret, safe="")):
        assert form_of_secret not in body


@pytest.mark.parametrize("client_auth", ["client_secret_post", "client_secret_basic"])
def test_scope_and_extra_params_are_sent_identically_on_every_fetch(
    requests_mock, clock, client_auth
):
    requests_mock.post(IDP_URL, [{"json": answer(expires_in=60)}, {"json": answer()}])
    auth = make_auth(
        scope=["read", "write"],
        extra_params={"resource": "https://api.example.com/", "tenant": "t 1"},
        audience=["a.example", "b.example"],
        client_auth=client_auth,
        clock=clock,
    )
    auth.get_token()
    clock.advance(3600)
    auth.get_token()
    first, second = requests_mock.request_history
    assert requests_mock.call_count == 2
    assert first.body == second.body
    assert first.headers.get("Authorization") == second.headers.get("Authorization")
    pairs = form(first)
    assert ("scope", "read write") in pairs
    assert ("resource", "https://api.example.com/") in pairs
    assert ("tenant", "t 1") in pairs
    assert ("audience", "a.example b.example") in pairs
    assert ("grant_type", "client_credentials") in pairs


@pytest.mark.parametrize(
    "url",
    [
        "http://auth.advanced-store.com/oauth2/token",
        "http://10.0.0.1/token",
        "http://127.0.0.1.nip.io/token",
        "ftp://auth.example.com/token",
        "auth.example.com/oauth2/token",
        "https:///oauth2/token",
        "",
    ],
)
def test_token_url_must_be_https_unless_loopback(url):
    with pytest.raises(ConfigurationError) as info:
        make_auth(token_url=url)
    assert isinstance(info.value, ValueError)
    assert "token_url" in str(info.value)
    assert SECRET not in str(info.value)


def test_plain_http_token_url_error_explains_why():
    with pytest.raises(ConfigurationError, match="https://") as info:
        make_auth(token_url="http://auth.example.com/token")
    assert "unencrypted" in str(info.value)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/oauth2/token",
        "http://127.9.8.7/token",
        "http://localhost:4444/oauth2/token",
        "http://LOCALHOST/token",
        "http://[::1]:4444/oauth2/token",
        "https://auth.example.com/oauth2/token",
    ],
)
def test_loopback_token_url_may_use_plain_http(requests_mock, clock, url):
    requests_mock.post(url, json=answer())
    assert make_auth(token_url=url, clock=clock).get_token().access_token == TOKEN
    assert requests_mock.call_count == 1


@pytest.mark.parametrize("audience", ["a.example  b.example", " a.example", "a.example "])
def test_an_audience_string_with_an_empty_item_says_where(audience):
    with pytest.raises(ConfigurationError, match=r"has an empty item \(spaces at an end, or two"):
        make_auth(audience=audience)


@pytest.mark.parametrize(
    "audience",
    ["", "a.example  b.example", " a.example", [""], ["a b"], ["a\tb"], ["ok", " "],
     ["a.example\n"], [123], ["ok", None], [b"bytes.example"]],
)
def test_bad_audience_items_are_a_configuration_error(audience):
    with pytest.raises(ConfigurationError, match="audience") as info:
        make_auth(audience=audience)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("client_id", ""),
        ("client_secret", ""),
        ("client_secret", None),
        ("client_auth", "private_key_jwt"),
        ("audience_encoding", "comma"),
        ("retries", -1),
        ("retries", True),
    ],
)
def test_bad_options_are_a_configuration_error(option, value):
    with pytest.raises(ConfigurationError, match=option.replace("client_secret", "client_")):
        make_auth(**{option: value})


# == answers that are not a token ============================================================


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed_and_names_the_status(requests_mock, clock, status):
    elsewhere = "https://login.example.net/oauth2/token"
    requests_mock.post(IDP_URL, status_code=status, headers={"Location": elsewhere})
    target = requests_mock.register_uri(requests_mock_module.ANY, elsewhere, json=answer())
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert not target.called
    assert requests_mock.call_count == 1
    assert str(status) in str(info.value)
    assert "redirect" in str(info.value)
    assert elsewhere in str(info.value)
    assert info.value.status_code == status


def test_redirect_is_not_followed_by_urllib3_either(wire, waits):
    stub = wire((302, {"Location": "https://evil.example/token"}, b""))
    with pytest.raises(TokenResponseError, match="302"):
        make_auth().get_token()
    assert len(stub.attempts) == 1
    assert waits == []


UNUSABLE = {
    "html page": {
        "status_code": 200,
        "text": "<!doctype html><html><body>Sign in</body></html>",
        "headers": {"Content-Type": "text/html; charset=utf-8"},
    },
    "invalid json": {
        "status_code": 200,
        "text": '{"access_token": "tok',
        "headers": {"Content-Type": "application/json"},
    },
    "json list": {"status_code": 200, "json": [{"token": "none here"}]},
    "no access_token": {"status_code": 200, "json": answer(access_token=None)},
    "empty access_token": {"status_code": 200, "json": answer(access_token="")},
    "blank access_token": {"status_code": 200, "json": answer(access_token="   ")},
    "numeric access_token": {"status_code": 200, "json": answer(access_token=12345)},
    "object access_token": {"status_code": 200, "json": answer(access_token={"v": TOKEN})},
    "html 404": {
        "status_code": 404, "text": "<h1>Not Found</h1>", "headers": {"Content-Type": "text/html"}
    },
    "empty 200": {"status_code": 200, "content": b""},
}


@pytest.mark.parametrize("kind", list(UNUSABLE))
def test_unusable_answer_is_a_token_response_error_naming_status_and_content_type(
    requests_mock, clock, kind
):
    spec = dict(UNUSABLE[kind])
    if "json" in spec:
        spec["headers"] = {"Content-Type": "application/json"}
    requests_mock.post(IDP_URL, **spec)
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    error = info.value
    status = spec["status_code"]
    content_type = (spec.get("headers") or {}).get("Content-Type", "")
    assert error.status_code == status
    assert str(status) in str(error)
    if content_type:
        assert error.content_type == content_type
        assert content_type in str(error)
    else:
        assert "no content type" in str(error)
    assert IDP_URL in str(error)
    assert requests_mock.call_count == 1
    assert_no_secret_anywhere(error)


def test_html_answer_excerpt_is_at_most_80_characters(requests_mock, clock):
    page = "<html>" + "x" * 1000 + "</html>"
    requests_mock.post(IDP_URL, text=page, headers={"Content-Type": "text/html"})
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    message = str(info.value)
    excerpt = message.split("it starts: ", 1)[1]
    quoted = excerpt[: excerpt.index("'", 1) + 1]
    assert len(quoted) - 2 <= 80
    assert quoted.startswith("'<html>xxx")
    assert "x" * 80 not in message
    assert "</html>" not in message


def test_secret_echoed_by_the_server_never_reaches_the_message(requests_mock, clock):
    def echo(request, context):
        context.headers["Content-Type"] = "text/html"
        return f"<p>you sent {SECRET}</p>" + request.text

    requests_mock.post(IDP_URL, text=echo)
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert "you sent ***" in str(info.value)
    assert_no_secret_anywhere(info.value)


def test_form_encoded_secret_echoed_by_the_server_never_reaches_the_message(
    requests_mock, clock
):
    def echo(request, context):
        context.headers["Content-Type"] = "text/plain"
        secret_pair = next(p for p in request.text.split("&") if p.startswith("client_secret="))
        return f"bad {secret_pair}"

    requests_mock.post(IDP_URL, text=echo)
    with pytest.raises(TokenResponseError) as info:
        make_auth(client_secret=ODD_SECRET, clock=clock).get_token()
    assert_no_secret_anywhere(info.value, ODD_SECRET)


@pytest.mark.parametrize(
    ("status", "body"), [(200, [answer()]), (201, answer()), (202, {"result": answer()})]
)
def test_token_inside_an_unusable_answer_is_not_quoted(requests_mock, clock, status, body):
    requests_mock.post(IDP_URL, status_code=status, json=body)
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert_no_secret_anywhere(info.value)


def test_secret_echoed_in_an_oauth_error_description_is_blanked(requests_mock, clock):
    requests_mock.post(
        IDP_URL,
        status_code=401,
        json={"error": "invalid_client", "error_description": f"secret {SECRET} is wrong"},
    )
    with pytest.raises(InvalidClientError) as info:
        make_auth(clock=clock).get_token()
    assert "secret *** is wrong" in str(info.value)
    assert SECRET not in info.value.error_description
    assert_no_secret_anywhere(info.value)


@pytest.mark.parametrize("token_type", ["bearer", "Bearer", "BEARER", None])
def test_bearer_token_type_in_any_case_or_missing_is_accepted(requests_mock, clock, token_type):
    requests_mock.post(IDP_URL, json=answer(token_type=token_type))
    token = make_auth(clock=clock).get_token()
    assert token.access_token == TOKEN
    assert token.token_type == "bearer"


@pytest.mark.parametrize("token_type", ["mac", "pop", "DPoP", 5, ""])
def test_other_token_types_are_rejected(requests_mock, clock, token_type):
    requests_mock.post(IDP_URL, json=answer(token_type=token_type))
    with pytest.raises(TokenResponseError, match="token_type") as info:
        make_auth(clock=clock).get_token()
    assert "bearer" in str(info.value)
    assert_no_secret_anywhere(info.value)


@pytest.mark.parametrize(
    ("asked", "granted"),
    [(None, ""), (None, "read"), ("read", ""), ("read", "write"), ("read write", "read"),
     ("read", None)],
)
def test_a_changed_or_empty_scope_never_raises_or_warns(
    requests_mock, clock, caplog, asked, granted
):
    requests_mock.post(IDP_URL, json=answer(scope=granted))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        token = make_auth(scope=asked, clock=clock).get_token()
    assert token.access_token == TOKEN
    assert token.scope == granted
    assert caught == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


# -- expires_in at the wire -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "lifetime"),
    [(3600, 3600), ("3600", 3600), (3600.0, 3600), ("3600.0", 3600), (None, None),
     (10**12, 86400)],
)
def test_expires_in_shapes_are_accepted(requests_mock, clock, expires_in, lifetime):
    requests_mock.post(IDP_URL, json=answer(expires_in=expires_in))
    token = make_auth(clock=clock).get_token()
    if lifetime is None:
        assert token.expires_at is None
    else:
        assert token.expires_at == clock.now + lifetime


@pytest.mark.parametrize("expires_in", ["soon", "NaN", True, [3600], {"s": 3600}])
def test_non_numeric_expires_in_is_an_unusable_answer(requests_mock, clock, expires_in):
    requests_mock.post(IDP_URL, json=answer(expires_in=expires_in))
    with pytest.raises(TokenResponseError, match="expires_in") as info:
        make_auth(clock=clock).get_token()
    assert_no_secret_anywhere(info.value)


def test_expiry_counts_from_before_the_request_was_sent(requests_mock, clock):
    start = clock.now

    def slow_answer(request, context):
        clock.advance(5)  # the token server took 5 s
        return answer(expires_in=100)

    requests_mock.post(IDP_URL, json=slow_answer)
    token = make_auth(clock=clock).get_token()
    assert token.issued_at == start
    assert token.expires_at == start + 100


# == OAuth error answers ======================================================================

OAUTH_ERRORS = [
    (400, "invalid_request", OAuthError, "audience", "audience api.x is not allowed"),
    (401, "invalid_client", InvalidClientError, "client_secret_basic", "client auth failed"),
    (400, "unauthorized_client", OAuthError, "client_credentials grant", "grant not allowed"),
    (400, "invalid_scope", OAuthError, "scope option", "scope admin is not allowed"),
]


@pytest.mark.parametrize(("status", "code", "cls", "hint", "description"), OAUTH_ERRORS)
def test_oauth_error_answer_becomes_a_typed_error_with_its_parts_and_a_hint(
    requests_mock, clock, status, code, cls, hint, description
):
    requests_mock.post(
        IDP_URL, status_code=status, json={"error": code, "error_description": description}
    )
    with pytest.raises(cls) as info:
        make_auth(clock=clock).get_token()
    error = info.value
    assert type(error) is cls
    assert (error.error, error.error_description, error.status_code) == (code, description, status)
    assert error.token_url == IDP_URL
    message = str(error)
    for part in (str(status), code, description, hint, IDP_URL):
        assert part in message
    assert requests_mock.call_count == 1
    assert_no_secret_anywhere(error)


def test_invalid_request_is_distinguishable_from_invalid_client(requests_mock, clock):
    requests_mock.post(IDP_URL, status_code=400, json={"error": "invalid_request"})
    with pytest.raises(OAuthError) as info:
        make_auth(clock=clock).get_token()
    assert not isinstance(info.value, InvalidClientError)
    assert info.value.error == "invalid_request"
    assert "check the audience" in str(info.value)


def test_error_without_description_gets_no_invented_description(requests_mock, clock):
    requests_mock.post(IDP_URL, status_code=400, json={"error": "invalid_request"})
    with pytest.raises(OAuthError) as info:
        make_auth(clock=clock).get_token()
    assert info.value.error_description == ""
    assert "client_id" not in str(info.value)


@pytest.mark.parametrize(("status", "code", "cls", "hint", "description"), OAUTH_ERRORS)
def test_oauth_error_answers_are_not_retried(wire, waits, status, code, cls, hint, description):
    stub = wire((status, {}, {"error": code, "error_description": description}), OK)
    with pytest.raises(cls):
        make_auth(retries=3).get_token()
    assert len(stub.attempts) == 1
    assert waits == []


# == retries, backoff, Retry-After ============================================================


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_then_success_is_retried_and_succeeds(wire, waits, status):
    stub = wire((status, {}, b"<h1>down</h1>"), OK)
    token = make_auth(retries=3).get_token()
    assert token.access_token == TOKEN
    assert len(stub.attempts) == 2
    assert stub.attempts[0]["body"] == stub.attempts[1]["body"]  # same form, same secret
    [wait] = waits
    assert BACKOFF_FACTOR <= wait <= BACKOFF_FACTOR + BACKOFF_JITTER


def test_first_retry_waits_the_backoff_factor_plus_jitter(wire, waits):
    """urllib3 2.x retries the first failure at once; ours waits, with jitter."""
    wire((503, {}, b""), OK)
    make_auth(retries=3).get_token()
    assert len(waits) == 1
    assert BACKOFF_FACTOR <= waits[0] <= BACKOFF_FACTOR + BACKOFF_JITTER


def test_backoff_grows_exponentially_with_jitter_and_is_capped(wire, waits, monkeypatch):
    retries = 7
    wire(*[(503, {}, b"")] * (retries + 1))
    jitter = []

    def fixed_jitter(low, high):
        assert (low, high) == (0, BACKOFF_JITTER)
        jitter.append(high / 2)
        return high / 2

    monkeypatch.setattr(_fetch.random, "uniform", fixed_jitter)
    with pytest.raises(TokenEndpointUnreachableError):
        make_auth(retries=retries).get_token()
    assert len(waits) == retries  # the first retry waits too
    assert len(jitter) == len(waits)  # every wait has its jitter
    bases = [w - BACKOFF_JITTER / 2 for w in waits]
    for previous, current in zip(bases, bases[1:]):
        assert current == min(previous * 2, BACKOFF_MAX)
    assert bases[-1] == BACKOFF_MAX
    assert max(waits) <= BACKOFF_MAX + BACKOFF_JITTER


def test_jitter_differs_between_attempts(wire, waits):
    wire(*[(503, {}, b"")] * 6)
    with pytest.raises(TokenEndpointUnreachableError):
        make_auth(retries=5).get_token()
    fractions = {round(w % 1, 6) for w in waits}
    assert len(fractions) > 1  # random jitter, not a fixed schedule


def test_429_with_retry_after_1_waits_one_second_and_succeeds(wire, waits):
    stub = wire((429, {"Retry-After": "1"}, b""), OK)
    token = make_auth().get_token()
    assert token.access_token == TOKEN
    assert waits == [1]
    assert len(stub.attempts) == 2


def test_503_with_retry_after_is_respected(wire, waits):
    wire((503, {"Retry-After": "2"}, b""), OK)
    make_auth().get_token()
    assert waits == [2]


@pytest.mark.parametrize("max_retry_after", [30, 30.0, 119])
def test_retry_after_beyond_the_maximum_fails_fast_exposing_the_servers_value(
    wire, waits, max_retry_after
):
    stub = wire((429, {"Retry-After": "120"}, b"slow down"), OK)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(max_retry_after=max_retry_after).get_token()
    error = info.value
    assert error.retry_after == 120
    assert error.status_code == 429
    assert waits == []
    assert len(stub.attempts) == 1
    assert "120" in str(error)
    assert "max_retry_after" in str(error)


def test_retry_after_beyond_the_default_maximum_fails_fast(wire, waits):
    wire((429, {"Retry-After": "3600"}, b""))
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth().get_token()
    assert info.value.retry_after == 3600
    assert waits == []


def test_429_with_a_json_error_body_is_still_unreachable_with_retry_after(wire, waits):
    wire((429, {"Retry-After": "120"}, {"error": "rate_limited", "error_description": "slow"}))
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth().get_token()
    assert info.value.retry_after == 120
    assert "rate_limited: slow" in str(info.value)
    assert waits == []


def test_503_with_temporarily_unavailable_body_is_retried_then_unreachable(wire, waits):
    busy = (503, {}, {"error": "temporarily_unavailable", "error_description": "busy"})
    stub = wire(busy, busy)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=1).get_token()
    assert len(stub.attempts) == 2
    assert info.value.status_code == 503
    assert "temporarily_unavailable" in str(info.value)


@pytest.mark.parametrize("retries", [0, 1, 3])
def test_persistent_503_gives_unreachable_after_retries_plus_one_attempts(wire, waits, retries):
    stub = wire(*[(503, {}, b"<h1>Service Unavailable</h1>")] * (retries + 1))
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=retries).get_token()
    assert len(stub.attempts) == retries + 1
    assert info.value.status_code == 503
    assert info.value.retry_after is None
    assert "503" in str(info.value)
    assert sum(waits) <= retries * (BACKOFF_MAX + BACKOFF_JITTER)


def test_total_wait_of_the_default_retries_is_bounded(wire, waits):
    wire(*[(503, {}, b"")] * 4)
    with pytest.raises(TokenEndpointUnreachableError):
        make_auth().get_token()
    # retries=3: at most 0.5 + 1 + 2 s of backoff plus 3 * jitter
    assert sum(waits) <= 3.5 + 3 * BACKOFF_JITTER


# == transport errors =========================================================================


@pytest.mark.parametrize(
    "fault",
    [
        lambda: refused(),
        lambda: NewConnectionError(None, f"Failed to resolve: {socket.gaierror(-2, 'unknown')}"),
        lambda: ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer")),
        lambda: ReadTimeoutError(None, IDP_URL, "Read timed out. (read timeout=10.0)"),
    ],
    ids=["refused", "dns", "reset", "read-timeout"],
)
def test_transport_fault_is_retried_then_succeeds(wire, waits, fault):
    stub = wire(fault(), OK)
    assert make_auth(retries=2).get_token().access_token == TOKEN
    assert len(stub.attempts) == 2


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (lambda: refused(), requests.ConnectionError),
        (lambda: ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
         requests.ConnectionError),
        (lambda: ReadTimeoutError(None, IDP_URL, "Read timed out."), requests.ConnectionError),
    ],
    ids=["refused", "reset", "read-timeout"],
)
def test_persistent_transport_fault_is_unreachable_with_the_cause_chained(
    wire, waits, fault, cause
):
    stub = wire(*[fault() for _ in range(3)])
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=2).get_token()
    error = info.value
    assert len(stub.attempts) == 3
    assert isinstance(error.__cause__, cause)
    assert error.__cause__.request is None  # the prepared token request holds the secret
    assert type(error.__cause__).__name__ in str(error)
    assert IDP_URL in str(error)
    assert error.status_code is None
    assert_no_secret_anywhere(error)


@pytest.mark.parametrize(
    "exc",
    [requests.ConnectionError, requests.ConnectTimeout, requests.ReadTimeout,
     requests.exceptions.SSLError, requests.exceptions.ProxyError],
)
def test_transport_exception_from_requests_is_unreachable_with_cause(requests_mock, clock, exc):
    requests_mock.post(IDP_URL, exc=exc)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(clock=clock).get_token()
    assert isinstance(info.value.__cause__, exc)
    assert exc.__name__ in str(info.value)
    assert "check the network" in str(info.value)
    assert_no_secret_anywhere(info.value)


def test_transport_error_carrying_the_request_is_scrubbed(requests_mock, clock):
    def fail(request, context):
        prepared = requests.Request("POST", IDP_URL, data=request.body).prepare()
        raise requests.ConnectionError("connection reset", request=prepared)

    requests_mock.post(IDP_URL, content=fail)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(clock=clock).get_token()
    assert info.value.__cause__.request is None
    assert_no_secret_anywhere(info.value)


# == transport settings =======================================================================


def test_user_token_session_is_used_and_never_closed(clock, monkeypatch):
    session = requests.Session()
    adapter = requests_mock_module.Adapter()
    adapter.register_uri("POST", IDP_URL, json=answer())
    session.mount("https://", adapter)
    adapters_before = dict(session.adapters)
    headers_before = dict(session.headers)
    closed = []
    monkeypatch.setattr(session, "close", lambda: closed.append(True))
    auth = make_auth(token_session=session, clock=clock)
    assert auth.get_token().access_token == TOKEN
    assert adapter.call_count == 1
    auth.close()
    auth.close()
    assert closed == []
    assert dict(session.adapters) == adapters_before
    assert dict(session.headers) == headers_before


def test_own_token_session_is_closed_by_close(requests_mock, clock, monkeypatch):
    closed = []
    original = requests.Session.close
    monkeypatch.setattr(
        requests.Session, "close", lambda self: (closed.append(self), original(self))[1]
    )
    requests_mock.post(IDP_URL, json=answer())
    auth = make_auth(clock=clock)
    auth.get_token()
    auth.close()
    assert len(closed) == 1


def test_own_token_session_is_reused_across_fetches(requests_mock, clock):
    requests_mock.post(IDP_URL, json=answer(expires_in=10))
    auth = make_auth(clock=clock)
    sessions = set()
    original_post = requests.Session.post

    def spy(self, *args, **kwargs):
        sessions.add(id(self))
        return original_post(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(requests.Session, "post", spy)
        for _ in range(3):
            auth.get_token()
            clock.advance(10)
    assert requests_mock.call_count == 3
    assert len(sessions) == 1


def test_verify_cert_proxies_and_timeout_reach_the_token_post(requests_mock, clock, tmp_path):
    requests_mock.post(IDP_URL, json=answer())
    proxies = {"https": "http://proxy.internal:3128"}
    ca, pem, key = (tmp_path / name for name in ("corp-ca.pem", "client.pem", "client.key"))
    for path in (ca, pem, key):
        path.write_text("-----BEGIN CERTIFICATE-----\n")
    make_auth(
        verify=str(ca),
        cert=(str(pem), str(key)),
        proxies=proxies,
        timeout=7.5,
        clock=clock,
    ).get_token()
    request = requests_mock.last_request
    assert request.verify == str(ca)
    assert request.cert == (str(pem), str(key))
    assert request.proxies["https"] == "http://proxy.internal:3128"
    assert request.timeout == 7.5


def test_token_post_always_has_a_timeout_and_verifies_tls_by_default(
    requests_mock, clock, monkeypatch
):
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    requests_mock.post(IDP_URL, json=answer())
    make_auth(clock=clock).get_token()
    assert requests_mock.last_request.timeout == DEFAULT_TIMEOUT
    assert requests_mock.last_request.verify is True


def test_verify_false_is_passed_through(requests_mock, clock):
    requests_mock.post(IDP_URL, json=answer())
    make_auth(verify=False, clock=clock).get_token()
    assert requests_mock.last_request.verify is False


def test_proxies_from_the_environment_are_used_as_requests_does(requests_mock, clock, monkeypatch):
    monkeypatch.setenv("HTTPS_PROXY", "http://env-proxy.internal:8080")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    requests_mock.post(IDP_URL, json=answer())
    make_auth(clock=clock).get_token()
    assert requests_mock.last_request.proxies.get("https") == "http://env-proxy.internal:8080"


# == display ==================================================================================


def test_fetcher_repr_shows_url_and_client_id_but_no_secret():
    fetcher = TokenFetcher(
        CLIENT_ID, SECRET, token_url=IDP_URL, audience=("a.example",), scope="read"
    )
    text = repr(fetcher) + str(fetcher)
    assert IDP_URL in text
    assert CLIENT_ID in text
    assert "a.example" in text
    assert SECRET not in text


def test_debug_logs_of_a_fetch_show_the_fingerprint_not_the_token(requests_mock, clock, caplog):
    requests_mock.post(IDP_URL, json=answer())
    token = make_auth(clock=clock).get_token()
    messages = [r.getMessage() for r in caplog.records if r.name == "requests_advanced_auth"]
    assert any(token.fingerprint in m for m in messages)
    assert all(TOKEN not in m and SECRET not in m for m in messages)


# == hostile or broken answers and options ====================================================


class _Body(io.RawIOBase):
    """A response body that yields ``chunks`` one read at a time, then raises ``end``
    (or, with ``forever``, repeats the last chunk without end). ``on_read`` runs per read."""

    def __init__(self, chunks, end=None, forever=False, on_read=None):
        self.chunks = list(chunks)
        self.end = end
        self.forever = forever
        self.on_read = on_read
        self.reads = 0
        self.served = 0  # bytes handed out

    def readable(self):
        return True

    def readinto(self, buffer):
        self.reads += 1
        if self.on_read is not None:
            self.on_read()
        if not self.chunks:
            if self.end is not None:
                raise self.end
            return 0
        chunk = self.chunks[0] if self.forever else self.chunks.pop(0)
        n = min(len(buffer), len(chunk))
        buffer[:n] = chunk[:n]
        self.served += n
        if n < len(chunk) and not self.forever:
            self.chunks.insert(0, chunk[n:])
        return n


JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize(
    "value",
    ["TOKV\r\nX-Injected: 1", "TOKV\nnext", "TOKV with space", "TOKV\x00nul", "TOKV€uro",
     "TOKV\ttab"],
    ids=["crlf", "lf", "space", "nul", "non-ascii", "tab"],
)
def test_an_access_token_that_cannot_travel_in_a_header_is_unusable(requests_mock, clock, value):
    requests_mock.post(IDP_URL, json=answer(access_token=value))
    auth = make_auth(clock=clock)
    for _ in range(2):  # not cached: each attempt asks again
        with pytest.raises(TokenResponseError, match="cannot be sent in an HTTP header") as info:
            auth.get_token()
        assert "TOKV" not in str(info.value)
    assert requests_mock.call_count == 2


def test_a_secret_in_a_redirect_location_is_blanked(requests_mock, clock):
    requests_mock.post(IDP_URL, status_code=302, headers={
        "Location": f"https://sso.example/login?client_secret={quote_plus(SECRET)}&x=1"})
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert "https://sso.example/login" in str(info.value)
    assert_no_secret_anywhere(info.value)


def test_a_secret_in_the_content_type_is_blanked(requests_mock, clock):
    requests_mock.post(IDP_URL, status_code=200, text="<html>",
                       headers={"Content-Type": f"text/html; echo={SECRET}"})
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert "text/html" in str(info.value)
    assert_no_secret_anywhere(info.value)


def test_a_secret_echoed_with_lower_case_percent_escapes_is_blanked(requests_mock, clock):
    lower = re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(ODD_SECRET, safe=""))
    assert lower != quote(ODD_SECRET, safe="")
    requests_mock.post(IDP_URL, status_code=400, headers=JSON,
                       json={"error": "invalid_request", "error_description": f"got {lower}"})
    with pytest.raises(OAuthError) as info:
        make_auth(client_secret=ODD_SECRET, clock=clock).get_token()
    assert lower not in str(info.value)
    assert_no_secret_anywhere(info.value, ODD_SECRET)


def test_an_echoed_basic_credential_is_blanked(requests_mock, clock):
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    requests_mock.post(IDP_URL, status_code=400, headers=JSON, json={
        "error": "invalid_request", "error_description": f"bad header Basic {basic}"})
    with pytest.raises(OAuthError) as info:
        make_auth(client_auth="client_secret_basic", clock=clock).get_token()
    assert basic not in str(info.value)
    assert_no_secret_anywhere(info.value)


def test_a_secret_echoed_with_its_spaces_folded_is_blanked(requests_mock, clock):
    secret = "two  spaces\tand  tabs"
    requests_mock.post(IDP_URL, status_code=200, headers={"Content-Type": "text/plain"},
                       text=f"echo: {' '.join(secret.split())} and {secret}")
    with pytest.raises(TokenResponseError) as info:
        make_auth(client_secret=secret, clock=clock).get_token()
    assert " ".join(secret.split()) not in str(info.value)


def test_an_endless_token_answer_is_cut_at_the_size_limit(wire, waits):
    body = _Body([b"x" * 65536], forever=True)
    wire((200, JSON, body))
    with pytest.raises(TokenResponseError, match="larger than") as info:
        make_auth(retries=0).get_token()
    assert body.served <= _fetch.MAX_TOKEN_ANSWER_BYTES + 2 * 65536  # read no further
    assert info.value.status_code == 200


def test_a_trickling_token_answer_is_cut_after_the_read_timeout(wire, waits, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(_fetch, "_monotonic", lambda: now[0])

    def one_second_per_byte():
        now[0] += 1.0

    body = _Body([b"{"] * 100, on_read=one_second_per_byte)
    wire((200, JSON, body))
    with pytest.raises(TokenEndpointUnreachableError, match="did not finish its answer") as info:
        make_auth(retries=0, timeout=(1, 5)).get_token()
    assert body.reads <= 7  # about 5 s of reads, not 100
    assert info.value.status_code == 200


def test_a_connection_reset_after_the_answer_began_is_retried(wire, waits):
    cut = _Body([b'{"access_token": "tok'], end=ConnectionResetError(104, "reset by peer"))
    stub = wire((200, JSON, cut), OK)
    assert make_auth(retries=2).get_token().access_token == TOKEN
    assert len(stub.attempts) == 2
    assert len(waits) == 1  # the backoff, as for any retried failure


def test_an_answer_cut_short_every_time_is_unreachable_after_the_retries(wire, waits):
    stub = wire(*[
        (200, JSON, _Body([b'{"acc'], end=ConnectionResetError(104, "reset"))) for _ in range(3)
    ])
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=2).get_token()
    assert len(stub.attempts) == 3
    assert "answer was cut short" in str(info.value)
    assert info.value.__cause__ is not None
    assert_no_secret_anywhere(info.value)


def test_a_gzip_encoded_token_answer_is_decoded(wire):
    payload = gzip.compress(json.dumps(answer()).encode())
    wire((200, {"Content-Type": "application/json", "Content-Encoding": "gzip"}, payload))
    assert make_auth().get_token().access_token == TOKEN


def test_every_kind_of_failure_draws_on_one_retry_budget(wire, waits):
    """A 503 (retried by urllib3), a cut answer (retried by us), a 503 again: with
    retries=2 that is the third and last attempt; the success waiting behind is never asked."""
    cut = _Body([b'{"acc'], end=ConnectionResetError(104, "reset"))
    stub = wire((503, {}, b"busy"), (200, JSON, cut), (503, {}, b"busy"), OK)
    with pytest.raises(TokenEndpointUnreachableError):
        make_auth(retries=2).get_token()
    assert len(stub.attempts) == 3
    assert stub.outcomes == [OK]
    assert len(waits) == 2


def test_a_cut_answer_with_a_users_retry_that_does_not_retry_post_is_still_our_error(
    wire, waits
):
    stub = wire((200, JSON, _Body([b'{"acc'], end=ConnectionResetError(104, "reset"))))
    with pytest.raises(TokenEndpointUnreachableError, match="cut short"):
        make_auth(retries=urllib3.util.Retry(total=3)).get_token()  # POST not in its methods
    assert len(stub.attempts) == 1


@pytest.mark.parametrize("value", ["abc", "-5", "1.5", "1e10", ""])
def test_an_unparsable_retry_after_is_ignored_and_the_backoff_used(wire, waits, value):
    stub = wire((429, {"Retry-After": value}, b"slow down"), OK)
    assert make_auth(retries=2).get_token().access_token == TOKEN
    assert len(stub.attempts) == 2
    assert len(waits) == 1
    assert BACKOFF_FACTOR <= waits[0] <= BACKOFF_FACTOR + BACKOFF_JITTER


@pytest.mark.parametrize(
    ("literal", "expired"),
    [("-1e999", True), ("1e999", False), ("9" * 400, False), ("-" + "9" * 400, True)],
    ids=["-inf", "inf", "huge", "-huge"],
)
def test_extreme_expires_in_values_never_crash(requests_mock, clock, caplog, literal, expired):
    caplog.set_level(logging.DEBUG, logger="requests_advanced_auth")
    body = json.dumps(answer()).replace('"expires_in": 3600', f'"expires_in": {literal}')
    requests_mock.post(IDP_URL, text=body, headers=JSON)
    token = make_auth(clock=clock).get_token()
    assert token.access_token == TOKEN
    assert (token.state(clock(), 0) is TokenState.EXPIRED) == expired


@pytest.mark.parametrize("scope", [123, {"a": 1}, ["read"], True])
def test_a_scope_that_is_not_a_string_is_ignored(requests_mock, clock, scope):
    requests_mock.post(IDP_URL, json=answer(scope=scope))
    token = make_auth(scope="read", clock=clock).get_token()
    assert token.access_token == TOKEN
    assert token.scope is None


BAD_OPTIONS = [
    ("timeout", None), ("timeout", -1), ("timeout", 0), ("timeout", "abc"), ("timeout", (1,)),
    ("timeout", (1, 2, 3)), ("timeout", float("nan")), ("timeout", float("inf")),
    ("timeout", True), ("timeout", (1, -1)),
    ("max_retry_after", float("nan")), ("max_retry_after", float("inf")),
    ("max_retry_after", -1), ("max_retry_after", "abc"), ("max_retry_after", None),
    ("retries", 10**9), ("retries", 1.5),
    ("cache", "x"), ("cache", {}), ("cache", 123),
    ("proxies", "x"), ("proxies", ["http://proxy"]),
    ("token_session", "x"), ("clock", None), ("clock", 1.0),
    ("header_styles", 123), ("header_styles", "bearer"), ("header_styles", {1: "raw"}),
    ("allowed_hosts", 123), ("allowed_hosts", [123]), ("allowed_hosts", ["::1"]),
    ("audience", 123), ("audience", [b"api"]),
    ("scope", 123), ("scope", b"x"), ("scope", [None]),
    ("extra_params", "abc"), ("extra_params", {"client_secret": "x"}),
    ("extra_params", {"grant_type": "password"}), ("extra_params", {"audience": "x"}),
    ("extra_params", {"n": 1}),
    ("token_url", 123), ("token_url", "https://[::1/t"), ("token_url", "https://h.example:99999/t"),
    ("token_url", "https://user:pw@h.example/t"), ("token_url", "https://h.example/t\nX"),
    ("token_url", "https://h .example/t"), ("token_url", "http://127.0.0.1:0/t"),
    ("allowed_hosts", ["[::1"]), ("allowed_hosts", ["h.example:99999"]),
    ("leeway", True), ("verify", 1), ("cert", 5),
]


@pytest.mark.parametrize(("option", "value"), BAD_OPTIONS,
                         ids=[f"{o}={v!r:.20}" for o, v in BAD_OPTIONS])
def test_every_bad_option_is_a_configuration_error_naming_it(option, value):
    with pytest.raises(ConfigurationError) as info:
        make_auth(**{option: value})
    message = str(info.value)
    assert option in message
    assert SECRET not in message


def test_an_ipv6_host_without_brackets_gets_a_hint():
    with pytest.raises(ConfigurationError, match=r"\[::1\]"):
        make_auth(allowed_hosts=["::1"])


class _StubAdapter(requests.adapters.BaseAdapter):
    """A transport of the caller's own whose responses carry a plain file as ``raw``, as
    google-auth's AdapterStub and many test doubles build them."""

    def __init__(self, body: bytes, status: int = 200, headers=None) -> None:
        super().__init__()
        self.body = body
        self.status = status
        self.headers = headers or {}

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = self.status
        response.headers["Content-Type"] = "application/json"
        response.headers.update(self.headers)
        response.raw = io.BytesIO(self.body)
        response.request = request
        response.url = request.url
        return response

    def close(self):
        pass


def test_a_token_session_whose_responses_are_not_urllib3_still_works(clock):
    session = requests.Session()
    session.mount("https://", _StubAdapter(json.dumps(answer()).encode()))
    assert make_auth(token_session=session, clock=clock).get_token().access_token == TOKEN


def test_a_503_from_a_transport_of_the_callers_own_reports_its_retry_after(clock):
    session = requests.Session()
    session.mount("https://", _StubAdapter(b"{}", status=503, headers={"Retry-After": "120"}))
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(token_session=session, clock=clock).get_token()
    assert info.value.retry_after == 120


# == a hostile token endpoint, round two =======================================================


class _Limit(Exception):
    """Raised by a test body once it has served more than a test allows (never caught)."""


def test_a_retried_status_with_an_endless_body_is_not_drained(wire, waits):
    """urllib3 reads a retried answer's body to reuse the connection; an endless one would
    hold the fetch (and every thread waiting for it) forever. It is closed instead."""

    def cap():
        if endless.served > 4 * 1024 * 1024:
            raise _Limit("the 503's body was drained")

    endless = _Body([b"x" * 65536], forever=True, on_read=cap)
    stub = wire((503, {"Content-Type": "text/plain"}, endless), OK)
    assert make_auth(retries=2).get_token().access_token == TOKEN
    assert len(stub.attempts) == 2
    assert endless.served <= 2 * 65536


def test_the_token_request_is_not_signed_by_the_session_it_goes_through(leak_guard):
    """A session can carry the auth and be its token_session: the token POST must not ask
    the same auth for a token (it would wait on itself for ever)."""
    adapter = requests_mock_module.Adapter()
    adapter.register_uri("POST", IDP_URL, json=answer())
    adapter.register_uri("GET", "https://api.example.com/x", text="ok")
    session = requests.Session()
    session.mount("https://", adapter)
    session.auth = make_auth(token_session=session)
    done = []
    worker = threading.Thread(
        target=lambda: done.append(session.get("https://api.example.com/x")), daemon=True
    )
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "the token request waited on its own auth"
    assert done[0].status_code == 200
    token_post = adapter.request_history[0]
    assert "Authorization" not in token_post.headers


@pytest.mark.parametrize(
    "body",
    [answer(token_type=SECRET), answer(expires_in=f"x{SECRET}"),
     {**answer(access_token=None), f"client_secret={SECRET}": 1}],
    ids=["token_type", "expires_in", "a key"],
)
def test_a_secret_echoed_in_any_field_of_an_answer_is_blanked(requests_mock, clock, body):
    requests_mock.post(IDP_URL, json=body)
    with pytest.raises(TokenResponseError) as info:
        make_auth(clock=clock).get_token()
    assert_no_secret_anywhere(info.value)


def test_a_scope_that_echoes_the_secret_is_not_kept(requests_mock, clock, caplog):
    caplog.set_level(logging.DEBUG, logger="requests_advanced_auth")
    requests_mock.post(IDP_URL, json=answer(scope=f"read client_secret={SECRET}"))
    token = make_auth(scope="read", clock=clock).get_token()
    assert token.access_token == TOKEN
    assert token.scope is None
    assert SECRET not in repr(token) + caplog.text


@pytest.mark.parametrize("odd", [{"expires_in": "abc"}, {"expires_in": 1e999},
                                 {"expires_in": [1]}, {"scope": 123}, {"scope": {}},
                                 {"error_description": 5}, {"error_uri": []}])
def test_an_oauth_error_with_odd_fields_is_still_an_oauth_error(requests_mock, clock, odd):
    body = json.dumps({"error": "invalid_request", "error_description": "no", **odd})
    requests_mock.post(IDP_URL, status_code=400, text=body, headers=JSON)
    with pytest.raises(OAuthError) as info:
        make_auth(clock=clock).get_token()
    assert info.value.error == "invalid_request"


def test_a_users_retry_still_honours_max_retry_after(wire, waits):
    retry = urllib3.util.Retry(2, status_forcelist=[429], allowed_methods=None)
    wire((429, {"Retry-After": "3600"}, b"later"), OK)
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=retry, max_retry_after=1).get_token()
    assert info.value.retry_after == 3600
    assert waits == []  # an hour is not waited for


@pytest.mark.parametrize("retry", [
    urllib3.util.Retry(total=None, connect=None, read=None),
    urllib3.util.Retry(total=50),
])
def test_a_users_retry_without_a_bound_is_a_configuration_error(retry):
    with pytest.raises(ConfigurationError, match="retries"):
        make_auth(retries=retry)


@pytest.mark.parametrize(("option", "value"), [
    ("verify", ""), ("verify", "/no/such/ca-bundle.pem"), ("cert", "/no/such/client.pem"),
    ("cert", ("/no/such/client.pem", "/no/such/client.key")),
])
def test_tls_files_that_do_not_exist_are_a_configuration_error(option, value):
    with pytest.raises(ConfigurationError, match=option):
        make_auth(**{option: value})


def test_a_plain_http_token_request_to_loopback_never_goes_through_a_proxy(
    requests_mock, clock, monkeypatch
):
    """Plain http is allowed to loopback only; a proxy would carry the secret in the clear."""
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example.net:3128")
    monkeypatch.setenv("ALL_PROXY", "http://proxy.example.net:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    url = "http://127.0.0.1:4444/oauth2/token"
    requests_mock.post(url, json=answer())
    make_auth(token_url=url, proxies={"http": "http://other-proxy:3128"}, clock=clock).get_token()
    proxies = requests_mock.last_request.proxies
    assert not proxies.get("http")
    assert not proxies.get("all")


@pytest.mark.parametrize(("option", "value"), [
    ("leeway", 10**400), ("max_retry_after", 10**400), ("timeout", 10**400),
    ("client_secret", "s\udcffcret"), ("client_id", "c\udcffd"), ("scope", "r\udcffead"),
    ("audience", "a\udcffb"), ("extra_params", {"resource": "x\udcff"}),
    ("proxies", {"http": 123}), ("clock", lambda: None), ("clock", lambda: "0"),
    ("token_url", "https://" + "a" * 300 + ".example/t"),
])
def test_more_bad_options_are_a_configuration_error(option, value):
    with pytest.raises(ConfigurationError) as info:
        make_auth(**{option: value})
    assert option.split("_")[0] in str(info.value)


def _echoing_error() -> ProtocolError:
    """What urllib3 raises when a server sends the request body back as a chunk length."""
    echoed = ProtocolError(f"bad chunk length b'client_secret={SECRET}&grant_type'")
    echoed.__context__ = ValueError(f"invalid literal for int(): client_secret={SECRET}")
    return echoed


def test_a_transport_error_chain_holds_no_echoed_secret_nor_its_frames(wire, waits):
    """The cause is kept (its type and a scrubbed text), but not the original exception,
    whose message, context and traceback frames (locals) hold the request body."""
    wire(_echoing_error(), _echoing_error())  # no local of this frame holds the secret
    with pytest.raises(TokenEndpointUnreachableError) as info:
        make_auth(retries=1, client_auth="client_secret_basic").get_token()
    error = info.value
    assert isinstance(error.__cause__, requests.ConnectionError)
    rendered = "".join(traceback.TracebackException(
        type(error), error, error.__traceback__, capture_locals=True).format())
    basic = base64.b64encode(f"{CLIENT_ID}:{SECRET}".encode()).decode()
    for text in (rendered, repr(error.__cause__), str(error.__context__)):
        assert SECRET not in text
        assert basic not in text


def test_a_404_with_a_json_error_is_a_wrong_token_url_not_an_oauth_error(requests_mock, clock):
    requests_mock.post(IDP_URL, status_code=404, headers=JSON,
                       json={"error": "not_found", "error_description": "no such route"})
    with pytest.raises(TokenResponseError, match="check token_url") as info:
        make_auth(clock=clock).get_token()
    assert info.value.status_code == 404
