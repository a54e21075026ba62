"""Paginated pulls: every row, resume from a page, checks before any call, progress."""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import re
import sys
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import requests_mock
from _servers import RawServer, broken_chunk, closed_port, closing
from requests.auth import AuthBase

from requests_advanced_auth import AdvancedAuth, ConfigurationError, PageError, TokenError
from requests_advanced_auth.pagination import (
    STATISTICS_FIELDS,
    STATISTICS_URL,
    TRANSACTION_FIELDS,
    TRANSACTIONS_URL,
    api_urls,
    iter_statistics,
    iter_transactions,
)

YEAR = {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 12, 31)}
MOCK_URL = "https://api.example.test/publishers/transactions/2.0/"
MOCK_STATS_URL = "https://api.example.test/function/api/statistics"


def total_entries(sandbox, **params) -> int:
    """totalEntries as the sandbox reports it, asked for with one plain request."""
    query = {"page": 1, "size": 1, "startDate": 1704067200, "endDate": 1735689599, **params}
    answer = requests.get(
        sandbox.transactions_url, params=query, auth=sandbox.auth(), timeout=5
    )
    answer.raise_for_status()
    return int(answer.json()["totalEntries"])


def pull(sandbox, **options):
    options = {"site_ids": [25, 26], **YEAR, "url": sandbox.transactions_url, **options}
    return list(iter_transactions(sandbox.auth(), **options))


def page_answer(page: int, pages: int, size: int = 2) -> dict:
    rows = [{"transactionId": f"{page}-{i}"} for i in range(size)]
    return {
        "totalEntries": pages * size,
        "currentPage": page,
        "totalPageCount": pages,
        "pageSize": size,
        "transactionDataList": rows,
    }


def mocked_session(*answers_per_page) -> tuple[requests.Session, requests_mock.Adapter]:
    """A session whose transactions URL answers ``answers_per_page[page - 1]``."""
    adapter = requests_mock.Adapter()

    def answer(request, context):
        page = int(request.qs["page"][0])
        spec = answers_per_page[page - 1]
        context.status_code = spec.get("status", 200)
        context.headers["Content-Type"] = spec.get("content_type", "application/json")
        return spec["body"]

    adapter.register_uri("GET", MOCK_URL, text=answer)
    session = requests.Session()
    session.mount("https://", adapter)
    return session, adapter


def json_page(page: int, pages: int) -> dict:
    import json

    return {"body": json.dumps(page_answer(page, pages))}


# -- whole pulls against the sandbox ---------------------------------------------------------


def test_transactions_pull_follows_every_page_and_counts_total_entries(sandbox):
    expected = total_entries(sandbox, siteIds="25,26")
    sandbox.provider.reset_counters()
    rows = pull(sandbox, page_size=100)
    assert len(rows) == expected > 1000
    assert len({row["transactionId"] for row in rows}) == expected  # no page twice
    assert {row["siteId"] for row in rows} == {"25", "26"}
    assert set(rows[0]) == set(TRANSACTION_FIELDS)
    assert sandbox.provider.api_requests == -(-expected // 100)  # one request per page
    assert sandbox.provider.tokens_issued == 1


def test_transactions_pull_with_a_session_uses_its_auth(sandbox):
    with requests.Session() as session:
        session.auth = sandbox.auth()
        rows = list(
            iter_transactions(
                session, site_ids="25", **YEAR, url=sandbox.transactions_url, page_size=250
            )
        )
    assert len(rows) == total_entries(sandbox, siteIds="25")


def test_transactions_filters_reach_the_api(sandbox):
    rows = pull(sandbox, site_ids=[27], status_id="pending", program_id=1003)
    assert rows
    assert {(r["siteId"], r["status"], r["programId"]) for r in rows} == {("27", "pending", "1003")}
    assert len(rows) == total_entries(sandbox, siteIds="27", statusId="pending", programId=1003)


def test_resume_from_start_page_yields_exactly_the_remaining_rows(sandbox):
    everything = pull(sandbox, page_size=250)
    rest = pull(sandbox, page_size=250, start_page=3)
    assert rest == everything[500:]


def test_start_page_past_the_last_page_yields_nothing_after_one_call(sandbox):
    sandbox.provider.reset_counters()
    assert pull(sandbox, page_size=1000, start_page=50) == []
    assert sandbox.provider.api_requests == 1


def test_statistics_pull_reads_pages_until_a_short_one(sandbox):
    rows = list(
        iter_statistics(
            sandbox.auth(), site_id=25, **YEAR, url=sandbox.statistics_url, page_size=100
        )
    )
    assert len(rows) == 366
    assert [r["date"] for r in rows[:2]] == ["2024-01-01", "2024-01-02"]
    assert rows[-1]["date"] == "2024-12-31"
    assert set(rows[0]) == set(STATISTICS_FIELDS)
    assert sandbox.provider.api_requests == 4  # 100 + 100 + 100 + 66


def test_statistics_pull_whose_last_page_is_full_stops_at_the_next_empty_one(sandbox):
    rows = list(
        iter_statistics(
            sandbox.auth(), site_id="26", start="2024-01-01", end="2024-12-31",
            url=sandbox.statistics_url, page_size=61,
        )
    )
    assert len(rows) == 366  # 6 pages of 61
    assert sandbox.provider.api_requests == 7


def test_statistics_resume_from_start_page(sandbox):
    options = {"site_id": 25, **YEAR, "url": sandbox.statistics_url, "page_size": 50}
    everything = list(iter_statistics(sandbox.auth(), **options))
    rest = list(iter_statistics(sandbox.auth(), **options, start_page=7))
    assert rest == everything[300:]


# -- failures name the page --------------------------------------------------------------


def test_page_that_fails_after_the_auths_retry_names_the_page_and_resume_completes(sandbox):
    """Page 3's token is revoked and the token endpoint then fails: PageError(page=3)."""
    everything = pull(sandbox, page_size=250)
    rows = iter_transactions(
        sandbox.auth(), site_ids=[25, 26], **YEAR, url=sandbox.transactions_url, page_size=250
    )
    got = list(itertools.islice(rows, 500))  # pages 1 and 2
    sandbox.provider.revoke_all()
    sandbox.provider.fail_next(1, status=400)
    with pytest.raises(PageError) as caught:
        next(rows)
    error = caught.value
    assert error.page == 3
    assert "page 3" in str(error)
    assert "start_page=3" in str(error)
    assert isinstance(error.__cause__, TokenError)
    got += pull(sandbox, page_size=250, start_page=error.page)
    assert got == everything


def test_page_refused_with_401_even_after_a_new_token_raises_page_error_with_status(sandbox):
    # A token for the statistics audience only: transactions answers 401 every time.
    auth = sandbox.auth(audience=["api.ad4mat.net"])
    with pytest.raises(PageError) as caught:
        list(iter_transactions(auth, site_ids=25, **YEAR, url=sandbox.transactions_url))
    assert (caught.value.page, caught.value.status_code) == (1, 401)
    assert "401" in str(caught.value)
    assert "audiences" in str(caught.value)
    assert sandbox.provider.api_requests == 2  # the request and the auth's one re-send
    assert sandbox.provider.tokens_issued == 2


def test_session_without_auth_gets_page_error_401(sandbox):
    with requests.Session() as session, pytest.raises(PageError) as caught:
        list(iter_statistics(session, site_id=25, **YEAR, url=sandbox.statistics_url))
    assert (caught.value.page, caught.value.status_code) == (1, 401)


def test_non_2xx_page_raises_page_error_with_page_and_status():
    session, _ = mocked_session(
        json_page(1, 3), {"status": 502, "body": "<html>Bad gateway</html>"}, json_page(3, 3)
    )
    rows = iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, progress=False)
    assert len(list(itertools.islice(rows, 2))) == 2
    with pytest.raises(PageError) as caught:
        next(rows)
    assert (caught.value.page, caught.value.status_code) == (2, 502)
    assert "502" in str(caught.value)
    assert "Bad gateway" in str(caught.value)


def test_page_that_is_not_json_raises_page_error():
    session, _ = mocked_session(
        {"body": "<html>login</html>", "content_type": "text/html"}
    )
    with pytest.raises(PageError) as caught:
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))
    assert caught.value.page == 1
    assert "text/html, not JSON" in str(caught.value)


def test_page_without_the_documented_fields_raises_page_error():
    session, _ = mocked_session({"body": '{"unexpected": true}'})
    with pytest.raises(PageError, match="transactionDataList"):
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))


def test_statistics_error_answer_raises_page_error():
    adapter = requests_mock.Adapter()
    adapter.register_uri(
        "GET", MOCK_STATS_URL,
        json={"data": None, "errors": [{"message": "site unknown"}], "success": False},
    )
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(PageError, match="site unknown") as caught:
        list(iter_statistics(session, site_id=1, **YEAR, url=MOCK_STATS_URL))
    assert caught.value.page == 1


def test_transport_error_raises_page_error_with_the_cause():
    adapter = requests_mock.Adapter()
    adapter.register_uri("GET", MOCK_URL, exc=requests.ConnectTimeout("timed out"))
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(PageError) as caught:
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, start_page=4))
    assert caught.value.page == 4
    assert isinstance(caught.value.__cause__, requests.ConnectTimeout)
    assert caught.value.status_code is None


def test_statistics_server_that_ignores_page_stops_with_page_error_at_the_repeat():
    """The same full page again and again: one page of rows, then PageError, never a loop."""
    adapter = requests_mock.Adapter()
    same = {"data": {"data": [{"date": "2024-01-01"}, {"date": "2024-01-02"}]}}
    adapter.register_uri("GET", MOCK_STATS_URL, json=same)
    session = requests.Session()
    session.mount("https://", adapter)
    rows = iter_statistics(
        session, site_id=25, start="2024-01-01", end="2024-01-02", page_size=2,
        url=MOCK_STATS_URL,
    )
    got = []
    with pytest.raises(PageError) as caught:
        got.extend(itertools.islice(rows, 1000))  # bounded: a broken stop fails, not hangs
    assert got == same["data"]["data"]
    assert caught.value.page == 2
    assert "page 2 repeats page 1 exactly: the server seems to ignore `page`" in str(caught.value)
    assert adapter.call_count == 2


def test_transactions_server_that_ignores_page_stops_with_page_error_at_the_repeat():
    session, adapter = mocked_session(*[json_page(1, 5)] * 5)
    rows = iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL)
    got = []
    with pytest.raises(PageError, match="seems to ignore `page`") as caught:
        got.extend(rows)
    assert len(got) == 2
    assert caught.value.page == 2
    assert adapter.call_count == 2


def test_a_server_cycling_through_pages_stops_at_the_first_repeat():
    """Pages 1, 2, 1, 2, ...: the third page repeats page 1; no endless pull."""
    adapter = requests_mock.Adapter()
    pages = [{"data": {"data": [{"date": f"2024-01-0{d}"}, {"date": f"2024-01-0{d + 1}"}]}}
             for d in (1, 3)]
    adapter.register_uri(
        "GET", MOCK_STATS_URL,
        json=lambda request, context: pages[(int(request.qs["page"][0]) - 1) % 2],
    )
    session = requests.Session()
    session.mount("https://", adapter)
    rows = iter_statistics(session, site_id=25, **YEAR, page_size=2, url=MOCK_STATS_URL)
    got = []
    with pytest.raises(PageError, match="page 3 repeats page 1 exactly") as caught:
        got.extend(itertools.islice(rows, 1000))
    assert len(got) == 4
    assert caught.value.page == 3


def test_a_resumed_pull_compares_pages_only_within_itself():
    """The repeat check starts at start_page: nothing is compared with pages never fetched."""
    session, _ = mocked_session(json_page(1, 3), json_page(2, 3), json_page(3, 3))
    rows = list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, start_page=2))
    assert [r["transactionId"] for r in rows] == ["2-0", "2-1", "3-0", "3-1"]


# -- no token in an error quoted from an answer ------------------------------------------

TOKEN = "eyJhbGciOi.SECRET/ACCESS+TOKEN.sig"


class StaticAuth(AuthBase):
    """Sends a fixed Authorization value (a bearer header, or the raw token)."""

    def __init__(self, value: str) -> None:
        self.value = value

    def __call__(self, request):
        request.headers["Authorization"] = self.value
        return request


def echo_session(status: int, body, content_type: str = "application/json"):
    """A session whose API answers ``body(authorization_header)`` with ``status``."""
    adapter = requests_mock.Adapter()

    def answer(request, context):
        context.status_code = status
        context.headers["Content-Type"] = content_type
        return body(request.headers["Authorization"])

    adapter.register_uri("GET", MOCK_URL, text=answer)
    adapter.register_uri("GET", MOCK_STATS_URL, text=answer)
    session = requests.Session()
    session.mount("https://", adapter)
    return session


ECHOES = {
    "error answer": (400, lambda h: json.dumps({"error": "bad", "headers": {"auth": h}})),
    "JSON-escaped slash": (
        400, lambda h: json.dumps({"auth": h}).replace("/", "\\/"),
    ),
    "not JSON": (200, lambda h: f"<html>you sent {h}</html>"),
    "JSON without the fields": (200, lambda h: json.dumps({"unexpected": True, "auth": h})),
    "token cut by the excerpt": (400, lambda h: "x" * 190 + h),
    "percent-encoded": (400, lambda h: "you sent " + requests.utils.quote(h, safe="")),
    "percent-encoded, lower-case hex": (
        400, lambda h: "you sent " + re.sub(
            r"%[0-9A-F]{2}", lambda m: m.group().lower(), requests.utils.quote(h, safe="")
        ),
    ),
}


@pytest.mark.parametrize("case", sorted(ECHOES))
@pytest.mark.parametrize("header", [f"Bearer {TOKEN}", TOKEN])
def test_page_error_never_quotes_the_token_an_api_echoes(case, header):
    status, body = ECHOES[case]
    session = echo_session(status, body)
    session.auth = StaticAuth(header)
    with pytest.raises(PageError) as caught:
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))
    message = str(caught.value)
    assert TOKEN[:8] not in message
    assert "***" in message
    assert "SECRET" not in message


def test_statistics_errors_never_quote_the_token_an_api_echoes():
    session = echo_session(200, lambda h: json.dumps({"success": False, "errors": [h]}))
    session.auth = StaticAuth(TOKEN)
    with pytest.raises(PageError, match="answered errors") as caught:
        list(iter_statistics(session, site_id=1, **YEAR, url=MOCK_STATS_URL))
    assert TOKEN[:8] not in str(caught.value)
    assert "['***']" in str(caught.value)


def test_a_token_refused_then_replaced_is_scrubbed_too(sandbox):
    """After the auth's re-send, both the first and the new token are kept out of the error."""
    seen = []

    def echo_every_header_so_far(request, context):
        seen.append(request.headers["Authorization"])
        return "you sent " + " then ".join(seen)

    with requests_mock.Mocker(real_http=True) as mock:
        mock.get(sandbox.transactions_url, status_code=401, text=echo_every_header_so_far)
        with pytest.raises(PageError) as caught:
            list(iter_transactions(
                sandbox.auth(), site_ids=25, **YEAR, url=sandbox.transactions_url
            ))
    tokens = sandbox.provider.issued_tokens()
    assert len(tokens) == 2
    assert not any(token in str(caught.value) for token in tokens)
    assert "you sent Bearer *** then Bearer ***" in str(caught.value)


#: Answers that echo the Authorization value (``a``) outside the body.
FRAMING_ECHOES = {
    "status line": lambda a: closing(f"HTTP/1.1 400 {a}", body="{}"),
    "content type of a non-JSON 200": lambda a: closing(
        "HTTP/1.1 200 OK", f"Content-Type: text/plain; x={a}", body="nope"
    ),
    "chunk-size line": broken_chunk,
    "redirect to a closed port": lambda a: closing(
        "HTTP/1.1 302 Found",
        f"Location: http://127.0.0.1:{closed_port()}/echo?t={a.split()[-1]}",
    ),
}


@pytest.mark.parametrize("case", sorted(FRAMING_ECHOES))
def test_page_error_never_quotes_a_token_echoed_in_the_status_line_headers_or_framing(case):
    with RawServer(lambda path, headers, body: FRAMING_ECHOES[case](headers["authorization"])
                   ) as server, requests.Session() as session:
        session.auth = StaticAuth(f"Bearer {TOKEN}")
        with pytest.raises(PageError) as caught:
            list(iter_transactions(
                session, site_ids=1, **YEAR, url=server.url + "/publishers/transactions/2.0/",
                timeout=5,
            ))
    message = str(caught.value)
    assert caught.value.page == 1
    assert "SECRET" not in message
    assert TOKEN[:8] not in message
    assert "***" in message
    chain, error = "", caught.value  # nor anywhere in the chain of causes and contexts
    while error is not None:
        chain += repr(error) + str(error)
        error = error.__cause__ or error.__context__
    assert "SECRET" not in chain


def test_a_broken_chunk_echoing_the_token_the_auth_sent_after_a_401_is_scrubbed(sandbox):
    def respond(path, headers, body):
        if len(server.seen) == 1:
            return closing("HTTP/1.1 401 Unauthorized")
        return broken_chunk("you sent " + " then ".join(h["authorization"] for h in server.seen))

    with RawServer(respond) as server:
        auth = sandbox.auth(allowed_hosts=[f"127.0.0.1:{server.port}"])
        with pytest.raises(PageError) as caught:
            list(iter_transactions(auth, site_ids=25, **YEAR, url=server.url + "/p/", timeout=5))
    tokens = sandbox.provider.issued_tokens()
    assert len(tokens) == 2
    assert not any(token[:8] in str(caught.value) for token in tokens)
    assert "you sent Bearer *** then Bearer ***" in str(caught.value)


# -- hostile pages -----------------------------------------------------------------------


def test_json_nested_too_deeply_to_decode_is_a_page_error():
    session, _ = mocked_session(json_page(1, 2), {"body": "[" * 100_000 + "]" * 100_000})
    rows = iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL)
    assert len(list(itertools.islice(rows, 2))) == 2
    with pytest.raises(PageError, match="nested too deeply") as caught:
        next(rows)
    assert caught.value.page == 2


def test_a_row_nested_too_deeply_to_handle_is_a_page_error():
    """Decodable, but near where printing or comparing it would hit the recursion limit."""
    deep = {**page_answer(1, 1), "transactionDataList": [{"a": []}]}
    body = json.dumps(deep).replace("[]", "[" * 200 + "]" * 200)
    session, _ = mocked_session({"body": body})
    with pytest.raises(PageError, match="nested too deeply") as caught:
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))
    assert caught.value.page == 1


@pytest.mark.parametrize(
    ("rows", "says"),
    [
        ([1, 2, 3], "row 1 of 3 is a number"),
        ([[1, 2]], "row 1 of 1 is an array"),
        ([{"transactionId": "a"}, "b"], "row 2 of 2 is a string"),
        ([{"transactionId": "a"}, None], "row 2 of 2 is null"),
    ],
)
def test_a_page_whose_rows_are_not_all_objects_is_a_page_error_naming_it(rows, says):
    second = {**page_answer(2, 2), "transactionDataList": rows}
    session, _ = mocked_session(json_page(1, 2), {"body": json.dumps(second)})
    rows = iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL)
    assert len(list(itertools.islice(rows, 2))) == 2  # the rows of page 1
    with pytest.raises(PageError) as caught:
        next(rows)  # and none of page 2
    assert caught.value.page == 2
    assert str(caught.value).startswith("page 2: ")
    assert f"{says}, not a JSON object" in str(caught.value)


def test_statistics_rows_that_are_not_objects_are_a_page_error():
    adapter = requests_mock.Adapter()
    adapter.register_uri("GET", MOCK_STATS_URL, json={"data": {"data": [1]}})
    session = requests.Session()
    session.mount("https://", adapter)
    with pytest.raises(PageError, match="row 1 of 1 is a number, not a JSON object") as caught:
        list(iter_statistics(session, site_id=1, **YEAR, url=MOCK_STATS_URL))
    assert caught.value.page == 1


# -- parameters ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"site_ids": "abc"}, "site ids are positive integers"),
        ({"site_ids": 0}, "site ids are positive integers"),
        ({"site_ids": [25, -1]}, "site ids are positive integers"),
        ({"site_ids": "25,x"}, "site ids are positive integers"),
        ({"site_ids": True}, "site ids are positive integers"),
        ({"site_ids": []}, "site_ids is empty"),
        ({"site_ids": 2.5}, "site_ids must be a site id or a list"),
        ({"start": dt.date(2024, 2, 1), "end": dt.date(2024, 1, 31)}, "is before start"),
        ({"start": "2024-13-01"}, "start must be a date YYYY-MM-DD"),
        ({"end": 1735689599000}, "looks like epoch milliseconds"),
        ({"end": [2024]}, "end must be a date, a datetime, epoch seconds"),
        ({"page_size": 0}, "page_size must be an int 1..1000"),
        ({"page_size": 1001}, "page_size must be an int 1..1000"),
        ({"page_size": "250"}, "page_size must be an int"),
        ({"start_page": 0}, "start_page must be an int >= 1"),
        ({"timeout": 0}, "timeout must be seconds > 0"),
        ({"status_id": ""}, "status_id must be an int or a non-empty string"),
        ({"url": "api.advanced-store.com/x"}, "url must be an absolute http"),
        # bytes iterate as numbers: b"25" would be sent as siteIds=50,53
        ({"site_ids": b"25"}, "site_ids must be a site id or a list of them, got bytes"),
        ({"site_ids": bytearray(b"25")}, "got bytearray"),
        ({"site_ids": [b"25"]}, "site ids are positive integers"),
        ({"site_ids": [25.0]}, "site ids are positive integers"),
        # more digits than Python converts (and than any real site id has)
        ({"site_ids": "9" * 5000}, r"at most 18 digits, got '9999.*'… \(5000 characters\)"),
        ({"site_ids": 10**5000}, r"at most 18 digits, got an int of about 5001 digits"),
        ({"site_ids": 10**18}, r"site ids have at most 18 digits, got 1000000000000000000"),
        ({"program_id": 10**5000}, r"program_id has at most 18 digits"),
        ({"program_id": "9" * 5000}, r"program_id has at most 18 digits"),
        # the API takes epoch seconds >= 0: nothing before 1970 can be asked for
        ({"start": "0001-01-01"}, r"start \(0001-01-01 00:00:00 UTC\) is before 1970-01-01"),
        ({"start": dt.datetime(1969, 12, 31, 23, 59, 59)}, "start .* is before 1970-01-01"),
        ({"start": dt.date(1900, 1, 1), "end": dt.date(1960, 1, 1)}, "is before 1970-01-01"),
        # UTC conversion past datetime's own range
        (
            {"start": dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5)))},
            r"start 0001-01-01 00:00:00\+05:00 is out of range: in UTC it falls before year 1",
        ),
        (
            {"end": dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-5)))},
            "end 9999-12-31 23:59:59.999999-05:00 is out of range: in UTC it falls after",
        ),
        # a date with an offset but no time ("+" is read as the time separator otherwise)
        ({"end": "2024-01-31+05:00"}, "end must be a date YYYY-MM-DD or an ISO 8601 date and"),
        ({"end": "2024-01-31Z"}, "end must be a date YYYY-MM-DD"),
        ({"end": "2024-01-31x12:00"}, "end must be a date YYYY-MM-DD"),
        ({"end": "2024-W05"}, "end '2024-W05' is a week, not a day"),
        ({"timeout": (1,)}, r"timeout must be seconds > 0 or a \(connect, read\) pair"),
        ({"timeout": (1, 2, 3)}, "timeout must be seconds > 0"),
        ({"timeout": [1, 2]}, "timeout must be seconds > 0"),
        ({"timeout": (None, 5)}, "timeout must be seconds > 0"),
        ({"timeout": None}, "timeout must be seconds > 0"),
        ({"timeout": float("nan")}, "timeout must be seconds > 0"),
        ({"timeout": float("inf")}, "timeout must be at most 86400 seconds"),
        ({"timeout": 1e300}, "at most 86400"),
        ({"timeout": 10**400}, "at most 86400"),
        ({"timeout": (5, 10**400)}, "at most 86400"),
        ({"url": "http://[::1"}, r"url is not a valid URL \(Invalid IPv6 URL\): 'http://\[::1'"),
        ({"url": "http://127.0.0.1:99999/x"}, "url has an invalid port"),
        ({"url": "http://127.0.0.1:0/x"}, "url has an invalid port"),
        ({"url": "http://127.0.0.1:http/x"}, "url has an invalid port"),
        ({"url": "ftp://127.0.0.1/x"}, "url must be an absolute http"),
        ({"url": b"http://127.0.0.1/"}, "url must be a string, got bytes"),
    ],
)
def test_transactions_bad_parameters_fail_before_any_request(sandbox, options, message):
    arguments = {"site_ids": [25], **YEAR, "url": sandbox.transactions_url, **options}
    with pytest.raises(ConfigurationError, match=message) as caught:
        iter_transactions(sandbox.auth(), **arguments)  # raises at the call, not at next()
    assert isinstance(caught.value, ValueError)
    assert sandbox.provider.api_requests == 0
    assert sandbox.provider.token_requests == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"site_id": "25,26"}, "site_ids are positive integers"),
        ({"site_id": None}, "site_ids are positive integers"),
        ({"page_size": 101}, "page_size must be an int 1..100"),
        ({"start": "2024-03-01", "end": "2024-02-29"}, r"end \(2024-02-29\) is before start"),
        ({"end": "31.12.2024"}, "end must be a date YYYY-MM-DD"),
        ({"site_id": "9" * 5000}, "site_ids have at most 18 digits"),
        ({"site_id": b"25"}, "site_ids are positive integers"),
        ({"end": "2024-12-31+05:00"}, "end must be a date YYYY-MM-DD"),
        ({"timeout": (1,)}, "timeout must be seconds > 0"),
        ({"url": "http://[::1"}, "url is not a valid URL"),
        ({"url": "https://api.example.test:99999/function/api/statistics"}, "invalid port"),
    ],
)
def test_statistics_bad_parameters_fail_before_any_request(sandbox, options, message):
    arguments = {"site_id": 25, **YEAR, "url": sandbox.statistics_url, **options}
    with pytest.raises(ConfigurationError, match=message):
        iter_statistics(sandbox.auth(), **arguments)
    assert sandbox.provider.api_requests == 0
    assert sandbox.provider.token_requests == 0


@pytest.mark.parametrize("value", [5, "", "updated at", ["updatedAt"]])
def test_a_date_range_type_that_is_not_a_field_name_fails_before_any_request(sandbox, value):
    with pytest.raises(ConfigurationError, match="date_range_type must be the name of a date"):
        iter_transactions(sandbox.auth(), site_ids=25, **YEAR, date_range_type=value,
                          url=sandbox.transactions_url)
    assert sandbox.provider.api_requests == 0


def test_neither_session_nor_auth_is_a_type_error():
    with pytest.raises(TypeError, match=r"requests\.Session"):
        iter_transactions("not a session", site_ids=1, **YEAR)  # type: ignore[arg-type]


def query_of(adapter: requests_mock.Adapter) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(adapter.last_request.url).query).items()}


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        # A date is the whole UTC day: its first second as start, its last as end.
        (dt.date(2024, 1, 1), dt.date(2024, 1, 31), ("1704067200", "1706745599")),
        ("2024-01-01", "2024-01-31", ("1704067200", "1706745599")),
        # A naive datetime is UTC; an aware one is converted.
        (dt.datetime(2024, 1, 1, 12), "2024-01-01T13:00:00Z", ("1704110400", "1704114000")),
        (
            dt.datetime(2024, 1, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            dt.datetime(2024, 1, 1, 1, tzinfo=dt.timezone.utc),
            ("1704067200", "1704070800"),
        ),
        # Epoch seconds go through unchanged.
        (1704067200, 1704070800.9, ("1704067200", "1704070800")),
    ],
)
def test_transactions_dates_become_epoch_seconds(start, end, expected):
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(session, site_ids=["7", 8, 7], start=start, end=end, url=MOCK_URL))
    query = query_of(adapter)
    assert (query["startDate"], query["endDate"]) == expected
    assert query["siteIds"] == "7,8"
    assert (query["page"], query["size"]) == ("1", "250")
    assert "dateRangeType" not in query


@pytest.mark.skipif(sys.version_info < (3, 11), reason="fromisoformat reads these from 3.11")
@pytest.mark.parametrize(
    ("start", "end"),
    [("20240101", "20240131"), ("2024-W01-1", "2024-W05-3"), ("2024W011", "2024W053")],
)
def test_a_date_in_any_iso_spelling_is_the_whole_utc_day(start, end):
    """"20240131" (basic ISO, read by Python 3.11) as end includes that day, like "2024-01-31"."""
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(session, site_ids=7, start=start, end=end, url=MOCK_URL))
    query = query_of(adapter)
    assert (query["startDate"], query["endDate"]) == ("1704067200", "1706745599")


@pytest.mark.skipif(sys.version_info < (3, 11), reason="fromisoformat reads these from 3.11")
def test_a_basic_iso_date_and_time_is_exact():
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(
        session, site_ids=7, start="20240101T120000", end="20240101T1300Z", url=MOCK_URL
    ))
    query = query_of(adapter)
    assert (query["startDate"], query["endDate"]) == ("1704110400", "1704114000")


def test_a_date_and_time_may_be_separated_by_t_or_a_space():
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(
        session, site_ids=7, start="2024-01-01 12:00:00", end="2024-01-01t13:00:00+00:00",
        url=MOCK_URL,
    ))
    query = query_of(adapter)
    assert (query["startDate"], query["endDate"]) == ("1704110400", "1704114000")


def test_site_ids_with_leading_zeros_are_sent_as_numbers():
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(session, site_ids=["0" * 5000 + "25", "007"], **YEAR, url=MOCK_URL))
    assert query_of(adapter)["siteIds"] == "25,7"


def test_the_first_second_of_1970_is_a_valid_start():
    session, adapter = mocked_session(json_page(1, 1))
    list(iter_transactions(session, site_ids=7, start="1970-01-01", end=0, url=MOCK_URL))
    assert (query_of(adapter)["startDate"], query_of(adapter)["endDate"]) == ("0", "0")


def test_statistics_dates_are_days_and_the_format_is_json():
    adapter = requests_mock.Adapter()
    adapter.register_uri("GET", MOCK_STATS_URL, json={"data": {"data": []}, "success": True})
    session = requests.Session()
    session.mount("https://", adapter)
    start = dt.datetime(2024, 3, 1, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    list(iter_statistics(session, site_id="25", start=start, end=1709337600, url=MOCK_STATS_URL))
    query = query_of(adapter)
    assert query == {
        "page": "1",
        "size": "100",
        "siteId": "25",
        "startDate": "2024-03-01",  # a datetime's own calendar day
        "endDate": "2024-03-02",  # epoch seconds: the UTC day
        "format": "json",
    }


def test_every_request_carries_a_timeout():
    session, adapter = mocked_session(json_page(1, 2), json_page(2, 2))
    list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))
    assert [r.timeout for r in adapter.request_history] == [30.0, 30.0]
    list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, timeout=(2, 5)))
    assert adapter.last_request.timeout == (2, 5)


def test_api_urls():
    assert api_urls(None) == (TRANSACTIONS_URL, STATISTICS_URL)
    assert api_urls("  ") == (TRANSACTIONS_URL, STATISTICS_URL)
    assert api_urls("http://127.0.0.1:8765/") == (
        "http://127.0.0.1:8765/publishers/transactions/2.0/",
        "http://127.0.0.1:8765/function/api/statistics",
    )
    with pytest.raises(ConfigurationError, match="absolute http"):
        api_urls("127.0.0.1:8765")


@pytest.mark.parametrize(
    ("api_url", "message"),
    [
        ("http://[::1", r"the API URL is not a valid URL \(Invalid IPv6 URL\)"),
        ("http://127.0.0.1:99999", "the API URL has an invalid port"),
        ("ftp://x", "the API URL must be an absolute http"),
        ("http://", "the API URL must be an absolute http"),
    ],
)
def test_api_urls_rejects_a_malformed_url(api_url, message):
    with pytest.raises(ConfigurationError, match=message):
        api_urls(api_url)


def test_api_urls_match_the_sandbox(sandbox):
    assert api_urls(sandbox.url) == (sandbox.transactions_url, sandbox.statistics_url)


# -- progress ------------------------------------------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_silent_when_stderr_is_not_a_terminal(sandbox, capsys):
    pull(sandbox, page_size=500)
    list(iter_statistics(sandbox.auth(), site_id=25, **YEAR, url=sandbox.statistics_url))
    assert capsys.readouterr().err == ""


def test_progress_is_shown_when_stderr_is_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    session, _ = mocked_session(json_page(1, 3), json_page(2, 3), json_page(3, 3))
    list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL))
    shown = terminal.getvalue()
    assert shown.startswith("\rtransactions: page 1/3, 2 rows")
    assert "\rtransactions: page 2/3, 4 rows" in shown
    assert shown.endswith("\rtransactions: page 3/3, 6 rows\n")
    assert shown.count("\n") == 1


def test_progress_false_silences_a_terminal(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    session, _ = mocked_session(json_page(1, 1))
    list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, progress=False))
    assert terminal.getvalue() == ""


def test_progress_true_forces_it_and_ends_the_line_when_the_consumer_stops(sandbox, capsys):
    rows = iter_statistics(
        sandbox.auth(), site_id=25, **YEAR, url=sandbox.statistics_url, progress=True
    )
    next(rows)
    rows.close()  # e.g. a `break` out of the loop
    err = capsys.readouterr().err
    assert err == "\rstatistics: page 1, 100 rows\n"


def test_progress_line_ends_when_a_page_fails(capsys):
    session, _ = mocked_session(json_page(1, 2), {"status": 500, "body": "oops"})
    with pytest.raises(PageError):
        list(iter_transactions(session, site_ids=1, **YEAR, url=MOCK_URL, progress=True))
    assert capsys.readouterr().err == "\rtransactions: page 1/2, 2 rows\n"


def test_private_session_is_closed_after_the_pull(sandbox, monkeypatch):
    closed = []
    original = requests.Session.close

    def close(self):
        closed.append(self)
        original(self)

    monkeypatch.setattr(requests.Session, "close", close)
    auth = sandbox.auth()
    list(iter_statistics(auth, site_id=25, **YEAR, url=sandbox.statistics_url))
    assert len(closed) == 1
    assert closed[0].auth is auth


def test_a_pull_given_an_auth_opens_no_session_until_it_is_iterated(sandbox, monkeypatch):
    auth = sandbox.auth()
    opened = []
    original = requests.Session.__init__

    def init(self, *args, **kwargs):
        opened.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "__init__", init)
    rows = iter_transactions(auth, site_ids=25, **YEAR, url=sandbox.transactions_url)
    assert opened == []  # built, checked, never iterated: nothing to leak
    next(rows)
    assert len(opened) == 1
    assert opened[0].auth is auth
    rows.close()


@pytest.mark.parametrize(("text", "why"), [("2024-13-01", "month must be in 1..12"),
                                          ("2024-02-30", "day is out of range for month")])
def test_a_date_with_an_impossible_month_or_day_says_which(sandbox, text, why):
    with pytest.raises(ConfigurationError, match=re.escape(f"got '{text}' ({why})")):
        iter_transactions(sandbox.auth(), site_ids=25, start=text, end="2024-12-31",
                          url=sandbox.transactions_url)


def test_statistics_given_several_sites_says_it_takes_one(sandbox):
    with pytest.raises(ConfigurationError, match="site_id takes one site id"):
        iter_statistics(sandbox.auth(), site_id=[25, 26], **YEAR, url=sandbox.statistics_url)


def test_a_token_error_during_a_pull_is_quoted_whole_with_its_hint(sandbox):
    auth = AdvancedAuth(sandbox.client_id, "a-mistyped-secret", token_url=sandbox.token_url,
                        allowed_hosts=[f"127.0.0.1:{sandbox.port}"])
    with pytest.raises(PageError) as caught:
        list(iter_transactions(auth, site_ids=25, **YEAR, url=sandbox.transactions_url))
    assert "client_secret_basic' or 'client_secret_post')" in str(caught.value)
    assert "…" not in str(caught.value)
