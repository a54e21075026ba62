"""Moving a script built on ``requests.get(...)`` to the auth: two lines.

Before: a token fetched (or pasted) by hand, sent by hand, and dead after an hour::

    import requests

    TOKEN = "..."  # fetched by hand; the script fails with 401 once it expires
    HEADERS = {"Authorization": f"Bearer {TOKEN}"}

    answer = requests.get(URL, params=params, headers=HEADERS)

After: a Session that carries the auth; it fetches, renews and re-sends by itself::

    import requests
    from requests_advanced_auth import AdvancedAuth

    session = requests.Session()                 # new line 1
    session.auth = AdvancedAuth.from_env()       # new line 2

    answer = session.get(URL, params=params)     # requests.get -> session.get, no headers

Everything else in the script stays as it is: ``session.get`` takes the same arguments as
``requests.get`` and returns the same ``Response``. Below, ``count_by_status`` is the
"existing script", unchanged; only what is passed in as ``get`` changes.

Without credentials this runs against the built-in sandbox; with
``ADVANCED_STORE_CLIENT_ID``/``ADVANCED_STORE_CLIENT_SECRET`` set, against the real API.
"""

from __future__ import annotations

import collections
import os
import sys
from typing import Any, Callable

import requests

from requests_advanced_auth import AdvancedAuth, AdvancedAuthError
from requests_advanced_auth.pagination import api_urls
from requests_advanced_auth.sandbox import Sandbox


def count_by_status(get: Callable[..., requests.Response], url: str, site: str) -> dict[str, int]:
    """The existing script: one page of January 2024, counted by status. Not changed."""
    answer = get(
        url,
        params={"page": 1, "size": 250, "siteIds": site,
                "startDate": 1704067200, "endDate": 1706745599},
        timeout=30,
    )
    answer.raise_for_status()
    rows: list[dict[str, Any]] = answer.json()["transactionDataList"]
    return dict(collections.Counter(row["status"] for row in rows))


def run(auth: AdvancedAuth, transactions_url: str, site: str) -> int:
    session = requests.Session()  # new line 1
    session.auth = auth  # new line 2 (AdvancedAuth.from_env() with real credentials)
    with session:
        counts = count_by_status(session.get, transactions_url, site)  # was: requests.get
    print(f"site {site}, January 2024, first page, by status: {counts}")
    return 0


def main() -> int:
    try:
        if os.environ.get("ADVANCED_STORE_CLIENT_ID") and os.environ.get(
            "ADVANCED_STORE_CLIENT_SECRET"
        ):
            site = os.environ.get("ADVANCED_STORE_SITE_IDS", "25").split(",")[0].strip()
            transactions_url, _ = api_urls(os.environ.get("ADVANCED_STORE_API_URL"))
            return run(AdvancedAuth.from_env(), transactions_url, site)
        print("ADVANCED_STORE_CLIENT_ID/SECRET are not set: using the built-in sandbox.",
              file=sys.stderr)
        with Sandbox() as sandbox:
            return run(sandbox.auth(), sandbox.transactions_url, "25")
    except (AdvancedAuthError, requests.RequestException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
