"""Quoting a server's words in a message without quoting a secret or a token back.

Rules: everything an error message quotes from an answer (a body, a header, an exception's
text) goes through :func:`excerpt` with every spelling of every secret involved
(:func:`spellings`), blanked as ``***`` before and after the white space is folded, and
before the text is cut, so no part of a secret survives at the cut.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Optional
from urllib.parse import quote, quote_plus

import requests


def spellings(secret: str) -> set[str]:
    """Every way a server may echo ``secret``: as is, with its white space folded, form- and
    percent-encoded (upper- or lower-case hex), and JSON-escaped (``\\/`` too)."""
    if not secret:
        return set()
    encoded = {quote_plus(secret), quote(secret, safe="")}
    found = {secret, " ".join(secret.split()), *encoded}
    found.update(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), e) for e in encoded)
    escaped = json.dumps(secret)[1:-1]
    found.update({escaped, escaped.replace("/", "\\/")})
    return {f for f in found if f}


def basic_credentials(client_id: str, secret: str) -> set[str]:
    """The HTTP Basic credential of ``client_id``/``secret``, as sent (RFC 6749 §2.3.1) or not."""
    return {
        base64.b64encode(f"{ident}:{key}".encode()).decode("ascii")
        for ident, key in ((client_id, secret), (quote(client_id, safe=""), quote(secret, safe="")))
    }


def sent_tokens(response: requests.Response) -> set[str]:
    """Spellings of the tokens sent for ``response`` and for any 401 before its re-send.

    The bare token is enough: blanking it leaves ``Bearer ***``, which still says what was
    there.
    """
    found: set[str] = set()
    for answer in (*response.history, response):
        request = getattr(answer, "request", None)
        value: Optional[str] = request.headers.get("Authorization") if request is not None else None
        if isinstance(value, str) and value.strip():
            scheme, _, token = value.strip().partition(" ")
            found |= spellings(token.strip() or scheme)
    return found


def excerpt(text: str, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """``text`` on one line of at most ``limit`` characters, each secret blanked as ``***``."""
    ordered = sorted(set(secrets), key=len, reverse=True)  # a longer form is blanked whole
    text = _blank(" ".join(_blank(text, ordered).split()), ordered)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _blank(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text
