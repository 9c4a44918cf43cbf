"""Compatibility module: the client and the names code written for earlier SDK releases imports from here.

New code can simply use `tilde.Client`.
"""

from tilde._composed import Client
from tilde.core.config import resolve_config
from tilde.core.credentials import ENV_SANDBOX_CREDENTIALS_URI, SandboxCredentialsProvider
from tilde.core.errors import (
    APIError,
    ConfigurationError,
    SerializationError,
    TildeError,
    TransportError,
    api_error_for_status,
)

__all__ = [
    "ENV_SANDBOX_CREDENTIALS_URI",
    "APIError",
    "Client",
    "ConfigurationError",
    "SandboxCredentialsProvider",
    "SerializationError",
    "TildeError",
    "TransportError",
    "api_error_for_status",
    "resolve_config",
]
