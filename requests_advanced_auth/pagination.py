"""Every row of the two Advanced-Store APIs, page by page (requests only, no pandas).

::

    from requests_advanced_auth import AdvancedAuth
    from requests_advanced_auth.pagination import iter_transactions

    auth = AdvancedAuth.from_env()
    rows = iter_transactions(auth, site_ids=[25], start=date(2024, 1, 1), end=date(2024, 1, 31))
    for row in rows:
        ...

Rules:

* Parameters are checked when the function is called, before any request: a bad value is a
  :class:`~requests_advanced_auth.ConfigurationError` (a ``ValueError``).
* Dates: a ``date`` (or a string that is a date without a time: ``"YYYY-MM-DD"``, or any
  other spelling ``date.fromisoformat`` reads, such as ``"20240131"`` from Python 3.11) means
  the whole UTC day, so as ``end`` it includes that day; a ``datetime`` (or an ISO 8601 date
  and time, ``T`` or a space between them) is exact, and a naive one is taken as **UTC**; an
  ``int`` or ``float`` is epoch seconds (UTC). Both ends are inclusive. Transactions take
  epoch seconds, so nothing before 1970-01-01 UTC can be asked for.
* A page that fails (transport error, token error, non-2xx after the auth's one re-send on
  401, an answer that is not the documented JSON, rows that are not all JSON objects, JSON
  nested more than 100 levels deep, or a page that repeats an earlier page of the same pull
  exactly, as from a server that ignores ``page``) raises
  :class:`~requests_advanced_auth.PageError`; ``error.page`` is the page to resume from
  (``start_page=error.page``) and ``error.__cause__`` the underlying error, if any. What it
  quotes from an answer (the status line, a header, the body, a transport error's text)
  never holds the ``Authorization`` value that was sent (an API that echoes request headers
  would otherwise put the token there): it reads ``***``; control characters in it are
  shown as escapes such as ``\\x1b``.
* Progress goes to stderr, one line rewritten in place, only when stderr is a terminal
  (``progress=None``); ``progress=True`` forces it, ``progress=False`` silences it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import re
import sys
from typing import (
    Any,
    Callable,
    Final,
    Iterable,
    Iterator,
    Mapping,
    NamedTuple,
    Optional,
    TextIO,
    Union,
)

import requests
from requests.auth import AuthBase

from ._auth import STATISTICS_PATH
from ._checks import Timeout, check_http_url, check_timeout, shown
from ._redact import excerpt, request_tokens, sent_tokens, stand_in
from .exceptions import AdvancedAuthError, ConfigurationError, PageError

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_STATISTICS_PAGE_SIZE",
    "MAX_TRANSACTIONS_PAGE_SIZE",
    "STATISTICS_FIELDS",
    "STATISTICS_URL",
    "TRANSACTIONS_URL",
    "TRANSACTION_FIELDS",
    "api_urls",
    "iter_statistics",
    "iter_transactions",
]

TRANSACTIONS_URL: Final = "https://api.advanced-store.com/publishers/transactions/2.0/"
STATISTICS_URL: Final = "https://advanced-store.cloud/function/api/statistics"
TRANSACTIONS_PATH: Final = "/publishers/transactions/2.0/"

#: Seconds (or (connect, read)) for one API request. A page of 250 rows is small; a server
#: that has not answered in 30 s is stuck, and the error says which page to resume from.
DEFAULT_TIMEOUT: Final = 30.0
#: The documentation recommends at most 250 rows per transactions page; larger pages (up to
#: this bound) are accepted by the API but slower and more likely to time out.
MAX_TRANSACTIONS_PAGE_SIZE: Final = 1000
#: Documented maximum of the statistics API.
MAX_STATISTICS_PAGE_SIZE: Final = 100
#: Site and program ids are at most 18 digits (they fit in a signed 64-bit integer); a longer
#: string is a mistake, and past 4300 digits ``int()`` itself refuses it.
_MAX_ID_DIGITS: Final = 18
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
#: Levels of arrays and objects a page may nest. A documented page is three deep (the page,
#: its row list, flat rows); past a few hundred, whatever handles a row next (repr, csv,
#: json.dumps, pandas) can hit Python's recursion limit (1000) and fail with RecursionError.
_MAX_DEPTH: Final = 100

#: The documented fields of a transactions row, in the documentation's order.
TRANSACTION_FIELDS: Final = (
    "transactionDate",
    "commission",
    "basketValue",
    "clickTime",
    "program",
    "programId",
    "site",
    "siteId",
    "status",
    "subIdOrText",
    "transactionId",
    "transactionType",
    "trackingCategory",
    "updatedAt",
    "conversionTime",
)
#: The documented fields of a statistics row, in the documentation's order.
STATISTICS_FIELDS: Final = (
    "date",
    "totalImpressions",
    "totalClicks",
    "ctr",
    "totalTransactions",
    "transactionsPc",
    "transactionsPv",
    "eCpm",
    "totalCommission",
    "confirmationRate",
    "totalPendingCommission",
    "pendingTransactionCount",
    "totalRevokedCommission",
    "revokedTransactionCount",
    "totalConfirmedCommission",
    "confirmedTransactionCount",
)

DateLike = Union[_dt.datetime, _dt.date, int, float, str]
SessionOrAuth = Union[requests.Session, AuthBase]
Row = dict[str, Any]


def api_urls(api_url: Optional[str] = None) -> tuple[str, str]:
    """``(transactions_url, statistics_url)``: the real ones, or both under ``api_url``.

    ``api_url`` is one server that hosts both APIs, such as the sandbox's ``sb.url`` (the
    meaning of ``ADVANCED_STORE_API_URL``); None or "" gives the provider's URLs.
    """
    if api_url is None or (isinstance(api_url, str) and not api_url.strip()):
        return TRANSACTIONS_URL, STATISTICS_URL
    base = check_http_url(api_url, "the API URL", example="http://127.0.0.1:8765")
    base = base.rstrip("/")
    return base + TRANSACTIONS_PATH, base + STATISTICS_PATH


# -- parameter checks ---------------------------------------------------------------------


def _site_ids(value: Any) -> list[str]:
    items: list[Any]
    if isinstance(value, (int, str)):
        items = value.split(",") if isinstance(value, str) else [value]
    elif isinstance(value, (bytes, bytearray, memoryview)):  # iterates as numbers: b"25" -> 50, 53
        raise ConfigurationError(
            f"site_ids must be a site id or a list of them, got {type(value).__name__}; "
            "decode bytes first, e.g. site_ids=data.decode()"
        )
    else:
        try:
            items = list(value)
        except TypeError:
            raise ConfigurationError(
                f"site_ids must be a site id or a list of them, got {type(value).__name__}"
            ) from None
    if not items:
        raise ConfigurationError("site_ids is empty: give at least one site id, e.g. [25]")
    return list(dict.fromkeys(_site_id(item) for item in items))


def _site_id(value: Any, name: str = "site id") -> str:
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() and text.isascii():
            _check_digits(text.lstrip("0"), f"{name}s have", value)
            number = int(text.lstrip("0") or "0")
            if number > 0:
                return str(number)
    elif isinstance(value, int) and not isinstance(value, bool) and value > 0:
        _check_digits(value, f"{name}s have", value)
        return str(int(value))
    elif name == "site_id" and isinstance(value, (list, tuple, set)):
        raise ConfigurationError(
            f"site_id takes one site id (the statistics API pulls one site at a time), got "
            f"{shown(value)}; pull each site in turn"
        )
    raise ConfigurationError(
        f"{name}s are positive integers (or strings of digits), got {shown(value)}"
    )


def _check_digits(number: Union[int, str], what: str, value: Any) -> None:
    """Refuse more than 18 digits before ``int()``/``str()`` (and their 4300-digit limit)."""
    too_long = (
        number >= 10**_MAX_ID_DIGITS if isinstance(number, int) else len(number) > _MAX_ID_DIGITS
    )
    if too_long:
        raise ConfigurationError(f"{what} at most {_MAX_ID_DIGITS} digits, got {shown(value)}")


def _optional_id(value: Any, name: str) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ConfigurationError(
            f"{name} must be an int or a non-empty string, got {shown(value)}"
        )
    if isinstance(value, int):
        _check_digits(value, f"{name} has", value)
        return str(int(value))
    text = value.strip()
    if not text:
        raise ConfigurationError(f"{name} must be an int or a non-empty string, got {value!r}")
    if text.isdigit():
        _check_digits(text.lstrip("0"), f"{name} has", value)
    return text


def _page_number(value: Any, name: str, maximum: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or (
        maximum is not None and value > maximum
    ):
        bound = f"1..{maximum}" if maximum is not None else ">= 1"
        raise ConfigurationError(f"{name} must be an int {bound}, got {value!r:.60}")
    return value


#: A week without its day ("2024-W05"): date.fromisoformat reads it as the Monday.
_WEEK: Final = re.compile(r"\d{4}-?[Ww]\d{2}")


def _parse_date_text(text: str, name: str) -> Union[_dt.date, _dt.datetime]:
    """A date (no time: the whole day) or a datetime, from ISO 8601 text.

    The date and the time are separated by ``T`` or a space: ``datetime.fromisoformat``
    takes any character there, so ``"2024-01-31+05:00"`` would be 05:00, not a day.
    """
    given = text = text.strip()
    cut = min((i for i in (text.find("T"), text.find("t"), text.find(" ")) if i >= 0),
              default=len(text))
    day, moment = text[:cut], text[cut + 1:]
    if _WEEK.fullmatch(day):
        raise ConfigurationError(
            f"{name} {text!r:.60} is a week, not a day: give a day, e.g. "
            f"{day}-1 (its Monday) or YYYY-MM-DD"
        )
    try:
        if not moment:
            return _dt.date.fromisoformat(day)  # every spelling it reads means the day
        _dt.date.fromisoformat(day)  # the date part alone must be a date
        if moment.endswith(("Z", "z")):  # Python < 3.11 does not read "Z"
            text = text[:-1] + "+00:00"
        return _dt.datetime.fromisoformat(text)
    except ValueError as exc:
        # Python's reason when it is about the numbers ("month must be in 1..12").
        why = f" ({exc})" if "must be in" in str(exc) or "out of range" in str(exc) else ""
        raise ConfigurationError(
            f"{name} must be a date YYYY-MM-DD or an ISO 8601 date and time "
            f"(YYYY-MM-DDTHH:MM:SS, optionally with Z or an offset such as +02:00), "
            f"got {shown(given)}{why}"
        ) from None


def _as_utc(value: Any, name: str, *, end: bool) -> _dt.datetime:
    """``value`` as an aware UTC datetime; a date is its first (or, as ``end``, last) second."""
    if isinstance(value, str):
        value = _parse_date_text(value, name)
    if isinstance(value, _dt.datetime):
        if value.utcoffset() is None:  # (astimezone would take a naive one as local time)
            return value.replace(tzinfo=_dt.timezone.utc)  # documented: naive means UTC
        try:
            return value.astimezone(_dt.timezone.utc)
        except OverflowError:  # e.g. 0001-01-01 00:00+05:00 is in year 0 in UTC
            side = "before year 1" if value.year == _dt.MINYEAR else "after year 9999"
            raise ConfigurationError(
                f"{name} {value.isoformat(' ')} is out of range: in UTC it falls {side}"
            ) from None
    if isinstance(value, _dt.date):
        moment = _dt.time(23, 59, 59) if end else _dt.time(0, 0, 0)
        return _dt.datetime.combine(value, moment, tzinfo=_dt.timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not value >= 0:  # also NaN; no float() of a huge int
            raise ConfigurationError(f"{name} must be epoch seconds >= 0, got {shown(value)}")
        if value > 253402300799:  # after 9999-12-31: surely milliseconds
            raise ConfigurationError(
                f"{name}={shown(value)} looks like epoch milliseconds; pass epoch seconds "
                f"(divide by 1000), a date or a datetime"
            )
        return _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
    raise ConfigurationError(
        f"{name} must be a date, a datetime, epoch seconds or 'YYYY-MM-DD', "
        f"got {type(value).__name__}"
    )


def _date_of(value: Any, name: str) -> _dt.date:
    """The calendar day for the statistics API: a datetime's own date, epoch in UTC."""
    if isinstance(value, str):
        value = _parse_date_text(value, name)
    if isinstance(value, _dt.datetime):
        return value.date()
    if isinstance(value, _dt.date):
        return value
    return _as_utc(value, name, end=False).date()


def _date_range_type(value: Any) -> Optional[str]:
    """The API's ``dateRangeType``: a field name such as ``updatedAt`` or ``transactionDate``."""
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip().isidentifier():
        raise ConfigurationError(
            "date_range_type must be the name of a date field, 'updatedAt' (the API's "
            f"default) or 'transactionDate', got {shown(value)}"
        )
    return value.strip()


def _check_source(session_or_auth: Any) -> None:
    if not isinstance(session_or_auth, (requests.Session, AuthBase)):
        raise TypeError(
            "pass a requests.Session (with .auth set) or an auth object such as AdvancedAuth, "
            f"got {type(session_or_auth).__name__}"
        )


def _open_session(session_or_auth: SessionOrAuth) -> tuple[requests.Session, bool]:
    """The session to use, and whether we made it (and so must close it)."""
    if isinstance(session_or_auth, requests.Session):
        return session_or_auth, False
    session = requests.Session()
    session.auth = session_or_auth
    return session, True


# -- progress -----------------------------------------------------------------------------


class _Progress:
    """One status line on stderr, rewritten with ``\\r``; a newline when done."""

    def __init__(self, label: str, enabled: Optional[bool]) -> None:
        self.stream: Optional[TextIO] = sys.stderr
        if enabled is None:
            enabled = _is_terminal(self.stream)
        self.enabled = bool(enabled) and self.stream is not None
        self.label = label
        self.width = 0

    def update(self, page: int, total: Optional[int], rows: int) -> None:
        if not self.enabled or self.stream is None:
            return
        pages = f"page {page}/{total}" if total is not None else f"page {page}"
        text = f"{self.label}: {pages}, {rows} rows"
        self.stream.write("\r" + text.ljust(self.width))
        self.stream.flush()
        self.width = max(self.width, len(text))

    def close(self) -> None:
        if self.enabled and self.width and self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def _is_terminal(stream: Optional[TextIO]) -> bool:
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # closed or replaced by something file-like
        return False


# -- fetching -----------------------------------------------------------------------------


#: Quotes text from an answer for a message: one line, cut, no credential that was sent.
_Quote = Callable[[str], str]


def _get_json(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any],
    timeout: Timeout,
    page: int,
) -> tuple[Any, _Quote]:
    """The decoded JSON of one page, and how to quote from that answer."""
    # Prepared here, as Session.request would, so the Authorization value is known even when
    # no answer comes back (a token echoed as a chunk-size line, or into a redirect's URL,
    # is quoted back by the transport error); streamed, so the body is read below, where the
    # answer and any re-send of the auth's are known too.
    hidden: set[str] = set()
    error: Optional[PageError] = None
    cause: Optional[BaseException] = None
    try:
        response = _send_get(session, url, params, timeout, hidden)
    except requests.RequestException as exc:
        # Raised below, out of the except: the original (its text may quote the token, and
        # it would be the __context__) stays out of the error's chain.
        error, cause = _failed(url, page, exc, hidden), stand_in(exc, hidden)
    if error is not None:
        raise error from cause
    with response:
        hidden |= sent_tokens(response)
        try:
            response.content  # noqa: B018  # read it all now: a broken body fails here
        except requests.RequestException as exc:
            error, cause = _failed(url, page, exc, hidden), stand_in(exc, hidden)
        if error is not None:
            raise error from cause

        def quote_answer(text: str, limit: int = 200) -> str:
            return excerpt(text, hidden, limit)

        status = response.status_code
        if not 200 <= status < 300:
            hint = ""
            if status == 401:
                hint = (
                    " (no token, or refused even after the auth's one re-send with a new "
                    "token: check that the session has the auth, the audiences and the "
                    "allowed hosts)"
                )
            raise PageError(
                f"GET {url} answered {status} {quote_answer(response.reason or '', 80)}{hint}: "
                f"{quote_answer(response.text)!r}",
                page=page,
                status_code=status,
            )
        try:
            data = response.json()
        except RecursionError:  # a hostile "[[[[..." decodes one level per stack frame
            raise PageError(
                f"GET {url} answered {status} with JSON nested too deeply to decode",
                page=page,
                status_code=status,
            ) from None
        except ValueError:
            ctype = quote_answer(response.headers.get("Content-Type", "no content type"), 80)
            raise PageError(
                f"GET {url} answered {status} with {ctype}, not JSON: "
                f"{quote_answer(response.text)!r}",
                page=page,
                status_code=status,
            ) from None
        if _deeper_than(data, _MAX_DEPTH):
            raise PageError(
                f"GET {url} answered {status} with JSON nested too deeply (more than "
                f"{_MAX_DEPTH} levels of arrays and objects; the documented rows are flat)",
                page=page,
                status_code=status,
            )
        return data, quote_answer


def _send_get(
    session: requests.Session,
    url: str,
    params: Mapping[str, Any],
    timeout: Timeout,
    hidden: set[str],
) -> requests.Response:
    """GET ``url`` as ``Session.request`` would, streamed; the spellings of the token it
    carries go into ``hidden`` before anything is sent, so that even a transport error (a
    token echoed as a chunk-size line, or into a redirect's URL) can be quoted without it."""
    prepared = session.prepare_request(requests.Request("GET", url, params=params))
    hidden |= request_tokens(prepared)
    settings = session.merge_environment_settings(prepared.url, {}, True, None, None)
    return session.send(prepared, timeout=timeout, allow_redirects=True, **settings)


def _failed(url: str, page: int, exc: requests.RequestException, hidden: set[str]) -> PageError:
    """The PageError of a request that got no (whole) answer; its text may quote the server.

    This package's own errors (a token that could not be fetched) are quoted whole: they are
    clean already, and their hint is the point.
    """
    text = str(exc) if isinstance(exc, AdvancedAuthError) else excerpt(str(exc), hidden, 400)
    return PageError(f"GET {url} failed: {type(exc).__name__}: {text}", page=page)


def _deeper_than(data: Any, limit: int) -> bool:
    """Whether ``data`` nests lists and dicts more than ``limit`` levels (without recursing)."""
    stack = [(data, 1)] if isinstance(data, (dict, list)) else []
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


#: JSON's names for what a row is when it is not an object.
_JSON_KINDS: Final = ((bool, "true or false"), ((int, float), "a number"), (str, "a string"),
                      (list, "an array"), (type(None), "null"))


def _check_rows(url: str, page: int, rows: list[Any]) -> None:
    """Every row must be a JSON object: the rows are dicts to whoever reads them."""
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict):
            kind = next((name for types, name in _JSON_KINDS if isinstance(row, types)), "?")
            raise PageError(
                f"GET {url} answered rows that are not all JSON objects: row {number} of "
                f"{len(rows)} is {kind}, not a JSON object",
                page=page,
            )


def _unexpected(url: str, page: int, what: str, data: Any, quote_answer: _Quote) -> PageError:
    return PageError(
        f"GET {url} answered JSON without {what}: {quote_answer(repr(data))}", page=page
    )


class _Page(NamedTuple):
    """A checked page: its rows, the page count to show (if known), whether it is the last."""

    rows: list[Row]
    total: Optional[int]
    last: bool


#: Checks one page's decoded JSON: ``(url, page, params, data, quote) -> _Page``, or raises
#: PageError (quoting the answer with ``quote``).
_PageReader = Callable[[str, int, Mapping[str, Any], Any, _Quote], _Page]


def _paginate(
    session_or_auth: SessionOrAuth,
    url: str,
    params: dict[str, Any],
    start_page: int,
    timeout: Timeout,
    progress: Optional[bool],
    label: str,
    read: _PageReader,
) -> Iterator[Row]:
    """Check the arguments both APIs share, then return the (lazy) page-after-page pull."""
    first = _page_number(start_page, "start_page")
    timeout = check_timeout(timeout)
    api_url = check_http_url(url, "url")
    _check_source(session_or_auth)
    return _pages(session_or_auth, api_url, params, first, timeout, label, progress, read)


def _pages(
    session_or_auth: SessionOrAuth,
    url: str,
    params: dict[str, Any],
    page: int,
    timeout: Timeout,
    label: str,
    progress: Optional[bool],
    read: _PageReader,
) -> Iterator[Row]:
    # Opened here, on the first next(): a pull that is never iterated leaves nothing open.
    session, owned = _open_session(session_or_auth)
    display = _Progress(label, progress)
    rows = 0
    seen: dict[str, int] = {}  # digest of a page's rows -> its page number
    try:
        while True:
            data, quote_answer = _get_json(session, url, {"page": page, **params}, timeout, page)
            batch = read(url, page, params, data, quote_answer)
            _check_rows(url, page, batch.rows)
            # A server that ignores `page` answers page 1 again and again: a full page would
            # never end the statistics pull. Real pages never repeat (each row is its own
            # transaction or day), so an exact repeat is that server, not data.
            digest = hashlib.sha256(repr(batch.rows).encode()).hexdigest()
            if batch.rows and digest in seen:
                raise PageError(
                    f"GET {url}: page {page} repeats page {seen[digest]} exactly: the server "
                    "seems to ignore `page`; check the URL (is it the paginated API?)",
                    page=page,
                )
            seen[digest] = page
            rows += len(batch.rows)
            display.update(page, batch.total, rows)
            yield from batch.rows
            if batch.last:
                return
            page += 1
    finally:
        display.close()
        if owned:
            session.close()


def iter_transactions(
    session_or_auth: SessionOrAuth,
    *,
    site_ids: Union[int, str, Iterable[Union[int, str]]],
    start: DateLike,
    end: DateLike,
    page_size: int = 250,
    start_page: int = 1,
    program_id: Union[int, str, None] = None,
    status_id: Union[int, str, None] = None,
    date_range_type: Optional[str] = None,
    url: str = TRANSACTIONS_URL,
    timeout: Timeout = DEFAULT_TIMEOUT,
    progress: Optional[bool] = None,
) -> Iterator[Row]:
    """Yield every transaction row (a dict) of transactions 2.0, page after page.

    ``site_ids``: one id, a list, or ``"25,26"``. ``start``/``end``, both included: a
    ``date`` or ``"YYYY-MM-DD"`` is the whole UTC day, a naive ``datetime`` is taken as UTC,
    numbers are epoch seconds. The API filters them on ``date_range_type`` (``updatedAt`` by
    default on the server, or ``transactionDate``). ``page_size``: 1..1000; the
    documentation recommends 250 at most. ``status_id``: e.g. ``"pending"``. Follows
    ``page`` (1-based) until ``totalPageCount``.

    Raises :class:`~requests_advanced_auth.ConfigurationError` for bad parameters (before
    any request) and :class:`~requests_advanced_auth.PageError` for a failed page.
    """
    sites = _site_ids(site_ids)
    begin = _as_utc(start, "start", end=False)
    finish = _as_utc(end, "end", end=True)
    if finish < begin:
        raise ConfigurationError(f"end ({_utc(finish)}) is before start ({_utc(begin)})")
    if begin < _EPOCH:  # the API takes epoch seconds >= 0 and answers 400 to anything less
        raise ConfigurationError(
            f"start ({_utc(begin)}) is before 1970-01-01 00:00:00 UTC, the first moment the "
            "transactions API can be asked for (it takes epoch seconds); give a later start"
        )
    params: dict[str, Any] = {
        "size": _page_number(page_size, "page_size", MAX_TRANSACTIONS_PAGE_SIZE),
        "siteIds": ",".join(sites),
        "startDate": _epoch_seconds(begin),
        "endDate": _epoch_seconds(finish),
    }
    for key, value in (
        ("programId", _optional_id(program_id, "program_id")),
        ("statusId", _optional_id(status_id, "status_id")),
        ("dateRangeType", _date_range_type(date_range_type)),
    ):
        if value is not None:
            params[key] = value
    return _paginate(
        session_or_auth, url, params, start_page, timeout, progress, "transactions",
        _transactions_page,
    )


def _utc(moment: _dt.datetime) -> str:
    return f"{moment.replace(tzinfo=None).isoformat(' ', 'seconds')} UTC"  # %Y drops 0s


def _epoch_seconds(moment: _dt.datetime) -> int:
    """Whole epoch seconds, rounded down; exact (no float) for any aware datetime."""
    return (moment - _EPOCH) // _dt.timedelta(seconds=1)


def _transactions_page(
    url: str, page: int, params: Mapping[str, Any], data: Any, quote_answer: _Quote
) -> _Page:
    if not isinstance(data, dict) or not isinstance(data.get("transactionDataList"), list):
        raise _unexpected(url, page, "a transactionDataList list", data, quote_answer)
    total = data.get("totalPageCount")
    if isinstance(total, bool) or not isinstance(total, int):
        raise _unexpected(url, page, "an integer totalPageCount", data, quote_answer)
    batch = data["transactionDataList"]
    # An empty page also ends the pull: a server whose totals shift must not loop us.
    return _Page(batch, max(total, page), page >= total or not batch)


def iter_statistics(
    session_or_auth: SessionOrAuth,
    *,
    site_id: Union[int, str],
    start: DateLike,
    end: DateLike,
    page_size: int = MAX_STATISTICS_PAGE_SIZE,
    start_page: int = 1,
    program_id: Union[int, str, None] = None,
    url: str = STATISTICS_URL,
    timeout: Timeout = DEFAULT_TIMEOUT,
    progress: Optional[bool] = None,
) -> Iterator[Row]:
    """Yield every statistics row (one per day, a dict) of the statistics API.

    ``start``/``end``: days, both included (a ``date``, ``"YYYY-MM-DD"``, a datetime's own
    date, or epoch seconds taken in UTC). ``page_size``: 1..100. Asks for ``format=json``
    and stops at the first page shorter than ``page_size``.

    Raises :class:`~requests_advanced_auth.ConfigurationError` for bad parameters (before
    any request) and :class:`~requests_advanced_auth.PageError` for a failed page.
    """
    site = _site_id(site_id, "site_id")
    first_day = _date_of(start, "start")
    last_day = _date_of(end, "end")
    if last_day < first_day:
        raise ConfigurationError(f"end ({last_day}) is before start ({first_day})")
    size = _page_number(page_size, "page_size", MAX_STATISTICS_PAGE_SIZE)
    params: dict[str, Any] = {
        "size": size,
        "siteId": site,
        "startDate": first_day.isoformat(),
        "endDate": last_day.isoformat(),
        "format": "json",
    }
    program = _optional_id(program_id, "program_id")
    if program is not None:
        params["programId"] = program
    return _paginate(
        session_or_auth, url, params, start_page, timeout, progress, "statistics",
        _statistics_page,
    )


def _statistics_page(
    url: str, page: int, params: Mapping[str, Any], data: Any, quote_answer: _Quote
) -> _Page:
    inner = data.get("data") if isinstance(data, dict) else None
    batch = inner.get("data") if isinstance(inner, dict) else None
    if not isinstance(batch, list):
        if isinstance(data, dict) and (data.get("success") is False or data.get("errors")):
            raise PageError(
                f"GET {url} answered errors: {quote_answer(repr(data.get('errors')))}",
                page=page,
            )
        raise _unexpected(url, page, "a data.data list", data, quote_answer)
    return _Page(batch, None, len(batch) < params["size"])
