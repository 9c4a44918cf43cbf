"""What the sync and async clients share: settings, the token chain, the request core, the user agent."""

from __future__ import annotations

import functools
import os
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx
import pluggy

from tilde.core._logging import configure_logging, logger
from tilde.core._transport import DEFAULT_TIMEOUT, RequestCore, RetryPolicy
from tilde.core._version import __version__ as _core_version
from tilde.core.auth import AuthSettings, ResolvedCredentials, resolve_credentials
from tilde.core.config import Configuration, read_config_file, resolve_config
from tilde.core.credentials import CredentialsProvider
from tilde.core.errors import ConfigurationError
from tilde.core.plugins import make_plugin_manager

USER_AGENT_PRODUCT = "tilde-python-sdk"

_NO_KEY_MESSAGE = (
    "No API key configured: pass api_key= to the client, set TILDE_API_KEY, or run `tilde auth login` "
    "to write ~/.tilde/config.yaml."
)


@functools.lru_cache(maxsize=1)
def sdk_version() -> str:
    """Return the version for the User-Agent: tilde-sdk's when installed, else tilde-core's."""
    try:
        return version("tilde-sdk")
    except PackageNotFoundError:
        return _core_version


def user_agent(extra: str | None = None) -> str:
    """``tilde-python-sdk/<version>``, plus one space and ``extra`` when given."""
    base = f"{USER_AGENT_PRODUCT}/{sdk_version()}"
    return f"{base} {extra}" if extra else base


def as_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout | None:
    """Normalise a ``timeout=`` option: a number applies to every phase; None keeps the default."""
    if timeout is None or isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(float(timeout))


def pick_injected(http_client: Any, httpx_client: Any) -> Any:
    """Return the injected HTTP client from ``http_client=`` or its alias ``httpx_client=``."""
    if http_client is not None and httpx_client is not None and http_client is not httpx_client:
        raise ValueError("pass either http_client= or its alias httpx_client=, not both")
    return http_client if http_client is not None else httpx_client


class ClientBase:
    """Settings, credentials and the request core, shared by `Client` and `AsyncClient`."""

    _config: Configuration
    _credentials_provider: CredentialsProvider | None

    def __init__(
        self,
        *,
        endpoint_url: str | None,
        api_key: str | None,
        default_sandbox_image: str | None,
        credentials_provider: CredentialsProvider | None,
        extra_user_agent: str | None,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        plugin_manager: pluggy.PluginManager | None,
        injected_http: bool,
    ) -> None:
        if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
            raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
        configure_logging()
        environ = dict(os.environ)
        file_settings = read_config_file()
        self._config = resolve_config(
            endpoint_url=endpoint_url,
            api_key=api_key,
            default_sandbox_image=default_sandbox_image,
            environ=environ,
            config_file=file_settings,
        )
        self._plugin_manager = plugin_manager if plugin_manager is not None else make_plugin_manager()
        resolved: ResolvedCredentials | None
        if credentials_provider is not None:
            resolved = ResolvedCredentials(source="explicit", provider=credentials_provider)
        else:
            settings = AuthSettings(
                api_key=api_key or None,
                environ=environ,
                config_file=file_settings,
                endpoint_url=self._config.endpoint_url,
            )
            resolved = resolve_credentials(self._plugin_manager, settings)
        self._credentials_provider = resolved.provider if resolved is not None else None
        self._credentials_source = resolved.source if resolved is not None else None
        # Providers the chain created are ours to close; one the caller passed in is not.
        self._owns_credentials_provider = credentials_provider is None
        self._user_agent = user_agent(extra_user_agent)
        explicit_timeout = as_timeout(timeout)
        # An injected HTTP client keeps its own timeout unless the caller also asked for one.
        self._timeout = explicit_timeout if explicit_timeout is not None or injected_http else DEFAULT_TIMEOUT
        self._core = RequestCore(
            base_url=self._config.base_url,
            user_agent=self._user_agent,
            retry=RetryPolicy(max_retries=max_retries),
            timeout=self._timeout,
        )
        self._closed = False
        logger.debug(
            "client for %s; credentials from %s",
            self._config.endpoint_url,
            self._credentials_source or "nowhere",
        )

    @property
    def _ws_base_url(self) -> str:
        """``ws(s)://host[:port]/api/v1``, for websocket endpoints."""
        return self._core.ws_base_url

    def _require_provider(self) -> CredentialsProvider:
        if self._credentials_provider is None:
            raise ConfigurationError(_NO_KEY_MESSAGE)
        return self._credentials_provider

    def _close_credentials_provider(self) -> None:
        if self._owns_credentials_provider and self._credentials_provider is not None:
            close = getattr(self._credentials_provider, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint_url={self._config.endpoint_url!r})"
