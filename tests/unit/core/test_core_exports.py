from __future__ import annotations
import __future__

import importlib
import types

import pytest

import tilde.core

PUBLIC = {
    # clients
    "AsyncClient",
    "Client",
    # configuration
    "Configuration",
    "DEFAULT_ENDPOINT_URL",
    "DEFAULT_SANDBOX_IMAGE",
    "read_config_file",
    "resolve_config",
    # credentials and auth plugins
    "AuthProvider",
    "AuthSettings",
    "CredentialsProvider",
    "ENTRY_POINT_GROUP",
    "ENV_SANDBOX_CREDENTIALS_URI",
    "SandboxCredentials",
    "SandboxCredentialsProvider",
    "StaticTokenProvider",
    "hookimpl",
    "make_plugin_manager",
    # pagination
    "AsyncPaginatedIterator",
    "DEFAULT_PAGE_SIZE",
    "PageResult",
    "PaginatedIterator",
    # errors
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "ClientClosedError",
    "RateLimitError",
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
    "__version__",
}

SUBMODULES = [
    "tilde.core.async_client",
    "tilde.core.auth",
    "tilde.core.client",
    "tilde.core.config",
    "tilde.core.credentials",
    "tilde.core.errors",
    "tilde.core.hookspecs",
    "tilde.core.pagination",
    "tilde.core.plugins",
]


def ruff_order(name: str) -> tuple[int, str]:
    # RUF022's isort-style order: SCREAMING_SNAKE_CASE, then CamelCase, then everything else.
    if name.isupper() and len(name) > 1:
        return (0, name)
    if name[:1].isupper():
        return (1, name)
    return (2, name)


def public_attributes(module: types.ModuleType) -> set[str]:
    return {
        name
        for name in dir(module)
        if not name.startswith("_")
        and not isinstance(getattr(module, name), (types.ModuleType, __future__._Feature))
    }


def test_all_is_exactly_the_public_surface() -> None:
    assert set(tilde.core.__all__) == PUBLIC
    assert len(tilde.core.__all__) == len(PUBLIC)
    assert public_attributes(tilde.core) | {"__version__"} == PUBLIC


def test_all_is_sorted() -> None:
    assert tilde.core.__all__ == sorted(tilde.core.__all__, key=ruff_order)


@pytest.mark.parametrize("module_name", SUBMODULES)
def test_submodule_all_lists_real_names(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert len(set(module.__all__)) == len(module.__all__)
    assert module.__all__ == sorted(module.__all__, key=ruff_order)
    for name in module.__all__:
        assert hasattr(module, name), name


def test_every_reexport_is_the_same_object() -> None:
    for module_name in SUBMODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name in PUBLIC:
                assert getattr(tilde.core, name) is getattr(module, name)


def test_importing_core_builds_no_plugin_manager() -> None:
    import subprocess
    import sys

    script = (
        "import pluggy\n"
        "made = []\n"
        "original = pluggy.PluginManager.__init__\n"
        "def spy(self, *a, **k):\n"
        "    made.append(1)\n"
        "    original(self, *a, **k)\n"
        "pluggy.PluginManager.__init__ = spy\n"
        "import tilde.core, tilde.core.plugins, tilde.core.hookspecs\n"
        "print(len(made))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "0"
