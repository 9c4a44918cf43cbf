"""Every exception the SDK raises on purpose, importable from one place.

These are the very classes defined in `tilde.core.errors` (re-exported, not copies), so ``except`` clauses
work whichever module a caller imports them from. The tree::

    TildeError
    ├── ConfigurationError
    ├── TransportError
    ├── SerializationError
    ├── SandboxError
    │   └── CommandError
    └── APIError
        ├── BadRequestError (400), AuthenticationError (401), ForbiddenError (403), NotFoundError (404)
        ├── ConflictError (409), GoneError (410), PreconditionFailedError (412), LockedError (423)
        └── ServerError (>= 500)
"""

from tilde.core.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CommandError,
    ConfigurationError,
    ConflictError,
    ForbiddenError,
    GoneError,
    LockedError,
    NotFoundError,
    PreconditionFailedError,
    SandboxError,
    SerializationError,
    ServerError,
    TildeError,
    TransportError,
    api_error_for_status,
)

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PreconditionFailedError",
    "SandboxError",
    "SerializationError",
    "ServerError",
    "TildeError",
    "TransportError",
    "api_error_for_status",
]
