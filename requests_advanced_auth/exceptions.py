"""Errors raised by requests_advanced_auth.

Every error derives from :class:`requests.RequestException`, so code that already catches
requests' errors keeps working. No message ever contains the client secret or a token.

::

    requests.RequestException
    └── AdvancedAuthError
        ├── ConfigurationError (also ValueError)  bad option or environment variable
        ├── PageError                             a page of a data pull failed (resume from .page)
        └── TokenError                            the token could not be obtained
            ├── OAuthError                        an RFC 6749 §5.2 error answer
            │   └── InvalidClientError            ... invalid_client: credentials, auth method
            ├── TokenResponseError                an answer that is not a usable token (HTML, ...)
            └── TokenEndpointUnreachableError     network, timeout, 5xx/429 after retries
"""

from __future__ import annotations

from typing import Any, Optional

import requests

__all__ = [
    "AdvancedAuthError",
    "ConfigurationError",
    "InvalidClientError",
    "OAuthError",
    "PageError",
    "TokenEndpointUnreachableError",
    "TokenError",
    "TokenResponseError",
]


class AdvancedAuthError(requests.RequestException):
    """Root of this package's errors."""


class ConfigurationError(AdvancedAuthError, ValueError):
    """An option or environment variable is missing or invalid."""


class PageError(AdvancedAuthError):
    """A page of a paginated pull failed; pass ``start_page=error.page`` to resume."""

    def __init__(self, message: str, *, page: int, status_code: Optional[int] = None):
        super().__init__(f"page {page}: {message} (resume with start_page={page})")
        self.page = page
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, self.__dict__))


class TokenError(AdvancedAuthError):
    """A token could not be obtained from the token endpoint."""

    #: What to check, in one sentence; also appended to the message.
    hint: str = ""

    def __init__(self, message: str, *, token_url: str = "", status_code: Optional[int] = None):
        text = f"{message} ({self.hint})" if self.hint else message
        super().__init__(text)
        self.token_url = token_url
        self.status_code = status_code

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as cls(*args), which would run __init__ on the finished message
        # (and break keyword-only arguments); restore the state as it is instead, so errors
        # cross multiprocessing boundaries intact.
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(
    cls: type[AdvancedAuthError], args: tuple[Any, ...], state: dict[str, Any]
) -> AdvancedAuthError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


# What to check for each RFC 6749 §5.2 error code; the server's own description comes first.
_OAUTH_HINTS = {
    "invalid_client": (
        "check the client id and secret; if they are right, the server may expect the other "
        "client authentication method: pass client_auth='client_secret_basic' or "
        "'client_secret_post'"
    ),
    "invalid_request": (
        "check the audience (each must be allowed for this client) and any extra token parameters"
    ),
    "unauthorized_client": (
        "this client is not allowed the client_credentials grant; check its registration with "
        "the provider"
    ),
    "invalid_scope": "check the scope option: the server rejected the requested scope",
    "invalid_grant": "the server rejected the grant; check the client's registration",
    "unsupported_grant_type": "the server does not support client_credentials at this URL",
}


class OAuthError(TokenError):
    """The token endpoint answered an OAuth 2.0 error (RFC 6749 §5.2)."""

    def __init__(
        self,
        error: str,
        description: str = "",
        *,
        token_url: str = "",
        status_code: Optional[int] = None,
    ):
        self.error = error
        self.error_description = description
        self.hint = _OAUTH_HINTS.get(error, "see the provider's documentation for this error")
        said = f": {description}" if description else ""
        super().__init__(
            f"token endpoint {token_url} answered {status_code} {error}{said}",
            token_url=token_url,
            status_code=status_code,
        )


class InvalidClientError(OAuthError):
    """``invalid_client``: unknown client, wrong secret, or the other client auth method."""


class TokenResponseError(TokenError):
    """The token endpoint answered, but not with a usable token."""

    hint = (
        "check token_url: it must be the OAuth 2.0 token endpoint itself, not a login page or a "
        "proxy"
    )

    def __init__(
        self,
        message: str,
        *,
        token_url: str = "",
        status_code: Optional[int] = None,
        content_type: str = "",
    ):
        super().__init__(message, token_url=token_url, status_code=status_code)
        self.content_type = content_type


class TokenEndpointUnreachableError(TokenError):
    """No token answer: connection failed, timed out, or 5xx/429 persisted through retries."""

    hint = (
        "check the network, proxies and token_url; the token request was retried with "
        "backoff as far as the retries option allows"
    )

    def __init__(
        self,
        message: str,
        *,
        token_url: str = "",
        status_code: Optional[int] = None,
        retry_after: Optional[float] = None,
    ):
        super().__init__(message, token_url=token_url, status_code=status_code)
        #: Seconds the server asked us to wait (``Retry-After``), when it said so.
        self.retry_after = retry_after
