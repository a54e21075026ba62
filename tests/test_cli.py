"""The ``advanced-auth`` command line, run in-process against the sandbox (twice as a process)."""

from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import requests_mock
from _helpers import child_process, read_exports
from _servers import RawServer, broken_chunk, closing

from requests_advanced_auth import cli
from requests_advanced_auth.cli import main
from requests_advanced_auth.pagination import STATISTICS_FIELDS, TRANSACTION_FIELDS

ROOT = Path(__file__).resolve().parents[1]
COMMAND_NAMES = ["token", "check", "get", "transactions", "statistics", "sandbox"]
WAIT = 20  # seconds: a bound for a broken test, never reached when things work


@pytest.fixture
def env(sandbox, monkeypatch):
    """The sandbox's ADVANCED_STORE_* variables, and no others from the real environment."""
    for name in list(os.environ):
        if name.startswith("ADVANCED_STORE_"):
            monkeypatch.delenv(name)
    for name, value in sandbox.environment().items():
        monkeypatch.setenv(name, value)
    return sandbox


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def total_entries(sandbox, sites: str) -> int:
    answer = requests.get(
        sandbox.transactions_url,
        params={"page": 1, "size": 1, "siteIds": sites,
                "startDate": 1704067200, "endDate": 1735689599},
        auth=sandbox.auth(),
        timeout=5,
    )
    return int(answer.json()["totalEntries"])


def subprocess_env() -> dict[str, str]:
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ADVANCED_STORE_")}
    return {**clean, "PYTHONPATH": path}


# -- help and usage ------------------------------------------------------------------------


def test_module_help_lists_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "requests_advanced_auth", "--help"],
        capture_output=True, text=True, env=subprocess_env(), timeout=60, check=False,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("usage: advanced-auth")
    for name in COMMAND_NAMES:
        assert f"\n    {name}" in done.stdout
    assert "ADVANCED_STORE_CLIENT_SECRET" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("name", COMMAND_NAMES)
def test_every_command_has_help(capsys, name):
    code, out, err = run(capsys, name, "--help")
    assert code == 0
    assert out.startswith(f"usage: advanced-auth {name}")
    assert err == ""


def test_client_secret_flag_help_discourages_it(capsys):
    _, out, _ = run(capsys, "check", "--help")
    assert "Discouraged" in out
    assert "`ps`" in out


def test_no_command_is_a_usage_error(capsys):
    code, out, err = run(capsys)
    assert (code, out) == (2, "")
    assert "a command is required" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["nope"],
        ["token", "--bogus"],
        ["transactions", "--since", "2024-01-01", "--until", "2024-01-31"],  # no --site
        ["transactions", "--site", "x", "--since", "2024-01-01", "--until", "2024-01-31"],
        ["statistics", "--site", "25", "--since", "01/02/2024", "--until", "2024-01-31"],
        ["get", "http://127.0.0.1/", "-p", "no-equals-sign"],
        ["sandbox", "--port", "70000"],
    ],
)
def test_bad_arguments_exit_2_with_usage_on_stderr(capsys, argv):
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert "usage: advanced-auth" in err
    assert "error:" in err


def test_version(capsys):
    code, out, _ = run(capsys, "--version")
    assert code == 0
    assert out.startswith("advanced-auth 0.")


def test_a_subcommand_is_added_in_one_place(capsys, monkeypatch):
    """Another command (e.g. `cache`) only needs an adder listed in COMMANDS."""

    def add_hello(subparsers):
        parser = subparsers.add_parser("hello", help="say hello")
        parser.set_defaults(run=lambda args: print("hello") or 0)

    monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, add_hello))
    assert run(capsys, "hello") == (0, "hello\n", "")
    _, out, _ = run(capsys, "--help")
    assert "hello" in out


# -- token -----------------------------------------------------------------------------------


def test_token_prints_the_whole_token_on_stdout_only(env, capsys):
    code, out, err = run(capsys, "token")
    assert (code, err) == (0, "")
    token = out.strip()
    assert out == token + "\n"
    assert token in env.provider.issued_tokens()
    answer = requests.get(
        env.statistics_url,
        params={"page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-01"},
        headers={"Authorization": token},
        timeout=5,
    )
    assert answer.status_code == 200


def test_token_header_prints_the_curl_header_line(env, capsys):
    code, out, err = run(capsys, "token", "--header")
    assert (code, err) == (0, "")
    assert out.startswith("Authorization: Bearer ")
    token = out.strip().split(" ", 2)[2]
    assert token in env.provider.issued_tokens()


def test_token_header_raw_prints_the_header_line_the_statistics_api_takes(env, capsys):
    code, out, err = run(capsys, "token", "--header", "raw")
    assert (code, err) == (0, "")
    name, _, token = out.rstrip("\n").partition(": ")
    assert name == "Authorization"
    assert token in env.provider.issued_tokens()  # the raw token, no "Bearer "
    answer = requests.get(
        env.statistics_url,
        params={"page": 1, "siteId": 25, "startDate": "2024-01-01", "endDate": "2024-01-01"},
        headers={name: token},
        timeout=5,
    )
    assert answer.status_code == 200


def test_token_help_says_how_to_get_each_apis_header(capsys):
    _, out, _ = run(capsys, "token", "--help")
    assert "--header [STYLE]" in out
    assert "'Authorization: Bearer <token>'" in out
    assert "'Authorization: <token>'" in out
    assert "statistics" in out
    assert 'curl -H "$(advanced-auth token --header raw)"' in out


def test_token_with_wrong_secret_fails_with_the_hint_and_prints_no_secret(
    env, capsys, leak_guard
):
    wrong = "not-the-right-secret-0123"
    leak_guard.watch(wrong)
    code, out, err = run(capsys, "token", "--client-secret", wrong)
    assert (code, out) == (1, "")
    assert "invalid_client" in err
    assert "check the client id and secret" in err
    assert wrong not in err
    assert env.client_secret not in err


def test_missing_credentials_are_a_configuration_error_exit_2(sandbox, capsys, monkeypatch):
    for name in list(os.environ):
        if name.startswith("ADVANCED_STORE_"):
            monkeypatch.delenv(name)
    code, out, err = run(capsys, "token")
    assert (code, out) == (2, "")
    assert "ADVANCED_STORE_CLIENT_ID is not set" in err
    assert sandbox.provider.token_requests == 0


def test_flags_override_the_environment(env, capsys, monkeypatch, leak_guard):
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_ID", "someone-else")
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_SECRET", "their-secret-xyz")
    leak_guard.watch("their-secret-xyz")
    code, out, err = run(
        capsys, "token", "--client-id", env.basic_client_id,
        "--client-secret", env.basic_client_secret, "--client-auth", "client_secret_basic",
    )
    assert (code, err) == (0, "")
    assert env.basic_client_secret not in out


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("ADVANCED_STORE_TOKEN_URL", "http://[::1", "ADVANCED_STORE_TOKEN_URL is not a valid URL"),
        ("ADVANCED_STORE_TOKEN_URL", "http://127.0.0.1:99999/t",
         "ADVANCED_STORE_TOKEN_URL has an invalid port"),
        ("ADVANCED_STORE_TOKEN_URL", "ftp://127.0.0.1/t",
         "ADVANCED_STORE_TOKEN_URL must be an absolute http(s) URL"),
        ("ADVANCED_STORE_API_URL", "ftp://x", "ADVANCED_STORE_API_URL must be an absolute http(s)"),
        ("ADVANCED_STORE_API_URL", "http://", "ADVANCED_STORE_API_URL must be an absolute http(s)"),
        ("ADVANCED_STORE_API_URL", "http://[::1", "ADVANCED_STORE_API_URL is not a valid URL"),
        ("ADVANCED_STORE_API_URL", "http://127.0.0.1:99999",
         "ADVANCED_STORE_API_URL has an invalid port"),
    ],
)
@pytest.mark.parametrize("command", ["token", "check"])
def test_a_malformed_endpoint_url_is_a_configuration_error_exit_2(
    env, capsys, monkeypatch, command, variable, value, message
):
    monkeypatch.setenv(variable, value)
    code, out, err = run(capsys, command)
    assert (code, out) == (2, "")
    assert err.startswith(f"advanced-auth: error: {message}")
    assert value in err
    assert env.provider.token_requests == 0


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--token-url", "http://[::1", "--token-url is not a valid URL"),
        ("--api-url", "ftp://x", "--api-url must be an absolute http(s) URL"),
        ("--api-url", "http://127.0.0.1:0", "--api-url has an invalid port"),
    ],
)
def test_a_malformed_endpoint_flag_is_named_in_the_error(env, capsys, flag, value, message):
    code, _, err = run(capsys, "statistics", "--site", "25", "--since", "2024-01-01",
                       "--until", "2024-01-02", flag, value)
    assert code == 2
    assert err.startswith(f"advanced-auth: error: {message}")
    assert env.provider.token_requests == 0
    assert env.provider.api_requests == 0


def test_a_plain_http_token_url_to_another_host_exits_2(env, capsys, monkeypatch):
    monkeypatch.setenv("ADVANCED_STORE_TOKEN_URL", "http://auth.example.test/oauth2/token")
    code, _, err = run(capsys, "check")
    assert code == 2
    assert "plain http" in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "argument --audience: the audience is empty"),
        ("   ", "argument --audience: the audience is empty"),
        ("api.advanced-store.com extra", "argument --audience: one audience per --audience"),
        ("api.ad4mat.net\tapi.advanced-store.com", "one audience per --audience"),
    ],
)
def test_an_empty_or_spaced_audience_is_a_usage_error(env, capsys, value, message):
    code, out, err = run(capsys, "check", "--audience", value)
    assert (code, out) == (2, "")
    assert message in err
    assert env.provider.token_requests == 0


def test_a_spaced_audience_error_shows_how_to_ask_for_several(env, capsys):
    _, _, err = run(capsys, "check", "--audience", "api.ad4mat.net api.advanced-store.com")
    assert "--audience api.ad4mat.net --audience api.advanced-store.com" in err


def test_repeated_audience_flags_ask_for_each(env, capsys):
    code, out, err = run(capsys, "check", "--audience", "api.ad4mat.net",
                         "--audience", " api.advanced-store.com ")
    assert (code, err) == (0, "")
    assert report(out)["audience"] == "api.ad4mat.net api.advanced-store.com"


def test_audience_help_says_one_per_flag(capsys):
    _, out, _ = run(capsys, "check", "--help")
    assert "one audience per flag" in " ".join(out.split())


# -- check -----------------------------------------------------------------------------------


def report(out: str) -> dict[str, str]:
    lines = [line.split(":", 1) for line in out.splitlines() if ":" in line]
    return {key.strip(): value.strip() for key, value in lines}


def test_check_reports_the_token_without_showing_it(env, capsys):
    code, out, err = run(capsys, "check")
    assert (code, err) == (0, "")
    (token,) = env.provider.issued_tokens()
    fields = report(out)
    assert fields["token URL"] == env.token_url
    assert fields["client id"] == env.client_id
    assert fields["audience"] == "api.ad4mat.net api.advanced-store.com"
    assert fields["token type"] == "bearer"
    assert fields["expires in"] == "3600 s"
    assert fields["scope"] == '""'
    assert fields["fingerprint"].split()[0] == hashlib.sha256(token.encode()).hexdigest()[:8]
    assert fields["JWT"].startswith("no")
    assert fields["result"].startswith("OK")
    assert token not in out
    assert env.client_secret not in out


def b64url(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def test_check_decodes_jwt_claims_without_verifying(env, capsys, leak_guard):
    claims = {
        "aud": ["api.ad4mat.net", "api.advanced-store.com"],
        "exp": 1893456000,
        "iss": "https://auth.advanced-store.com/",
        "sub": "sandbox-client",
        "secretish": "not shown",
    }
    jwt = f"{b64url({'alg': 'RS256', 'typ': 'JWT'})}.{b64url(claims)}.c2lnbmF0dXJl"
    leak_guard.watch(jwt)
    env.provider.token_overrides = {"access_token": jwt, "expires_in": 900}
    code, out, err = run(capsys, "check")
    assert (code, err) == (0, "")
    assert "signature NOT verified" in out
    fields = report(out)
    assert fields["aud"] == "api.ad4mat.net api.advanced-store.com"
    assert fields["exp"] == "1893456000 (2030-01-01 00:00:00 UTC)"
    assert fields["iss"] == "https://auth.advanced-store.com/"
    assert fields["sub"] == "sandbox-client"
    assert fields["expires in"] == "900 s"
    assert "secretish" not in out
    assert jwt not in out


def test_check_shows_a_non_empty_scope_and_an_unknown_lifetime(env, capsys):
    env.provider.token_overrides = {"scope": "read write", "expires_in": None}
    code, out, _ = run(capsys, "check")
    assert code == 0
    assert report(out)["scope"] == '"read write"'
    assert report(out)["expires in"].startswith("unknown")


def test_check_failure_exits_1_with_the_error_and_its_hint_on_stderr(env, capsys, leak_guard):
    wrong = "wrong-secret-for-check-42"
    leak_guard.watch(wrong)
    code, out, err = run(capsys, "check", "--client-secret", wrong)
    assert code == 1
    assert report(out)["client id"] == env.client_id
    assert "FAILED" in out
    assert err.startswith("advanced-auth: error: token endpoint")
    assert "invalid_client" in err
    assert "check the client id and secret" in err  # the hint of InvalidClientError
    assert wrong not in out + err


def test_check_with_an_audience_the_client_may_not_use(env, capsys):
    code, _, err = run(capsys, "check", "--audience", "api.elsewhere.example")
    assert code == 1
    assert "invalid_request" in err
    assert "check the audience" in err


def test_check_when_the_token_endpoint_is_down(env, capsys, monkeypatch):
    waits = []
    monkeypatch.setattr("requests_advanced_auth._fetch._sleep", waits.append)
    # A load balancer's 503 page, four times: the first try and the auth's three retries.
    env.provider.fail_next(4, status=503, body=b"Service Unavailable", content_type="text/plain")
    code, _, err = run(capsys, "check")
    assert code == 1
    assert "503" in err
    assert "check the network" in err  # the hint of TokenEndpointUnreachableError
    assert env.provider.token_requests == 4
    assert waits  # the backoff between retries was asked for, and not slept for real


# -- get -------------------------------------------------------------------------------------


STATS_PARAMS = ["-p", "page=1", "-p", "siteId=25", "-p", "startDate=2024-01-01",
                "-p", "endDate=2024-01-07"]


def test_get_writes_the_body_to_stdout(env, capsysbinary):
    code = main(["get", env.statistics_url, *STATS_PARAMS])
    out, err = capsysbinary.readouterr()
    assert (code, err) == (0, b"")
    data = json.loads(out)
    assert [row["date"] for row in data["data"]["data"]][-1] == "2024-01-07"


def test_get_writes_the_body_to_a_file(env, capsys, tmp_path):
    target = tmp_path / "stats.csv"
    code, out, err = run(capsys, "get", env.statistics_url, *STATS_PARAMS,
                         "-p", "format=csv", "-o", str(target))
    assert (code, out, err) == (0, "", "")
    rows = list(csv.reader(io.StringIO(target.read_text())))
    assert rows[0] == list(STATISTICS_FIELDS)
    assert len(rows) == 8


def test_get_non_2xx_exits_1_with_the_status_on_stderr_and_writes_nothing(env, capsys, tmp_path):
    target = tmp_path / "out.json"
    code, out, err = run(capsys, "get", env.statistics_url, "-p", "siteId=25",
                         "-o", str(target))
    assert (code, out) == (1, "")
    assert "answered 400 Bad Request" in err
    assert "Required parameter 'page' is missing" in err
    assert not target.exists()


def test_get_to_a_host_that_is_not_allowed_says_no_token_was_sent(env, capsys):
    other = env.statistics_url.replace("127.0.0.1", "localhost")
    code, _, err = run(capsys, "get", other, *STATS_PARAMS)
    assert code == 1
    assert "no token is sent" in err
    assert "answered 401" in err


TOKEN_ECHO = "you sent: "


def echo_authorization(request, context):
    """An API that quotes the request's Authorization header in its error answer."""
    context.status_code = 400
    return TOKEN_ECHO + request.headers.get("Authorization", "")


def test_get_error_excerpt_never_shows_the_token_an_api_echoes(env, capsys):
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(env.transactions_url, text=echo_authorization)
        code, out, err = run(capsys, "get", env.transactions_url)
    (token,) = env.provider.issued_tokens()
    assert (code, out) == (1, "")
    assert "answered 400" in err
    assert f"{TOKEN_ECHO}Bearer ***" in err
    assert token[:8] not in err


def test_pull_error_never_shows_the_token_an_api_echoes(env, capsys):
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(env.statistics_url, text=echo_authorization)
        code, _, err = run(capsys, "statistics", "--site", "25", "--since", "2024-01-01",
                           "--until", "2024-01-02")
    (token,) = env.provider.issued_tokens()
    assert code == 1
    assert f"{TOKEN_ECHO}***" in err
    assert token[:8] not in err


@pytest.mark.parametrize("command", ["get", "statistics"])
def test_a_timeout_longer_than_a_day_is_a_usage_error(env, capsys, command):
    """1e300 s would overflow the socket layer (OverflowError deep inside urllib3)."""
    argv = {"get": ["get", env.statistics_url, *STATS_PARAMS],
            "statistics": ["statistics", "--site", "25", "--since", "2024-01-01",
                           "--until", "2024-01-02"]}[command]
    code, out, err = run(capsys, *argv, "--timeout", "1e300")
    assert (code, out) == (2, "")
    assert "argument --timeout: must be a number of seconds > 0 and at most 86400" in err
    assert env.provider.api_requests == 0


@pytest.mark.parametrize(("url", "says"), [
    ("not a url", "URL contains white space"), ("ftp://example.com/x", "http(s) URL"),
    ("http://", "http(s) URL"), ("http://h:99999/x", "invalid port"),
])
def test_get_an_invalid_url_is_a_usage_error(env, capsys, url, says):
    code, _, err = run(capsys, "get", url)
    assert code == 2
    assert says in err


def test_a_start_page_past_the_last_page_says_so(env, capsys, tmp_path):
    code, _, err = run(capsys, "transactions", "--site", "25", "--since", "2024-01-01",
                       "--until", "2024-01-31", "--start-page", "999",
                       "-o", str(tmp_path / "none.csv"))
    assert code == 0
    assert "wrote 0 transactions" in err
    assert "no rows from page 999 on: it may be past the last page" in err


@pytest.mark.parametrize(("command", "size", "limit"), [("statistics", "500", "100"),
                                                         ("transactions", "2000", "1000")])
def test_a_page_size_above_the_apis_limit_is_a_usage_error(env, capsys, command, size, limit):
    code, _, err = run(capsys, command, "--site", "25", "--since", "2024-01-01",
                       "--until", "2024-01-31", "--page-size", size)
    assert code == 2
    assert f"argument --page-size: must be at most {limit}" in err


def test_errors_name_the_flags_not_the_python_parameters(env, capsys, monkeypatch):
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_SECRET", "definitely-wrong")
    code, _, err = run(capsys, "check")
    assert code == 1
    assert "--client-auth client_secret_basic" in err
    assert "client_auth=" not in err
    monkeypatch.delenv("ADVANCED_STORE_CLIENT_ID")
    code, _, err = run(capsys, "check")
    assert code == 2
    assert "or pass --client-id and --client-secret" in err


# -- transactions and statistics ---------------------------------------------------------------


def test_transactions_to_stdout_is_csv_with_every_row(env, capsys):
    code, out, err = run(capsys, "transactions", "--site", "25", "--site", "26",
                         "--since", "2024-01-01", "--until", "2024-12-31")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(TRANSACTION_FIELDS)
    assert len(rows) == total_entries(env, "25,26")
    assert {row["siteId"] for row in rows} == {"25", "26"}
    assert "\r" not in out  # one \n per line, like other shell tools


def test_transactions_to_a_jsonl_file_with_filters(env, capsys, tmp_path):
    target = tmp_path / "pending.jsonl"
    code, out, err = run(capsys, "transactions", "--site", "25,27", "--status", "pending",
                         "--since", "2024-01-01", "--until", "2024-06-30",
                         "--date-range-type", "transactionDate", "--format", "jsonl",
                         "--page-size", "50", "-o", str(target))
    assert (code, out) == (0, "")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    assert rows
    assert {row["status"] for row in rows} == {"pending"}
    assert {row["siteId"] for row in rows} == {"25", "27"}
    assert max(row["transactionDate"] for row in rows) < 1719792000000  # before 2024-07-01
    assert err == f"advanced-auth: wrote {len(rows)} transactions to {target}\n"


def test_transactions_bad_dates_exit_2_before_any_request(env, capsys, tmp_path):
    target = tmp_path / "never.csv"
    code, out, err = run(capsys, "transactions", "--site", "25", "--since", "2024-02-01",
                         "--until", "2024-01-01", "-o", str(target))
    assert (code, out) == (2, "")
    assert "is before start" in err
    assert env.provider.api_requests == 0
    assert env.provider.token_requests == 0
    assert not target.exists()


@pytest.mark.parametrize(
    ("since", "message"),
    [
        ("0001-01-01T00:00:00+05:00", "start 0001-01-01 00:00:00+05:00 is out of range"),
        ("1969-12-31", "start (1969-12-31 00:00:00 UTC) is before 1970-01-01"),
    ],
)
def test_transactions_since_out_of_range_exits_2_with_the_message(env, capsys, since, message):
    code, out, err = run(capsys, "transactions", "--site", "25", "--since", since,
                         "--until", "2024-01-02")
    assert (code, out) == (2, "")
    assert err.startswith("advanced-auth: error: ")
    assert message in err
    assert env.provider.token_requests == 0


def test_transactions_help_says_times_are_epoch_milliseconds(capsys):
    _, out, _ = run(capsys, "transactions", "--help")
    text = " ".join(out.split())
    assert "epoch milliseconds" in text
    assert "transactionDate, clickTime, updatedAt" in text


def test_transactions_page_failure_exits_1_names_the_page_and_resume_completes(
    env, capsys, tmp_path
):
    first, rest = tmp_path / "first.csv", tmp_path / "rest.csv"
    base = ["transactions", "--site", "25,26", "--since", "2024-01-01", "--until", "2024-12-31"]
    with requests_mock.Mocker(real_http=True) as mock:  # only page 3 is intercepted
        mock.get(env.transactions_url + "?page=3", status_code=503, text="busy")
        code, out, err = run(capsys, *base, "-o", str(first))
    assert (code, out) == (1, "")
    assert "page 3:" in err
    assert "answered 503" in err
    assert "--start-page 3" in err
    got = list(csv.DictReader(first.open()))
    assert len(got) == 500  # pages 1 and 2

    code, _, _ = run(capsys, *base, "--start-page", "3", "-o", str(rest))
    assert code == 0
    got += list(csv.DictReader(rest.open()))
    code, out, _ = run(capsys, *base)
    assert got == list(csv.DictReader(io.StringIO(out)))


def test_transactions_refused_token_exits_1(env, capsys):
    code, out, err = run(capsys, "transactions", "--site", "25", "--since", "2024-01-01",
                         "--until", "2024-01-31", "--audience", "api.ad4mat.net")
    assert (code, out) == (1, "")
    assert "page 1:" in err
    assert "401" in err


def test_statistics_to_csv_has_one_row_per_day(env, capsys):
    code, out, err = run(capsys, "statistics", "--site", "26", "--since", "2024-01-01",
                         "--until", "2024-12-31")
    assert (code, err) == (0, "")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert list(rows[0]) == list(STATISTICS_FIELDS)
    assert len(rows) == 366
    assert rows[0]["date"] == "2024-01-01"


def test_statistics_follow_api_url_flag(sandbox, capsys, monkeypatch):
    """--token-url and --api-url alone point the command at a server (credentials by flag)."""
    for name in list(os.environ):
        if name.startswith("ADVANCED_STORE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("ADVANCED_STORE_CLIENT_SECRET", sandbox.client_secret)
    code, out, err = run(capsys, "statistics", "--site", "25", "--since", "2024-03-01",
                         "--until", "2024-03-03", "--format", "jsonl",
                         "--client-id", sandbox.client_id, "--token-url", sandbox.token_url,
                         "--api-url", sandbox.url)
    assert (code, err) == (0, "")
    assert [json.loads(line)["date"] for line in out.splitlines()] == [
        "2024-03-01", "2024-03-02", "2024-03-03"
    ]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_pull_progress_is_silent_when_stderr_is_not_a_terminal(env, capsys, tmp_path):
    code, _, err = run(capsys, "transactions", "--site", "25", "--since", "2024-01-01",
                       "--until", "2024-12-31", "-o", str(tmp_path / "t.csv"))
    assert code == 0
    assert "\r" not in err
    assert "page" not in err


def test_pull_progress_is_shown_on_a_terminal_and_no_progress_turns_it_off(
    env, capsys, tmp_path, monkeypatch
):
    argv = ["statistics", "--site", "25", "--since", "2024-01-01", "--until", "2024-12-31",
            "-o", str(tmp_path / "s.csv")]
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main(argv) == 0
    assert "\rstatistics: page 4, 366 rows\n" in terminal.getvalue()

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main([*argv, "--no-progress"]) == 0
    assert "\r" not in terminal.getvalue()


# -- secrets ---------------------------------------------------------------------------------


def test_no_command_prints_the_client_secret(env, capsys, tmp_path, leak_guard):
    leak_guard.watch(env.client_secret)
    commands = [
        ["token"],
        ["token", "--header"],
        ["check"],
        ["check", "--client-secret", env.client_secret],
        ["get", env.transactions_url, "-p", "page=1", "-p", "size=1", "-p", "siteIds=25",
         "-p", "startDate=1704067200", "-p", "endDate=1704153599"],
        ["transactions", "--site", "25", "--since", "2024-01-01", "--until", "2024-01-02"],
        ["statistics", "--site", "25", "--since", "2024-01-01", "--until", "2024-01-02"],
        ["statistics", "--site", "25", "--since", "2024-01-02", "--until", "2024-01-01"],
        ["check", "--client-id", "nobody"],
    ]
    for argv in commands:
        code, out, err = run(capsys, *argv)
        assert code in (0, 1, 2), argv
        assert env.client_secret not in out + err, argv
        tokens = env.provider.issued_tokens()
        if argv[0] != "token":
            assert not any(token in out + err for token in tokens), argv


#: Answers that echo the Authorization value ``a`` outside the body, by request path.
ECHOES_OUTSIDE_THE_BODY = {
    "status line": lambda path, a: closing(f"HTTP/1.1 400 {a}", body="{}"),
    "content type of a non-JSON 200": lambda path, a: closing(
        "HTTP/1.1 200 OK", f"Content-Type: text/plain; x={a}", body="nope"
    ),
    "chunk-size line": lambda path, a: broken_chunk(a),
    "same-host redirect": lambda path, a: (
        closing("HTTP/1.1 400 Bad Request", body="{}") if path.startswith("/echo")
        else closing("HTTP/1.1 302 Found", f"Location: /echo?t={a.split()[-1]}")
    ),
}
TX_ARGV = ["transactions", "--site", "25", "--since", "2024-01-01", "--until", "2024-01-02"]


@pytest.mark.parametrize(
    ("command", "case"),
    [
        ("get", "status line"),
        ("get", "chunk-size line"),
        ("get", "same-host redirect"),
        ("transactions", "status line"),
        ("transactions", "content type of a non-JSON 200"),
        ("transactions", "chunk-size line"),
    ],
)
def test_errors_never_show_a_token_echoed_in_the_status_line_headers_or_framing(
    env, capsys, monkeypatch, command, case
):
    def respond(path, headers, body):
        return ECHOES_OUTSIDE_THE_BODY[case](path, headers.get("authorization", ""))

    with RawServer(respond) as server:
        monkeypatch.setenv("ADVANCED_STORE_API_URL", server.url)
        target = server.url + "/publishers/transactions/2.0/"
        argv = ["get", target] if command == "get" else TX_ARGV
        code, out, err = run(capsys, *argv, "--timeout", "5")
    (token,) = env.provider.issued_tokens()
    assert server.seen[0]["authorization"] == f"Bearer {token}"  # sent, and echoed back
    assert code == 1
    assert token[4:16] not in out + err
    assert "***" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("command", "answer", "says"),
    [
        ("transactions", {"transactionDataList": [1, 2], "totalPageCount": 1},
         "row 1 of 2 is a number, not a JSON object"),
        ("transactions", {"transactionDataList": [[1, 2]], "totalPageCount": 1},
         "row 1 of 1 is an array, not a JSON object"),
        ("statistics", {"data": {"data": [1]}}, "row 1 of 1 is a number, not a JSON object"),
        ("transactions", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
)
def test_a_page_of_rows_that_are_not_objects_exits_1_naming_the_page(
    env, capsys, command, answer, says
):
    url = env.transactions_url if command == "transactions" else env.statistics_url
    body = answer if isinstance(answer, str) else json.dumps(answer)
    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(url, text=body)
        code, out, err = run(capsys, command, *TX_ARGV[1:])
    assert (code, out) == (1, "")
    assert err.startswith("advanced-auth: error: page 1: ")
    assert says in err
    assert "(resume with --start-page 1)" in err


# -- input that is not UTF-8 -------------------------------------------------------------------

NOT_UTF8 = "\udcff"  # how Python reads the byte 0xff of a non-UTF-8 argument or variable


@pytest.mark.parametrize(
    "variable",
    ["ADVANCED_STORE_CLIENT_ID", "ADVANCED_STORE_CLIENT_SECRET", "ADVANCED_STORE_AUDIENCE",
     "ADVANCED_STORE_TOKEN_URL", "ADVANCED_STORE_API_URL"],
)
@pytest.mark.parametrize("command", [["check"], TX_ARGV])
def test_a_variable_that_is_not_utf8_exits_2_naming_it(env, capsys, monkeypatch, variable, command):
    monkeypatch.setenv(variable, os.environ.get(variable, "api.advanced-store.com") + NOT_UTF8)
    code, out, err = run(capsys, *command)
    assert (code, out) == (2, "")
    assert err.startswith(f"advanced-auth: error: {variable} is not UTF-8 text")
    assert env.client_secret not in err
    assert env.provider.token_requests == 0


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["check", "--client-secret", "hunter2" + NOT_UTF8], "--client-secret"),
        (["check", "--client-id", "me" + NOT_UTF8], "--client-id"),
        (["check", "--audience", "api.advanced-store.com" + NOT_UTF8], "--audience"),
        (["check", "--token-url", "http://127.0.0.1/t" + NOT_UTF8], "--token-url"),
        ([*TX_ARGV, "--status", "pending" + NOT_UTF8], "--status"),
        ([*TX_ARGV, "--program", "1" + NOT_UTF8], "--program"),
        (["get", "http://127.0.0.1/", "-p", "a=" + NOT_UTF8], "-p/--param"),
        (["get", "http://127.0.0.1/?" + NOT_UTF8], "URL"),
    ],
)
def test_a_flag_that_is_not_utf8_exits_2_naming_it(env, capsys, argv, flag):
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert f"error: argument {flag}: not UTF-8 text" in err
    assert "hunter2" not in err
    assert env.provider.token_requests == 0


def test_non_utf8_bytes_from_the_shell_exit_2_without_a_traceback(sandbox):
    environ = {k.encode(): v.encode() for k, v in subprocess_env().items()}
    environ.update({k.encode(): v.encode() for k, v in sandbox.environment().items()})
    environ[b"ADVANCED_STORE_CLIENT_SECRET"] = b"hunter2\xff"
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"requests_advanced_auth", b"check"],
        capture_output=True, env=environ, timeout=60, check=False,
    )
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert (done.returncode, done.stdout) == (2, b"")
    assert "ADVANCED_STORE_CLIENT_SECRET is not UTF-8 text" in err
    assert "Traceback" not in err
    assert "hunter2" not in err


# -- terminal control sequences from a server ----------------------------------------------------

ESCAPES = "\x1b]0;owned\x07\x1b[2J"  # set the window title, then clear the screen


def test_check_shows_control_characters_in_jwt_claims_as_escapes(env, capsys):
    claims = {"sub": ESCAPES + "fake", "aud": ["\x1b[31mred", "b"], "iss": "x\nresult: forged"}
    jwt = f"{b64url({'alg': 'none'})}.{b64url(claims)}.c2ln"
    env.provider.token_overrides = {"access_token": jwt}
    code, out, err = run(capsys, "check")
    assert (code, err) == (0, "")
    assert "\x1b" not in out
    assert "\x07" not in out
    fields = report(out)
    assert fields["sub"] == "\\x1b]0;owned\\x07\\x1b[2Jfake"
    assert fields["aud"] == "\\x1b[31mred b"
    assert fields["iss"] == "x result: forged"
    assert [line for line in out.splitlines() if line.startswith("result:")] == [
        "result:       OK, a token was issued"
    ]


def test_check_shows_control_characters_in_a_token_error_as_escapes(env, capsys):
    body = json.dumps({"error": "invalid_client", "error_description": ESCAPES + "all good"})
    env.provider.fail_next(1, status=401, body=body.encode())
    code, _, err = run(capsys, "check")
    assert code == 1
    assert "\x1b" not in err
    assert "\\x1b]0;owned\\x07\\x1b[2Jall good" in err


def test_get_shows_control_characters_in_the_status_line_as_escapes(env, capsys, monkeypatch):
    with RawServer(lambda *_: closing(f"HTTP/1.1 400 {ESCAPES}Bad", body=ESCAPES)) as server:
        monkeypatch.setenv("ADVANCED_STORE_API_URL", server.url)
        code, out, err = run(capsys, "get", server.url + "/x", "--timeout", "5")
    assert (code, out) == (1, "")
    assert "\x1b" not in err
    assert "answered 400 \\x1b]0;owned\\x07\\x1b[2JBad" in err


def test_check_never_shows_the_client_secret_a_token_endpoint_echoes_as_the_scope(
    capsys, monkeypatch
):
    secret = "hunter2-S3CRET/+&"

    def echo_the_form_as_scope(path, headers, body):
        answer = {"access_token": "opaque-token-123", "token_type": "bearer",
                  "scope": body.decode()}
        return closing("HTTP/1.1 200 OK", "Content-Type: application/json",
                       body=json.dumps(answer))

    with RawServer(echo_the_form_as_scope) as server:
        for name, value in {"ADVANCED_STORE_CLIENT_ID": "cid",
                            "ADVANCED_STORE_CLIENT_SECRET": secret,
                            "ADVANCED_STORE_TOKEN_URL": server.url + "/t"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("ADVANCED_STORE_API_URL", raising=False)
        code, out, err = run(capsys, "check")
    assert code == 0
    assert "hunter2" not in out + err  # the scope is blanked (or dropped by the fetcher)


# -- sandbox ---------------------------------------------------------------------------------


def test_sandbox_command_prints_exports_that_the_other_commands_use(capsys, monkeypatch):
    # Python ignores Ctrl-C if it starts with SIGINT ignored (e.g. under a background job):
    # restore the default handler in the child so the test sends a real Ctrl-C.
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from requests_advanced_auth.cli import main\n"
        "raise SystemExit(main(['sandbox', '--token-lifetime', '120']))\n"
    )
    with child_process([sys.executable, "-c", code], subprocess_env(), WAIT) as process:
        assert process.stdout is not None
        exports = read_exports(
            process.stdout, lambda line, _: line.startswith("Serving until Ctrl-C")
        )
        assert set(exports) >= {
            "ADVANCED_STORE_CLIENT_ID", "ADVANCED_STORE_CLIENT_SECRET",
            "ADVANCED_STORE_TOKEN_URL", "ADVANCED_STORE_API_URL",
        }
        for name in list(os.environ):
            if name.startswith("ADVANCED_STORE_"):
                monkeypatch.delenv(name)
        for name, value in exports.items():
            monkeypatch.setenv(name, value)
        status, out, err = run(capsys, "check")
        assert (status, err) == (0, "")
        assert report(out)["expires in"] == "120 s"
        assert report(out)["token URL"] == exports["ADVANCED_STORE_TOKEN_URL"]
        status, out, _ = run(capsys, "transactions", "--site", "25", "--since", "2024-01-01",
                             "--until", "2024-01-31", "--format", "jsonl")
        assert status == 0
        assert len(out.splitlines()) > 10
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=WAIT) == 0


def test_sandbox_command_passes_its_options_to_the_sandbox(capsys, monkeypatch):
    seen = []
    monkeypatch.setattr("requests_advanced_auth.sandbox.main",
                        lambda argv, prog: seen.append((argv, prog)) or 0)
    assert run(capsys, "sandbox", "--port", "8765", "--token-lifetime", "30")[0] == 0
    assert seen == [(["--port", "8765", "--token-lifetime", "30.0"], "advanced-auth sandbox")]


def test_interrupt_exits_130(capsys, monkeypatch):
    def interrupted(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_run_sandbox", interrupted)
    assert run(capsys, "sandbox")[0] == 130


def test_a_failed_pull_says_how_to_resume_with_the_flag(env, capsys):
    code, _, err = run(capsys, "transactions", "--site", "25", "--since", "2024-01-01",
                       "--until", "2024-01-31", "--status", "no-such-status")
    assert code == 1
    assert "(resume with --start-page 1)" in err
    assert "start_page=" not in err


def test_a_plain_http_api_url_off_loopback_is_a_usage_error(env, capsys):
    code, _, err = run(capsys, "check", "--api-url", "http://api.example.com")
    assert code == 2
    assert "--api-url 'http://api.example.com' uses plain http to a non-loopback host" in err
    assert "the access token would travel unencrypted" in err


def test_a_selection_with_no_rows_says_what_to_check(env, capsys, tmp_path):
    code, _, err = run(capsys, "transactions", "--site", "99", "--since", "2024-01-01",
                       "--until", "2024-01-31", "-o", str(tmp_path / "none.csv"))
    assert code == 0
    assert "no transactions for this selection: check --site and the dates" in err


def test_sandbox_on_a_busy_port_names_the_command_and_the_way_out(capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code, _, err = run(capsys, "sandbox", "--port", str(busy.getsockname()[1]))
    assert code == 1
    assert err.startswith("advanced-auth sandbox: error: cannot listen on 127.0.0.1:")
    assert "--port 0 for any free one" in err
