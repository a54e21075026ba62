"""``ClientCredentialsAuth``: sign requests, refresh ahead of expiry, re-send once on 401.

Hot path (a valid token in hand): one ``startswith`` against the last origin signed, one
clock read, one comparison, one header set and one precomputed hook appended; no lock, no
I/O. Everything else (other origins, stale tokens, files and generators as bodies) takes
the slow path.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from typing import (
    Any,
    Callable,
    Final,
    Iterable,
    Literal,
    Mapping,
    NamedTuple,
    Optional,
    Union,
)
from urllib.parse import urlsplit

import requests
from requests.auth import AuthBase
from requests.cookies import extract_cookies_to_jar
from urllib3.util.retry import Retry

from ._cache import MemoryTokenCache, SingleFlight, TokenCache
from ._checks import Timeout, checked_seconds
from ._fetch import (
    DEFAULT_MAX_RETRY_AFTER,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    AudienceEncoding,
    ClientAuthMethod,
    TokenFetcher,
    check_secure_url,
    normalize_audience,
    normalize_scope,
    transport_is_safe,
)
from ._token import DEFAULT_LEEWAY, Token, TokenState
from .exceptions import ConfigurationError

log = logging.getLogger("requests_advanced_auth")

HeaderStyle = Literal["bearer", "raw"]

ADVANCED_STORE_TOKEN_URL: Final = "https://auth.advanced-store.com/oauth2/token"
ADVANCED_STORE_AUDIENCE: Final = ("api.ad4mat.net", "api.advanced-store.com")
STATISTICS_PATH: Final = "/function/api/statistics"


class _Slot(NamedTuple):
    """What the hot path needs, precomputed once per token."""

    token: Token
    stale_at: float
    bearer: str  # "Bearer <token>"
    raw: str  # "<token>"
    hook: Callable[..., requests.Response]  # the 401 hook for bodies replayed from 0
    fetch: int  # which of this auth's fetches got it (1, 2, ...); 0: taken from the cache

    def __repr__(self) -> str:  # the token's own repr shows only its fingerprint
        return f"_Slot(token={self.token!r}, stale_at={self.stale_at!r}, fetch={self.fetch})"


#: Header style -> index of its header value in a _Slot (0: not signed), for the hot path.
_FIELD: Final[Mapping[Optional[str], int]] = {
    None: 0, "bearer": _Slot._fields.index("bearer"), "raw": _Slot._fields.index("raw")
}
_MAX_ORIGINS: Final = 256  # bound on the per-origin decision cache (a crawler hits many hosts)
_UNREPLAYABLE: Final = -1  # body position marker: the body cannot be sent again
_KEPT_401_BODY: Final = 64 * 1024  # bytes of a re-sent 401's body kept for its history


def _origin_of(url: str) -> str:
    """``scheme://netloc`` of a prepared (already normalised) URL, without parsing it."""
    start = url.find("//")
    end = url.find("/", start + 2) if start >= 0 else -1
    return url if end < 0 else url[:end]


def _origin_key(origin: str) -> Optional[tuple[str, str, Optional[int]]]:
    """(scheme, host, port) with the scheme's default port filled in; None if malformed."""
    parts = urlsplit(origin)
    try:
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    return parts.scheme, (parts.hostname or "").lower(), port


def _prepared_url(url: str) -> str:
    """``url`` normalised the way requests normalises request URLs."""
    prep = requests.PreparedRequest()
    try:
        prep.prepare_url(url, None)
    except requests.RequestException as exc:
        raise ConfigurationError(f"not a valid URL: {url!r:.200} ({exc})") from None
    assert prep.url is not None
    return prep.url


class _HostRule:
    """Which host[:port] entries may receive the token."""

    def __init__(self, hosts: Optional[Iterable[str]]) -> None:
        self.everywhere = hosts is None
        self.entries: set[tuple[str, Optional[int]]] = set()
        if isinstance(hosts, str):
            hosts = [hosts]
        for entry in hosts or ():
            if not isinstance(entry, str):
                raise ConfigurationError(
                    f"allowed_hosts entries are 'host' or 'host:port' strings, got {entry!r:.60}"
                )
            entry = entry.strip()
            if entry.count(":") > 1 and not entry.startswith("["):
                raise ConfigurationError(
                    f"allowed_hosts entry {entry!r:.60} looks like an IPv6 address: write it in "
                    "brackets, as in URLs: '[::1]' or '[::1]:8080'"
                )
            try:
                parts = urlsplit("//" + entry)
                port = parts.port
            except ValueError:  # "[::1" (unclosed), a port out of range or not a number
                port = None
                parts = urlsplit("")
            if not parts.hostname or parts.path or parts.query:
                raise ConfigurationError(
                    f"allowed_hosts entries are 'host' or 'host:port', got {entry!r:.100}"
                )
            self.entries.add((parts.hostname.lower(), port))

    def allows(self, host: str, port: Optional[int]) -> bool:
        return self.everywhere or (host, None) in self.entries or (host, port) in self.entries


class ClientCredentialsAuth(AuthBase):
    """OAuth 2.0 client-credentials auth for any provider (RFC 6749 §4.4).

    ::

        session.auth = ClientCredentialsAuth(
            "my-client", os.environ["SECRET"], token_url="https://idp.example/oauth2/token"
        )
    """

    #: Defaults of this class (subclasses preset them for a provider).
    default_token_url: Optional[str] = None
    default_audience: tuple[str, ...] = ()
    default_allowed_hosts: Optional[tuple[str, ...]] = None  # None: every host
    default_header_styles: Mapping[str, HeaderStyle] = {}

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: Optional[str] = None,
        audience: Union[str, Iterable[str], None] = None,
        audience_encoding: AudienceEncoding = "joined",
        scope: Union[str, Iterable[str], None] = None,
        extra_params: Optional[Mapping[str, str]] = None,
        client_auth: ClientAuthMethod = "client_secret_post",
        allowed_hosts: Optional[Iterable[str]] = None,
        header_styles: Optional[Mapping[str, HeaderStyle]] = None,
        default_header_style: HeaderStyle = "bearer",
        leeway: float = DEFAULT_LEEWAY,
        cache: Optional[TokenCache] = None,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retries: Union[int, Retry] = DEFAULT_RETRIES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        verify: Union[bool, str, None] = None,
        cert: Union[str, tuple[str, str], None] = None,
        proxies: Optional[Mapping[str, str]] = None,
        token_session: Optional[requests.Session] = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        token_url = token_url if token_url is not None else self.default_token_url
        if not token_url:
            raise ConfigurationError("token_url is required: the provider's OAuth 2.0 token URL")
        leeway = checked_seconds(leeway, "leeway")
        if cache is not None and not isinstance(cache, TokenCache):
            raise ConfigurationError(
                "cache must be a token cache (MemoryTokenCache, FileTokenCache, "
                "RedisTokenCache, or an object with get, set, invalidate and lock), got "
                f"{type(cache).__name__}"
            )
        if header_styles is not None and not isinstance(header_styles, Mapping):
            raise ConfigurationError(
                "header_styles must be a mapping of URL prefix to 'bearer' or 'raw', got "
                f"{type(header_styles).__name__}"
            )
        if allowed_hosts is not None and not isinstance(allowed_hosts, (str, Iterable)):
            raise ConfigurationError(
                "allowed_hosts must be a 'host[:port]' string or an iterable of them, got "
                f"{type(allowed_hosts).__name__}"
            )
        styles = dict(self.default_header_styles if header_styles is None else header_styles)
        for prefix, style in (*styles.items(), ("default_header_style", default_header_style)):
            if not isinstance(prefix, str):
                raise ConfigurationError(
                    f"header_styles keys are URL prefixes (str), got {prefix!r:.40}"
                )
            if style not in ("bearer", "raw"):
                raise ConfigurationError(
                    f"header styles are 'bearer' or 'raw', got {style!r:.40} for {prefix!r:.80}"
                )
        self.audience = normalize_audience(
            self.default_audience if audience is None else audience
        )
        self.scope = normalize_scope(scope)
        self.leeway = leeway
        self.header_styles: dict[str, HeaderStyle] = {
            _prepared_url(prefix): style for prefix, style in styles.items()
        }
        self.default_header_style: HeaderStyle = default_header_style
        if allowed_hosts is None:
            allowed_hosts = self.default_allowed_hosts
        self.allowed_hosts: Optional[tuple[str, ...]] = (
            None if allowed_hosts is None
            else (allowed_hosts,) if isinstance(allowed_hosts, str)
            else tuple(allowed_hosts)
        )
        self._hosts = _HostRule(self.allowed_hosts)
        self._fetcher = TokenFetcher(
            client_id,
            client_secret,
            token_url=token_url,
            audience=self.audience,
            audience_encoding=audience_encoding,
            scope=self.scope,
            extra_params=extra_params,
            client_auth=client_auth,
            timeout=timeout,
            retries=retries,
            max_retry_after=max_retry_after,
            verify=verify,
            cert=cert,
            proxies=proxies,
            token_session=token_session,
            clock=clock,
        )
        self.cache: TokenCache = MemoryTokenCache() if cache is None else cache
        self._clock = clock
        self._init_runtime_state()

    def _init_runtime_state(self) -> None:
        # Everything here is per process and rebuilt on unpickle.
        self._key = self._fetcher.cache_key
        # Replaced as a whole, read without a lock; see _Slot.
        self._slot: Optional[_Slot] = None
        self._flight: SingleFlight[_Slot] = SingleFlight()
        self._next_early_refresh = -math.inf
        self._fetches = 0  # token requests this object has started
        self._origins: dict[str, Any] = {}
        # The hot path's one-entry cache: (origin + "/", the _Slot field of its header value,
        # 0 for "not signed") of the last origin signed that has one style throughout.
        self._last_origin: tuple[str, int] = ("\0", 0)

    # -- public -----------------------------------------------------------------------------

    @property
    def client_id(self) -> str:
        return self._fetcher.client_id

    @property
    def token_url(self) -> str:
        return self._fetcher.token_url

    def get_token(self) -> Token:
        """A usable token: the cached one, or a new one (one fetch for all waiting threads)."""
        slot = self._slot
        if slot is not None and self._clock() < slot.stale_at:
            return slot.token
        return self._refresh_slot()[0]

    def invalidate(self, token: Optional[Token] = None) -> None:
        """Forget ``token`` (default: the current one) so the next request fetches anew.

        Only forgets it if it is still the current token: callers that all saw the same
        rejected token cause one token request.
        """
        slot = self._slot
        if token is None:
            if slot is None:
                return
            token = slot.token
        if slot is not None and slot.token.access_token == token.access_token:
            self._slot = None
        self.cache.invalidate(self._key, token)

    def headers_for(self, url: str) -> dict[str, str]:
        """The auth headers a request to ``url`` would get (``{}`` if it is not signed).

        Fetches a token if needed; for clients that take a header dict, e.g. pandas'
        ``read_csv(url, storage_options=auth.headers_for(url))``.
        """
        style = self._style_for(_prepared_url(url))
        if style is None:
            return {}
        slot = self._current_slot()
        return {"Authorization": slot.bearer if style == "bearer" else slot.raw}

    def close(self) -> None:
        """Close the token session (if this object created it)."""
        self._fetcher.close()

    # -- requests' AuthBase -----------------------------------------------------------------

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        url: str = r.url  # type: ignore[assignment]  # always set once prepared
        prefix, field = self._last_origin  # "scheme://host[:port]/" of the last signed origin
        if not url.startswith(prefix):
            field = _FIELD[self._style_for(url)]
        if not field:
            return r
        # Indexes, not names, on this path: a tuple index is the cheaper lookup.
        slot = self._slot
        if slot is None or self._clock() >= slot[1]:  # .stale_at
            slot = self._current_slot()
        r.headers["Authorization"] = slot[field]  # type: ignore[assignment]  # .bearer/.raw
        body: Any = r.body  # typed bytes | str, but files and generators pass through too
        if body is None or body.__class__ is bytes or body.__class__ is str:
            r.hooks["response"].append(slot[4])  # .hook
        else:
            hook = functools.partial(self._handle_401, slot.token, _body_position(body))
            r.hooks["response"].append(hook)
        return r

    def _handle_401(
        self, sent: Token, position: int, r: requests.Response, **kwargs: Any
    ) -> requests.Response:
        """Response hook: on 401 for our token, drop it, fetch a new one, re-send once."""
        if r.status_code != 401:
            return r
        request = r.request
        header = request.headers.get("Authorization")
        if header not in (sent.access_token, "Bearer " + sent.access_token):
            return r  # not signed by us (another host, another auth): not ours to retry
        if position == _UNREPLAYABLE:
            log.warning(
                "401 from %s with token %s: not re-sent, the request body is a stream that "
                "cannot be replayed; send bytes or a seekable file to get the automatic retry",
                _origin_of(request.url or ""), sent.fingerprint,
            )
            self.invalidate(sent)  # the next request must not send the refused token again
            return r
        log.info(
            "401 from %s with token %s: fetching a new token and re-sending once",
            _origin_of(request.url or ""), sent.fingerprint,
        )
        raw = header == sent.access_token
        fetches_before = self._fetches
        self.invalidate(sent)
        slot = self._refresh_slot(rejected=sent)
        retried = self._resend(r, slot.raw if raw else slot.bearer, position, kwargs)
        if retried.status_code == 401 and slot.fetch <= fetches_before:
            # The re-send used a token whose request began before this 401 came: another
            # thread's, a refresh-ahead's, or one from a shared cache (fetch 0), and the
            # revocation behind the 401 may have covered it too. Only then, one more round,
            # with a token that is not that one.
            log.info("401 again with token %s: fetching a new token", slot.token.fingerprint)
            self.invalidate(slot.token)
            slot = self._refresh_slot(rejected=slot.token)
            retried = self._resend(retried, slot.raw if raw else slot.bearer, position, kwargs)
        return retried

    @staticmethod
    def _resend(
        r: requests.Response, authorization: str, position: int, kwargs: dict[str, Any]
    ) -> requests.Response:
        """Re-send ``r``'s request with a new Authorization, as requests' HTTPDigestAuth does.

        Same adapter and send options, body rewound, cookies the 401 set carried over; the
        401 is kept in ``history`` with at most _KEPT_401_BODY bytes of its body read (an
        endless one must not stall the re-send), then closed.
        """
        request = r.request
        body = request.body
        if hasattr(body, "seek"):
            body.seek(position)  # type: ignore[union-attr]
        if not r._content_consumed:  # type: ignore[attr-defined]
            try:
                kept = next(r.iter_content(_KEPT_401_BODY), b"")
            except (requests.RequestException, OSError):
                # A broken 401 body (its error could quote the token we sent): not kept.
                kept = b""
            r._content = kept
            r._content_consumed = True  # type: ignore[attr-defined]
        r.close()
        prep = request.copy()
        jar = prep._cookies  # type: ignore[attr-defined]
        extract_cookies_to_jar(jar, request, r.raw)  # type: ignore[no-untyped-call]
        prep.prepare_cookies(jar)
        prep.headers["Authorization"] = authorization
        retried: requests.Response = r.connection.send(prep, **kwargs)
        retried.history = [*r.history, r]
        retried.request = prep
        return retried

    # -- token slot -------------------------------------------------------------------------

    def _current_slot(self) -> _Slot:
        slot = self._slot
        if slot is not None and self._clock() < slot.stale_at:
            return slot
        return self._refresh_slot()

    def _refresh_slot(self, rejected: Optional[Token] = None) -> _Slot:
        """Slow path: the token is missing, stale, expired, or ``rejected`` by a 401."""
        slot = self._slot
        if slot is not None and not _same(slot.token, rejected):
            now = self._clock()
            state = slot.token.state(now, self.leeway)
            if state is TokenState.FRESH:
                return slot
            if state is TokenState.STALE:
                # Still valid: one caller fetches the next token, everyone else goes on.
                if now >= self._next_early_refresh:
                    self._refresh_early(slot.token, now)
                return self._slot or slot
        # Missing or expired: wait for one shared fetch (its error, if any, is everyone's).
        # The token being replaced is named explicitly: the cache may hold it still, and a
        # token another thread adopted a moment ago is *not* being replaced.
        replacing = rejected or (slot.token if slot is not None else None)
        return self._flight.run(functools.partial(self._obtain, replacing))

    def _refresh_early(self, current: Token, now: float) -> None:
        try:
            self._flight.try_run(functools.partial(self._obtain, current))
        except Exception as exc:  # the current token is still valid: log, do not raise
            # Try again later, before expiry: half of the remaining valid time from now.
            wait = max((current.expired_at(self.leeway) - now) / 2, 0.0)
            self._next_early_refresh = now + wait
            log.warning(
                "early token refresh failed, still using token %s (valid %.0f s more); "
                "retrying in %.1f s: %s",
                current.fingerprint, current.expired_at(self.leeway) - now, wait, exc,
            )

    def _obtain(self, replacing: Optional[Token]) -> _Slot:
        """Take a newer token from the cache, or fetch one under the cache's lock."""
        held = self.cache.get(self._key)
        if held is not None and self._usable(held, replacing):
            return self._adopt(held)
        with self.cache.lock(self._key):
            held = self.cache.get(self._key)  # re-check: another thread/process may have won
            if held is not None and self._usable(held, replacing):
                return self._adopt(held)
            self._fetches += 1  # only one _obtain runs at a time (the single flight)
            fetch = self._fetches
            token = self._fetcher.fetch()
            self.cache.set(self._key, token)
        return self._adopt(token, fetch)

    def _usable(self, token: Token, replacing: Optional[Token]) -> bool:
        return not _same(token, replacing) and (
            token.state(self._clock(), self.leeway) is TokenState.FRESH
        )

    def _adopt(self, token: Token, fetch: int = 0) -> _Slot:
        hook = functools.partial(self._handle_401, token, 0)
        slot = _Slot(token, token.stale_at(self.leeway), "Bearer " + token.access_token,
                     token.access_token, hook, fetch)
        self._slot = slot
        self._next_early_refresh = -math.inf
        return slot

    # -- per-URL decisions ------------------------------------------------------------------

    def _style_for(self, url: str) -> Optional[HeaderStyle]:
        """The header style for ``url``, or None to pass it through unsigned."""
        origin = _origin_of(url)
        rule = self._origins.get(origin)
        if rule is None:
            rule = self._decide(origin)
            if len(self._origins) >= _MAX_ORIGINS:
                self._origins.clear()
            self._origins[origin] = rule
        if rule.__class__ is str:
            style: Optional[HeaderStyle] = rule or None  # type: ignore[assignment]
            self._last_origin = (origin + "/", _FIELD[style])
            return style
        for prefix, prefix_style, exclusive in rule:
            if url.startswith(prefix):
                if exclusive:  # no longer prefix can match: safe for the one-entry cache
                    self._last_origin = (prefix, _FIELD[prefix_style])
                return prefix_style  # type: ignore[no-any-return]
        return None  # pragma: no cover - the last rule is the origin itself

    def _decide(self, origin: str) -> Any:
        """For one origin: '' (do not sign), a style, or (prefix, style, exclusive) to try."""
        key = _origin_key(origin)
        if key is None:
            return ""
        host, port = key[1], key[2]
        if not self._hosts.allows(host, port):
            log.debug("not signing requests to %s: host not in allowed_hosts", origin)
            return ""
        if not transport_is_safe(origin):
            log.warning(
                "not sending the token to %s: plain http to a non-loopback host would expose "
                "it; use https", origin,
            )
            return ""
        # Prefixes of this origin, rewritten to its literal spelling: ``https://h/`` and
        # ``https://h:443/`` are the same origin, and the hot path compares strings.
        styles = {
            origin + p[len(_origin_of(p)):]: style
            for p, style in self.header_styles.items()
            if _origin_key(_origin_of(p)) == key
        }
        style = styles.pop(origin + "/", self.default_header_style)
        if not styles:
            return style  # one style for the whole origin: the hot path needs no prefix scan
        prefixes = sorted(styles, key=len, reverse=True)
        return (
            *(
                (p, styles[p], not any(q.startswith(p) for q in prefixes if q != p))
                for p in prefixes
            ),
            (origin, style, False),
        )

    # -- copies and display -----------------------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in ("_slot", "_flight", "_next_early_refresh", "_origins", "_last_origin",
                     "_key", "_fetches"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime_state()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"audience={' '.join(self.audience)!r}, scope={self.scope!r})"
        )


def _same(token: Token, other: Optional[Token]) -> bool:
    return other is not None and token.access_token == other.access_token


def _body_position(body: Any) -> int:
    """Where a file-like body starts, or _UNREPLAYABLE for generators and pipes."""
    try:
        if body.seekable():
            return int(body.tell())
    except (AttributeError, OSError, ValueError):
        pass
    if isinstance(body, (bytearray, memoryview)):
        return 0
    return _UNREPLAYABLE


class AdvancedAuth(ClientCredentialsAuth):
    """:class:`ClientCredentialsAuth` with Advanced-Store's token URL, audiences and headers.

    The statistics API (``advanced-store.cloud``) gets the raw token, as its documentation
    shows; the transactions API (``api.advanced-store.com``) gets ``Bearer <token>``.
    """

    default_token_url = ADVANCED_STORE_TOKEN_URL
    default_audience = ADVANCED_STORE_AUDIENCE
    default_allowed_hosts = ("api.advanced-store.com", "advanced-store.cloud")
    default_header_styles: Mapping[str, HeaderStyle] = {
        "https://advanced-store.cloud/": "raw",
        "https://api.advanced-store.com/": "bearer",
    }

    @classmethod
    def from_env(
        cls, environ: Optional[Mapping[str, str]] = None, **options: Any
    ) -> AdvancedAuth:
        """Build from ``ADVANCED_STORE_*`` environment variables (see README.md).

        Required: ``ADVANCED_STORE_CLIENT_ID``, ``ADVANCED_STORE_CLIENT_SECRET``. Optional:
        ``ADVANCED_STORE_AUDIENCE`` (space-separated), ``ADVANCED_STORE_TOKEN_URL``, and
        ``ADVANCED_STORE_API_URL`` (one server for both APIs, e.g. the sandbox: its host is
        then the allowed host, and its statistics path gets the raw token). Keyword
        ``options`` go to the constructor and win over the environment.
        """
        env = os.environ if environ is None else environ
        credentials = []
        for name in ("ADVANCED_STORE_CLIENT_ID", "ADVANCED_STORE_CLIENT_SECRET"):
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(
                    f"environment variable {name} is not set; export it (see README.md, "
                    "'Configuration'), or pass the credentials to AdvancedAuth(...) directly"
                )
            credentials.append(value)
        settings: dict[str, Any] = {}
        if env.get("ADVANCED_STORE_AUDIENCE", "").strip():
            settings["audience"] = env["ADVANCED_STORE_AUDIENCE"].split()
        if env.get("ADVANCED_STORE_TOKEN_URL", "").strip():
            settings["token_url"] = env["ADVANCED_STORE_TOKEN_URL"].strip()
        if env.get("ADVANCED_STORE_API_URL", "").strip():
            settings.update(api_url_options(env["ADVANCED_STORE_API_URL"].strip()))
        settings.update(options)
        return cls(credentials[0], credentials[1], **settings)


def check_api_url(url: Any, name: str) -> str:
    """An API server URL that may receive the token (https, or http on loopback)."""
    return check_secure_url(url, name, carries="the access token",
                            example="http://127.0.0.1:8765")


def api_url_options(api_url: str) -> dict[str, Any]:
    """``allowed_hosts`` and ``header_styles`` for one server that hosts both APIs."""
    base = _prepared_url(check_api_url(api_url, "ADVANCED_STORE_API_URL")).rstrip("/")
    parts = urlsplit(base)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return {
        "allowed_hosts": [f"{host}:{parts.port}" if parts.port else f"{host}"],
        "header_styles": {base + STATISTICS_PATH: "raw", base + "/": "bearer"},
    }
