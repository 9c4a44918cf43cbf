"""Every package's ``__all__`` is exactly its public surface.

For the facade and the admin package the expected lists are spelled out. For the other leaves (owned by their
own tests) the check is structural (ruff's RUF022 keeps the order): ``__all__`` has no duplicates, every
listed name resolves, and every public attribute that is neither a submodule nor a ``__future__`` flag is
listed.
"""

from __future__ import annotations
import __future__

import importlib
import types

import pytest

LEAVES = [
    "tilde",
    "tilde.core",
    "tilde.data",
    "tilde.compute",
    "tilde.admin",
    "tilde.client",
    "tilde.exceptions",
    "tilde.models",
]

EXCEPTIONS = [
    "APIConnectionError",
    "APIError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
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
    "SandboxError",
    "SerializationError",
    "ServerError",
    "TildeError",
    "TransportError",
]


def _public_attributes(module: types.ModuleType) -> set[str]:
    names = set()
    for name in dir(module):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if isinstance(value, (types.ModuleType, __future__._Feature)):
            continue
        names.add(name)
    return names


@pytest.mark.parametrize("module_name", LEAVES)
def test_all_is_unique_and_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = list(module.__all__)
    assert len(exported) == len(set(exported)), "duplicates in __all__"
    missing = [name for name in exported if not hasattr(module, name)]
    assert missing == []


@pytest.mark.parametrize("module_name", LEAVES)
def test_all_lists_every_public_attribute(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert _public_attributes(module) - {"__version__"} <= set(module.__all__)


def test_tilde_all_is_exact() -> None:
    import tilde

    assert sorted(tilde.__all__) == sorted(
        ["Client", "Repository", "__version__", "configure", "organizations", "repository", *EXCEPTIONS]
    )
    # What the upstream surface keeps out of the top level, and so do we; Repository is the exception
    # (issue 13 asks for ``tilde.Repository`` in users' annotations).
    for name in ("Organization", "Agent", "Session"):
        assert not hasattr(tilde, name), name


def test_exceptions_module_is_exact() -> None:
    import tilde.exceptions

    assert sorted(tilde.exceptions.__all__) == sorted(
        [*EXCEPTIONS, "api_error_for_status", "parse_retry_after"]
    )


def test_client_module_is_exact() -> None:
    import tilde.client

    assert set(tilde.client.__all__) == {
        "APIError",
        "Client",
        "ConfigurationError",
        "ENV_SANDBOX_CREDENTIALS_URI",
        "SandboxCredentialsProvider",
        "SerializationError",
        "TildeError",
        "TransportError",
        "api_error_for_status",
        "resolve_config",
    }
    import tilde

    assert tilde.client.Client is tilde.Client
    assert tilde.client.ENV_SANDBOX_CREDENTIALS_URI == "TILDE_SANDBOX_CREDENTIALS_URI"


def test_admin_all_is_exact() -> None:
    import tilde.admin

    assert sorted(tilde.admin.__all__) == sorted(
        [
            "APIKey",
            "APIKeys",
            "AdminClientMixin",
            "AdminRepositoryMixin",
            "Agent",
            "Agents",
            "Attachment",
            "Client",
            "Connector",
            "Connectors",
            "EffectiveGroup",
            "EffectivePolicy",
            "Group",
            "GroupMember",
            "GroupMembers",
            "Groups",
            "ImportJob",
            "Imports",
            "Member",
            "Members",
            "Organization",
            "Organizations",
            "Policies",
            "Policy",
            "Repository",
            "RepositoryConnectors",
            "Role",
            "Roles",
            "Secret",
            "Secrets",
            "ValidationError",
            "ValidationResult",
            "__version__",
        ]
    )
