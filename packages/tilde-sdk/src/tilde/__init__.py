"""The Tilde Python SDK: versioned object storage and sandboxed compute for agents.

``import tilde`` gives the whole SDK: `Client`, the module-level shortcuts `configure`, `repository` and
`organizations` (which use a lazily created default client), and every exception class. The distributions
underneath (``tilde.core``, ``tilde.data``, ``tilde.compute``, ``tilde.admin``) can also be used on their own.

Every ``tilde.*`` import runs this module first, so it imports nothing heavy itself: the public names are
resolved on first access. ``import tilde.core`` or ``import tilde.server`` therefore does not load the data,
compute and admin layers.
"""

# ``tilde`` is a namespace shared by several distributions; this must run before any ``tilde.*`` import.
from pkgutil import extend_path as _extend_path

__path__ = _extend_path(__path__, __name__)

# Helpers are imported under private names so that dir(tilde) shows the public surface only.
import importlib as _importlib
import sys as _sys
import threading as _threading
import types as _types
import typing as _typing

from tilde._version import __version__

if _typing.TYPE_CHECKING:
    from tilde._composed import Client, Repository
    from tilde.admin import Organizations
    from tilde.core.credentials import CredentialsProvider
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
    )

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
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
    "__version__",
    "configure",
    "organizations",
    "repository",
]

# Public names resolved on first access: name -> module that defines it.
_LAZY_NAMES: dict[str, str] = {
    "Client": "tilde._composed",
    **{name: "tilde.core.errors" for name in __all__ if name.endswith("Error")},
}

#: The client behind the module-level shortcuts; created on first use, replaced by `configure`.
_default_client: "Client | None" = None
_default_client_lock = _threading.Lock()

#: The default client's organizations (a live module property, see `_TildeModule`).
organizations: "Organizations"


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


def configure(
    *,
    api_key: str | None = None,
    endpoint_url: str | None = None,
    default_sandbox_image: str | None = None,
    credentials_provider: "CredentialsProvider | None" = None,
) -> None:
    """Set up the default client used by `repository` and `organizations`.

    Closes the previous default client (if any) and builds a new one. Arguments left as ``None`` fall back to
    the environment and ``~/.tilde/config.yaml``, as for `Client`.

    Args:
        api_key: The API key.
        endpoint_url: The server's root URL (default ``https://tilde.run``).
        default_sandbox_image: The image sandboxes use when a call names none.
        credentials_provider: An object with ``get_token() -> str``, asked for a token before each request.

    """
    from tilde._composed import Client

    global _default_client
    with _default_client_lock:
        previous, _default_client = _default_client, None
        if previous is not None:
            previous.close()
        _default_client = Client(
            api_key=api_key,
            endpoint_url=endpoint_url,
            default_sandbox_image=default_sandbox_image,
            credentials_provider=credentials_provider,
        )


def _get_default_client() -> "Client":
    """Return the default client, creating it from the environment and config file on first use."""
    from tilde._composed import Client

    global _default_client
    with _default_client_lock:
        if _default_client is None:
            _default_client = Client()
        return _default_client


def repository(repo_path: str) -> "Repository":
    """Return a handle on a repository through the default client; sends no request.

    Args:
        repo_path: ``"organization/repository"``.

    Returns:
        The repository handle.

    Raises:
        ValueError: ``repo_path`` is not of the form ``"organization/repository"``.

    """
    return _get_default_client().repository(repo_path)


class _TildeModule(_types.ModuleType):
    """The class of the ``tilde`` module object, so that ``tilde.organizations`` can be a live property."""

    @property
    def organizations(self) -> "Organizations":
        """The organizations visible to the default client (a new collection object on each access)."""
        return _get_default_client().organizations

    def __dir__(self) -> list[str]:
        # Properties live on the class and lazy names are not in the namespace yet; dir() should show both.
        return sorted({*super().__dir__(), *__all__})


_sys.modules[__name__].__class__ = _TildeModule
