"""pandas DataFrames from the rows of :mod:`requests_advanced_auth.pagination`.

pandas is optional (``pip install "requests-advanced-auth[pandas]"``) and imported only when
one of these functions runs. ::

    from requests_advanced_auth.frames import transactions_to_dataframe
    from requests_advanced_auth.pagination import iter_transactions

    df = transactions_to_dataframe(iter_transactions(auth, site_ids=[25], start=..., end=...))

Column types (the documented columns are always present, in the documentation's order, also
in an empty frame; undocumented fields follow as pandas infers them):

* transactions: ``transactionDate``, ``clickTime``, ``updatedAt`` (epoch ms) →
  ``datetime64[ns, UTC]``; ``commission``, ``basketValue`` → ``float64``; ids
  (``transactionId``, ``programId``, ``siteId``) and the other text fields → ``string``.
* statistics: ``date`` → ``datetime64[ns]`` (midnight of the day); counts → ``Int64``
  (nullable); money and rates (``ctr``, ``eCpm``, ``total*Commission``,
  ``confirmationRate``) → ``float64``; a null ``totalRevokedCommission`` is ``NaN``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Iterable, Mapping, cast

if TYPE_CHECKING:  # pandas stays optional: imported at run time inside the functions only
    import pandas as pd

__all__ = [
    "STATISTICS_DTYPES",
    "TRANSACTION_DTYPES",
    "statistics_to_dataframe",
    "transactions_to_dataframe",
]

_EPOCH_MS: Final = "epoch_ms"
_DAY: Final = "day"

#: The dtype of each documented transactions column.
TRANSACTION_DTYPES: Final[Mapping[str, str]] = {
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

#: The dtype of each documented statistics column.
STATISTICS_DTYPES: Final[Mapping[str, str]] = {
    "date": "datetime64[ns]",
    "totalImpressions": "Int64",
    "totalClicks": "Int64",
    "ctr": "float64",
    "totalTransactions": "Int64",
    "transactionsPc": "Int64",
    "transactionsPv": "Int64",
    "eCpm": "float64",
    "totalCommission": "float64",
    "confirmationRate": "float64",
    "totalPendingCommission": "float64",
    "pendingTransactionCount": "Int64",
    "totalRevokedCommission": "float64",
    "revokedTransactionCount": "Int64",
    "totalConfirmedCommission": "float64",
    "confirmedTransactionCount": "Int64",
}

_PIP_HINT: Final = (
    'pip install "requests-advanced-auth[pandas]" (from a clone: pip install -e ".[pandas]")'
)


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            f"requests_advanced_auth.frames needs pandas, which is not installed: {_PIP_HINT}"
        ) from exc
    return pandas


def transactions_to_dataframe(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame of transactions rows (a list, or ``iter_transactions(...)``), typed."""
    return _frame(rows, TRANSACTION_DTYPES)


def statistics_to_dataframe(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """A DataFrame of statistics rows (a list, or ``iter_statistics(...)``), typed."""
    return _frame(rows, STATISTICS_DTYPES)


def _frame(rows: Iterable[Mapping[str, Any]], dtypes: Mapping[str, str]) -> pd.DataFrame:
    pandas = _pandas()
    records = list(rows)
    for number, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise TypeError(
                f"rows must be mappings (dicts), row {number} is {type(record).__name__}"
            )
    # dtype=object keeps each value as sent: no int -> float detour for a column with nulls.
    frame = pandas.DataFrame(records, dtype=object) if records else pandas.DataFrame()
    extra = [column for column in frame.columns if column not in dtypes]
    frame = frame.reindex(columns=[*dtypes, *extra])
    if extra:
        frame[extra] = frame[extra].infer_objects()
    for column, dtype in dtypes.items():
        try:
            frame[column] = _convert(pandas, frame[column], dtype)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"column {column!r} cannot be read as {dtype}: {exc}") from None
    return cast("pd.DataFrame", frame)


def _convert(pandas: Any, series: Any, dtype: str) -> Any:
    if dtype == "datetime64[ns, UTC]":  # epoch milliseconds
        numbers = pandas.to_numeric(series, errors="raise")
        missing = numbers.isna()
        # Whole int64 milliseconds convert exactly (floats could round to a neighbouring ns).
        moments = pandas.to_datetime(numbers.fillna(0).astype("int64"), unit="ms", utc=True)
        return moments.astype(dtype).where(~missing)
    if dtype == "datetime64[ns]":  # "YYYY-MM-DD"
        return pandas.to_datetime(series, format="%Y-%m-%d").astype(dtype)
    if dtype in ("float64", "Int64"):
        return pandas.to_numeric(series, errors="raise").astype(dtype)
    # Text: ids may arrive as numbers; 25 and "25" both become "25".
    return series.map(_text, na_action="ignore").astype(dtype)


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
