"""The Tilde Python SDK: versioned object storage and sandboxed compute for agents.

``import tilde`` gives the whole SDK: `Client`, `Repository` (the type of every repository handle, for
annotations), the module-level shortcuts `configure`, `repository` and `organizations` (which use a lazily
created default client), and every exception class. ``tilde.models``, ``tilde.exceptions``, ``tilde.client``
and ``tilde.resources`` are attributes too. The distributions underneath (``tilde.core``, ``tilde.data``,
``tilde.compute``, ``tilde.admin``) can also be used on their own.

Every ``tilde.*`` import runs this module first, so it imports nothing heavy itself: the public names and the
submodules above are resolved on first access. ``import tilde.core`` or ``import tilde.server`` therefore does
not load the data, compute and admin layers.
"""

# ``tilde`` is a namespace shared by several distributions; this must run before any ``tilde.*`` import.
# (Written in the canonical pkgutil form, which documentation tools recognise as a namespace portion.)
__path__ = __import__("pkgutil").extend_path(__path__, __name__)

# Helpers are imported under private names so that dir(tilde) shows the public surface only.
import importlib as _importlib
import sys as _sys
import types as _types
import typing as _typing

from tilde._facade import configure, repository
from tilde._facade import get_default_client as _get_default_client
from tilde._version import __version__

if _typing.TYPE_CHECKING:
    # The lazily loaded submodules, so type checkers know ``tilde.models`` etc. after a bare ``import tilde``.
    from tilde import client as client
    from tilde import exceptions as exceptions
    from tilde import models as models
    from tilde import resources as resources
    from tilde._composed import Client, Repository
    from tilde.admin import Organizations
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
    )

__all__ = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "Client",
    "ClientClosedError",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PreconditionFailedError",
    "RateLimitError",
    "Repository",
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
_LAZY_NAMES: "dict[str, str]" = {
    "Client": "tilde._composed",
    "Repository": "tilde._composed",
    **{name: "tilde.core.errors" for name in __all__ if name.endswith("Error")},
}

# Submodules that are attributes of ``tilde`` after a bare ``import tilde`` (as in the published package),
# imported on first access so that ``import tilde`` stays light.
_LAZY_SUBMODULES = frozenset({"client", "exceptions", "models", "resources"})

#: The client behind the module-level shortcuts; created on first use, replaced by `configure`.
_default_client: "Client | None" = None

#: The default client's organizations (a live module property, see `_TildeModule`).
organizations: "Organizations[Repository]"


def __getattr__(name: str) -> _typing.Any:
    if name in _LAZY_SUBMODULES:
        # Importing a submodule binds it on this module, so later lookups skip this function.
        return _importlib.import_module(f"{__name__}.{name}")
    module_name = _LAZY_NAMES.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value  # later lookups skip this function
    return value


class _TildeModule(_types.ModuleType):
    """The class of the ``tilde`` module object, so that ``tilde.organizations`` can be a live property."""

    @property
    def organizations(self) -> "Organizations[Repository]":
        """The organizations visible to the default client (a new collection object on each access)."""
        return _get_default_client().organizations

    def __dir__(self) -> list[str]:
        # Properties live on the class and lazy names are not in the namespace yet; dir() should show both.
        return sorted({*super().__dir__(), *__all__})


_sys.modules[__name__].__class__ = _TildeModule
