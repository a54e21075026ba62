"""The access token value object and its expiry arithmetic.

Rules (pure: no I/O, no locks, never imports requests):

* Times are epoch seconds from the caller's clock. ``issued_at`` is read *before* the token
  request is sent, so ``expires_at = issued_at + expires_in`` errs on the early side.
* A token's own ``expires_in`` decides its expiry; nothing is inherited from an earlier token.
  No ``expires_in`` means "unknown": the token stays FRESH until the API answers 401.
  ``expires_in <= 0`` means the token is EXPIRED at once (it still serves the request that
  fetched it). A lifetime above ``MAX_LIFETIME`` is capped, and one below ``-MAX_LIFETIME``
  raised to it, so ``expires_at`` is always finite (``expires_in`` may be +/-inf: a number too
  large for a float counts as infinite). Non-finite times read back from a cache are foreign.
* With ``margin = min(leeway, lifetime * MAX_LEEWAY_FRACTION)`` a token is
  FRESH until ``expires_at - margin``, then STALE (still sent, while one caller fetches the
  next token) until ``expires_at - margin * EXPIRY_FRACTION``, then EXPIRED (callers wait for
  a new one). Capping the margin by the lifetime is what keeps a 5 s or 30 s token from
  being refetched on every call when the leeway is larger than the lifetime.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final, Mapping, Optional

#: Default leeway in seconds: refreshing starts this long before the stated expiry. A minute
#: covers clock skew between us and the token server plus a slow token request, and is 1/60
#: of the provider's typical 3600 s lifetime (google-auth uses 3 min 45 s for 1 h tokens).
DEFAULT_LEEWAY: Final = 60.0

#: The margin never exceeds this fraction of the token's lifetime, so short-lived tokens are
#: still used for three quarters of their life.
MAX_LEEWAY_FRACTION: Final = 0.25

#: Within the margin, the last third is "expired": callers stop sending the old token and
#: wait for the new one. The first two thirds give the refresh time to finish without stalls.
EXPIRY_FRACTION: Final = 1.0 / 3.0

#: What may travel in an Authorization header: visible ASCII, no spaces (RFC 6750 §2.1's
#: b64token is narrower still). http.client refuses anything else, quoting the whole header.
HEADER_SAFE: Final = re.compile(r"[\x21-\x7e]+")

#: Lifetimes above one day are capped: a server answering ``expires_in: 10**12`` (or a unit
#: mix-up, milliseconds for seconds) must not pin a token in a cache for decades.
MAX_LIFETIME: Final = 86400.0


class TokenState(enum.Enum):
    """How usable a token is at a given moment."""

    FRESH = "fresh"  #: use it
    STALE = "stale"  #: use it, and fetch the next one now
    EXPIRED = "expired"  #: do not send it; wait for a new one


def fingerprint(access_token: str) -> str:
    """A short, non-reversible label for logs: the first 8 hex digits of SHA-256."""
    return hashlib.sha256(access_token.encode("utf-8")).hexdigest()[:8]


def parse_expires_in(value: Any) -> Optional[float]:
    """Read ``expires_in`` as sent by a server: int, float or numeric string.

    Returns None when absent (``None``); raises ValueError for anything non-numeric,
    booleans and NaN. Other values come back as they are, an integer too large for a float as
    +/-inf (as ``"1e400"`` already is): :meth:`Token.issued` caps them.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"expires_in must be a number of seconds, got {type(value).__name__}")
    try:
        seconds = float(value)
    except OverflowError:
        assert isinstance(value, int)  # float("9" * 400) is inf already; only an int overflows
        seconds = math.inf if value > 0 else -math.inf
    except ValueError:
        raise ValueError(f"expires_in must be a number of seconds, got {value!r:.40}") from None
    if math.isnan(seconds):
        raise ValueError("expires_in must be a number of seconds, got NaN")
    return seconds


@dataclass(frozen=True)
class Token:
    """An access token and when it stops being usable. ``repr`` never shows the token."""

    access_token: str = field(repr=False)
    issued_at: float
    expires_at: Optional[float]
    token_type: str = "bearer"
    scope: Optional[str] = None
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        # Checked here, so no path (a token endpoint, a file, Redis, a store of your own)
        # can put in use a token that http.client would refuse, quoting it whole.
        if not isinstance(self.access_token, str) or not HEADER_SAFE.fullmatch(self.access_token):
            raise ValueError(
                "access_token must be a non-empty string that can be sent in an HTTP header "
                "(visible ASCII, no spaces)"
            )
        object.__setattr__(self, "fingerprint", fingerprint(self.access_token))

    @classmethod
    def issued(
        cls,
        access_token: str,
        *,
        issued_at: float,
        expires_in: Optional[float],
        token_type: str = "bearer",
        scope: Optional[str] = None,
    ) -> Token:
        """A token issued at ``issued_at`` that lives ``expires_in`` seconds (None: unknown)."""
        expires_at = None
        if expires_in is not None:
            if math.isnan(expires_in):
                raise ValueError("expires_in must be a number of seconds, got NaN")
            # Clamped both ways: an infinite expires_at would not survive JSON or a Redis TTL.
            expires_at = issued_at + min(max(expires_in, -MAX_LIFETIME), MAX_LIFETIME)
        return cls(access_token, issued_at, expires_at, token_type, scope)

    def _margin(self, leeway: float) -> float:
        assert self.expires_at is not None
        lifetime = max(self.expires_at - self.issued_at, 0.0)
        return min(max(leeway, 0.0), lifetime * MAX_LEEWAY_FRACTION)

    def stale_at(self, leeway: float) -> float:
        """From this moment on, a new token should be fetched (``inf`` if expiry is unknown)."""
        if self.expires_at is None:
            return math.inf
        return self.expires_at - self._margin(leeway)

    def expired_at(self, leeway: float) -> float:
        """From this moment on, the token is no longer sent (``inf`` if expiry is unknown)."""
        if self.expires_at is None:
            return math.inf
        return self.expires_at - self._margin(leeway) * EXPIRY_FRACTION

    def state(self, now: float, leeway: float) -> TokenState:
        """FRESH, STALE or EXPIRED at ``now`` (see the module rules)."""
        if now >= self.expired_at(leeway):
            return TokenState.EXPIRED
        if now >= self.stale_at(leeway):
            return TokenState.STALE
        return TokenState.FRESH

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, for persistent caches (it contains the token itself)."""
        return {
            "access_token": self.access_token,
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "token_type": self.token_type,
            "scope": self.scope,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Token:
        """The inverse of :meth:`to_dict`; raises ValueError (or KeyError, TypeError) on
        foreign data, which includes NaN or infinite times (they would keep a token FRESH
        forever)."""
        access_token = data["access_token"]
        if not isinstance(access_token, str) or not access_token:
            raise ValueError("access_token must be a non-empty string")
        expires_at = data.get("expires_at")
        if expires_at is not None:
            expires_at = _finite_time(expires_at, "expires_at")
        scope = data.get("scope")
        return cls(
            access_token,
            _finite_time(data["issued_at"], "issued_at"),
            expires_at,
            str(data.get("token_type") or "bearer"),
            None if scope is None else str(scope),
        )


def _finite_time(value: Any, name: str) -> float:
    """A stored time as a finite float; ValueError (never quoting the value) otherwise."""
    try:
        seconds = float(value)
    except (OverflowError, TypeError, ValueError):
        seconds = math.nan
    if isinstance(value, bool) or not math.isfinite(seconds):
        raise ValueError(f"{name} must be a finite number of epoch seconds")
    return seconds
