"""``advanced-auth``: tokens, checks and data pulls from a shell.

Credentials come from the environment (``ADVANCED_STORE_CLIENT_ID``,
``ADVANCED_STORE_CLIENT_SECRET``, ...; see ``advanced-auth --help``) or from flags. The client
secret is never printed, nor a whole token except by ``token``; what a server said is
printed with its control characters escaped (``\\x1b``), so it cannot drive the terminal.
Flags and variables must be UTF-8 text. Exit codes: 0 success, 1 failure (token or API
error), 2 usage or configuration error, 130 interrupted.

To add a subcommand, write an ``_add_<name>(subparsers)`` function that builds its parser and
sets ``run=`` (a function taking the parsed arguments and returning the exit code), and list
it in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import csv
import datetime as _dt
import functools
import json
import os
import sys
import textwrap
import time
from typing import IO, TYPE_CHECKING, Any, Callable, Final, Iterator, Optional, Sequence, TextIO

import requests

from . import AdvancedAuth, AdvancedAuthError, ConfigurationError, PageError, __version__
from ._auth import check_api_url
from ._checks import MAX_TIMEOUT, check_http_url, check_text, check_timeout
from ._fetch import check_token_url
from ._redact import excerpt, sent_tokens, spellings, visible
from .pagination import (
    DEFAULT_TIMEOUT,
    MAX_STATISTICS_PAGE_SIZE,
    MAX_TRANSACTIONS_PAGE_SIZE,
    STATISTICS_FIELDS,
    TRANSACTION_FIELDS,
    _parse_date_text,
    _send_get,
    api_urls,
    iter_statistics,
    iter_transactions,
)

__all__ = ["COMMANDS", "build_parser", "main"]

PROG: Final = "advanced-auth"
EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_INTERRUPTED: Final = 130

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]

_ENVIRONMENT_HELP: Final = """\
environment:
  ADVANCED_STORE_CLIENT_ID      client id (or --client-id)
  ADVANCED_STORE_CLIENT_SECRET  client secret (prefer this to --client-secret)
  ADVANCED_STORE_AUDIENCE       audiences, space-separated
                                (default: api.ad4mat.net api.advanced-store.com)
  ADVANCED_STORE_TOKEN_URL      token URL (default: https://auth.advanced-store.com/oauth2/token)
  ADVANCED_STORE_API_URL        one server for both APIs, e.g. the sandbox's URL
                                (default: the provider's two API hosts)

exit codes: 0 success, 1 failure (token or API error), 2 usage or configuration error

Start with `advanced-auth check`; try it all offline with `advanced-auth sandbox`.
"""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the layout of descriptions and epilogs (examples); see :func:`_subcommand`."""


def _subcommand(
    subparsers: Subparsers, name: str, *, summary: str, description: str, epilog: str = ""
) -> argparse.ArgumentParser:
    """A subcommand's parser; ``description`` is wrapped here, ``epilog`` kept as written."""
    return subparsers.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, width=79),
        epilog=epilog or None,
        formatter_class=_Formatter,
    )


# -- shared pieces ----------------------------------------------------------------------


#: The library's messages name its Python parameters; here they read as the flags.
_CLI_TERMS: Final = (
    ("(resume with start_page=", "(resume with --start-page "),
    ("pass client_auth='client_secret_basic' or 'client_secret_post'",
     "pass --client-auth client_secret_basic or client_secret_post"),
    ("or pass the credentials to AdvancedAuth(...) directly",
     "or pass --client-id and --client-secret"),
)


def _error(message: str) -> None:
    for library, flags in _CLI_TERMS:
        message = message.replace(library, flags)
    print(f"{PROG}: error: {visible(message)}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"{PROG}: {visible(message)}", file=sys.stderr)


_NOT_UTF8: Final = "not UTF-8 text: it holds bytes that do not decode as UTF-8 (not shown)"


def _utf8(text: str) -> str:
    """A flag's value, if it is UTF-8 text; the error never quotes it (it may be a secret).

    Bytes the shell gave that are not UTF-8 reach Python as lone surrogates (PEP 383),
    which can be neither sent nor printed.
    """
    try:
        return check_text(text, "the value")
    except ConfigurationError:
        raise argparse.ArgumentTypeError(_NOT_UTF8) from None


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "credentials and endpoints",
        "Each flag overrides its ADVANCED_STORE_* environment variable.",
    )
    group.add_argument(
        "--client-id",
        type=_utf8,
        metavar="ID",
        help="client id (default: $ADVANCED_STORE_CLIENT_ID)",
    )
    group.add_argument(
        "--client-secret",
        type=_utf8,
        metavar="SECRET",
        help="client secret (default: $ADVANCED_STORE_CLIENT_SECRET). Discouraged: a secret "
        "on the command line is visible to other users in `ps` and stays in your shell "
        "history; export the environment variable instead",
    )
    group.add_argument(
        "--client-auth",
        choices=("client_secret_post", "client_secret_basic"),
        help="how the client authenticates at the token endpoint: the secret in the form "
        "body (post, the default) or in an HTTP Basic header (basic)",
    )
    group.add_argument(
        "--token-url",
        type=_utf8,
        metavar="URL",
        help="token endpoint (default: $ADVANCED_STORE_TOKEN_URL, else Advanced-Store's)",
    )
    group.add_argument(
        "--audience",
        type=_audience,
        action="append",
        metavar="AUD",
        help="an audience to ask for, one audience per flag: repeat it for several, e.g. "
        "--audience api.ad4mat.net --audience api.advanced-store.com (default: "
        "$ADVANCED_STORE_AUDIENCE, space-separated, else those two)",
    )
    group.add_argument(
        "--api-url",
        type=_utf8,
        metavar="URL",
        help="one server hosting both APIs, e.g. the sandbox (default: "
        "$ADVANCED_STORE_API_URL, else the provider's API hosts)",
    )


def _add_timeout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=_timeout_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="S",
        help="seconds to wait for each API answer (default: %(default)g)",
    )


def _environment(args: argparse.Namespace) -> dict[str, str]:
    """The process environment with the flags laid over it.

    A variable that is used and is not UTF-8 is a ConfigurationError naming it (the flags
    are checked as they are parsed).
    """
    env = dict(os.environ)
    flags = (
        ("ADVANCED_STORE_CLIENT_ID", args.client_id),
        ("ADVANCED_STORE_CLIENT_SECRET", args.client_secret),
        ("ADVANCED_STORE_TOKEN_URL", args.token_url),
        ("ADVANCED_STORE_AUDIENCE", " ".join(args.audience) if args.audience else None),
        ("ADVANCED_STORE_API_URL", args.api_url),
    )
    for name, value in flags:
        if value is not None:
            env[name] = value
        else:
            check_text(env.get(name, ""), name)
    return env


def _make_auth(args: argparse.Namespace) -> AdvancedAuth:
    env = _environment(args)
    _check_endpoints(args, env)
    options = {"client_auth": args.client_auth} if args.client_auth else {}
    return AdvancedAuth.from_env(env, **options)


def _check_endpoints(args: argparse.Namespace, env: dict[str, str]) -> None:
    """A malformed token or API URL is a configuration error (exit 2) naming the flag or the
    variable it came from, before any request."""
    for variable, flag, value, check in (
        ("ADVANCED_STORE_TOKEN_URL", "--token-url", args.token_url, check_token_url),
        ("ADVANCED_STORE_API_URL", "--api-url", args.api_url, check_api_url),
    ):
        url = env.get(variable, "")
        if url.strip():  # empty: the default, as AdvancedAuth.from_env reads it
            check(url, flag if value is not None else variable)


def _audience(text: str) -> str:
    """One audience: not empty, no whitespace inside (never split into several silently)."""
    audience = _utf8(text).strip()
    if not audience:
        raise argparse.ArgumentTypeError(
            "the audience is empty: give one, e.g. --audience api.advanced-store.com, or leave "
            "--audience out for the defaults"
        )
    if len(audience.split()) > 1:
        several = " ".join(f"--audience {item}" for item in audience.split())
        raise argparse.ArgumentTypeError(
            f"one audience per --audience, got {text!r:.100}; for several, repeat the flag: "
            f"{several:.200}"
        )
    return audience


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def _timeout_seconds(text: str) -> float:
    """Seconds > 0 and at most a day, as the library checks a timeout."""
    try:
        seconds = float(text)
        check_timeout(seconds)
    except ValueError:  # not a number, or ConfigurationError (a ValueError)
        raise argparse.ArgumentTypeError(
            f"must be a number of seconds > 0 and at most {MAX_TIMEOUT:g} (a day), got {text!r}"
        ) from None
    return seconds


def _positive_int(text: str, maximum: Optional[int] = None) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text!r}")
    if maximum is not None and int(text) > maximum:
        raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text!r}")
    return int(text)


def _site_list(text: str) -> list[int]:
    """``25`` or ``25,26``."""
    return [_positive_int(item) for item in text.split(",")]


def _day_or_moment(text: str) -> Any:
    """``YYYY-MM-DD`` (a whole UTC day) or an ISO 8601 date and time (naive = UTC)."""
    try:
        return _parse_date_text(text, "date")  # the library's own reading of the text
    except ConfigurationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _param(text: str) -> tuple[str, str]:
    key, equals, value = _utf8(text).partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key, value


def _open_text(path: Optional[str]) -> TextIO:
    """The file to write (created now), or stdout for None and '-'."""
    if path is None or path == "-":
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="")


def _open_binary(path: Optional[str]) -> IO[bytes]:
    """The file to write (created now), or stdout's byte stream for None and '-'."""
    if path is None or path == "-":
        stream: Any = sys.stdout
        return getattr(stream, "buffer", stream)  # type: ignore[no-any-return]
    return open(path, "wb")


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


# -- token ------------------------------------------------------------------------------


def _add_token(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "token",
        summary="fetch an access token and print it",
        description="Fetch an access token and print it (the whole token, on stdout only).",
        epilog="examples:\n"
        "  curl -H \"$(advanced-auth token --header)\" \\\n"
        "      'https://api.advanced-store.com/publishers/transactions/2.0/?...'\n"
        "  # the statistics API takes the raw token, without Bearer:\n"
        "  curl -H \"$(advanced-auth token --header raw)\" \\\n"
        "      'https://advanced-store.cloud/function/api/statistics?...'\n",
    )
    parser.add_argument(
        "--header",
        nargs="?",
        const="bearer",
        choices=("bearer", "raw"),
        metavar="STYLE",
        help="print a header line for curl -H instead of the token. STYLE bearer (the "
        "default; the transactions API): 'Authorization: Bearer <token>'; raw (the statistics "
        "API, which takes the token without Bearer): 'Authorization: <token>'",
    )
    _add_credentials(parser)
    parser.set_defaults(run=_run_token)


def _run_token(args: argparse.Namespace) -> int:
    auth = _make_auth(args)
    try:
        token = auth.get_token()
    finally:
        auth.close()
    if args.header == "raw":
        print(f"Authorization: {token.access_token}")
    elif args.header:
        print(f"Authorization: Bearer {token.access_token}")
    else:
        print(token.access_token)
    return EXIT_OK


# -- check ------------------------------------------------------------------------------


def _add_check(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "check",
        summary="fetch a token and report on it (never shows the token or the secret)",
        description="Fetch a token and report the token URL, client id, audiences, token "
        "type, lifetime, scope and a fingerprint of the token. If the token is a JWT, its "
        "aud, exp, iss and sub claims are shown, decoded WITHOUT verifying the signature. "
        "Exit code 0 if a token was issued, 1 if not (the error and what to check go to "
        "stderr).",
    )
    _add_credentials(parser)
    parser.set_defaults(run=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    auth = _make_auth(args)
    out = sys.stdout

    def say(line: str) -> None:
        print(visible(line), file=out)

    say(f"token URL:    {auth.token_url}")
    say(f"client id:    {auth.client_id}")
    say(f"audience:     {' '.join(auth.audience) or '(none)'}")
    out.flush()
    try:
        token = auth.get_token()
    except AdvancedAuthError as exc:
        say("result:       FAILED, no token")
        out.flush()
        _error(str(exc))
        return EXIT_FAILURE
    finally:
        auth.close()
    # What the token endpoint says is quoted like an error message quotes it: on one line,
    # control characters escaped, and never the secret (an endpoint may echo the form it
    # got as the scope) or the whole token.
    hidden = spellings(_environment(args)["ADVANCED_STORE_CLIENT_SECRET"].strip())
    hidden |= spellings(token.access_token)

    def quoted(text: str) -> str:
        return excerpt(text, hidden, 500)

    lifetime = (
        "unknown (no expires_in)"
        if token.expires_at is None
        else f"{round(token.expires_at - token.issued_at)} s"
    )
    say(f"token type:   {quoted(token.token_type)}")
    say(f"expires in:   {lifetime}")
    say(f"scope:        {json.dumps(quoted(token.scope or ''))}")
    say(f"fingerprint:  {token.fingerprint} (SHA-256 prefix; the token is not shown)")
    claims = _jwt_claims(token.access_token)
    if claims is None:
        say("JWT:          no (an opaque token)")
    else:
        say("JWT claims (decoded, signature NOT verified):")
        for name in ("aud", "exp", "iss", "sub"):
            say(f"  {name + ':':11} {quoted(_claim_text(name, claims.get(name)))}")
    say("result:       OK, a token was issued")
    return EXIT_OK


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _jwt_claims(token: str) -> Optional[dict[str, Any]]:
    """The payload of a JWT (three base64url parts, a JSON header), or None. Not verified."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def _claim_text(name: str, value: Any) -> str:
    if value is None:
        return "(absent)"
    if name == "exp" and isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            moment = _dt.datetime.fromtimestamp(value, tz=_dt.timezone.utc)
        except (OverflowError, OSError, ValueError):
            return json.dumps(value)
        return f"{json.dumps(value)} ({moment:%Y-%m-%d %H:%M:%S} UTC)"
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    return str(value)


# -- get --------------------------------------------------------------------------------


def _add_get(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "get",
        summary="an authenticated GET; the body goes to stdout or a file",
        description="Send an authenticated GET and write the answer's body to stdout (as "
        "bytes) or to a file. A non-2xx answer writes nothing, prints the status on stderr "
        "and exits with 1.",
        epilog="example:\n"
        "  advanced-auth get https://advanced-store.cloud/function/api/statistics \\\n"
        "      -p siteId=25 -p startDate=2024-01-01 -p endDate=2024-01-31 -p page=1\n",
    )
    parser.add_argument("url", type=_utf8, metavar="URL", help="the URL to GET")
    parser.add_argument(
        "-p",
        "--param",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a query parameter; repeat for several",
    )
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write the body to FILE (default: stdout)"
    )
    _add_timeout(parser)
    _add_credentials(parser)
    parser.set_defaults(run=_run_get)


def _run_get(args: argparse.Namespace) -> int:
    check_http_url(args.url, "URL", example="https://api.advanced-store.com/...")
    auth = _make_auth(args)
    try:
        if not auth.headers_for(args.url):
            allowed = ", ".join(auth.allowed_hosts) if auth.allowed_hosts else "any host"
            _note(
                f"note: no token is sent to {args.url}: the token goes only to https URLs "
                f"(or http on loopback) of the allowed hosts ({allowed}); see --api-url"
            )
        with requests.Session() as session:
            session.auth = auth
            return _get(session, args)
    finally:
        auth.close()


def _get(session: requests.Session, args: argparse.Namespace) -> int:
    """Send the GET and write its body; whatever is quoted from the answer (the status line,
    the URL it ended at, the body, a transport error's text) never holds a token that was
    sent: an API may echo request headers anywhere, even as a chunk-size line."""
    # Prepared here, as Session.request would: the Authorization value is known even when
    # the transport error is all that comes back.
    hidden: set[str] = set()
    try:
        response = _send_get(session, args.url, args.param, args.timeout, hidden)
    except AdvancedAuthError:
        raise  # a token error: main reports it as it is
    except requests.RequestException as exc:
        return _get_failed(args.url, exc, hidden)
    with response:
        hidden |= sent_tokens(response)
        try:
            if not 200 <= response.status_code < 300:
                _error(
                    f"GET {excerpt(response.url or args.url, hidden, 300)} answered "
                    f"{response.status_code} {excerpt(response.reason or '', hidden, 80)}"
                )
                # At most 64 KiB of an error answer is read: 300 characters are shown.
                head = next(response.iter_content(65536), b"")
                quoted = excerpt(head.decode(response.encoding or "utf-8", "replace"), hidden, 300)
                if quoted:
                    print(f"  {quoted}", file=sys.stderr)
                return EXIT_FAILURE
            out = _open_binary(args.output)
            try:
                for chunk in response.iter_content(chunk_size=65536):
                    out.write(chunk)
                out.flush()
            finally:
                if args.output not in (None, "-"):
                    out.close()
        except requests.RequestException as exc:
            return _get_failed(args.url, exc, hidden)
    return EXIT_OK


def _get_failed(url: str, exc: requests.RequestException, hidden: set[str]) -> int:
    _error(f"GET {url} failed: {type(exc).__name__}: {excerpt(str(exc), hidden, 400)}")
    return EXIT_FAILURE


# -- transactions and statistics ----------------------------------------------------------


def _add_dates(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--since",
        type=_day_or_moment,
        required=True,
        metavar="DATE",
        help="first day: an ISO 8601 date (YYYY-MM-DD, YYYYMMDD) or date and time "
        "(YYYY-MM-DDTHH:MM:SS, UTC unless it has Z or an offset such as +02:00)",
    )
    parser.add_argument(
        "--until",
        type=_day_or_moment,
        required=True,
        metavar="DATE",
        help="last day, included: a date (the whole day) or a date and time, as --since",
    )
    parser.add_argument("--program", type=_utf8, metavar="ID", help="only this program id")


def _add_output(
    parser: argparse.ArgumentParser, page_size: int, max_page_size: int, page_help: str
) -> None:
    parser.add_argument(
        "-o", "--output", metavar="FILE", help="write to FILE (default: stdout)"
    )
    parser.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        default="csv",
        help="CSV with a header row, or one JSON object per line (default: csv)",
    )
    parser.add_argument(
        "--page-size",
        type=functools.partial(_positive_int, maximum=max_page_size),
        default=page_size,
        metavar="N",
        help=f"rows per page; {page_help} (default: %(default)s)",
    )
    parser.add_argument(
        "--start-page",
        type=_positive_int,
        default=1,
        metavar="N",
        help="first page to fetch, to resume a failed pull (default: 1)",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress line on stderr (it is only shown when stderr is a terminal)",
    )


def _add_transactions(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "transactions",
        summary="pull every transaction of a date range to CSV or JSON lines",
        description="Pull every page of transactions 2.0 for the sites and dates given and "
        "write the rows as CSV (the API's field names as header) or JSON lines. Dates are "
        "UTC; both ends are included. The rows are written as the API sends them: the times "
        "(transactionDate, clickTime, updatedAt) are epoch milliseconds (UTC), e.g. "
        "1704067200000 for 2024-01-01 00:00:00; "
        "requests_advanced_auth.frames.transactions_to_dataframe reads them as datetimes.",
        epilog="example:\n"
        "  advanced-auth transactions --site 25 --site 26 \\\n"
        "      --since 2024-01-01 --until 2024-01-31 -o january.csv\n",
    )
    parser.add_argument(
        "--site",
        type=_site_list,
        action="extend",
        required=True,
        metavar="ID",
        help="a site id (or ids separated by commas); repeat for several",
    )
    _add_dates(parser)
    parser.add_argument(
        "--status", type=_utf8, metavar="S", help="only this status, e.g. pending"
    )
    parser.add_argument(
        "--date-range-type",
        choices=("updatedAt", "transactionDate"),
        help="which date --since/--until filter on (default: the API's, updatedAt)",
    )
    _add_output(parser, 250, MAX_TRANSACTIONS_PAGE_SIZE,
                f"1..{MAX_TRANSACTIONS_PAGE_SIZE}; the API documentation recommends 250 at most")
    _add_timeout(parser)
    _add_credentials(parser)
    parser.set_defaults(run=_run_transactions)


def _add_statistics(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "statistics",
        summary="pull daily statistics of a site to CSV or JSON lines",
        description="Pull every page of the statistics API (one row per day) for one site "
        "and write the rows as CSV or JSON lines. Both days are included.",
        epilog="example:\n"
        "  advanced-auth statistics --site 25 \\\n"
        "      --since 2024-01-01 --until 2024-12-31 -o statistics.csv\n",
    )
    parser.add_argument("--site", type=_positive_int, required=True, metavar="ID", help="site id")
    _add_dates(parser)
    _add_output(parser, MAX_STATISTICS_PAGE_SIZE, MAX_STATISTICS_PAGE_SIZE,
                f"at most {MAX_STATISTICS_PAGE_SIZE}")
    _add_timeout(parser)
    _add_credentials(parser)
    parser.set_defaults(run=_run_statistics)


def _progress_choice(args: argparse.Namespace) -> Optional[bool]:
    if args.no_progress:
        return False
    if args.output in (None, "-") and _is_terminal(sys.stdout):
        return False  # the rows scrolling by are the progress; do not mix the two
    return None  # pagination shows it when stderr is a terminal


def _run_transactions(args: argparse.Namespace) -> int:
    return _run_pull(
        args,
        iter_transactions,
        TRANSACTION_FIELDS,
        "transactions",
        site_ids=args.site,
        status_id=args.status,
        date_range_type=args.date_range_type,
    )


def _run_statistics(args: argparse.Namespace) -> int:
    return _run_pull(args, iter_statistics, STATISTICS_FIELDS, "statistics rows", site_id=args.site)


def _run_pull(
    args: argparse.Namespace,
    pull: Callable[..., Iterator[dict[str, Any]]],
    fields: Sequence[str],
    what: str,
    **selection: Any,
) -> int:
    """Write every row of ``pull`` (iter_transactions or iter_statistics) as ``args`` say.

    ``selection``: the rows' own filters (sites, status, ...); the options both APIs share
    come from ``args``.
    """
    auth = _make_auth(args)
    urls = api_urls(_environment(args).get("ADVANCED_STORE_API_URL"))
    url = urls[0] if pull is iter_transactions else urls[1]
    try:
        rows = pull(
            auth,
            **selection,
            start=args.since,
            end=args.until,
            page_size=args.page_size,
            start_page=args.start_page,
            program_id=args.program,
            url=url,
            timeout=args.timeout,
            progress=_progress_choice(args),
        )
        return _write_rows(rows, fields, args, what)
    finally:
        auth.close()


def _write_rows(
    rows: Iterator[dict[str, Any]], fields: Sequence[str], args: argparse.Namespace, what: str
) -> int:
    to_file = args.output not in (None, "-")
    out: Optional[TextIO] = None
    count = 0
    try:
        first = next(rows, None)  # the first page comes before the file is created
        out = _open_text(args.output)
        write = _csv_writer(out, fields) if args.format == "csv" else _jsonl_writer(out)
        if first is not None:
            write(first)
            count = 1
        for row in rows:
            write(row)
            count += 1
        write(None)
    except PageError as exc:
        _error(str(exc))
        if to_file and out is not None:
            _note(
                f"{args.output} holds the {count} rows of the pages before page {exc.page}; "
                f"get the rest with --start-page {exc.page} -o ANOTHER_FILE"
            )
        return EXIT_FAILURE
    finally:
        if out is not None:
            out.flush()
            if to_file:
                out.close()
    if to_file:
        _note(f"wrote {count} {what} to {args.output}")
    if count == 0 and args.start_page > 1:
        _note(f"no rows from page {args.start_page} on: it may be past the last page")
    elif count == 0:
        _note(f"no {what} for this selection: check --site and the dates")
    return EXIT_OK


def _csv_writer(out: TextIO, fields: Sequence[str]) -> Callable[[Optional[dict[str, Any]]], None]:
    """Writes the header before the first row (documented fields, then any extra ones)."""
    state: dict[str, Any] = {}

    def write(row: Optional[dict[str, Any]]) -> None:
        writer = state.get("writer")
        if writer is None:
            extra = [key for key in (row or {}) if key not in fields]
            writer = csv.DictWriter(
                out, fieldnames=[*fields, *extra], extrasaction="ignore", lineterminator="\n"
            )
            writer.writeheader()
            state["writer"] = writer
        if row is not None:
            writer.writerow(row)

    return write


def _jsonl_writer(out: TextIO) -> Callable[[Optional[dict[str, Any]]], None]:
    def write(row: Optional[dict[str, Any]]) -> None:
        if row is not None:
            out.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n")

    return write


# -- sandbox ----------------------------------------------------------------------------


def _add_sandbox(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "sandbox",
        summary="run the local Advanced-Store emulator in the foreground",
        description="Run the local emulator of Advanced-Store's token endpoint and two APIs "
        "on 127.0.0.1 until Ctrl-C. It prints `export` lines: paste them into another shell "
        "to point advanced-auth (and AdvancedAuth.from_env()) at it. Demo data: sites 25, 26 "
        "and 27, calendar year 2024.",
        epilog="example:\n"
        "  advanced-auth sandbox --port 8765\n"
        "  # in another shell, after pasting the export lines:\n"
        "  advanced-auth check\n"
        "  advanced-auth transactions --site 25 --since 2024-01-01 --until 2024-01-31\n",
    )
    parser.add_argument(
        "--port",
        type=_port,
        default=0,
        metavar="N",
        help="TCP port on 127.0.0.1 (default: 0, any free port)",
    )
    parser.add_argument(
        "--token-lifetime",
        type=_positive_float,
        default=3600.0,
        metavar="S",
        help="seconds each token lives (default: %(default)g, as the provider's)",
    )
    parser.set_defaults(run=_run_sandbox)


def _port(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}")
    return int(text)


def _run_sandbox(args: argparse.Namespace) -> int:
    from .sandbox import main as sandbox_main

    return sandbox_main(
        ["--port", str(args.port), "--token-lifetime", repr(args.token_lifetime)],
        prog=f"{PROG} sandbox",
    )


def _add_cache(subparsers: Subparsers) -> None:
    parser = _subcommand(
        subparsers,
        "cache",
        summary="show, locate or clear the file token cache (FileTokenCache)",
        description="Inspect the token file that FileTokenCache shares between processes. "
        "'show' lists each entry's key, token fingerprint and expiry (never a token); "
        "'path' prints the file's location; 'clear' deletes every entry, so the next "
        "request of every process fetches a new token.",
        epilog="examples:\n"
        "  advanced-auth cache show\n"
        "  advanced-auth cache clear --file /var/cache/myjob/tokens.json\n",
    )
    parser.add_argument("action", choices=("show", "path", "clear"), help="what to do")
    parser.add_argument(
        "--file",
        metavar="PATH",
        help="the cache file (default: FileTokenCache's, under the user cache directory)",
    )
    parser.set_defaults(run=_run_cache)


def _run_cache(args: argparse.Namespace) -> int:
    from ._filecache import FileTokenCache

    try:
        cache = FileTokenCache(args.file)
    except ImportError as exc:
        _error(str(exc))
        return EXIT_FAILURE
    if args.action == "path":
        print(cache.path)
        return EXIT_OK
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} token(s) from {cache.path}")
        return EXIT_OK
    entries = cache.entries()
    if not entries:
        print(f"no tokens in {cache.path}")
        return EXIT_OK
    now = time.time()
    print(f"{len(entries)} token(s) in {cache.path}:")
    for entry in entries:
        if entry.expires_at is None:
            left = "no expiry given"
        elif entry.expires_at <= now:
            left = "expired"
        else:
            left = f"expires in {entry.expires_at - now:.0f} s"
        print(f"  key {entry.key}  token {entry.fingerprint}…  {left}")
    return EXIT_OK


# -- the parser and main ----------------------------------------------------------------

#: Every subcommand, in the order ``--help`` lists them; add new ones here.
COMMANDS: Final[Sequence[Callable[[Any], None]]] = (
    _add_token,
    _add_check,
    _add_get,
    _add_transactions,
    _add_statistics,
    _add_sandbox,
    _add_cache,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``advanced-auth`` parser with every subcommand of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=_Formatter,
        description="OAuth 2.0 client-credentials tokens and data pulls for Advanced-Store's "
        "advanced API.",
        epilog=_ENVIRONMENT_HELP,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(title="commands", dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run ``advanced-auth`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_usage(sys.stderr)
        _error("a command is required; see advanced-auth --help")
        return EXIT_USAGE
    try:
        code: int = args.run(args)
    except ConfigurationError as exc:
        _error(str(exc))
        return EXIT_USAGE
    except (requests.RequestException, OSError) as exc:
        if isinstance(exc, BrokenPipeError):
            _silence_stdout()
            return EXIT_FAILURE
        _error(str(exc) or type(exc).__name__)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


def _silence_stdout() -> None:
    """After a closed pipe (``advanced-auth ... | head``): no second error at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
