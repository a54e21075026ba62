"""The sandbox itself, driven with plain requests (never the package's auth)."""

from __future__ import annotations

import ast
import base64
import csv
import http.client
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote_plus

import pytest
import requests
from _helpers import WAIT, child_process, read_exports, run_threads

from requests_advanced_auth import sandbox as sandbox_module
from requests_advanced_auth.sandbox import (
    STATISTICS_COLUMNS,
    Sandbox,
    SandboxProvider,
)

YEAR_START = 1704067200  # 2024-01-01T00:00:00Z
YEAR_END = 1735689599  # 2024-12-31T23:59:59Z
BOTH = "api.ad4mat.net api.advanced-store.com"
TIMEOUT = 5
ROW_FIELDS = {
    "transactionDate": int,
    "commission": float,
    "basketValue": float,
    "clickTime": int,
    "program": str,
    "programId": str,
    "site": str,
    "siteId": str,
    "status": str,
    "subIdOrText": str,
    "transactionId": str,
    "transactionType": str,
    "trackingCategory": str,
    "updatedAt": int,
    "conversionTime": str,
}


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def form(sb, audience=BOTH, **extra):
    data = {
        "grant_type": "client_credentials",
        "client_id": sb.client_id,
        "client_secret": sb.client_secret,
        "audience": audience,
    }
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def post_token(sb, data=None, **kwargs):
    kwargs.setdefault("timeout", TIMEOUT)
    return requests.post(sb.token_url, data=form(sb) if data is None else data, **kwargs)


def get_token(sb, audience=BOTH) -> str:
    answer = post_token(sb, form(sb, audience))
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def basic(client_id: str, secret: str) -> str:
    pair = f"{quote_plus(client_id)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(pair).decode()


def tx_params(**overrides):
    params = {
        "page": 1,
        "size": 250,
        "siteIds": "25,26,27",
        "startDate": YEAR_START,
        "endDate": YEAR_END,
    }
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def get_transactions(sb, token, **overrides):
    return requests.get(
        sb.transactions_url,
        params=tx_params(**overrides),
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )


def stats_params(**overrides):
    params = {"page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-31"}
    params.update(overrides)
    return {k: v for k, v in params.items() if v is not None}


def get_statistics(sb, token, **overrides):
    return requests.get(
        sb.statistics_url,
        params=stats_params(**overrides),
        headers={"authorization": token},
        timeout=TIMEOUT,
    )


def all_transactions(sb, token, **overrides):
    rows, page = [], 1
    while True:
        answer = get_transactions(sb, token, page=page, size=1000, **overrides).json()
        rows += answer["transactionDataList"]
        if page >= answer["totalPageCount"]:
            return rows
        page += 1


@pytest.fixture(scope="module")
def sb():
    """A shared sandbox for tests that change no state."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def token(sb):
    return get_token(sb)


@pytest.fixture
def fresh():
    with Sandbox() as sandbox:
        yield sandbox


# -- the Sandbox object --------------------------------------------------------------------


def test_sandbox_exposes_urls_and_two_clients(sb):
    assert sb.url == f"http://127.0.0.1:{sb.port}"
    assert sb.token_url == sb.url + "/oauth2/token"
    assert sb.transactions_url == sb.url + "/publishers/transactions/2.0/"
    assert sb.statistics_url == sb.url + "/function/api/statistics"
    assert (sb.client_id, sb.basic_client_id) == ("sandbox-client", "sandbox-basic-client")
    assert len(sb.client_secret) >= 32
    assert sb.client_secret != sb.basic_client_secret
    assert sb.environment()["ADVANCED_STORE_API_URL"] == sb.url


def test_secrets_are_random_per_instance():
    assert Sandbox().client_secret != Sandbox().client_secret


def test_port_is_unknown_before_start():
    with pytest.raises(RuntimeError):
        _ = Sandbox().url


def test_start_and_stop_work_without_context_manager():
    sandbox = Sandbox().start()
    try:
        assert post_token(sandbox).status_code == 200
    finally:
        sandbox.stop()
    sandbox.stop()  # idempotent
    with pytest.raises(requests.ConnectionError):
        post_token(sandbox, timeout=1)


def test_keep_alive_reuses_one_connection(sb):
    connection = http.client.HTTPConnection("127.0.0.1", sb.port, timeout=TIMEOUT)
    try:
        connection.request("GET", "/_sandbox/state")
        first = connection.getresponse()
        first.read()
        sock = connection.sock
        connection.request("GET", "/_sandbox/state")
        second = connection.getresponse()
        second.read()
        assert (first.status, second.status) == (200, 200)
        assert not second.will_close
        assert connection.sock is sock
        assert first.getheader("Content-Length") is not None
    finally:
        connection.close()


def test_stop_closes_idle_keep_alive_connections():
    sandbox = Sandbox().start()
    session = requests.Session()
    assert session.post(sandbox.token_url, data=form(sandbox), timeout=TIMEOUT).ok
    sandbox.stop()
    with pytest.raises(requests.ConnectionError):
        session.post(sandbox.token_url, data=form(sandbox), timeout=1)
    session.close()


def test_provider_handles_requests_without_sockets_and_ignores_header_case():
    provider = SandboxProvider()
    provider.register_client("c", "s")
    body = b"grant_type=client_credentials&client_id=c&client_secret=s&audience=api.ad4mat.net"
    headers = {"CONTENT-TYPE": "application/x-www-form-urlencoded"}
    answer = provider.handle("post", "/oauth2/token", "", headers, body)
    assert answer.status == 200
    assert answer.fault is None
    assert answer.header("cache-control") == "no-store"
    query = "page=1&siteId=25&startDate=2024-02-01&endDate=2024-02-03"
    raw = answer.json()["access_token"]
    stats = provider.handle("GET", "/function/api/statistics", query, {"AuThOrIzAtIoN": raw}, b"")
    assert stats.status == 200
    assert len(stats.json()["data"]["data"]) == 3
    assert provider.handle("GET", "/nowhere", "", {}, b"").status == 404


# -- independence: the oracle shares no code with the package ------------------------------

SANDBOX_PY = Path(sandbox_module.__file__ or "")


def is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_in(node: ast.AST, scope: tuple[str, ...] = ()) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(imported module, scope) for every import under ``node``.

    The scope is the path of enclosing classes and functions, with "TYPE_CHECKING" for an
    ``if TYPE_CHECKING:`` block (read by type checkers, never run); () is run at import.
    A relative import is named by its dots, e.g. "." or ".._auth".
    """
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            yield from imports_in(child, (*scope, child.name))
        elif isinstance(child, ast.If) and is_type_checking(child.test):
            for statement in child.body:
                yield from imports_in(ast.Module([statement], []), (*scope, "TYPE_CHECKING"))
            for statement in child.orelse:
                yield from imports_in(ast.Module([statement], []), scope)
        elif isinstance(child, ast.Import):
            yield from ((alias.name, scope) for alias in child.names)
        elif isinstance(child, ast.ImportFrom):
            yield "." * child.level + (child.module or ""), scope
        else:
            yield from imports_in(child, scope)


SANDBOX_IMPORTS = list(imports_in(ast.parse(SANDBOX_PY.read_text(encoding="utf-8"))))
# The only imports of the package: Sandbox.auth() builds a client when called, and the
# annotation of its return type (a TYPE_CHECKING import, which never runs).
ALLOWED_PACKAGE_IMPORTS = [
    ("requests_advanced_auth", ("TYPE_CHECKING",)),
    ("requests_advanced_auth", ("Sandbox", "auth")),
]


def test_sandbox_imports_the_package_only_lazily_inside_sandbox_auth():
    assert len(SANDBOX_IMPORTS) > 20  # the walk does see the module's imports
    own = [
        (name, scope)
        for name, scope in SANDBOX_IMPORTS
        if name.startswith(".") or name.split(".")[0] == "requests_advanced_auth"
    ]
    assert own == ALLOWED_PACKAGE_IMPORTS


@pytest.mark.skipif(sys.version_info < (3, 10), reason="sys.stdlib_module_names is 3.10+")
def test_sandbox_imports_only_standard_library_modules():
    others = [
        (name, scope)
        for name, scope in SANDBOX_IMPORTS
        if (name, scope) not in ALLOWED_PACKAGE_IMPORTS
        and name.split(".")[0] not in sys.stdlib_module_names  # type: ignore[attr-defined]
    ]
    assert others == []


STANDALONE = """
import importlib.util, json, sys, urllib.parse, urllib.request
spec = importlib.util.spec_from_file_location("standalone_sandbox", sys.argv[1])
module = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = module
spec.loader.exec_module(module)
with module.Sandbox() as sb:
    form = {"grant_type": "client_credentials", "client_id": sb.client_id,
            "client_secret": sb.client_secret, "audience": "api.ad4mat.net"}
    body = urllib.parse.urlencode(form).encode()
    answer = json.load(urllib.request.urlopen(sb.token_url, body, timeout=10))
loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("requests_advanced_auth", "requests"))
print(json.dumps({"token_type": answer["token_type"], "loaded": loaded}))
"""


def test_sandbox_py_serves_tokens_on_a_python_without_site_packages():
    """Loaded by path with -S (no site-packages, so nothing but the standard library)."""
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", STANDALONE, str(SANDBOX_PY)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == {"token_type": "bearer", "loaded": []}


# -- token endpoint ------------------------------------------------------------------------


def test_token_with_body_credentials_answers_like_hydra(sb):
    answer = post_token(sb)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json;charset=UTF-8"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["Pragma"] == "no-cache"
    payload = answer.json()
    assert list(payload) == ["access_token", "expires_in", "scope", "token_type"]
    assert payload["access_token"].startswith("sbx_")
    assert (payload["expires_in"], payload["scope"], payload["token_type"]) == (3600, "", "bearer")


def test_each_token_is_new(sb):
    assert get_token(sb) != get_token(sb)


def test_basic_client_authenticates_with_http_basic(sb):
    answer = post_token(
        sb,
        {"grant_type": "client_credentials", "audience": "api.ad4mat.net"},
        headers={"Authorization": basic(sb.basic_client_id, sb.basic_client_secret)},
    )
    assert answer.status_code == 200, answer.text


def test_basic_credentials_are_url_decoded_after_base64(sb):
    client_id, secret = "client:id with spaces+ä", "s3cr:t+/=%&"
    sb.register_client(client_id, secret, auth_method="client_secret_basic")
    headers = {"Authorization": basic(client_id, secret)}
    data = {"grant_type": "client_credentials"}
    assert post_token(sb, data, headers=headers).status_code == 200
    raw = base64.b64encode(f"{client_id}:{secret}".encode()).decode()  # not url-encoded
    answer = post_token(sb, data, headers={"Authorization": f"Basic {raw}"})
    assert answer.status_code == 401


def test_basic_with_the_same_client_id_in_the_body_is_accepted(sb):
    data = {"grant_type": "client_credentials", "client_id": sb.basic_client_id}
    headers = {"Authorization": basic(sb.basic_client_id, sb.basic_client_secret)}
    assert post_token(sb, data, headers=headers).status_code == 200
    data["client_id"] = sb.client_id
    assert post_token(sb, data, headers=headers).json()["error"] == "invalid_request"


def test_post_client_using_basic_gets_invalid_client_naming_its_method(sb):
    answer = post_token(
        sb,
        {"grant_type": "client_credentials"},
        headers={"Authorization": basic(sb.client_id, sb.client_secret)},
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="sandbox"'
    payload = answer.json()
    assert payload["error"] == "invalid_client"
    assert (
        "only supports client authentication method 'client_secret_post', however method "
        "'client_secret_basic' was requested." in payload["error_description"]
    )


def test_basic_client_using_body_credentials_gets_invalid_client_naming_its_method(sb):
    data = form(sb, client_id=sb.basic_client_id, client_secret=sb.basic_client_secret)
    answer = post_token(sb, data)
    assert answer.status_code == 401
    assert "WWW-Authenticate" not in answer.headers
    assert answer.json()["error"] == "invalid_client"
    assert (
        "'client_secret_basic', however method 'client_secret_post'"
        in (answer.json()["error_description"])
    )


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("nobody", "x"), ("sandbox-client", "wrong"), ("sandbox-client", None)],
)
def test_unknown_client_wrong_or_missing_secret_is_401_invalid_client(sb, client_id, secret):
    answer = post_token(sb, form(sb, client_id=client_id, client_secret=secret))
    assert answer.status_code == 401
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.json()["error"] == "invalid_client"


def test_wrong_secret_over_basic_includes_a_basic_challenge(sb):
    answer = post_token(
        sb,
        {"grant_type": "client_credentials"},
        headers={"Authorization": basic(sb.basic_client_id, "wrong")},
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="sandbox"'


def test_both_client_auth_methods_at_once_is_invalid_request(sb):
    answer = post_token(
        sb, form(sb), headers={"Authorization": basic(sb.client_id, sb.client_secret)}
    )
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_request"


def test_malformed_basic_header_is_invalid_request(sb):
    answer = post_token(
        sb, {"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!!"}
    )
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_missing_grant_type_is_invalid_request(sb):
    answer = post_token(sb, form(sb, grant_type=None))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    assert "grant_type" in answer.json()["error_description"]


def test_other_grant_type_is_unsupported_grant_type(sb):
    answer = post_token(sb, form(sb, grant_type="password"))
    assert (answer.status_code, answer.json()["error"]) == (400, "unsupported_grant_type")


def test_repeated_client_secret_is_invalid_request(sb):
    body = f"grant_type=client_credentials&client_id={sb.client_id}"
    body += f"&client_secret={sb.client_secret}&client_secret={sb.client_secret}"
    answer = post_token(sb, body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_json_body_is_rejected_as_invalid_request(sb):
    answer = requests.post(sb.token_url, json=form(sb), timeout=TIMEOUT)
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")


def test_get_on_the_token_endpoint_is_405(sb):
    answer = requests.get(sb.token_url, timeout=TIMEOUT)
    assert answer.status_code == 405
    assert answer.headers["Allow"] == "POST"


@pytest.mark.parametrize(
    "audience_part",
    [
        "audience=api.ad4mat.net%20api.advanced-store.com",  # one value, space-joined
        "audience=api.ad4mat.net+api.advanced-store.com",  # the same, form-encoded space
        "audience=api.ad4mat.net&audience=api.advanced-store.com",  # repeated parameter
    ],
)
def test_both_audience_encodings_give_a_token_for_both_apis(sb, audience_part):
    body = (
        f"grant_type=client_credentials&client_id={sb.client_id}"
        f"&client_secret={sb.client_secret}&{audience_part}"
    )
    answer = post_token(sb, body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    assert get_transactions(sb, token, size=1).status_code == 200
    assert get_statistics(sb, token, size=1).status_code == 200


def test_a_repeated_audience_value_is_never_split(sb):
    body = (
        f"grant_type=client_credentials&client_id={sb.client_id}"
        f"&client_secret={sb.client_secret}"
        "&audience=api.ad4mat.net+api.advanced-store.com&audience=api.ad4mat.net"
    )
    answer = post_token(sb, body, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    assert (
        'Requested audience "api.ad4mat.net api.advanced-store.com" has not been whitelisted'
        in answer.json()["error_description"]
    )


def test_an_audience_the_client_may_not_request_is_named(sb):
    answer = post_token(sb, form(sb, audience="api.ad4mat.net api.example.org"))
    assert (answer.status_code, answer.json()["error"]) == (400, "invalid_request")
    assert answer.json()["error_hint"] == (
        'Requested audience "api.example.org" has not been whitelisted by the OAuth 2.0 Client.'
    )


def test_registered_client_audiences_are_enforced(sb):
    sb.register_client("narrow", "secret", audiences=["api.ad4mat.net"])
    data = form(sb, client_id="narrow", client_secret="secret", audience="api.ad4mat.net")
    assert post_token(sb, data).status_code == 200
    data["audience"] = "api.advanced-store.com"
    assert post_token(sb, data).status_code == 400


def test_scope_is_ignored_and_answered_empty(sb):
    answer = post_token(sb, form(sb, scope="read write"))
    assert answer.status_code == 200
    assert answer.json()["scope"] == ""


# -- transactions --------------------------------------------------------------------------


def test_transactions_answer_has_the_documented_shape(sb, token):
    answer = get_transactions(sb, token, size=5)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    payload = answer.json()
    assert set(payload) == {
        "totalEntries",
        "currentPage",
        "totalPageCount",
        "pageSize",
        "transactionDataList",
    }
    assert (payload["currentPage"], payload["pageSize"]) == (1, 5)
    assert 3000 <= payload["totalEntries"] <= 5000
    for row in payload["transactionDataList"]:
        assert list(row) == list(ROW_FIELDS)
        for name, kind in ROW_FIELDS.items():
            assert isinstance(row[name], (int, float) if kind is float else kind), name
        assert row["status"] in {"pending", "confirmed", "revoked"}
        assert row["site"] == f"Demo Site {row['siteId']}"
        assert row["transactionType"] in {"sale(PC)", "sale(PV)", "lead(PC)"}
        assert row["clickTime"] <= row["transactionDate"] <= row["updatedAt"]
        days, hours, minutes, seconds = (int(p[:-1]) for p in row["conversionTime"].split())
        delay = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
        assert delay * 1000 == row["transactionDate"] - row["clickTime"]


def test_transaction_pages_add_up_to_total_entries(sb, token):
    first = get_transactions(sb, token, size=250).json()
    total, pages = first["totalEntries"], first["totalPageCount"]
    assert pages == -(-total // 250)
    ids = []
    for page in range(1, pages + 1):
        answer = get_transactions(sb, token, page=page, size=250).json()
        assert (answer["totalEntries"], answer["totalPageCount"]) == (total, pages)
        ids += [row["transactionId"] for row in answer["transactionDataList"]]
    assert len(ids) == len(set(ids)) == total
    beyond = get_transactions(sb, token, page=pages + 1, size=250).json()
    assert beyond["transactionDataList"] == []
    assert (beyond["totalEntries"], beyond["totalPageCount"]) == (total, pages)


@pytest.mark.parametrize("range_type", [None, "updatedAt", "transactionDate"])
def test_transactions_are_sorted_and_filtered_by_the_date_field(sb, token, range_type):
    field = range_type or "updatedAt"
    start, end = YEAR_START + 90 * 86400, YEAR_START + 120 * 86400
    rows = all_transactions(sb, token, startDate=start, endDate=end, dateRangeType=range_type)
    assert rows
    assert all(start * 1000 <= row[field] < (end + 1) * 1000 for row in rows)
    keys = [(row[field], row["transactionId"]) for row in rows]
    assert keys == sorted(keys)


def test_transaction_date_range_is_inclusive_to_the_second(sb, token):
    row = get_transactions(sb, token, size=1).json()["transactionDataList"][0]
    second = row["updatedAt"] // 1000
    rows = get_transactions(sb, token, startDate=second, endDate=second).json()
    assert row["transactionId"] in {r["transactionId"] for r in rows["transactionDataList"]}


def test_transactions_filter_by_site_program_and_status(sb, token):
    everything = all_transactions(sb, token)
    only_25 = all_transactions(sb, token, siteIds="25")
    assert only_25
    assert {r["siteId"] for r in only_25} == {"25"}
    assert len(only_25) == sum(r["siteId"] == "25" for r in everything)
    repeated = requests.get(
        sb.transactions_url,
        params=[*tx_params(siteIds=None).items(), ("siteIds", "25"), ("siteIds", "26")],
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    ).json()
    assert (
        repeated["totalEntries"]
        == get_transactions(sb, token, siteIds="25,26").json()["totalEntries"]
    )
    program = all_transactions(sb, token, programId="1003")
    assert program
    assert {r["programId"] for r in program} == {"1003"}
    confirmed = all_transactions(sb, token, statusId="confirmed")
    assert confirmed
    assert {r["status"] for r in confirmed} == {"confirmed"}
    assert confirmed == all_transactions(sb, token, statusId="2")
    assert get_transactions(sb, token, siteIds="99").json()["totalEntries"] == 0


@pytest.mark.parametrize("name", ["page", "size", "siteIds", "startDate", "endDate"])
def test_transactions_missing_required_parameter_is_400_naming_it(sb, token, name):
    answer = get_transactions(sb, token, **{name: None})
    assert answer.status_code == 400
    assert name in answer.json()["message"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("page", "0"),
        ("page", "one"),
        ("size", "0"),
        ("size", "1001"),
        ("siteIds", "25,x"),
        ("startDate", "2024-01-01"),
        ("startDate", str(YEAR_START * 1000)),  # milliseconds: the API wants seconds
        ("endDate", str(YEAR_START - 1)),
        ("programId", "abc"),
        ("statusId", "open"),
        ("dateRangeType", "createdAt"),
    ],
)
def test_transactions_bad_parameter_is_400_naming_it(sb, token, name, value):
    answer = get_transactions(sb, token, **{name: value})
    assert answer.status_code == 400
    assert name in answer.json()["message"]


def test_transactions_page_size_1000_is_allowed(sb, token):
    assert len(get_transactions(sb, token, size=1000).json()["transactionDataList"]) == 1000


def test_transactions_reject_a_raw_token_without_bearer_with_a_bare_challenge(sb, token):
    """RFC 6750 §3.1 counts an unsupported scheme as no authentication: no error code."""
    answer = requests.get(
        sb.transactions_url, params=tx_params(), headers={"Authorization": token}, timeout=TIMEOUT
    )
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="sandbox"'
    assert answer.json()["error_description"] == (
        "Send Authorization: Bearer <token> (RFC 6750 §2.1)."
    )


def test_transactions_accept_the_bearer_scheme_in_any_case(sb, token):
    answer = requests.get(
        sb.transactions_url,
        params=tx_params(size=1),
        headers={"Authorization": f"bEARER {token}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 200


@pytest.mark.parametrize("audience", ["api.ad4mat.net", ""])
def test_transactions_require_the_advanced_store_audience(sb, audience):
    answer = get_transactions(sb, get_token(sb, audience))
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == invalid_token(
        "The access token is not valid for audience api.advanced-store.com."
    )


def test_transactions_accept_only_get(sb, token):
    answer = requests.post(
        sb.transactions_url, headers={"Authorization": f"Bearer {token}"}, timeout=TIMEOUT
    )
    assert answer.status_code == 405


# -- statistics ----------------------------------------------------------------------------


def test_statistics_json_has_one_row_per_day_with_the_documented_fields(sb, token):
    answer = get_statistics(sb, token)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/vnd.api+json"
    payload = answer.json()
    assert (payload["errors"], payload["success"]) == (None, True)
    rows = payload["data"]["data"]
    assert [row["date"] for row in rows] == [f"2024-01-{day:02d}" for day in range(1, 32)]
    for row in rows:
        assert tuple(row) == STATISTICS_COLUMNS
        assert row["totalTransactions"] == (
            row["pendingTransactionCount"]
            + row["confirmedTransactionCount"]
            + row["revokedTransactionCount"]
        )
        assert row["totalTransactions"] >= row["transactionsPc"] + row["transactionsPv"]


def test_statistics_revoked_commission_is_null_on_days_without_revocations(sb, token):
    rows = []
    for month in ("01", "02", "03"):
        rows += get_statistics(
            sb, token, startDate=f"2024-{month}-01", endDate=f"2024-{month}-28"
        ).json()["data"]["data"]
    nulls = [row for row in rows if row["totalRevokedCommission"] is None]
    assert nulls
    assert all(row["revokedTransactionCount"] == 0 for row in nulls)
    assert any(row["totalRevokedCommission"] is not None for row in rows)


def test_statistics_pages_end_with_an_empty_page(sb, token):
    sizes = [
        len(get_statistics(sb, token, page=page, size=10).json()["data"]["data"])
        for page in range(1, 6)
    ]
    assert sizes == [10, 10, 10, 1, 0]


def test_statistics_agree_with_transactions(sb, token):
    year = {"startDate": "2024-01-01", "endDate": "2024-12-31", "size": 100}
    rows = []
    for page in range(1, 5):
        rows += get_statistics(sb, token, page=page, programId=1002, **year).json()["data"]["data"]
    assert len(rows) == 366
    transactions = all_transactions(
        sb, token, siteIds="25", programId="1002", dateRangeType="transactionDate"
    )
    assert sum(row["totalTransactions"] for row in rows) == len(transactions)
    assert sum(row["totalCommission"] for row in rows) == pytest.approx(
        sum(t["commission"] for t in transactions)
    )


def test_statistics_csv_has_the_same_columns_and_rows(sb, token):
    answer = get_statistics(sb, token, format="csv", size=31)
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/csv; charset=utf-8"
    lines = list(csv.reader(io.StringIO(answer.text)))
    assert tuple(lines[0]) == STATISTICS_COLUMNS
    json_rows = get_statistics(sb, token, size=31).json()["data"]["data"]
    assert len(lines) == 1 + len(json_rows)
    for line, row in zip(lines[1:], json_rows):
        expected = ["" if row[c] is None else str(row[c]) for c in STATISTICS_COLUMNS]
        assert line == expected


def test_statistics_outside_2024_or_for_an_unknown_site_have_no_rows(sb, token):
    for params in (
        {"startDate": "2023-01-01", "endDate": "2023-12-31"},
        {"siteId": 99},
        {"programId": 9999},
    ):
        assert get_statistics(sb, token, **params).json()["data"]["data"] == []
    edge = get_statistics(sb, token, startDate="2023-12-30", endDate="2024-01-02")
    assert [row["date"] for row in edge.json()["data"]["data"]] == ["2024-01-01", "2024-01-02"]


@pytest.mark.parametrize(
    "params",
    [
        {"size": 101},
        {"size": 0},
        {"page": 0},
        {"page": None},
        {"siteId": None},
        {"siteId": "abc"},
        {"startDate": None},
        {"startDate": "2024-1-05"},
        {"endDate": "01.02.2024"},
        {"endDate": "2023-12-31"},
        {"format": "xml"},
    ],
)
def test_statistics_bad_parameter_is_400_in_the_error_shape(sb, token, params):
    answer = get_statistics(sb, token, **params)
    assert answer.status_code == 400
    payload = answer.json()
    assert (payload["data"], payload["success"]) == (None, False)
    assert next(iter(params)) in payload["errors"][0]["message"]


def test_statistics_accept_size_100(sb, token):
    assert get_statistics(sb, token, size=100).status_code == 200


def test_statistics_reject_a_bearer_token_with_invalid_token(sb, token):
    answer = requests.get(
        sb.statistics_url,
        params=stats_params(),
        headers={"Authorization": f"Bearer {token}"},
        timeout=TIMEOUT,
    )
    assert answer.status_code == 401
    assert answer.json()["success"] is False
    message = "Send the raw access token, without 'Bearer'."
    assert answer.json()["errors"] == [{"message": message}]
    assert answer.headers["WWW-Authenticate"] == invalid_token(message)


def test_statistics_accept_either_audience_but_require_one(sb):
    assert get_statistics(sb, get_token(sb, "api.ad4mat.net")).status_code == 200
    assert get_statistics(sb, get_token(sb, "api.advanced-store.com")).status_code == 200
    assert get_statistics(sb, get_token(sb, "")).status_code == 401


# -- 401 challenges of both APIs (RFC 6750 §3) ---------------------------------------------


def invalid_token(description: str) -> str:
    return f'Bearer realm="sandbox", error="invalid_token", error_description="{description}"'


def api_get(sandbox, api, token):
    """GET one page of ``api`` with ``token`` in that API's header style (None: no header)."""
    if api == "transactions":
        url, params, value = sandbox.transactions_url, tx_params(size=1), f"Bearer {token}"
    else:
        url, params, value = sandbox.statistics_url, stats_params(), token
    headers = {} if token is None else {"Authorization": value}
    return requests.get(url, params=params, headers=headers, timeout=TIMEOUT)


def error_description(api, answer):
    """The error text of a 401 body: RFC 6750 style on transactions, errors[] on statistics."""
    payload = answer.json()
    if api == "transactions":
        assert payload["error"] in ("invalid_token", "unauthorized")
        return payload["error_description"]
    assert (payload["data"], payload["success"]) == (None, False)
    (error,) = payload["errors"]
    return error["message"]


@pytest.mark.parametrize("api", ["transactions", "statistics"])
def test_a_request_without_a_token_gets_a_bare_bearer_challenge(sb, api):
    """RFC 6750 §3.1: no credentials at all, so no error code in the challenge."""
    answer = api_get(sb, api, None)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="sandbox"'
    assert error_description(api, answer) == "The request carries no access token."


def rejected_token(sandbox, clock, case):
    """A token the APIs refuse: unknown, expired, revoked, or for no audience they accept."""
    if case == "unknown":
        return "sbx_unknown"
    if case == "audience":
        return get_token(sandbox, "")  # a token for no audience at all
    token = get_token(sandbox)
    assert api_get(sandbox, "transactions", token).status_code == 200
    assert api_get(sandbox, "statistics", token).status_code == 200
    if case == "expired":
        clock.now += sandbox.provider.token_lifetime
    else:
        sandbox.provider.revoke_all()
    return token


@pytest.mark.parametrize("api", ["transactions", "statistics"])
@pytest.mark.parametrize(
    ("case", "description"),
    [
        ("unknown", "The access token is unknown."),
        ("expired", "The access token expired."),
        ("revoked", "The access token was revoked."),
        ("audience", "The access token is not valid for audience {audiences}."),
    ],
    ids=["unknown", "expired", "revoked", "audience"],
)
def test_a_rejected_token_gets_an_invalid_token_challenge(api, case, description):
    """RFC 6750 §3.1: the challenge names invalid_token and says why, as the body does."""
    audiences = {
        "transactions": "api.advanced-store.com",
        "statistics": "api.ad4mat.net or api.advanced-store.com",
    }[api]
    description = description.format(audiences=audiences)
    clock = FakeClock()
    with Sandbox(clock=clock) as sandbox:
        token = rejected_token(sandbox, clock, case)
        answer = api_get(sandbox, api, token)
        assert answer.status_code == 401
        assert answer.headers["WWW-Authenticate"] == invalid_token(description)
        assert error_description(api, answer) == description
        assert sandbox.provider.unauthorized == 1


# -- data determinism ----------------------------------------------------------------------


def provider_rows(provider: SandboxProvider) -> list[dict[str, object]]:
    provider.register_client("c", "s")
    body = b"grant_type=client_credentials&client_id=c&client_secret=s"
    body += b"&audience=api.advanced-store.com"
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    token = provider.handle("POST", "/oauth2/token", "", headers, body).json()["access_token"]
    query = f"page=1&size=1000&siteIds=25,26,27&startDate={YEAR_START}&endDate={YEAR_END}"
    rows: list[dict[str, object]] = []
    for page in range(1, 6):
        answer = provider.handle(
            "GET",
            "/publishers/transactions/2.0/",
            query.replace("page=1", f"page={page}"),
            {"Authorization": f"Bearer {token}"},
            b"",
        )
        rows += answer.json()["transactionDataList"]
    return rows


def test_same_seed_gives_the_same_data_and_another_seed_does_not():
    first = provider_rows(SandboxProvider(seed=7))
    assert len(first) >= 3000
    assert first == provider_rows(SandboxProvider(seed=7))
    assert first != provider_rows(SandboxProvider(seed=8))


# -- knobs ---------------------------------------------------------------------------------


def test_tokens_expire_by_the_injected_clock():
    clock = FakeClock()
    with Sandbox(clock=clock, token_lifetime=60) as sandbox:
        token = get_token(sandbox)
        assert post_token(sandbox).json()["expires_in"] == 60
        clock.now += 59.9
        assert get_transactions(sandbox, token, size=1).status_code == 200
        clock.now += 0.1
        answer = get_transactions(sandbox, token, size=1)
        assert answer.status_code == 401
        assert "expired" in answer.json()["error_description"]
        assert get_statistics(sandbox, token).status_code == 401
        assert sandbox.provider.unauthorized == 2


def test_token_lifetime_can_change_and_may_be_fractional(fresh):
    fresh.provider.token_lifetime = 90.6
    assert post_token(fresh).json()["expires_in"] == 91
    fresh.provider.token_lifetime = 0.4
    assert post_token(fresh).json()["expires_in"] == 0
    with pytest.raises(ValueError, match="token_lifetime"):
        fresh.provider.token_lifetime = -1


def test_token_overrides_stay_until_cleared(fresh):
    overrides = fresh.provider.token_overrides
    overrides["expires_in"] = "3600"
    overrides["token_type"] = "Bearer"
    for _ in range(2):
        payload = post_token(fresh).json()
        assert (payload["expires_in"], payload["token_type"]) == ("3600", "Bearer")
    overrides.clear()
    overrides["expires_in"] = None
    payload = post_token(fresh).json()
    assert "expires_in" not in payload
    assert payload["token_type"] == "bearer"
    fresh.provider.token_overrides = {}
    assert post_token(fresh).json()["expires_in"] == 3600


def test_revoke_all_invalidates_every_token_issued_so_far(fresh):
    old = [get_token(fresh), get_token(fresh)]
    assert fresh.provider.revoke_all() == 2
    for token in old:
        answer = get_transactions(fresh, token, size=1)
        assert answer.status_code == 401
        assert "revoked" in answer.json()["error_description"]
        assert get_statistics(fresh, token).status_code == 401
    assert get_transactions(fresh, get_token(fresh), size=1).status_code == 200
    assert set(old) <= set(fresh.provider.issued_tokens())


def test_fail_next_status_with_retry_after_then_recovers(fresh):
    fresh.provider.fail_next(2, status=503, retry_after=2)
    for _ in range(2):
        answer = post_token(fresh)
        assert answer.status_code == 503
        assert answer.headers["Retry-After"] == "2"
        assert answer.headers["Cache-Control"] == "no-store"
        assert answer.json()["error"] == "temporarily_unavailable"
    assert post_token(fresh).status_code == 200
    assert (fresh.provider.token_requests, fresh.provider.tokens_issued) == (3, 1)


def test_fail_next_fractional_retry_after_and_custom_body(fresh):
    fresh.provider.fail_next(1, status=429, retry_after=0.5)
    fresh.provider.fail_next(1, status=200, body=b"<html>proxy</html>", content_type="text/html")
    first = post_token(fresh)
    assert (first.status_code, first.headers["Retry-After"]) == (429, "0.5")
    second = post_token(fresh)
    assert second.status_code == 200
    assert (second.headers["Content-Type"], second.text) == ("text/html", "<html>proxy</html>")
    assert post_token(fresh).json()["token_type"] == "bearer"


def test_fail_next_reset_aborts_the_connection(fresh):
    fresh.provider.fail_next(1, mode="reset")
    with pytest.raises(requests.ConnectionError) as caught:
        post_token(fresh)
    assert "reset" in str(caught.value).lower()
    assert post_token(fresh).status_code == 200
    assert fresh.provider.token_requests == 2


def test_fail_next_hang_never_answers_and_stop_drops_it_without_waiting_for_it():
    sandbox = Sandbox().start()
    arrived = threading.Event()
    outcome: list[object] = []

    def hung_request() -> None:
        try:
            outcome.append(post_token(sandbox, timeout=WAIT))
        except requests.RequestException as exc:
            outcome.append(exc)

    sandbox.provider.fail_next(1, mode="hang")
    sandbox.provider.on_token_request = arrived.set
    client = threading.Thread(target=hung_request)
    client.start()
    stopper = threading.Thread(target=sandbox.stop)
    try:
        assert arrived.wait(WAIT)  # the sandbox has taken the request it hangs
        assert post_token(sandbox).status_code == 200  # a later one is answered meanwhile
        assert outcome == []  # the hung one still is not
    finally:
        stopper.start()
        stopper.join(WAIT)
        client.join(WAIT)
    assert not stopper.is_alive()  # stop() returned with a handler still hanging
    (error,) = outcome
    # The connection was dropped by stop(): no answer ever came, and no client timeout.
    assert isinstance(error, requests.ConnectionError), repr(error)


def test_fail_next_redirect_answers_302(fresh):
    fresh.provider.fail_next(1, mode="redirect")
    fresh.provider.fail_next(1, mode="redirect", body=b"https://login.example/")
    first = post_token(fresh, allow_redirects=False)
    assert (first.status_code, first.headers["Location"]) == (302, "/_sandbox/login")
    second = post_token(fresh, allow_redirects=False)
    assert second.headers["Location"] == "https://login.example/"
    fresh.provider.fail_next(1, mode="redirect")
    followed = post_token(fresh)  # requests follows a 302 to the HTML "login" page
    assert followed.status_code == 200
    assert followed.history[0].status_code == 302
    assert followed.headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": -1}, "n must be"),
        ({"mode": "explode"}, "mode must be"),
        ({"status": 42}, "status must be"),
        ({"retry_after": -1}, "retry_after must be"),
    ],
)
def test_fail_next_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SandboxProvider().fail_next(**kwargs)


def test_latency_knobs_delay_answers(fresh):
    fresh.provider.token_latency = 0.15
    started = time.monotonic()
    token = get_token(fresh)
    assert time.monotonic() - started >= 0.15
    fresh.provider.api_latency = 0.15
    started = time.monotonic()
    assert get_statistics(fresh, token).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_counters_count_and_reset(fresh):
    token = get_token(fresh)
    post_token(fresh, form(fresh, client_secret="wrong"))
    get_transactions(fresh, token, size=1)
    get_statistics(fresh, f"Bearer {token}")
    get_transactions(fresh, "sbx_unknown")
    provider = fresh.provider
    assert (provider.token_requests, provider.tokens_issued) == (2, 1)
    assert (provider.api_requests, provider.unauthorized) == (3, 2)
    assert provider.max_concurrent_token_requests == 1
    provider.reset_counters()
    assert provider.state()["token_requests"] == provider.api_requests == 0
    assert get_transactions(fresh, token, size=1).status_code == 200  # tokens survive


def test_max_concurrent_token_requests_sees_overlapping_requests(fresh):
    # None is answered until all 8 are in progress: a sandbox serving token requests one at
    # a time breaks the barrier, and the requests then get 500s.
    fresh.provider.on_token_request = threading.Barrier(8, timeout=WAIT).wait
    statuses = run_threads(8, lambda i: post_token(fresh).status_code)
    assert statuses == [200] * 8
    assert fresh.provider.max_concurrent_token_requests == 8
    fresh.provider.on_token_request = None
    assert post_token(fresh).status_code == 200
    assert fresh.provider.max_concurrent_token_requests == 8  # a maximum, not the last


def test_on_token_request_runs_inside_each_token_request_until_reset(fresh):
    seen: list[int] = []
    fresh.provider.on_token_request = lambda: seen.append(fresh.provider.token_requests)
    fresh.provider.fail_next(1, status=503)
    assert [post_token(fresh).status_code for _ in range(2)] == [503, 200]
    assert seen == [1, 2]  # called for failed requests too, once each is counted
    requests.get(fresh.statistics_url, timeout=TIMEOUT)  # the APIs do not call it
    assert seen == [1, 2]

    def refuse() -> None:
        raise RuntimeError("hook failed")

    fresh.provider.on_token_request = refuse
    assert post_token(fresh).status_code == 500
    fresh.provider.reset()
    assert fresh.provider.on_token_request is None
    assert post_token(fresh).status_code == 200


def test_64_concurrent_connections_are_all_answered(fresh):
    barrier = threading.Barrier(64)
    token = get_token(fresh)
    results: list[object] = []

    def worker(number: int) -> None:
        barrier.wait()
        try:
            if number % 2:
                answer = post_token(fresh, timeout=10)
            else:
                answer = get_transactions(fresh, token, size=10)
            results.append(answer.status_code)
        except requests.RequestException as exc:  # collected, so the assertion shows it
            results.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 64
    assert fresh.provider.token_requests == 33
    assert fresh.provider.api_requests == 32


# -- admin API -----------------------------------------------------------------------------


def admin(sb, action, payload=None):
    if payload is None and action == "state":
        return requests.get(sb.url + "/_sandbox/state", timeout=TIMEOUT)
    return requests.post(sb.url + f"/_sandbox/{action}", json=payload, timeout=TIMEOUT)


def test_admin_state_reports_counters_and_knobs(fresh):
    get_token(fresh)
    state = admin(fresh, "state").json()
    assert state["token_requests"] == state["tokens_issued"] == 1
    assert state["token_lifetime"] == 3600
    assert state["pending_failures"] == 0
    assert {"api_requests", "unauthorized", "max_concurrent_token_requests"} <= set(state)


def test_admin_config_sets_the_knobs(fresh):
    payload = {
        "token_lifetime": 120,
        "token_latency": 0,
        "api_latency": 0,
        "token_overrides": {"token_type": "Bearer", "scope": None},
    }
    answer = admin(fresh, "config", payload)
    assert answer.status_code == 200
    assert answer.json()["token_lifetime"] == 120
    token = post_token(fresh).json()
    assert token["expires_in"] == 120
    assert token["token_type"] == "Bearer"
    assert "scope" not in token


def test_admin_fail_queues_failures(fresh):
    answer = admin(fresh, "fail", {"count": 2, "status": 500, "retry_after": 1})
    assert answer.json()["pending_failures"] == 2
    assert [post_token(fresh).status_code for _ in range(3)] == [500, 500, 200]
    admin(fresh, "fail", {"mode": "status", "status": 200, "body": "<html/>"})
    assert post_token(fresh).text == "<html/>"
    admin(fresh, "fail", {"mode": "reset"})
    with pytest.raises(requests.ConnectionError):
        post_token(fresh)


def test_admin_revoke_and_reset(fresh):
    token = get_token(fresh)
    fresh.provider.fail_next(3)
    fresh.provider.token_lifetime = 5
    assert admin(fresh, "revoke").json()["revoked"] == 1
    assert get_transactions(fresh, token, size=1).status_code == 401
    state = admin(fresh, "reset").json()
    assert state["pending_failures"] == state["token_requests"] == state["unauthorized"] == 0
    assert state["token_lifetime"] == 3600
    assert post_token(fresh).status_code == 200


@pytest.mark.parametrize(
    ("method", "action", "body", "status"),
    [
        ("POST", "config", b"{not json", 400),
        ("POST", "config", b'{"token_lifetime": -5}', 400),
        ("POST", "config", b'{"colour": "red"}', 400),
        ("POST", "fail", b'{"mode": "explode"}', 400),
        ("POST", "nothing", b"", 404),
        ("GET", "revoke", b"", 405),
    ],
)
def test_admin_rejects_bad_requests(sb, method, action, body, status):
    answer = requests.request(method, sb.url + f"/_sandbox/{action}", data=body, timeout=TIMEOUT)
    assert answer.status_code == status


# -- pytest plugin, package smoke test, command line ---------------------------------------


def test_plugin_fixture_gives_a_fresh_running_sandbox(advanced_sandbox):
    assert advanced_sandbox.provider.state()["token_requests"] == 0
    assert post_token(advanced_sandbox).status_code == 200


def test_sandbox_auth_smoke(advanced_sandbox):
    auth = advanced_sandbox.auth()
    with requests.Session() as session:
        session.auth = auth
        stats = session.get(advanced_sandbox.statistics_url, params=stats_params(), timeout=5)
        trans = session.get(advanced_sandbox.transactions_url, params=tx_params(size=1), timeout=5)
    assert (stats.status_code, trans.status_code) == (200, 200)
    assert advanced_sandbox.provider.tokens_issued == 1


def test_module_command_prints_urls_and_exports_then_exits_cleanly_on_ctrl_c():
    root = Path(__file__).resolve().parents[1]
    path = os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path)
    argv = [sys.executable, "-m", "requests_advanced_auth.sandbox", "--token-lifetime", "60"]
    with child_process(argv, env, 20) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("Advanced-Store sandbox running at http://127.0.0.1:")
        exports = read_exports(
            process.stdout, lambda _, exports: "ADVANCED_STORE_API_URL" in exports
        )
        assert exports["ADVANCED_STORE_API_URL"] == first.split()[-1]
        assert exports["ADVANCED_STORE_CLIENT_ID"] == "sandbox-client"
        answer = requests.post(
            exports["ADVANCED_STORE_TOKEN_URL"],
            data={
                "grant_type": "client_credentials",
                "client_id": exports["ADVANCED_STORE_CLIENT_ID"],
                "client_secret": exports["ADVANCED_STORE_CLIENT_SECRET"],
            },
            timeout=TIMEOUT,
        )
        assert answer.json()["expires_in"] == 60
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
