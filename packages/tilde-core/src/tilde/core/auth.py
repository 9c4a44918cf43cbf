"""The token chain: auth providers and the built-in credential sources.

An `AuthProvider` looks at the client's `AuthSettings` and either supplies a
`tilde.core.credentials.CredentialsProvider` or declines with None. Providers are collected through the
``tilde_register_auth_providers`` hook; the first one that accepts wins. The built-ins, in order:

1. ``argument``: the ``api_key=`` passed to the client.
2. ``environment``: ``TILDE_API_KEY``.
3. ``config-file``: ``api_key`` in ``~/.tilde/config.yaml``.
4. ``sandbox``: ``TILDE_SANDBOX_CREDENTIALS_URI``, only when none of the above has a key.

An explicit ``credentials_provider=`` given to the client bypasses the chain altogether.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import pluggy

from tilde.core.config import ENV_API_KEY
from tilde.core.credentials import (
    ENV_SANDBOX_CREDENTIALS_URI,
    CredentialsProvider,
    SandboxCredentialsProvider,
    StaticTokenProvider,
)
from tilde.core.hookspecs import hookimpl

__all__ = [
    "AuthProvider",
    "AuthSettings",
    "ResolvedCredentials",
    "collect_auth_providers",
    "resolve_credentials",
]


@dataclass(frozen=True)
class AuthSettings:
    """What an auth provider may look at to decide whether it can supply a token.

    Attributes:
        api_key: The ``api_key=`` argument given to the client (None when not given or empty).
        environ: The environment, as read when the client was constructed.
        config_file: The string settings read from ``~/.tilde/config.yaml`` (may be empty).
        endpoint_url: The resolved endpoint the token will be sent to.

    """

    api_key: str | None
    environ: Mapping[str, str] = field(repr=False)
    config_file: Mapping[str, str] = field(repr=False)
    endpoint_url: str

    def __repr__(self) -> str:
        key = "None" if self.api_key is None else "'***'"
        return f"AuthSettings(api_key={key}, endpoint_url={self.endpoint_url!r})"


@runtime_checkable
class AuthProvider(Protocol):
    """A source of credentials in the token chain.

    Attributes:
        name: A short identifier, used in logs and in `ResolvedCredentials.source`.

    """

    name: str

    def credentials_for(self, settings: AuthSettings) -> CredentialsProvider | None:
        """Return a credentials provider for these settings, or None to let the next provider try.

        Must not do network I/O: fetching happens later, at request time, through the returned provider.
        """
        ...


@dataclass(frozen=True)
class ResolvedCredentials:
    """The outcome of the token chain.

    Attributes:
        source: The name of the provider that accepted (``"explicit"`` for ``credentials_provider=``).
        provider: The credentials provider that supplies every token.

    """

    source: str
    provider: CredentialsProvider


class _StaticKeySource:
    """A built-in source that turns one non-empty string setting into a static token."""

    def __init__(self, name: str, pick: Callable[[AuthSettings], str | None]) -> None:
        self.name = name
        self._pick = pick

    def credentials_for(self, settings: AuthSettings) -> CredentialsProvider | None:
        key = self._pick(settings)
        return StaticTokenProvider(key) if key else None

    def __repr__(self) -> str:
        return f"<auth source {self.name!r}>"


class _SandboxSource:
    """The built-in source that fetches short-lived tokens from the sandbox credentials endpoint."""

    name = "sandbox"

    def credentials_for(self, settings: AuthSettings) -> CredentialsProvider | None:
        uri = settings.environ.get(ENV_SANDBOX_CREDENTIALS_URI)
        return SandboxCredentialsProvider(uri) if uri else None

    def __repr__(self) -> str:
        return "<auth source 'sandbox'>"


class StaticKeysPlugin:
    """Built-in plugin: the three static key sources, asked before any other provider."""

    @hookimpl(tryfirst=True)
    def tilde_register_auth_providers(self, register: Callable[[AuthProvider], None]) -> None:
        """Register ``argument``, ``environment`` and ``config-file``, in that order."""
        register(_StaticKeySource("argument", lambda s: s.api_key))
        register(_StaticKeySource("environment", lambda s: s.environ.get(ENV_API_KEY)))
        register(_StaticKeySource("config-file", lambda s: s.config_file.get("api_key")))


class SandboxCredentialsPlugin:
    """Built-in plugin: the sandbox credentials endpoint, asked after every other provider."""

    @hookimpl(trylast=True)
    def tilde_register_auth_providers(self, register: Callable[[AuthProvider], None]) -> None:
        """Register ``sandbox``."""
        register(_SandboxSource())


def collect_auth_providers(plugin_manager: pluggy.PluginManager) -> list[AuthProvider]:
    """Ask every plugin for its auth providers.

    Args:
        plugin_manager: A manager from `tilde.core.plugins.make_plugin_manager`.

    Returns:
        The providers in resolution order.

    """
    providers: list[AuthProvider] = []
    plugin_manager.hook.tilde_register_auth_providers(register=providers.append)
    return providers


def resolve_credentials(
    plugin_manager: pluggy.PluginManager, settings: AuthSettings
) -> ResolvedCredentials | None:
    """Walk the token chain and return the first provider that accepts.

    Args:
        plugin_manager: A manager from `tilde.core.plugins.make_plugin_manager`.
        settings: What the providers may look at.

    Returns:
        The accepted credentials, or None when no provider can supply a token (requests will then raise
        `tilde.core.errors.ConfigurationError`).

    """
    for provider in collect_auth_providers(plugin_manager):
        credentials = provider.credentials_for(settings)
        if credentials is not None:
            return ResolvedCredentials(source=provider.name, provider=credentials)
    return None
