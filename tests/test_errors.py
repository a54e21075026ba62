"""The error tree: every error is a requests error, and errors survive pickling intact."""

from __future__ import annotations

import pickle

import pytest
import requests

from requests_advanced_auth import (
    AdvancedAuthError,
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    TokenEndpointUnreachableError,
    TokenError,
    TokenResponseError,
)
from requests_advanced_auth import exceptions as exceptions_module

URL = "https://auth.example.com/oauth2/token"

ALL_ERRORS = [
    AdvancedAuthError,
    ConfigurationError,
    TokenError,
    OAuthError,
    InvalidClientError,
    TokenResponseError,
    TokenEndpointUnreachableError,
]


@pytest.mark.parametrize("cls", ALL_ERRORS)
def test_every_error_is_a_requests_exception_and_an_advanced_auth_error(cls):
    assert issubclass(cls, requests.RequestException)
    assert issubclass(cls, AdvancedAuthError)


def test_the_tree_has_the_documented_shape():
    assert issubclass(ConfigurationError, ValueError)
    for cls in (OAuthError, TokenResponseError, TokenEndpointUnreachableError):
        assert issubclass(cls, TokenError)
    assert issubclass(InvalidClientError, OAuthError)
    assert not issubclass(TokenError, ValueError)
    assert not issubclass(TokenResponseError, OAuthError)
    assert not issubclass(TokenEndpointUnreachableError, OAuthError)


def test_every_error_is_exported_from_the_exceptions_module():
    for cls in ALL_ERRORS:
        assert getattr(exceptions_module, cls.__name__) is cls
        assert cls.__name__ in exceptions_module.__all__


def test_existing_requests_handlers_catch_our_errors():
    with pytest.raises(requests.RequestException):
        raise TokenEndpointUnreachableError("down", token_url=URL)
    with pytest.raises(ValueError, match="bad option"):
        raise ConfigurationError("bad option")


def test_oauth_error_message_names_status_error_description_and_what_to_check():
    error = OAuthError("invalid_request", "audience x not allowed", token_url=URL, status_code=400)
    text = str(error)
    assert URL in text
    assert "400" in text
    assert "invalid_request" in text
    assert "audience x not allowed" in text
    assert "check the audience" in text
    assert (error.error, error.error_description, error.status_code, error.token_url) == (
        "invalid_request", "audience x not allowed", 400, URL,
    )


def test_invalid_client_message_suggests_the_other_client_auth_method():
    error = InvalidClientError("invalid_client", "", token_url=URL, status_code=401)
    assert "client id and secret" in str(error)
    assert "client_secret_basic" in str(error)


def test_unknown_oauth_error_code_still_gets_a_hint():
    error = OAuthError("server_said_no", token_url=URL, status_code=400)
    assert "server_said_no" in str(error)
    assert "documentation" in str(error)


def _examples():
    return [
        AdvancedAuthError("plain"),
        ConfigurationError("token_url is required"),
        TokenError("no token", token_url=URL, status_code=None),
        OAuthError("invalid_scope", "scope x", token_url=URL, status_code=400),
        InvalidClientError("invalid_client", "wrong secret", token_url=URL, status_code=401),
        TokenResponseError(
            "HTML instead of JSON", token_url=URL, status_code=200, content_type="text/html"
        ),
        TokenEndpointUnreachableError(
            "answered 429", token_url=URL, status_code=429, retry_after=120.0
        ),
    ]


ATTRIBUTES = (
    "token_url", "status_code", "error", "error_description", "hint", "content_type",
    "retry_after",
)


@pytest.mark.parametrize("error", _examples(), ids=lambda e: type(e).__name__)
def test_errors_pickle_round_trip_with_message_and_attributes(error):
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes
    assert type(again) is type(error)
    assert str(again) == str(error)
    assert again.args == error.args
    for name in ATTRIBUTES:
        assert getattr(again, name, "absent") == getattr(error, name, "absent"), name
    # the message is not rebuilt (no hint appended twice)
    assert str(again).count("(check") <= 1


def test_unpickled_error_is_still_caught_as_its_base_types():
    again = pickle.loads(pickle.dumps(InvalidClientError("invalid_client", status_code=401)))  # noqa: S301
    with pytest.raises(OAuthError):
        raise again
