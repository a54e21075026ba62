"""Quoting a server's words in a message without quoting a secret or a token back.

Rules: everything an error message quotes from an answer (a body, a header, an exception's
text) goes through :func:`excerpt` with every spelling of every secret involved
(:func:`spellings`), blanked as ``***`` before and after the white space is folded, and
before the text is cut, so no part of a secret survives at the cut. Control characters that
are not ordinary white space (ESC, BEL, backspace, C1 codes, bidi overrides, lone
surrogates) are shown as escapes such as ``\\x1b`` (:func:`visible`): a server's words
printed on a terminal cannot clear the screen, retitle the window or forge a line.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote, quote_plus

import requests

from .exceptions import AdvancedAuthError

#: What a terminal would act on instead of showing: C0 and C1 control codes and DEL, the
#: bidi marks, embeddings, overrides and isolates (they reorder what follows, CVE-2021-42574),
#: and lone surrogates (the bytes Python could not decode; a UTF-8 stream refuses them).
_UNSAFE: Final = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]"
)


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
        if request is not None:
            found |= request_tokens(request)
    return found


def request_tokens(request: requests.PreparedRequest) -> set[str]:
    """Spellings of the token in ``request``'s Authorization header (the value without its
    scheme, or the whole value if it has none)."""
    value: Any = request.headers.get("Authorization")  # typed str, but bytes are sent too
    if isinstance(value, bytes):  # a header may be set as bytes; requests sends it as is
        value = value.decode("latin-1")
    if not isinstance(value, str) or not value.strip():
        return set()
    scheme, _, token = value.strip().partition(" ")
    return spellings(token.strip() or scheme)


def excerpt(text: str, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """``text`` on one line of at most ``limit`` characters, each secret blanked as ``***``,
    control characters shown as escapes (:func:`visible`)."""
    ordered = sorted(set(secrets), key=len, reverse=True)  # a longer form is blanked whole
    text = _blank(" ".join(_blank(text, ordered).split()), ordered)
    # A secret with a control character in it, echoed already escaped, is still that secret.
    text = _blank(visible(text, keep=""), [visible(s, keep="") for s in ordered])
    return text if len(text) <= limit else text[: limit - 1] + "…"


def visible(text: str, keep: str = "\n\t") -> str:
    """``text`` with every control character but those in ``keep`` shown as an escape, such as
    ``\\x1b`` for ESC or ``\\u202e`` for a right-to-left override, so that printing it on a
    terminal shows it rather than obeys it."""
    return _UNSAFE.sub(lambda m: m.group() if m.group() in keep else _escape(m.group()), text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _blank(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def stand_in(exc: BaseException, secrets: Iterable[str]) -> BaseException:
    """What to chain as the cause instead of ``exc`` when its text may quote a secret: the
    same type where it can be rebuilt from a message, with that message scrubbed, and no
    request, context or frames (they would hold what was sent). This package's own errors
    are already clean and are chained as they are."""
    if isinstance(exc, AdvancedAuthError):
        return exc
    text = excerpt(str(exc), secrets, 500)
    if isinstance(exc, requests.RequestException):
        try:
            return type(exc)(text)
        except Exception:  # noqa: S110 - an exception type with other arguments
            pass
    return requests.ConnectionError(f"{type(exc).__name__}: {text}")
