"""Issue 4 item 13: the client secret and access tokens never show up anywhere a user sees.

Each case of the matrix runs a scenario against the real sandbox with DEBUG logging on for
``requests_advanced_auth`` and ``urllib3``, then scans every artifact it produced: repr/str
of the auth, its fetcher, cache and tokens, every exception with its whole
``__cause__``/``__context__`` chain (and any request such an exception still holds), every
log record (message, args, exception text), every warning, and captured stdout/stderr.
A failing scan names the artifact and the kind of value, never the value.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import warnings
from typing import Any, Callable

import pytest
import requests
from _servers import FrontServer, closed_port, guarded_by

from requests_advanced_auth import (
    AdvancedAuth,
    ClientCredentialsAuth,
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    TokenEndpointUnreachableError,
    TokenResponseError,
    _fetch,
)
from requests_advanced_auth.sandbox import Sandbox

TX_PARAMS = {"page": 1, "size": 2, "siteIds": "27", "startDate": 1704067200,
             "endDate": 1706745599}
STATS_PARAMS = {"page": 1, "siteId": 27, "startDate": "2024-01-01", "endDate": "2024-01-03"}
TIMEOUT = 10


class Case:
    """One scenario's world: the sandbox, the values to watch, the artifacts to scan."""

    def __init__(self, sb: Sandbox, clock: Any) -> None:
        self.sb = sb
        self.clock = clock
        self.watched: dict[str, str] = {
            "client secret": sb.client_secret,
            "basic client secret": sb.basic_client_secret,
        }
        self.texts: list[tuple[str, str]] = []
        self.auths: list[Any] = []

    def watch(self, kind: str, value: str) -> None:
        self.watched[kind] = value

    def auth(self, **options: Any) -> AdvancedAuth:
        options.setdefault("clock", self.clock)
        return self.track(self.sb.auth(**options))

    def track(self, auth: Any) -> Any:
        self.auths.append(auth)
        return auth

    def add(self, label: str, obj: object) -> None:
        self.texts += [(f"repr({label})", repr(obj)), (f"str({label})", str(obj))]

    def add_error(self, label: str, error: BaseException) -> None:
        seen: set[int] = set()
        link: BaseException | None = error
        depth = 0
        while link is not None and id(link) not in seen:
            seen.add(id(link))
            name = f"{label} chain[{depth}] {type(link).__name__}"
            self.add(name, link)
            self.texts.append((f"args of {name}", repr(link.args)))
            request = getattr(link, "request", None)
            if request is not None:  # the prepared token request would carry the secret
                self.texts.append((f"{name}.request.body", str(getattr(request, "body", ""))))
                self.texts.append((f"{name}.request.headers", str(getattr(request, "headers", ""))))
            # Walk both links: the cause, and the context a `from None` only hides.
            nxt = link.__cause__ or link.__context__
            if link.__cause__ is not None and link.__context__ is not None:
                self.add_error(f"{label} chain[{depth}] context", link.__context__)
            link, depth = nxt, depth + 1

    def raises(self, kind: type[BaseException], call: Callable[[], Any]) -> BaseException:
        with pytest.raises(kind) as info:
            call()
        self.add_error(f"raised {kind.__name__}", info.value)
        return info.value

    def collect_objects(self) -> None:
        for n, auth in enumerate(self.auths):
            self.add(f"auth #{n}", auth)
            self.add(f"fetcher of auth #{n}", auth._fetcher)
            self.add(f"cache of auth #{n}", auth.cache)
            self.add(f"deepcopy of auth #{n}", copy.deepcopy(auth))
            cached = auth.cache.get(auth._fetcher.cache_key)
            if cached is not None:
                self.add(f"cached token of auth #{n}", cached)
                self.texts.append((f"fingerprint of auth #{n}'s token", cached.fingerprint))

    def leaks(self) -> list[str]:
        watched = dict(self.watched)
        for n, token in enumerate(self.sb.provider.issued_tokens()):
            watched[f"access token #{n}"] = token
        return [
            f"{kind} in {label}"
            for label, text in self.texts
            for kind, value in watched.items()
            if value and value in text
        ]


# -- helpers for the scenarios ----------------------------------------------------------------


def call_apis(case: Case, auth: Any) -> None:
    with requests.Session() as s:
        for url, params in ((case.sb.transactions_url, TX_PARAMS),
                            (case.sb.statistics_url, STATS_PARAMS)):
            answer = s.get(url, params=params, auth=auth, timeout=TIMEOUT)
            assert answer.status_code == 200, answer.text


def oauth_body(error: str, description: str) -> bytes:
    return json.dumps({"error": error, "error_description": description}).encode()


# -- the matrix ----------------------------------------------------------------------------------


def success(case: Case) -> None:
    auth = case.auth()
    call_apis(case, auth)
    case.add("token", auth.get_token())


def success_with_basic_client(case: Case) -> None:
    auth = case.track(AdvancedAuth(
        case.sb.basic_client_id, case.sb.basic_client_secret, client_auth="client_secret_basic",
        token_url=case.sb.token_url, allowed_hosts=[f"127.0.0.1:{case.sb.port}"]))
    case.add("token", auth.get_token())


def invalid_client_wrong_secret(case: Case) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(16)
    case.watch("wrong secret", wrong)
    auth = case.track(AdvancedAuth(case.sb.client_id, wrong, token_url=case.sb.token_url))
    case.raises(InvalidClientError, auth.get_token)


def invalid_client_basic_for_a_post_client(case: Case) -> None:
    case.raises(InvalidClientError, case.auth(client_auth="client_secret_basic").get_token)


def invalid_client_post_for_a_basic_client(case: Case) -> None:
    auth = case.track(AdvancedAuth(case.sb.basic_client_id, case.sb.basic_client_secret,
                                   token_url=case.sb.token_url))
    case.raises(InvalidClientError, auth.get_token)


def invalid_request_audience(case: Case) -> None:
    narrow = "narrow-" + secrets.token_urlsafe(16)
    case.watch("narrow client secret", narrow)
    case.sb.register_client("narrow", narrow, audiences=["api.advanced-store.com"])
    auth = case.track(AdvancedAuth("narrow", narrow, token_url=case.sb.token_url))
    case.raises(OAuthError, auth.get_token)


def unauthorized_client(case: Case) -> None:
    case.sb.provider.fail_next(1, status=400, body=oauth_body("unauthorized_client", "No."))
    case.raises(OAuthError, case.auth().get_token)


def invalid_scope(case: Case) -> None:
    case.sb.provider.fail_next(1, status=400, body=oauth_body("invalid_scope", "Bad scope."))
    case.raises(OAuthError, case.auth(scope="read write").get_token)


def oauth_error_quoting_the_secret(case: Case) -> None:
    said = f"client_secret '{case.sb.client_secret}' does not match"
    case.sb.provider.fail_next(1, status=401, body=oauth_body("invalid_client", said))
    case.raises(InvalidClientError, case.auth().get_token)


def html_login_page(case: Case) -> None:
    page = f"<html><body>Sign in as {case.sb.client_id}<form>...</form></body></html>"
    case.sb.provider.fail_next(1, status=200, body=page.encode(), content_type="text/html")
    case.raises(TokenResponseError, case.auth().get_token)


def html_page_quoting_the_secret(case: Case) -> None:
    page = f"<html>client_secret={case.sb.client_secret} is not accepted here</html>"
    case.sb.provider.fail_next(1, status=200, body=page.encode(), content_type="text/html")
    case.raises(TokenResponseError, case.auth().get_token)


def invalid_json(case: Case) -> None:
    case.sb.provider.fail_next(1, status=200, body=b'{"access_token": "sbx_')
    case.raises(TokenResponseError, case.auth().get_token)


def missing_access_token(case: Case) -> None:
    case.sb.provider.token_overrides["access_token"] = None
    case.raises(TokenResponseError, case.auth().get_token)


def non_string_access_token(case: Case) -> None:
    case.sb.provider.token_overrides["access_token"] = 1234567890
    case.raises(TokenResponseError, case.auth().get_token)


def other_token_type_with_a_real_token(case: Case) -> None:
    case.sb.provider.token_overrides["token_type"] = "mac"
    case.raises(TokenResponseError, case.auth().get_token)


def non_numeric_expires_in_with_a_real_token(case: Case) -> None:
    case.sb.provider.token_overrides["expires_in"] = "in an hour"
    case.raises(TokenResponseError, case.auth().get_token)


def token_in_a_non_200_answer(case: Case) -> None:
    token = "sbx_" + secrets.token_urlsafe(32)
    case.watch("access token of a 201 answer", token)
    body = json.dumps({"access_token": token, "expires_in": 3600, "token_type": "bearer"})
    case.sb.provider.fail_next(1, status=201, body=body.encode())
    case.raises(TokenResponseError, case.auth().get_token)


def connection_refused(case: Case) -> None:
    auth = case.track(AdvancedAuth(case.sb.client_id, case.sb.client_secret,
                                   token_url=f"http://127.0.0.1:{closed_port()}/oauth2/token"))
    case.raises(TokenEndpointUnreachableError, auth.get_token)


def connection_reset(case: Case) -> None:
    case.sb.provider.fail_next(2, mode="reset")
    case.raises(TokenEndpointUnreachableError, case.auth(retries=1).get_token)


def silent_server(case: Case) -> None:
    case.sb.provider.fail_next(1, mode="hang")
    case.raises(TokenEndpointUnreachableError,
                case.auth(timeout=(0.3, 0.3), retries=0).get_token)


def persisting_503(case: Case) -> None:
    case.sb.provider.fail_next(2, status=503)
    case.raises(TokenEndpointUnreachableError, case.auth(retries=1).get_token)


def retry_after_too_long(case: Case) -> None:
    case.sb.provider.fail_next(1, status=429, retry_after=600)
    case.raises(TokenEndpointUnreachableError, case.auth().get_token)


def redirecting_token_endpoint(case: Case) -> None:
    case.sb.provider.fail_next(1, mode="redirect")
    case.raises(TokenResponseError, case.auth().get_token)


def resend_after_401(case: Case) -> None:
    auth = case.auth()
    call_apis(case, auth)
    case.sb.provider.revoke_all()
    call_apis(case, auth)  # each call absorbs one 401
    assert case.sb.provider.unauthorized == 1


def second_401_returned(case: Case) -> None:
    auth = case.auth(audience="api.ad4mat.net")  # the transactions API refuses it
    with requests.Session() as s:
        answer = s.get(case.sb.transactions_url, params=TX_PARAMS, auth=auth, timeout=TIMEOUT)
    assert answer.status_code == 401
    assert [r.status_code for r in answer.history] == [401]
    with pytest.raises(requests.HTTPError) as info:
        answer.raise_for_status()
    # The error holds the caller's own request (with its header); its message must not.
    case.add("HTTPError of a returned 401", info.value)


def non_replayable_body(case: Case) -> None:
    with FrontServer(guarded_by(case.sb)) as api:
        auth = case.auth(allowed_hosts=[f"127.0.0.1:{api.port}"])
        auth.get_token()
        case.sb.provider.revoke_all()
        answer = requests.post(api.url + "/upload", data=iter([b"a", b"b"]), auth=auth,
                               timeout=TIMEOUT)
    assert answer.status_code == 401


def refresh_ahead_failure_then_expiry_failure(case: Case) -> None:
    auth = case.auth()
    call_apis(case, auth)
    case.clock.advance(3600 - 30)  # stale: one caller refreshes ahead, and that fails
    case.sb.provider.fail_next(4, status=503)
    with requests.Session() as s:
        answer = s.get(case.sb.statistics_url, params=STATS_PARAMS, auth=auth, timeout=TIMEOUT)
    assert answer.status_code == 200  # the old token still served
    assert case.sb.provider.tokens_issued == 1
    case.clock.advance(60)  # expired now: the failure reaches the caller
    case.sb.provider.fail_next(4, status=503)
    case.raises(TokenEndpointUnreachableError, lambda: call_apis(case, auth))


def bad_configuration(case: Case) -> None:
    secret = case.sb.client_secret
    case.raises(ConfigurationError,
                lambda: AdvancedAuth("id", secret, token_url="http://auth.example.com/token"))
    case.raises(ConfigurationError, lambda: AdvancedAuth("id", secret, leeway=-1))
    case.raises(ConfigurationError,
                lambda: AdvancedAuth("id", secret, client_auth="secret_jwt"))  # type: ignore[arg-type]
    case.raises(ConfigurationError, lambda: ClientCredentialsAuth("id", secret))
    case.raises(ConfigurationError,
                lambda: AdvancedAuth.from_env(environ={"ADVANCED_STORE_CLIENT_SECRET": secret}))


MATRIX = [
    success,
    success_with_basic_client,
    invalid_client_wrong_secret,
    invalid_client_basic_for_a_post_client,
    invalid_client_post_for_a_basic_client,
    invalid_request_audience,
    unauthorized_client,
    invalid_scope,
    oauth_error_quoting_the_secret,
    html_login_page,
    html_page_quoting_the_secret,
    invalid_json,
    missing_access_token,
    non_string_access_token,
    other_token_type_with_a_real_token,
    non_numeric_expires_in_with_a_real_token,
    token_in_a_non_200_answer,
    connection_refused,
    connection_reset,
    silent_server,
    persisting_503,
    retry_after_too_long,
    redirecting_token_endpoint,
    resend_after_401,
    second_401_returned,
    non_replayable_body,
    refresh_ahead_failure_then_expiry_failure,
    bad_configuration,
]


def _name(case: Any) -> str:
    return str(getattr(case, "__name__", case))


@pytest.mark.parametrize("scenario", MATRIX, ids=_name)
def test_no_secret_or_token_in_any_artifact(scenario, clock, caplog, capfd, monkeypatch):
    monkeypatch.setattr(_fetch, "_sleep", lambda seconds: None)
    caplog.set_level(logging.DEBUG, logger="requests_advanced_auth")
    caplog.set_level(logging.DEBUG, logger="urllib3")
    with Sandbox(clock=clock) as sb:
        case = Case(sb, clock)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scenario(case)
            case.collect_objects()
    assert sb.provider.token_requests >= 1 or scenario in (bad_configuration, connection_refused)
    for n, record in enumerate(caplog.records):
        label = f"log record #{n} {record.name}:{record.levelname} {str(record.msg)[:50]!r}"
        case.texts.append((f"message of {label}", record.getMessage()))
        case.texts.append((f"args of {label}", repr(record.args)))
        if record.exc_info:
            case.texts.append((f"exception of {label}",
                               logging.Formatter().formatException(record.exc_info)))
        case.texts.append((f"exc_text of {label}", record.exc_text or ""))
    for n, warning in enumerate(caught):
        case.texts.append((f"warning #{n} {warning.category.__name__}", str(warning.message)))
    out, err = capfd.readouterr()
    case.texts += [("captured stdout", out), ("captured stderr", err)]
    if scenario is not bad_configuration:
        assert any(label.startswith("message of log record") for label, _ in case.texts)
    leaks = case.leaks()
    assert leaks == [], "leaked: " + "; ".join(leaks)
