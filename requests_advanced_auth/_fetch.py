"""The token request: built and parsed by oauthlib, sent by a requests Session of our own.

Transport rule (decided here alone): a token URL, and any URL a token is sent to, must be
``https://``, except loopback hosts (``localhost``, 127.0.0.0/8, ``::1``), which may use plain
``http://`` so a local emulator works. oauthlib's process-wide switches
(``OAUTHLIB_INSECURE_TRANSPORT``, ``OAUTHLIB_RELAX_TOKEN_SCOPE``) are never touched: oauthlib is
only asked to build the body and to parse the answer.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import random
import time
from typing import Any, Final, Iterable, Literal, Mapping, Optional, Sequence, Union
from urllib.parse import quote, quote_plus, urlencode, urlsplit

import requests
from oauthlib.oauth2 import BackendApplicationClient
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from ._token import Token, parse_expires_in
from .exceptions import (
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    TokenEndpointUnreachableError,
    TokenResponseError,
)

log = logging.getLogger("requests_advanced_auth")

ClientAuthMethod = Literal["client_secret_post", "client_secret_basic"]
AudienceEncoding = Literal["joined", "repeated"]
Timeout = Union[float, "tuple[float, float]"]

#: (connect, read) seconds for one token request attempt. Connecting takes one round trip; a
#: token server that has not answered in 10 s is better retried than waited for.
DEFAULT_TIMEOUT: Final = (3.05, 10.0)
#: Retries after the first attempt, for connection errors, timeouts, 429 and 5xx.
DEFAULT_RETRIES: Final = 3
#: Backoff before retry n is min(BACKOFF_MAX, BACKOFF_FACTOR * 2 ** (n - 1)) plus up to
#: BACKOFF_JITTER random seconds, so a fleet that failed together does not retry together.
BACKOFF_FACTOR: Final = 0.5
BACKOFF_MAX: Final = 8.0
BACKOFF_JITTER: Final = 0.5
#: A ``Retry-After`` longer than this is not waited for: the error says what the server asked.
DEFAULT_MAX_RETRY_AFTER: Final = 30.0
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})

_sleep = time.sleep  # the only sleeping in the package; tests replace it


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (v4 127.0.0.0/8, v6 ::1)."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def transport_is_safe(url: str) -> bool:
    """True if a secret or token may travel to ``url`` (the transport rule above)."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme == "https" or (scheme == "http" and is_loopback(parts.hostname or ""))


def check_token_url(url: str) -> str:
    """Return ``url`` if it may receive the client secret, else raise ConfigurationError."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"token_url must be an absolute https:// URL, got {url!r:.200}"
        )
    if not transport_is_safe(url):
        raise ConfigurationError(
            f"token_url {url!r:.200} uses plain http to a non-loopback host: the client secret "
            "would travel unencrypted. Use https:// (plain http is allowed for localhost only)"
        )
    return url


def normalize_audience(audience: Union[str, Iterable[str], None]) -> tuple[str, ...]:
    """Audience items as a tuple; a string is split on single spaces as the provider does."""
    if audience is None:
        return ()
    items: Sequence[Any] = audience.split(" ") if isinstance(audience, str) else list(audience)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"audience items must be strings, got {type(item).__name__}"
            )
        if not item or item != item.strip() or any(ch.isspace() for ch in item):
            raise ConfigurationError(
                f"audience item {item!r:.80} is empty or contains whitespace; pass each "
                "audience as its own string, e.g. audience=['api.ad4mat.net', "
                "'api.advanced-store.com']"
            )
    return tuple(items)


def normalize_scope(scope: Union[str, Iterable[str], None]) -> Optional[str]:
    if scope is None:
        return None
    if isinstance(scope, str):
        return " ".join(scope.split()) or None
    items = [str(s) for s in scope]
    return " ".join(items) or None


class _TokenRetry(Retry):
    """urllib3's Retry with jitter, a bounded Retry-After, and a replaceable sleep."""

    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    jitter: float = BACKOFF_JITTER
    backoff_cap: float = BACKOFF_MAX

    def new(self, **kw: Any) -> _TokenRetry:
        new = super().new(**kw)
        new.max_retry_after = self.max_retry_after
        new.jitter = self.jitter
        new.backoff_cap = self.backoff_cap
        return new

    def get_backoff_time(self) -> float:
        # urllib3 retries the first failure at once; a token server that just failed (often
        # for the whole fleet at the same moment) deserves a pause and a spread, every time.
        failures = len(self.history)
        if failures == 0 or self.backoff_factor <= 0:
            return 0.0
        wait: float = min(self.backoff_factor * 2 ** (failures - 1), self.backoff_cap)
        return wait + random.uniform(0, self.jitter)

    def increment(
        self,
        method: Optional[str] = None,
        url: Optional[str] = None,
        response: Any = None,
        error: Optional[Exception] = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> _TokenRetry:
        if response is not None:
            wait = self.get_retry_after(response)
            if wait is not None and wait > self.max_retry_after:
                # Give up now; with raise_on_status=False urllib3 hands us the response,
                # so the error can quote the server's Retry-After.
                raise MaxRetryError(_pool, url or "", ResponseError("Retry-After too long"))
        return super().increment(method, url, response, error, _pool, _stacktrace)

    def sleep(self, response: Any = None) -> None:
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response)
            if wait is not None:
                _sleep(wait)
                return
        backoff = self.get_backoff_time()
        if backoff > 0:
            _sleep(backoff)


def make_retry(retries: Union[int, Retry], max_retry_after: float) -> Retry:
    """The token session's Retry: an int gives ours, a Retry instance is used as it is."""
    if isinstance(retries, Retry):
        return retries
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigurationError(f"retries must be an int >= 0 or a urllib3 Retry, got {retries!r}")
    retry = _TokenRetry(
        total=retries,
        connect=retries,
        read=retries,
        status=retries,
        redirect=0,
        other=0,
        backoff_factor=BACKOFF_FACTOR,
        status_forcelist=_RETRY_STATUSES,
        # The token request is a POST, but asking for a client-credentials token twice is
        # harmless: it is safe to retry.
        allowed_methods=frozenset({"POST"}),
        raise_on_redirect=False,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    retry.max_retry_after = max_retry_after
    return retry


def _excerpt(text: str, *secrets: str, limit: int = 80) -> str:
    """One line of at most ``limit`` characters, with every secret blanked out."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class TokenFetcher:
    """Fetches one client-credentials token per call; holds no token itself.

    The form body is built once by oauthlib, so every fetch sends identical parameters.
    """

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        *,
        token_url: str,
        audience: Sequence[str] = (),
        audience_encoding: AudienceEncoding = "joined",
        scope: Optional[str] = None,
        extra_params: Optional[Mapping[str, str]] = None,
        client_auth: ClientAuthMethod = "client_secret_post",
        timeout: Timeout = DEFAULT_TIMEOUT,
        retries: Union[int, Retry] = DEFAULT_RETRIES,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        verify: Union[bool, str, None] = None,
        cert: Union[str, tuple[str, str], None] = None,
        proxies: Optional[Mapping[str, str]] = None,
        token_session: Optional[requests.Session] = None,
        clock: Any = time.time,
    ) -> None:
        for name, value in (("client_id", client_id), ("client_secret", client_secret)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{name} must be a non-empty string")
        if client_auth not in ("client_secret_post", "client_secret_basic"):
            raise ConfigurationError(
                f"client_auth must be 'client_secret_post' or 'client_secret_basic', "
                f"got {client_auth!r:.40}"
            )
        if audience_encoding not in ("joined", "repeated"):
            raise ConfigurationError(
                f"audience_encoding must be 'joined' or 'repeated', got {audience_encoding!r:.40}"
            )
        self.client_id = client_id
        self.token_url = check_token_url(token_url)
        self.audience = tuple(audience)
        self.audience_encoding = audience_encoding
        self.scope = scope
        self.extra_params = dict(extra_params or {})
        self.client_auth = client_auth
        self.timeout = timeout
        self.max_retry_after = float(max_retry_after)
        self._retry = make_retry(retries, self.max_retry_after)
        self._send_options: dict[str, Any] = {
            k: v for k, v in (("verify", verify), ("cert", cert), ("proxies", proxies))
            if v is not None
        }
        self._secret = client_secret
        # The secret as a server may echo it back: raw, or form-/percent-encoded from our body.
        self._hidden = tuple(
            {client_secret, quote_plus(client_secret), quote(client_secret, safe="")}
        )
        self._clock = clock
        self._body = self._build_body()
        self._own_session = token_session is None
        self._session = token_session if token_session is not None else self._new_session()

    # -- building ---------------------------------------------------------------------------

    def _build_body(self) -> bytes:
        # Parameters oauthlib would mangle go in as a pre-encoded body, which oauthlib keeps
        # pair by pair: it turns a list value into its repr ("audience=['a', 'b']").
        pairs: list[tuple[str, str]] = []
        if self.audience:
            if self.audience_encoding == "joined":
                pairs.append(("audience", " ".join(self.audience)))
            else:
                pairs.extend(("audience", a) for a in self.audience)
        pairs.extend((str(k), str(v)) for k, v in self.extra_params.items())
        client = BackendApplicationClient(self.client_id)
        body: str
        if self.client_auth == "client_secret_post":
            body = client.prepare_request_body(
                body=urlencode(pairs),
                scope=self.scope,
                include_client_id=True,
                client_secret=self._secret,
            )
        else:
            body = client.prepare_request_body(body=urlencode(pairs), scope=self.scope)
        return body.encode("ascii")

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=self._retry)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        return session

    @property
    def cache_key(self) -> str:
        """Identifies what the token is for; the secret is not part of it."""
        material = json.dumps(
            [self.token_url, self.client_id, sorted(self.audience), self.scope,
             sorted(self.extra_params.items())],
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]

    # -- fetching ---------------------------------------------------------------------------

    def fetch(self) -> Token:
        """Ask the token endpoint for a new token; raise a TokenError subclass on failure."""
        issued_at = self._clock()
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if self.client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: form-encode id and secret before Basic encoding.
            basic = requests.auth._basic_auth_str(
                quote(self.client_id, safe=""), quote(self._secret, safe="")
            )
            headers["Authorization"] = basic
        log.debug("requesting a token from %s for client %s", self.token_url, self.client_id)
        try:
            response = self._session.post(
                self.token_url,
                data=self._body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,  # the body carries the secret: never re-send it elsewhere
                **self._send_options,
            )
        except requests.RequestException as exc:
            raise self._unreachable(exc) from _scrubbed(exc)
        with response:
            token = self._parse(response, issued_at)
        log.debug(
            "got token %s from %s, expires in %s s",
            token.fingerprint,
            self.token_url,
            "?" if token.expires_at is None else round(token.expires_at - issued_at),
        )
        return token

    def _unreachable(self, exc: requests.RequestException) -> TokenEndpointUnreachableError:
        reason = _excerpt(str(exc), *self._hidden, limit=300)
        return TokenEndpointUnreachableError(
            f"could not reach the token endpoint {self.token_url}: "
            f"{type(exc).__name__}: {reason}",
            token_url=self.token_url,
        )

    def _parse(self, response: requests.Response, issued_at: float) -> Token:
        status = response.status_code
        ctype = response.headers.get("Content-Type", "") or "no content type"
        url = self.token_url
        if 300 <= status < 400:
            where = response.headers.get("Location", "nowhere")
            raise TokenResponseError(
                f"token endpoint {url} answered {status}, a redirect to {_excerpt(where)}; it "
                "was not followed because the request carries the client secret. Set "
                "token_url to the final URL",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )
        try:
            data = json.loads(response.content)
        except ValueError:
            data = None
        if status in _RETRY_STATUSES:
            # Overloaded or failing, whatever the body says (Hydra's 503 carries an RFC 6749
            # "temporarily_unavailable" body): the same outcome as no answer at all.
            retry_after = self._retry.get_retry_after(response.raw) if response.raw else None
            if retry_after is not None and retry_after > self.max_retry_after:
                why = (
                    f"and asked to retry after {retry_after:g} s, more than max_retry_after="
                    f"{self.max_retry_after:g} s; try again later"
                )
            else:
                why = "even after retries with backoff"
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                said = _excerpt(f"{data['error']}: {data.get('error_description') or ''}",
                                *self._hidden, limit=120)
                why = f"({said}) {why}"
            raise TokenEndpointUnreachableError(
                f"token endpoint {url} answered {status} {why}",
                token_url=url,
                status_code=status,
                retry_after=retry_after,
            )
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            raise self._oauth_error(data, status)
        if status != 200 or not isinstance(data, dict):
            what = "JSON" if data is not None else "no JSON"
            raise TokenResponseError(
                f"token endpoint {url} answered {status} with {ctype} ({what}) instead of a "
                f"JSON token; {_describe(data, response.text, self._hidden)}",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )
        return self._token_from(data, status, ctype, issued_at)

    def _oauth_error(self, data: Mapping[str, Any], status: int) -> OAuthError:
        # oauthlib maps the RFC 6749 §5.2 body onto its error classes; we keep the parts.
        try:
            BackendApplicationClient(self.client_id).parse_request_body_response(json.dumps(data))
        except OAuth2Error as exc:
            error = exc.error
        else:  # pragma: no cover - oauthlib raises for every body that has "error"
            error = str(data["error"])
        # Only the server's own words: oauthlib fills in class defaults (a bare
        # invalid_request becomes "Invalid client_id parameter value.").
        description = data.get("error_description")
        if not isinstance(description, str):
            description = ""
        cls = InvalidClientError if error == "invalid_client" else OAuthError
        return cls(
            _excerpt(error or "unknown_error", *self._hidden, limit=60),
            _excerpt(description, *self._hidden, limit=300),
            token_url=self.token_url,
            status_code=status,
        )

    def _token_from(
        self, data: dict[str, Any], status: int, ctype: str, issued_at: float
    ) -> Token:
        url = self.token_url

        def unusable(problem: str) -> TokenResponseError:
            return TokenResponseError(
                f"token endpoint {url} answered {status} {ctype}, but {problem}",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )

        access_token = data.get("access_token")
        if not isinstance(access_token, str) or not access_token.strip():
            raise unusable("without a usable access_token (missing, empty or not a string)")
        token_type = data.get("token_type")
        if token_type is None:
            token_type = "bearer"  # RFC 6749 requires it; a missing one is taken as bearer
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise unusable(
                f"the token_type is {_excerpt(str(token_type), access_token, limit=30)!r}; "
                "only bearer tokens are supported"
            )
        try:
            expires_in = parse_expires_in(data.get("expires_in"))
        except ValueError as exc:
            raise unusable(str(exc)) from None
        # oauthlib parses the rest (and checks it once more); it accepts only an int
        # expires_in, and signals a changed scope with a raised Warning.
        normalized = dict(data)
        normalized.pop("expires_in", None)
        scope = data.get("scope")
        try:
            BackendApplicationClient(self.client_id).parse_request_body_response(
                json.dumps(normalized), scope=self.scope
            )
        except Warning as changed:
            # RFC 6749 §3.3: the server may grant another scope. Not the user's problem.
            log.debug("token endpoint granted scope %r (asked for %r)", scope, self.scope)
            del changed
        except OAuth2Error as exc:  # pragma: no cover - checked above
            raise unusable(exc.description or exc.error or "oauthlib rejected it") from None
        return Token.issued(
            access_token,
            issued_at=issued_at,
            expires_in=expires_in,
            token_type="bearer",
            scope=scope if isinstance(scope, str) else None,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the token session if we created it (a session you passed in stays open)."""
        if self._own_session:
            self._session.close()

    def __repr__(self) -> str:
        return (
            f"TokenFetcher(token_url={self.token_url!r}, client_id={self.client_id!r}, "
            f"audience={' '.join(self.audience)!r}, scope={self.scope!r})"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._own_session:
            del state["_session"]  # sessions hold sockets; a copy opens its own
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if self._own_session:
            self._session = self._new_session()


def _describe(data: Any, text: str, hidden: Sequence[str]) -> str:
    """What an unusable answer looked like, without quoting a token it may carry."""
    if isinstance(data, dict):
        return f"it is a JSON object with keys {sorted(map(str, data))[:8]}"
    if data is not None:
        return f"it is a JSON {type(data).__name__}"
    return f"it starts: {_excerpt(text, *hidden)!r}"


def _scrubbed(exc: requests.RequestException) -> requests.RequestException:
    """``exc`` without its request: the prepared token request holds the client secret."""
    exc.request = None
    return exc
