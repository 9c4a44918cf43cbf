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

# Re-export tilde.core.errors' public surface as it is, so this module's names cannot drift from it.
from tilde.core.errors import *  # noqa: F403
from tilde.core.errors import __all__ as __all__
