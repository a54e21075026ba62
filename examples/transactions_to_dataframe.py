"""The main job: every transaction of a date range in a pandas DataFrame, a summary, a CSV.

::

    python examples/transactions_to_dataframe.py
    python examples/transactions_to_dataframe.py --site 25 --since 2024-03-01 --until 2024-03-31 \\
        --output march.csv

Without credentials it runs against the built-in sandbox (demo data for 2024, sites 25, 26
and 27). With ``ADVANCED_STORE_CLIENT_ID`` and ``ADVANCED_STORE_CLIENT_SECRET`` set it calls
the real API (or the server in ``ADVANCED_STORE_API_URL``); give your site ids with
``--site`` or ``ADVANCED_STORE_SITE_IDS`` (comma-separated). Progress goes to stderr when it
is a terminal. Needs pandas: ``pip install -e ".[examples]"``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional, Sequence

from requests_advanced_auth import AdvancedAuth, AdvancedAuthError, ClientCredentialsAuth
from requests_advanced_auth.frames import transactions_to_dataframe
from requests_advanced_auth.pagination import api_urls, iter_transactions
from requests_advanced_auth.sandbox import Sandbox

SANDBOX_SITES = "25,26"


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Pull every page of transactions into a DataFrame, summarise, write a CSV."
    )
    parser.add_argument(
        "--site",
        action="append",
        metavar="ID",
        help="site id, repeatable (default: $ADVANCED_STORE_SITE_IDS, or 25 and 26 in the "
        "sandbox)",
    )
    parser.add_argument("--since", default="2024-01-01", help="first day (default: %(default)s)")
    parser.add_argument(
        "--until", default="2024-12-31", help="last day, included (default: %(default)s)"
    )
    parser.add_argument(
        "-o", "--output", default="transactions.csv",
        help="CSV to write (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def credentials_in_environment() -> bool:
    return all(
        os.environ.get(name, "").strip()
        for name in ("ADVANCED_STORE_CLIENT_ID", "ADVANCED_STORE_CLIENT_SECRET")
    )


def run(auth: ClientCredentialsAuth, url: str, sites: str, args: argparse.Namespace) -> int:
    rows = iter_transactions(
        auth,
        site_ids=sites,
        start=args.since,
        end=args.until,
        url=url,
        progress=False if args.no_progress else None,  # None: only when stderr is a terminal
    )
    df = transactions_to_dataframe(rows)

    print(f"{len(df)} transactions updated {args.since} to {args.until} (UTC), sites {sites}")
    if len(df):
        print(
            f"transaction dates {df['transactionDate'].min():%Y-%m-%d %H:%M} to "
            f"{df['transactionDate'].max():%Y-%m-%d %H:%M} UTC"
        )
        summary = (
            df.groupby(["siteId", "status"])
            .agg(
                transactions=("transactionId", "size"),
                commission=("commission", "sum"),
                basket_value=("basketValue", "sum"),
            )
            .round(2)
        )
        print()
        print(summary.to_string())
        print()
    df.to_csv(args.output, index=False)
    print(f"wrote {args.output} ({len(df)} rows, {len(df.columns)} columns)")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    sites = ",".join(args.site or []) or os.environ.get("ADVANCED_STORE_SITE_IDS", "").strip()
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):  # found now, not after a year's pull
        print(f"error: the folder of --output does not exist: {folder}", file=sys.stderr)
        return 2
    try:
        if credentials_in_environment():
            if not sites:
                print(
                    "error: give your site ids with --site or ADVANCED_STORE_SITE_IDS",
                    file=sys.stderr,
                )
                return 2
            transactions_url, _ = api_urls(os.environ.get("ADVANCED_STORE_API_URL"))
            return run(AdvancedAuth.from_env(), transactions_url, sites, args)
        print(
            "ADVANCED_STORE_CLIENT_ID/SECRET are not set: using the built-in sandbox "
            "(demo data).",
            file=sys.stderr,
        )
        with Sandbox() as sandbox:
            return run(sandbox.auth(), sandbox.transactions_url, sites or SANDBOX_SITES, args)
    except (AdvancedAuthError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
