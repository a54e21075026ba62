"""The token request: built and parsed by oauthlib, sent by a requests Session of our own.

Transport rule (decided here alone): a token URL, and any URL a token is sent to, must be
``https://``, except loopback hosts (``localhost``, 127.0.0.0/8, ``::1``), which may use plain
``http://`` so a local emulator works. oauthlib's process-wide switches
(``OAUTHLIB_INSECURE_TRANSPORT``, ``OAUTHLIB_RELAX_TOKEN_SCOPE``) are never touched: oauthlib is
only asked to build the body and to parse the answer.
"""

from __future__ import annotations

import contextvars
import functools
import hashlib
import ipaddress
import json
import logging
import os
import random
import time
from typing import Any, Callable, Final, Iterable, Literal, Mapping, Optional, Sequence, Union
from urllib.parse import quote, urlencode, urlsplit

import requests
import urllib3
from oauthlib.oauth2 import BackendApplicationClient
from oauthlib.oauth2.rfc6749.errors import OAuth2Error
from requests.adapters import HTTPAdapter
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import InvalidHeader, MaxRetryError, ProtocolError, ResponseError
from urllib3.util.retry import Retry

from ._checks import (
    Timeout,
    check_http_url,
    check_text,
    check_timeout,
    checked_clock,
    checked_seconds,
    shown,
)
from ._redact import basic_credentials, excerpt, spellings, stand_in
from ._token import HEADER_SAFE, Token, parse_expires_in
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

#: (connect, read) seconds for one token request attempt. Connecting takes one round trip; a
#: token server that has not answered in 10 s is better retried than waited for.
DEFAULT_TIMEOUT: Final = (3.05, 10.0)
#: Retries after the first attempt, for connection errors, timeouts, 429 and 5xx.
DEFAULT_RETRIES: Final = 3
#: More retries than this are refused: with the backoff capped at BACKOFF_MAX, 10 retries
#: already mean minutes of waiting for one token.
MAX_RETRIES: Final = 10
#: A token answer is a few hundred bytes; one larger than this is not a token (a proxy's
#: page, a stream that never ends) and is not read further.
MAX_TOKEN_ANSWER_BYTES: Final = 1024 * 1024
#: Backoff before retry n is min(BACKOFF_MAX, BACKOFF_FACTOR * 2 ** (n - 1)) plus up to
#: BACKOFF_JITTER random seconds, so a fleet that failed together does not retry together.
BACKOFF_FACTOR: Final = 0.5
BACKOFF_MAX: Final = 8.0
BACKOFF_JITTER: Final = 0.5
#: A ``Retry-After`` longer than this is not waited for: the error says what the server asked.
DEFAULT_MAX_RETRY_AFTER: Final = 30.0
_RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
#: Form fields the token request sets itself; extra_params may not override them.
_RESERVED_PARAMS: Final = frozenset(
    {"grant_type", "client_id", "client_secret", "audience", "scope"}
)
_CHUNK: Final = 16384

_sleep = time.sleep  # the only sleeping in the package; tests replace it
_monotonic = time.monotonic  # the deadline of reading an answer; tests replace it


class _NoAuth(requests.auth.AuthBase):
    """Signs nothing: the token request carries its own client authentication."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


_NO_AUTH: Final = _NoAuth()


class _Hidden:
    """A value kept out of ``repr``/``str``: ``vars()`` dumps, debuggers, error reporters."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<hidden>"

    __str__ = __repr__


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


def check_secure_url(url: Any, name: str, *, carries: str, example: str) -> str:
    """``url`` (stripped) if it may receive ``carries`` under the transport rule above, else
    a ConfigurationError naming ``name``."""
    checked = check_http_url(url, name, example=example)
    if not transport_is_safe(checked):
        raise ConfigurationError(
            f"{name} {checked!r:.200} uses plain http to a non-loopback host: {carries} "
            "would travel unencrypted. Use https:// (plain http is allowed for localhost "
            "only)"
        )
    return checked


def check_token_url(url: Any, name: str = "token_url") -> str:
    """Return ``url`` if it may receive the client secret, else raise ConfigurationError."""
    return check_secure_url(
        url, name, carries="the client secret", example="https://auth.example.com/oauth2/token"
    )


def normalize_audience(audience: Any) -> tuple[str, ...]:
    """Audience items as a tuple; a string is split on single spaces as the provider does."""
    if audience is None:
        return ()
    if isinstance(audience, str):
        if "" in audience.split(" ") and audience.strip():
            raise ConfigurationError(
                f"audience {audience!r:.120} has an empty item (spaces at an end, or two in a "
                "row): separate audiences by single spaces, or pass a list of strings"
            )
        items: Sequence[Any] = audience.split(" ")
    elif isinstance(audience, (bytes, bytearray)) or not isinstance(audience, Iterable):
        raise ConfigurationError(
            f"audience must be a str or an iterable of str, got {type(audience).__name__}"
        )
    else:
        items = list(audience)
    for item in items:
        if not isinstance(item, str):
            raise ConfigurationError(
                f"audience items must be strings, got {type(item).__name__}"
            )
        check_text(item, "audience")
        if not item or item != item.strip() or any(ch.isspace() for ch in item):
            raise ConfigurationError(
                f"audience item {item!r:.80} is empty or contains whitespace; pass each "
                "audience as its own string, e.g. audience=['api.ad4mat.net', "
                "'api.advanced-store.com']"
            )
    return tuple(items)


def normalize_scope(scope: Any) -> Optional[str]:
    """Scopes as one space-separated string (RFC 6749 §3.3), or None for no scope."""
    if scope is None:
        return None
    if isinstance(scope, str):
        return " ".join(check_text(scope, "scope").split()) or None
    if isinstance(scope, (bytes, bytearray)) or not isinstance(scope, Iterable):
        raise ConfigurationError(
            f"scope must be a str or an iterable of str, got {type(scope).__name__}"
        )
    items = list(scope)
    for item in items:
        if not isinstance(item, str) or not item or any(ch.isspace() for ch in item):
            raise ConfigurationError(
                f"scope items must be non-empty strings without spaces, got {item!r:.60}"
            )
        check_text(item, "scope")
    return " ".join(items) or None


def check_extra_params(params: Any) -> dict[str, str]:
    """``extra_params`` as a dict of str to str, without the fields the request sets itself."""
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise ConfigurationError(
            f"extra_params must be a mapping of str to str, got {type(params).__name__}"
        )
    for key, value in params.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ConfigurationError(
                f"extra_params must map str to str, got {key!r:.40}: {type(value).__name__}"
            )
        check_text(key, "extra_params")
        check_text(value, "extra_params")
        if key in _RESERVED_PARAMS:
            raise ConfigurationError(
                f"extra_params may not set {key!r}: the token request sets it (use the "
                "client_id, client_secret, audience and scope options)"
            )
    return dict(params)


class _TokenRetry(Retry):
    """urllib3's Retry with jitter, a bounded Retry-After, and a replaceable sleep."""

    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER
    jitter: float = BACKOFF_JITTER
    backoff_cap: float = BACKOFF_MAX

    def get_retry_after(self, response: Any) -> Optional[float]:
        return _retry_after(response.headers)

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
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        if response is not None:
            # The answer is retried, so its body is not needed: urllib3 would read it to the
            # end to reuse the connection (an endless body would hold the fetch for ever).
            # Closing it costs a new connection for the retry.
            response.close()
        return retry

    def sleep(self, response: Any = None) -> None:
        if self.respect_retry_after_header and response is not None:
            wait = self.get_retry_after(response)
            if wait is not None:
                _sleep(wait)
                return
        backoff = self.get_backoff_time()
        if backoff > 0:
            _sleep(backoff)


#: The rest of one fetch's retry budget, while that fetch re-posts after an answer that
#: broke off: one budget for every kind of failure, so a fetch never makes more than
#: ``retries + 1`` attempts. A context variable, so concurrent fetches never share it.
_BUDGET: contextvars.ContextVar[Optional[Retry]] = contextvars.ContextVar(
    "requests_advanced_auth_retry_budget", default=None
)


class _TokenAdapter(HTTPAdapter):
    """The token session's adapter: its Retry, or the rest of the current fetch's budget."""

    @property
    def max_retries(self) -> Retry:
        return _BUDGET.get() or self._retry

    @max_retries.setter
    def max_retries(self, value: Retry) -> None:
        self._retry = value


def make_retry(retries: Union[int, Retry], max_retry_after: float) -> Retry:
    """The token session's Retry: an int gives ours; a Retry instance keeps its settings
    but gets ours' bounds (``max_retry_after``, the backoff cap, no draining of retried
    answers), and must have a total of at most MAX_RETRIES."""
    if isinstance(retries, Retry):
        total = retries.total
        if isinstance(total, bool) or not isinstance(total, int) or not 0 <= total <= MAX_RETRIES:
            raise ConfigurationError(
                f"retries: a urllib3 Retry for the token request needs total=0..{MAX_RETRIES} "
                f"(each attempt can take a read timeout), got total={total!r}"
            )
        bounded = _TokenRetry.__new__(_TokenRetry)
        bounded.__dict__.update(vars(retries))  # a Retry is its settings (see Retry.new)
        bounded.max_retry_after = max_retry_after
        # The last answer comes back to us, so that the error can say what it was.
        bounded.raise_on_status = bounded.raise_on_redirect = False
        return bounded
    if (
        isinstance(retries, bool)
        or not isinstance(retries, int)
        or not 0 <= retries <= MAX_RETRIES
    ):
        raise ConfigurationError(
            f"retries must be an int from 0 to {MAX_RETRIES} or a urllib3 Retry, "
            f"got {retries!r:.40}"
        )
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


class _CutShort(Exception):
    """The answer broke off while its body was being read (a retryable read error).

    It holds only a scrubbed description: the original error may quote echoed request data
    (the secret), and neither it nor its frames should stay reachable.
    """


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
            check_text(value, name)
        if client_auth not in ("client_secret_post", "client_secret_basic"):
            raise ConfigurationError(
                f"client_auth must be 'client_secret_post' or 'client_secret_basic', "
                f"got {client_auth!r:.40}"
            )
        if audience_encoding not in ("joined", "repeated"):
            raise ConfigurationError(
                f"audience_encoding must be 'joined' or 'repeated', got {audience_encoding!r:.40}"
            )
        if proxies is not None and (
            not isinstance(proxies, Mapping)
            or not all(isinstance(k, str) and isinstance(v, (str, type(None)))
                       for k, v in proxies.items())
        ):
            raise ConfigurationError(
                "proxies must map a scheme to a proxy URL, like {'https': 'http://proxy:3128'}, "
                f"got {shown(proxies)}"
            )
        if verify is not None and not isinstance(verify, (bool, str)):
            raise ConfigurationError(
                f"verify must be True, False or the path of a CA bundle, got {verify!r:.40}"
            )
        if isinstance(verify, str) and not os.path.exists(verify):
            # An empty string would even turn verification off (requests reads it as False).
            raise ConfigurationError(
                f"verify must be True, False or the path of a CA bundle (a file or a "
                f"directory); {verify!r:.200} does not exist"
            )
        pair = isinstance(cert, tuple) and len(cert) == 2
        if cert is not None and not (
            isinstance(cert, str) or (pair and all(isinstance(c, str) for c in cert))
        ):
            raise ConfigurationError(
                "cert must be the path of a client certificate or a (cert, key) pair of "
                f"paths, got {cert!r:.40}"
            )
        for path in (cert,) if isinstance(cert, str) else cert or ():
            if not os.path.isfile(path):
                raise ConfigurationError(f"cert: the file {path!r:.200} does not exist")
        if token_session is not None and not isinstance(token_session, requests.Session):
            raise ConfigurationError(
                f"token_session must be a requests.Session, got {type(token_session).__name__}"
            )
        checked_clock(clock)
        self.client_id = client_id
        self.token_url = check_token_url(token_url)
        self.audience = tuple(audience)
        self.audience_encoding = audience_encoding
        self.scope = scope
        self.extra_params = check_extra_params(extra_params)
        self.client_auth = client_auth
        self.timeout = check_timeout(timeout)
        self.max_retry_after = checked_seconds(max_retry_after, "max_retry_after")
        self._retry = make_retry(retries, self.max_retry_after)
        if urlsplit(self.token_url).scheme == "http":
            # Plain http is allowed to loopback only: a proxy (configured, or from
            # HTTP_PROXY/ALL_PROXY) would carry the secret in the clear. None removes them.
            proxies = {**(proxies or {}), "http": None, "all": None}  # type: ignore[dict-item]
        self._send_options: dict[str, Any] = {
            k: v for k, v in (("verify", verify), ("cert", cert), ("proxies", proxies))
            if v is not None
        }
        # Kept out of repr: vars() of this object must not show them.
        self._secret = _Hidden(client_secret)
        self._hidden = _Hidden(
            spellings(client_secret) | basic_credentials(client_id, client_secret)
        )
        self._clock: Callable[[], float] = clock
        self._body = _Hidden(self._build_body())
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
                client_secret=self._secret.value,
            )
        else:
            body = client.prepare_request_body(body=urlencode(pairs), scope=self.scope)
        return body.encode("ascii")

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        adapter = _TokenAdapter(max_retries=self._retry)
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
        log.debug("requesting a token from %s for client %s", self.token_url, self.client_id)
        # urllib3's Retry (on our adapter) covers everything up to the answer's headers; a
        # body that breaks off after them is retried here, counted by the same Retry and
        # with its backoff. A session of the caller's decides its own retries.
        # Errors are raised outside the except blocks: their __context__ would otherwise be
        # the original exception, whose text and frames may hold what a server echoed.
        own = self._own_session
        budget = _BUDGET.set(None)
        try:
            while True:
                response = self._post()
                try:
                    with response:
                        body = self._read(response)
                    break
                except _CutShort as exc:
                    cut = exc
                # What urllib3 already spent on this post (its Retry, as it left it), plus
                # this failure.
                left = (getattr(response.raw, "retries", None) or self._retry) if own else None
                _BUDGET.set(self._after_cut(left, cut, response.status_code))
        finally:
            _BUDGET.reset(budget)
        token = self._parse(response, body, issued_at)
        lifetime = "?" if token.expires_at is None else f"{token.expires_at - issued_at:.0f}"
        log.debug(
            "got token %s from %s, expires in %s s", token.fingerprint, self.token_url, lifetime
        )
        return token

    def _post(self) -> requests.Response:
        try:
            return self._session.post(
                self.token_url,
                data=self._body.value,
                headers=self._headers(),
                timeout=self.timeout,
                allow_redirects=False,  # the body carries the secret: never re-send it elsewhere
                stream=True,  # read by _read, bounded in size and time
                # Never signed by the session's own auth (it may be this very auth, which
                # would wait on itself), nor by a .netrc entry.
                auth=_NO_AUTH,
                **self._send_options,
            )
        except requests.RequestException as exc:
            error, clean = self._unreachable(exc), stand_in(exc, self._hidden.value)
        # Out of the except (no __context__), and with no local left that holds the
        # original error: its text and frames may quote the request.
        raise error from clean

    def _headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Content-Type": "application/x-www-form-urlencoded",
        }
        if self.client_auth == "client_secret_basic":
            # RFC 6749 §2.3.1: form-encode id and secret before Basic encoding.
            headers["Authorization"] = requests.auth._basic_auth_str(
                quote(self.client_id, safe=""), quote(self._secret.value, safe="")
            )
        return headers

    def _read(self, response: requests.Response) -> bytes:
        """The answer's body, at most MAX_TOKEN_ANSWER_BYTES, within the read timeout.

        The read timeout bounds each wait for data; this also bounds the whole body, so a
        server that trickles bytes cannot hold the token request (and every thread waiting
        for it) for longer.
        """
        budget = self.timeout[1] if isinstance(self.timeout, tuple) else self.timeout
        deadline = _monotonic() + budget
        raw = response.raw
        read: Callable[[], bytes]
        if isinstance(raw, urllib3.HTTPResponse):  # read1: what has arrived, no more
            read = functools.partial(raw.read1, _CHUNK, decode_content=True)
        else:  # a transport of the caller's own, or a test double: a file-like body
            read = functools.partial(raw.read, _CHUNK)
        chunks: list[bytes] = []
        size = 0
        while True:
            try:
                chunk = read()
            except (Urllib3Error, OSError) as exc:
                cut = f"{type(exc).__name__}: {excerpt(str(exc), self._hidden.value, 200)}"
            else:
                cut = ""
            if cut:
                raise _CutShort(cut)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > MAX_TOKEN_ANSWER_BYTES:
                ctype = self._content_type(response)
                raise TokenResponseError(
                    f"token endpoint {self.token_url} answered {response.status_code} with "
                    f"{ctype} larger than {MAX_TOKEN_ANSWER_BYTES} bytes: not a token "
                    "answer; it was not read further",
                    token_url=self.token_url,
                    status_code=response.status_code,
                    content_type=ctype,
                )
            chunks.append(chunk)
            if _monotonic() > deadline:
                raise TokenEndpointUnreachableError(
                    f"token endpoint {self.token_url} answered {response.status_code} but "
                    f"did not finish its answer within the read timeout ({budget:g} s)",
                    token_url=self.token_url,
                    status_code=response.status_code,
                )

    def _after_cut(self, retry: Optional[Retry], cut: _CutShort, status: int) -> Retry:
        """Count a broken-off answer against ``retry`` and wait its backoff, or give up."""
        gave_up = retry is None
        if retry is not None:
            try:  # counted as a read error: a ProtocolError to urllib3
                retry = retry.increment(method="POST", url=self.token_url,
                                        error=ProtocolError(str(cut)))
            except (MaxRetryError, Urllib3Error, OSError):  # out of retries, or POST not retried
                gave_up = True
        if gave_up or retry is None:
            raise TokenEndpointUnreachableError(
                f"could not reach the token endpoint {self.token_url}: it answered {status}, "
                f"but the answer was cut short ({cut})",
                token_url=self.token_url,
            ) from requests.ConnectionError(str(cut))
        retry.sleep()
        return retry

    def _unreachable(self, exc: requests.RequestException) -> TokenEndpointUnreachableError:
        reason = excerpt(str(exc), self._hidden.value, 300)
        return TokenEndpointUnreachableError(
            f"could not reach the token endpoint {self.token_url}: "
            f"{type(exc).__name__}: {reason}",
            token_url=self.token_url,
        )

    def _content_type(self, response: requests.Response) -> str:
        ctype = response.headers.get("Content-Type", "") or "no content type"
        return excerpt(ctype, self._hidden.value, 80)

    def _parse(self, response: requests.Response, body: bytes, issued_at: float) -> Token:
        status = response.status_code
        ctype = self._content_type(response)
        url = self.token_url
        if 300 <= status < 400:
            where = excerpt(response.headers.get("Location", "nowhere"), self._hidden.value, 80)
            raise TokenResponseError(
                f"token endpoint {url} answered {status}, a redirect to {where}; it was not "
                "followed because the request carries the client secret. Set token_url to "
                "the final URL",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        if status in _RETRY_STATUSES:
            # Overloaded or failing, whatever the body says (Hydra's 503 carries an RFC 6749
            # "temporarily_unavailable" body): the same outcome as no answer at all.
            retry_after = _retry_after(response.headers)
            if retry_after is not None and retry_after > self.max_retry_after:
                why = (
                    f"and asked to retry after {retry_after:g} s, more than max_retry_after="
                    f"{self.max_retry_after:g} s; try again later"
                )
            else:
                why = "even after retries with backoff"
            if isinstance(data, dict) and isinstance(data.get("error"), str):
                said = excerpt(f"{data['error']}: {data.get('error_description') or ''}",
                               self._hidden.value, 120)
                why = f"({said}) {why}"
            raise TokenEndpointUnreachableError(
                f"token endpoint {url} answered {status} {why}",
                token_url=url,
                status_code=status,
                retry_after=retry_after,
            )
        # RFC 6749 §5.2: an error answer is a 400 (401 for invalid_client). Another status
        # with an "error" (a 404 from a wrong path) is not the token endpoint's verdict.
        if status in (400, 401, 403) and isinstance(data, dict) and isinstance(
            data.get("error"), str
        ):
            raise self._oauth_error(data, status)
        if status != 200 or not isinstance(data, dict):
            what = "JSON" if data is not None else "no JSON"
            text = body.decode(response.encoding or "utf-8", "replace")
            raise TokenResponseError(
                f"token endpoint {url} answered {status} with {ctype} ({what}) instead of a "
                f"JSON token; {_describe(data, text, self._hidden.value)}",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )
        return self._token_from(data, status, ctype, issued_at)

    def _oauth_error(self, data: Mapping[str, Any], status: int) -> OAuthError:
        # oauthlib maps the RFC 6749 §5.2 body onto its error classes; we keep the parts.
        # It gets the two fields of §5.2 only: it would parse (and trip over) any other, as
        # an expires_in of "abc" or a scope of 123.
        description = data.get("error_description")
        if not isinstance(description, str):
            description = ""
        parts = {"error": data["error"], "error_description": description}
        try:
            BackendApplicationClient(self.client_id).parse_request_body_response(
                json.dumps(parts)
            )
        except OAuth2Error as exc:
            error = exc.error
        except Exception:  # pragma: no cover - oauthlib's own trouble: keep the server's word
            error = str(data["error"])
        else:  # pragma: no cover - oauthlib raises for every body that has "error"
            error = str(data["error"])
        # Only the server's own words: oauthlib fills in class defaults (a bare
        # invalid_request becomes "Invalid client_id parameter value.").
        cls = InvalidClientError if error == "invalid_client" else OAuthError
        return cls(
            excerpt(error or "unknown_error", self._hidden.value, 60),
            excerpt(description, self._hidden.value, 300),
            token_url=self.token_url,
            status_code=status,
        )

    def _token_from(
        self, data: dict[str, Any], status: int, ctype: str, issued_at: float
    ) -> Token:
        url = self.token_url
        access_token = data.get("access_token")
        # What the answer says may echo the request: the secret is blanked from every part
        # quoted, and the token from everything but the Token itself.
        hidden = set(self._hidden.value)
        if isinstance(access_token, str):
            hidden |= spellings(access_token)

        def unusable(problem: str) -> TokenResponseError:
            problem = excerpt(problem, hidden, 300)
            return TokenResponseError(
                f"token endpoint {url} answered {status} {ctype}, but {problem}",
                token_url=url,
                status_code=status,
                content_type=ctype,
            )

        if not isinstance(access_token, str) or not access_token.strip():
            raise unusable("without a usable access_token (missing, empty or not a string)")
        if not HEADER_SAFE.fullmatch(access_token):
            raise unusable(
                "the access_token cannot be sent in an HTTP header: it holds spaces, control "
                "characters or non-ASCII characters"
            )
        token_type = data.get("token_type")
        if token_type is None:
            token_type = "bearer"  # RFC 6749 requires it; a missing one is taken as bearer
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise unusable(
                f"the token_type is {excerpt(str(token_type), hidden, 30)!r}; "
                "only bearer tokens are supported"
            )
        try:
            expires_in = parse_expires_in(data.get("expires_in"))
        except ValueError as exc:
            problem: Optional[str] = str(exc)  # raised below, out of the except: the
        else:  # original would be its __context__, and it quotes the value
            problem = None
        if problem is not None:
            raise unusable(problem)
        # oauthlib parses the rest (and checks it once more); it accepts only an int
        # expires_in, and signals a changed scope with a raised Warning.
        normalized = dict(data)
        normalized.pop("expires_in", None)
        scope = data.get("scope")
        if not isinstance(scope, str) or any(form in scope for form in self._hidden.value):
            # RFC 6749 §3.3 says a string; anything else is no scope, and so is one that
            # echoes the secret (it would show in the Token's repr and in logs).
            normalized.pop("scope", None)
            scope = None
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
        except (ValueError, TypeError, AttributeError):  # pragma: no cover - oauthlib's own
            raise unusable("oauthlib could not read it") from None
        return Token.issued(
            access_token,
            issued_at=issued_at,
            expires_in=expires_in,
            token_type="bearer",
            scope=scope,
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


def _describe(data: Any, text: str, hidden: Iterable[str]) -> str:
    """What an unusable answer looked like, without quoting a token it may carry."""
    if isinstance(data, dict):
        keys = [excerpt(str(key), hidden, 40) for key in sorted(map(str, data))[:8]]
        return f"it is a JSON object with keys {keys}"
    if data is not None:
        return f"it is a JSON {type(data).__name__}"
    return f"it starts: {excerpt(text, hidden, 80)!r}"


def _retry_after(headers: Mapping[str, str]) -> Optional[float]:
    """``Retry-After`` in seconds; None when absent or unreadable.

    RFC 9110 §10.2.3: seconds or an HTTP date. Anything else ("abc", "1.5", "-5") counts as
    absent, so the backoff applies: urllib3 alone would give up at once instead.
    """
    value = headers.get("Retry-After")
    if value is None:
        return None
    try:
        return Retry(0).parse_retry_after(value)
    except InvalidHeader:
        return None
