"""Checks of option values shared by several modules; each failure is a ConfigurationError."""

from __future__ import annotations

import math
from typing import Any, Callable, Final, Optional, Union
from urllib.parse import urlsplit

import requests

from .exceptions import ConfigurationError

#: A timeout as requests takes it: seconds, or (connect, read) seconds.
Timeout = Union[float, "tuple[float, float]"]
#: Upper bound of a timeout: a day for one request is surely a mistake (milliseconds?), and
#: far larger values overflow the socket layer (``OverflowError`` from ``settimeout``).
MAX_TIMEOUT: Final = 86400.0


def is_seconds(value: Any, *, allow_zero: bool = False) -> bool:
    """True for a finite int or float > 0 (>= 0 with ``allow_zero``) that fits a float;
    never for a bool."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        finite = math.isfinite(value)  # an int past float's range raises OverflowError
    except OverflowError:
        return False
    return finite and (value >= 0 if allow_zero else value > 0)


def check_text(value: str, name: str) -> str:
    """``value`` if it can be sent (UTF-8 encodable), else a ConfigurationError that never
    quotes it (it may be the secret): a lone surrogate comes from undecodable bytes, as in
    an environment variable that is not UTF-8."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(
            f"{name} is not UTF-8 text: it holds bytes that do not decode as UTF-8 (its value "
            "is not shown); set it to UTF-8 text"
        ) from None
    return value


def checked_seconds(value: Any, name: str, maximum: Optional[float] = None) -> float:
    """``value`` as a float if it is a number of seconds >= 0 (and at most ``maximum``),
    else a ConfigurationError naming ``name``."""
    # Comparisons, not float(): they refuse NaN and infinity, and take ints of any size.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0 <= value <= (math.inf if maximum is None else maximum)
    ) or not is_seconds(value, allow_zero=True):
        bound = "" if maximum is None else f" and at most {maximum:g} seconds"
        raise ConfigurationError(
            f"{name} must be a number of seconds >= 0{bound}, got {shown(value)}"
        )
    return float(value)


def checked_clock(value: Any) -> Callable[[], float]:
    """``value`` if it is a callable that returns epoch seconds (it is called once to see),
    else a ConfigurationError."""
    if not callable(value) or not is_seconds(value(), allow_zero=True):
        raise ConfigurationError(
            "clock must be a callable returning epoch seconds (a number), such as time.time, "
            f"got {shown(value)}"
        )
    return value  # type: ignore[no-any-return]


def check_timeout(value: Any, name: str = "timeout") -> Timeout:
    """Seconds, or a ``(connect, read)`` tuple of them: each a number in (0, MAX_TIMEOUT]."""
    parts = value if isinstance(value, tuple) and len(value) == 2 else (value,)
    for part in parts:
        # The comparison also refuses NaN and infinity, and works on ints of any size.
        if isinstance(part, bool) or not isinstance(part, (int, float)) or not part > 0:
            raise ConfigurationError(
                f"{name} must be seconds > 0 or a (connect, read) pair of them, "
                f"e.g. 30 or (5, 30), got {shown(value)}"
            )
        if not part <= MAX_TIMEOUT:
            raise ConfigurationError(
                f"{name} must be at most {MAX_TIMEOUT:g} seconds (a day), got {shown(part)}"
            )
    if isinstance(value, tuple):
        return (float(value[0]), float(value[1]))
    return float(value)


def shown(value: Any) -> str:
    """``value`` for a message: a short repr, safe for huge ints and long strings."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10**60:
        # repr() of an int past 4300 digits raises ValueError; log10 takes any int.
        return f"an int of about {math.floor(math.log10(abs(value))) + 1} digits"
    if isinstance(value, str) and len(value) > 60:
        return f"{value[:20]!r}… ({len(value)} characters)"
    return f"{value!r:.60}"


def check_http_url(url: Any, name: str, *, example: str = "https://host/path") -> str:
    """``url`` stripped, if it is an absolute http(s) URL with a host, a port in 1..65535, no
    user name or password, and one requests can send to; else a ConfigurationError that
    names ``name`` (an option, a flag or an environment variable)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{name} must be a string, got {type(url).__name__}")
    text = url.strip()
    if any(ch.isspace() or ord(ch) < 0x20 for ch in text):
        raise ConfigurationError(f"{name} contains white space or control characters: {url!r:.200}")
    invalid_port = ConfigurationError(
        f"{name} has an invalid port (ports are numbers 1..65535): {url!r:.200}"
    )
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        if "Port" in str(exc):  # "Port out of range 0-65535", "Port could not be cast ..."
            raise invalid_port from None
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {url!r:.200}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{name} must be an absolute http(s) URL such as {example}, got {url!r:.200}"
        )
    if port == 0:
        raise invalid_port
    try:
        parts.hostname.encode("idna")  # labels of 1..63 characters, a valid name
    except UnicodeError:
        raise ConfigurationError(
            f"{name} has an invalid host name (each part between dots must be 1 to 63 "
            f"characters): {url!r:.200}"
        ) from None
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{name} must not carry a user name or password (credentials belong in the "
            "client_id and client_secret options)"
        )
    try:  # what requests itself refuses at send time (a bad IDNA host, ...)
        requests.PreparedRequest().prepare_url(text, None)
    except (requests.RequestException, ValueError) as exc:
        raise ConfigurationError(f"{name} is not a valid URL ({exc}): {url!r:.200}") from None
    return text
