"""Every exception the SDK raises on purpose, importable from one place.

These are the very classes defined in `tilde.core.errors` (re-exported, not copies), so ``except`` clauses
work whichever module a caller imports them from. The tree::

    TildeError
    ├── ConfigurationError
    ├── ClientClosedError           the client (or the default client a handle came from) was closed
    ├── TransportError
    │   ├── APIConnectionError      refused, dropped, protocol or proxy failure
    │   └── APITimeoutError         any timeout (not the builtin TimeoutError, which it does not shadow)
    ├── SerializationError
    ├── SandboxError
    │   └── CommandError            ``.result`` is the command's `RunResult`
    └── APIError                    ``.headers`` (credentials left out), ``.request_id``
        ├── BadRequestError (400), AuthenticationError (401), ForbiddenError (403), NotFoundError (404)
        ├── ConflictError (409), GoneError (410), PreconditionFailedError (412), LockedError (423)
        ├── RateLimitError (429)    ``.retry_after``: seconds the server asked to wait, or None
        └── ServerError (>= 500)
"""

# Re-export tilde.core.errors' public surface as it is, so this module's names cannot drift from it.
from tilde.core.errors import *  # noqa: F403
from tilde.core.errors import __all__ as __all__
