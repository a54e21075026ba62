"""DataFrames with proper dtypes, the pandas-optional import, and read_csv with headers_for."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import urllib.error

import pytest

pd = pytest.importorskip("pandas")

from requests_advanced_auth.frames import (  # noqa: E402
    STATISTICS_DTYPES,
    TRANSACTION_DTYPES,
    statistics_to_dataframe,
    transactions_to_dataframe,
)
from requests_advanced_auth.pagination import (  # noqa: E402
    STATISTICS_FIELDS,
    TRANSACTION_FIELDS,
    iter_statistics,
    iter_transactions,
)

YEAR = {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 12, 31)}


def dtypes_of(frame) -> dict[str, str]:
    return {column: str(dtype) for column, dtype in frame.dtypes.items()}


def test_documented_dtypes_cover_the_documented_fields_in_order():
    assert tuple(TRANSACTION_DTYPES) == TRANSACTION_FIELDS
    assert tuple(STATISTICS_DTYPES) == STATISTICS_FIELDS


def test_transactions_frame_from_a_sandbox_pull_has_proper_dtypes(sandbox):
    rows = list(
        iter_transactions(sandbox.auth(), site_ids=[25, 26], **YEAR, url=sandbox.transactions_url)
    )
    frame = transactions_to_dataframe(rows)
    assert len(frame) == len(rows)
    assert list(frame.columns) == list(TRANSACTION_FIELDS)
    assert dtypes_of(frame) == {
        "transactionDate": "datetime64[ns, UTC]",
        "commission": "float64",
        "basketValue": "float64",
        "clickTime": "datetime64[ns, UTC]",
        "program": "string",
        "programId": "string",
        "site": "string",
        "siteId": "string",
        "status": "string",
        "subIdOrText": "string",
        "transactionId": "string",
        "transactionType": "string",
        "trackingCategory": "string",
        "updatedAt": "datetime64[ns, UTC]",
        "conversionTime": "string",
    }
    first = rows[0]
    assert frame["transactionDate"].iloc[0] == pd.Timestamp(
        first["transactionDate"], unit="ms", tz="UTC"
    )
    assert frame["updatedAt"].iloc[0].value == first["updatedAt"] * 1_000_000  # exact, in ns
    assert frame["commission"].iloc[0] == first["commission"]
    assert frame["transactionId"].iloc[0] == first["transactionId"]
    assert frame["transactionDate"].dt.year.unique().tolist() == [2024]
    assert sorted(frame["siteId"].unique()) == ["25", "26"]


def test_transactions_frame_accepts_the_iterator_itself(sandbox):
    rows = iter_transactions(sandbox.auth(), site_ids=27, **YEAR, url=sandbox.transactions_url)
    frame = transactions_to_dataframe(rows)
    assert len(frame) > 0
    assert frame["siteId"].unique().tolist() == ["27"]


def test_statistics_frame_from_a_sandbox_pull_has_proper_dtypes(sandbox):
    rows = list(iter_statistics(sandbox.auth(), site_id=25, **YEAR, url=sandbox.statistics_url))
    frame = statistics_to_dataframe(rows)
    assert list(frame.columns) == list(STATISTICS_FIELDS)
    assert dtypes_of(frame) == dict(STATISTICS_DTYPES)
    assert frame["date"].iloc[0] == pd.Timestamp("2024-01-01")
    assert frame["date"].iloc[-1] == pd.Timestamp("2024-12-31")
    assert str(frame["totalClicks"].dtype) == "Int64"
    assert str(frame["eCpm"].dtype) == "float64"
    # Days without revoked transactions have a null totalRevokedCommission: NaN, not 0.
    nulls = [r["totalRevokedCommission"] is None for r in rows]
    assert any(nulls)
    assert frame["totalRevokedCommission"].isna().tolist() == nulls
    assert frame["totalCommission"].sum() == pytest.approx(sum(r["totalCommission"] for r in rows))


@pytest.mark.parametrize(
    ("convert", "dtypes"),
    [(transactions_to_dataframe, TRANSACTION_DTYPES), (statistics_to_dataframe, STATISTICS_DTYPES)],
)
def test_empty_input_gives_an_empty_frame_with_the_documented_columns_and_dtypes(convert, dtypes):
    frame = convert([])
    assert frame.empty
    assert dtypes_of(frame) == dict(dtypes)
    assert dtypes_of(convert(iter(()))) == dict(dtypes)


def test_ids_sent_as_numbers_become_strings_and_nulls_stay_missing():
    frame = transactions_to_dataframe(
        [
            {"transactionId": 70000001, "siteId": 25, "programId": None, "commission": "1.5"},
            {"transactionId": "70000002", "siteId": "26", "programId": "1001", "commission": 2},
        ]
    )
    assert frame["transactionId"].tolist() == ["70000001", "70000002"]
    assert frame["siteId"].tolist() == ["25", "26"]
    assert frame["programId"].isna().tolist() == [True, False]
    assert frame["commission"].tolist() == [1.5, 2.0]
    assert frame["transactionDate"].isna().all()  # a missing documented field: NaT


def test_undocumented_fields_are_kept_after_the_documented_ones():
    frame = transactions_to_dataframe([{"transactionId": "1", "newField": "x"}])
    assert list(frame.columns) == [*TRANSACTION_FIELDS, "newField"]
    assert frame["newField"].tolist() == ["x"]


def test_counts_with_nulls_are_nullable_integers():
    frame = statistics_to_dataframe([{"date": "2024-01-01", "totalClicks": None},
                                     {"date": "2024-01-02", "totalClicks": 7}])
    assert frame["totalClicks"].tolist()[1] == 7
    assert frame["totalClicks"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("convert", "row", "column"),
    [
        (transactions_to_dataframe, {"commission": "12,50"}, "commission"),
        (transactions_to_dataframe, {"transactionDate": "yesterday"}, "transactionDate"),
        (statistics_to_dataframe, {"date": "01.02.2024"}, "date"),
        (statistics_to_dataframe, {"totalClicks": 2.5}, "totalClicks"),
    ],
)
def test_values_of_the_wrong_kind_are_a_value_error_naming_the_column(convert, row, column):
    with pytest.raises(ValueError, match=f"column '{column}' cannot be read as"):
        convert([row])


def test_rows_that_are_not_mappings_are_a_type_error():
    with pytest.raises(TypeError, match="row 1 is list"):
        transactions_to_dataframe([{"transactionId": "1"}, ["not", "a", "dict"]])


def test_missing_pandas_is_an_import_error_with_the_pip_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` now raises ImportError
    with pytest.raises(ImportError, match=r'pip install "requests-advanced-auth\[pandas\]"'):
        transactions_to_dataframe([])


def test_importing_the_package_modules_does_not_import_pandas():
    code = (
        "import sys\n"
        "import requests_advanced_auth, requests_advanced_auth.frames\n"
        "import requests_advanced_auth.pagination, requests_advanced_auth.cli\n"
        "assert 'pandas' not in sys.modules, 'pandas was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_read_csv_with_storage_options_from_headers_for(sandbox):
    """pandas sends storage_options as HTTP headers: the statistics CSV, authenticated."""
    auth = sandbox.auth()
    url = (
        f"{sandbox.statistics_url}?page=1&siteId=25&startDate=2024-01-01&endDate=2024-01-31"
        "&format=csv"
    )
    headers = auth.headers_for(url)
    assert list(headers) == ["Authorization"]
    assert not headers["Authorization"].startswith("Bearer ")  # statistics: the raw token
    frame = pd.read_csv(url, storage_options=headers)
    assert list(frame.columns) == list(STATISTICS_FIELDS)
    assert len(frame) == 31
    assert frame["date"].iloc[0] == "2024-01-01"
    assert sandbox.provider.tokens_issued == 1
    assert sandbox.provider.unauthorized == 0


def test_read_csv_without_the_headers_is_refused(sandbox):
    url = f"{sandbox.statistics_url}?page=1&siteId=25&startDate=2024-01-01&endDate=2024-01-02"
    with pytest.raises(urllib.error.HTTPError, match="401"):
        pd.read_csv(url + "&format=csv")
