"""Transport, configuration, credentials, errors and pagination for the Tilde SDK.

`Client` and `AsyncClient` are the connections the resource layers (tilde-data, tilde-compute,
tilde-admin) build on; `tilde.core.errors` holds the exception tree; auth providers plug in through
`tilde.core.hookspecs`.
"""

from tilde.core._version import __version__
from tilde.core.async_client import AsyncClient
from tilde.core.auth import AuthProvider, AuthSettings
from tilde.core.client import Client
from tilde.core.config import (
    DEFAULT_ENDPOINT_URL,
    DEFAULT_SANDBOX_IMAGE,
    Configuration,
    read_config_file,
    resolve_config,
)
from tilde.core.credentials import (
    ENV_SANDBOX_CREDENTIALS_URI,
    CredentialsProvider,
    SandboxCredentials,
    SandboxCredentialsProvider,
    StaticTokenProvider,
)
from tilde.core.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    CommandError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    GoneError,
    LockedError,
    NotFoundError,
    PreconditionFailedError,
    RateLimitError,
    SandboxError,
    SerializationError,
    ServerError,
    TildeError,
    TransportError,
    api_error_for_status,
)
from tilde.core.hookspecs import hookimpl
from tilde.core.pagination import DEFAULT_PAGE_SIZE, AsyncPaginatedIterator, PageResult, PaginatedIterator
from tilde.core.plugins import ENTRY_POINT_GROUP, make_plugin_manager

__all__ = [
    "DEFAULT_ENDPOINT_URL",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SANDBOX_IMAGE",
    "ENTRY_POINT_GROUP",
    "ENV_SANDBOX_CREDENTIALS_URI",
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AsyncClient",
    "AsyncPaginatedIterator",
    "AuthProvider",
    "AuthSettings",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientClosedError",
    "CommandError",
    "Configuration",
    "ConfigurationError",
    "ConflictError",
    "CredentialsProvider",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PageResult",
    "PaginatedIterator",
    "PreconditionFailedError",
    "RateLimitError",
    "SandboxCredentials",
    "SandboxCredentialsProvider",
    "SandboxError",
    "SerializationError",
    "ServerError",
    "StaticTokenProvider",
    "TildeError",
    "TransportError",
    "__version__",
    "api_error_for_status",
    "hookimpl",
    "make_plugin_manager",
    "read_config_file",
    "resolve_config",
]
