"""What the sync and async clients share: settings, the token chain, the request core, the user agent."""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, TypeVar

import httpx
import pluggy

from tilde.core._logging import auth_logger, configure_logging
from tilde.core._transport import DEFAULT_TIMEOUT, RequestCore, RetryPolicy
from tilde.core._version import __version__ as _core_version
from tilde.core.auth import AuthSettings, ResolvedCredentials, resolve_credentials
from tilde.core.config import Configuration, read_config_file, resolve_config
from tilde.core.credentials import CredentialsProvider
from tilde.core.errors import ClientClosedError, ConfigurationError
from tilde.core.plugins import make_plugin_manager

USER_AGENT_PRODUCT = "tilde-python-sdk"

_NO_KEY_MESSAGE = (
    "No API key configured: pass api_key= to the client, set TILDE_API_KEY, or run `tilde auth login` "
    "to write ~/.tilde/config.yaml."
)


def version(distribution: str) -> str:
    """`importlib.metadata.version`, imported on the first client: it is a noticeable part of import time."""
    from importlib import metadata

    return metadata.version(distribution)


@functools.lru_cache(maxsize=1)
def sdk_version() -> str:
    """Return the version for the User-Agent: tilde-sdk's when installed, else tilde-core's."""
    from importlib.metadata import PackageNotFoundError

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


def check_max_retries(max_retries: Any) -> int:
    """Return ``max_retries`` if it is a non-negative integer; `ValueError` otherwise."""
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ValueError(f"max_retries must be a non-negative integer, got {max_retries!r}")
    return max_retries


#: What a closed client's `ClientClosedError` says when nothing more specific is known.
CLOSED_BY_CLOSE = (
    "this Tilde client has been closed (by close() or at the end of its `with` block), so it and the "
    "handles made from it (repositories, sessions, sandboxes, ...) cannot send requests; create a new "
    "client and take fresh handles from it"
)

_ClientT = TypeVar("_ClientT", bound="ClientBase")


def pick_injected(http_client: Any, httpx_client: Any) -> Any:
    """Return the injected HTTP client from ``http_client=`` or its alias ``httpx_client=``."""
    if http_client is not None and httpx_client is not None and http_client is not httpx_client:
        raise ValueError("pass either http_client= or its alias httpx_client=, not both")
    return http_client if http_client is not None else httpx_client


class ClientBase:
    """Settings, credentials and the request core, shared by `Client` and `AsyncClient`."""

    _config: Configuration
    _credentials_provider: CredentialsProvider | None
    #: The client this one was copied from by `with_options` (which owns the pools), or None.
    _parent: ClientBase | None
    #: Why the client was closed, for `ClientClosedError` (the facade sets it when `configure` replaces it).
    _close_hint: str

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
        check_max_retries(max_retries)
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
        # The last request id, per thread and per task: a plain attribute would be a race between threads
        # sharing the client. One variable per client (and its `with_options` copies).
        self._request_ids: ContextVar[str | None] = ContextVar(f"tilde_request_id_{id(self):x}", default=None)
        self._core = RequestCore(
            base_url=self._config.base_url,
            user_agent=self._user_agent,
            retry=RetryPolicy(max_retries=max_retries),
            timeout=self._timeout,
            request_ids=self._request_ids,
        )
        self._closed = False
        self._close_hint = ""
        self._parent = None
        auth_logger.debug(
            "client for %s; credentials from %s",
            self._config.endpoint_url,
            self._credentials_source or "nowhere",
        )

    @property
    def last_request_id(self) -> str | None:
        """The server's id of this client's last API response in the current thread or task, if any.

        Quote it when reporting a problem. Each thread (and each asyncio task) sees its own: concurrent calls
        through one shared client never overwrite each other's. Failed calls count too (their `APIError` also
        carries it as ``request_id``); presigned storage transfers do not. Copies made by `with_options`
        share it with their original.
        """
        return self._request_ids.get()

    @property
    def is_closed(self) -> bool:
        """Whether this client (or, for a `with_options` copy, the client it was copied from) is closed."""
        client: ClientBase | None = self
        while client is not None:
            if client._closed:
                return True
            client = client._parent
        return False

    def _ensure_open(self) -> None:
        """Raise `ClientClosedError` when this client, or the one it was copied from, has been closed."""
        client: ClientBase | None = self
        while client is not None:
            if client._closed:
                raise ClientClosedError(client._close_hint or CLOSED_BY_CLOSE)
            client = client._parent

    def with_options(
        self: _ClientT,
        *,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> _ClientT:
        """Return a copy of this client with some request options changed; the original is untouched.

        The copy shares the connection pools, the credentials and `last_request_id` with this client and
        costs no new connections, so it is cheap enough to make per call. Closing the copy releases nothing;
        closing this client closes the copy too.

        Args:
            timeout: Seconds (or an `httpx.Timeout`) per API call; None keeps the current one. Pass
                ``httpx.Timeout(None)`` to wait forever.
            max_retries: Retries per request; None keeps the current number.
            extra_headers: Headers added to every API request of the copy, over any the original adds.
                ``Authorization`` and ``User-Agent`` are the client's own and cannot be replaced this way.

        Returns:
            The copy, of the same class as this client.

        Raises:
            ValueError: ``max_retries`` is negative or not an integer.
            ClientClosedError: This client is closed.

        Example:
            ```python
            patient = client.with_options(timeout=300, max_retries=5)
            patient.repository("acme/data").objects.get("big.parquet")
            ```

        """
        self._ensure_open()
        retry = self._core.retry
        if max_retries is not None:
            retry = dataclasses.replace(retry, max_retries=check_max_retries(max_retries))
        explicit_timeout = as_timeout(timeout)
        headers = {**self._core.default_headers, **(extra_headers or {})}
        for name in headers:
            if name.lower() in ("authorization", "user-agent"):
                raise ValueError(f"extra_headers cannot set {name}: the client sends its own")
        clone = copy.copy(self)
        clone._parent = self
        clone._closed = False
        clone._close_hint = ""
        if explicit_timeout is not None:
            clone._timeout = explicit_timeout
        clone._core = RequestCore(
            base_url=self._config.base_url,
            user_agent=self._user_agent,
            retry=retry,
            timeout=clone._timeout,
            default_headers=headers,
            request_ids=self._request_ids,
        )
        # Test hooks replaced on the original (jitter, clock) carry over.
        clone._core.rng = self._core.rng
        clone._core.now = self._core.now
        return clone

    @property
    def _ws_base_url(self) -> str:
        """``ws(s)://host[:port]/api/v1``, for websocket endpoints."""
        return self._core.ws_base_url

    def _require_provider(self) -> CredentialsProvider:
        if self._credentials_provider is None:
            raise ConfigurationError(_NO_KEY_MESSAGE)
        return self._credentials_provider

    def _close_credentials_provider(self) -> None:
        # A with_options copy shares the original's provider: only the original closes it.
        if self._parent is not None or not self._owns_credentials_provider:
            return
        if self._credentials_provider is not None:
            close = getattr(self._credentials_provider, "close", None)
            if callable(close):
                close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(endpoint_url={self._config.endpoint_url!r})"
