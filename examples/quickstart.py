"""Quick start: ``session.auth = ...`` and one call to each API.

::

    python examples/quickstart.py

Without credentials it runs against the built-in sandbox. With ``ADVANCED_STORE_CLIENT_ID``
and ``ADVANCED_STORE_CLIENT_SECRET`` set it calls the real API (or the server in
``ADVANCED_STORE_API_URL``) for the site in ``ADVANCED_STORE_SITE_IDS`` (default 25).
"""

from __future__ import annotations

import os
import sys
from typing import Union

import requests

from requests_advanced_auth import AdvancedAuth, AdvancedAuthError, ClientCredentialsAuth
from requests_advanced_auth.pagination import api_urls
from requests_advanced_auth.sandbox import Sandbox

JANUARY_2024 = (1704067200, 1706745599)  # epoch seconds, both included


def run(
    auth: ClientCredentialsAuth, transactions_url: str, statistics_url: str, site: str
) -> int:
    with requests.Session() as session:
        session.auth = auth  # the drop-in: every request now carries a valid token

        # Transactions 2.0 (the auth sends "Authorization: Bearer <token>").
        params: dict[str, Union[str, int]] = {
            "page": 1,
            "size": 5,
            "siteIds": site,
            "startDate": JANUARY_2024[0],
            "endDate": JANUARY_2024[1],
        }
        answer = session.get(transactions_url, params=params, timeout=30)
        answer.raise_for_status()
        page = answer.json()
        print(
            f"transactions, January 2024, site {site}: {page['totalEntries']} in "
            f"{page['totalPageCount']} pages of 5"
        )
        for row in page["transactionDataList"][:3]:
            print(f"  {row['transactionId']}  {row['status']:<9} {row['commission']:>8}  "
                  f"{row['program']}")

        # Statistics (the auth sends the raw token, as this API documents).
        params = {
            "page": 1,
            "siteId": site,
            "startDate": "2024-01-01",
            "endDate": "2024-01-31",
            "format": "json",
        }
        answer = session.get(statistics_url, params=params, timeout=30)
        answer.raise_for_status()
        days = answer.json()["data"]["data"]
        commission = sum(day["totalCommission"] for day in days)
        clicks = sum(day["totalClicks"] for day in days)
        print(
            f"statistics, January 2024, site {site}: {len(days)} days, {clicks} clicks, "
            f"commission {commission:.2f}"
        )
    return 0


def main() -> int:
    try:
        if os.environ.get("ADVANCED_STORE_CLIENT_ID") and os.environ.get(
            "ADVANCED_STORE_CLIENT_SECRET"
        ):
            site = os.environ.get("ADVANCED_STORE_SITE_IDS", "25").split(",")[0].strip()
            transactions_url, statistics_url = api_urls(os.environ.get("ADVANCED_STORE_API_URL"))
            return run(AdvancedAuth.from_env(), transactions_url, statistics_url, site)
        print("ADVANCED_STORE_CLIENT_ID/SECRET are not set: using the built-in sandbox.",
              file=sys.stderr)
        with Sandbox() as sandbox:
            return run(sandbox.auth(), sandbox.transactions_url, sandbox.statistics_url, "25")
    except (AdvancedAuthError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
