"""OAuth 2.0 client-credentials auth for requests, made for Advanced-Store's advanced API.

::

    session = requests.Session()
    session.auth = AdvancedAuth(client_id, client_secret)
"""

import logging

from ._auth import AdvancedAuth, ClientCredentialsAuth, HeaderStyle
from ._cache import MemoryTokenCache, TokenCache
from ._filecache import CacheEntry, FileTokenCache
from ._rediscache import RedisTokenCache
from ._token import DEFAULT_LEEWAY, Token, TokenState
from .exceptions import (
    AdvancedAuthError,
    ConfigurationError,
    InvalidClientError,
    OAuthError,
    PageError,
    TokenEndpointUnreachableError,
    TokenError,
    TokenResponseError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_LEEWAY",
    "AdvancedAuth",
    "AdvancedAuthError",
    "CacheEntry",
    "ClientCredentialsAuth",
    "ConfigurationError",
    "FileTokenCache",
    "HeaderStyle",
    "InvalidClientError",
    "MemoryTokenCache",
    "OAuthError",
    "PageError",
    "RedisTokenCache",
    "Token",
    "TokenCache",
    "TokenEndpointUnreachableError",
    "TokenError",
    "TokenResponseError",
    "TokenState",
    "__version__",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
