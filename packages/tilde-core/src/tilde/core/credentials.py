"""Token sources: a static key, and the short-lived tokens a sandbox hands out.

Anything with a ``get_token() -> str`` method is a `CredentialsProvider`; the client asks it for a token
before every request, so providers cache and refresh on their own.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Protocol, runtime_checkable

import httpx

from tilde.core._isotime import parse_iso_datetime
from tilde.core._logging import auth_logger, redact_url
from tilde.core.errors import ConfigurationError, SerializationError, TransportError

__all__ = [
    "ENV_SANDBOX_CREDENTIALS_URI",
    "REFRESH_MARGIN",
    "CredentialsProvider",
    "SandboxCredentials",
    "SandboxCredentialsProvider",
    "StaticTokenProvider",
]

ENV_SANDBOX_CREDENTIALS_URI = "TILDE_SANDBOX_CREDENTIALS_URI"

#: Tokens are refetched this long before they expire, so a request never leaves with a dying token.
REFRESH_MARGIN = timedelta(minutes=2)

_BODY_EXCERPT = 200


@runtime_checkable
class CredentialsProvider(Protocol):
    """Anything that can hand the client a bearer token.

    The client calls `get_token` before every request. Implementations should cache; they may raise
    `ConfigurationError`, `TransportError` or `SerializationError`. An optional ``close()`` is called when the
    client that owns the provider closes.
    """

    def get_token(self) -> str:
        """Return the bearer token to send now."""
        ...


class StaticTokenProvider:
    """A token that never changes (an API key).

    Args:
        token: The API key.

    """

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self) -> str:
        """Return the key."""
        return self._token

    def __repr__(self) -> str:
        return "StaticTokenProvider(token='***')"


@dataclass(frozen=True)
class SandboxCredentials:
    """Credentials handed out by a sandbox's credentials endpoint.

    Attributes:
        access_token: The bearer token.
        expires_at: When the token expires (timezone-aware).
        principal_type: The kind of principal the token acts as (e.g. ``agent``).
        principal_id: The principal's id.
        principal_name: The principal's name.
        organization_id: The organization the principal belongs to.
        api_url: The API URL the runtime advertises (informational; routing uses ``TILDE_API_URL``).

    """

    access_token: str
    expires_at: datetime
    principal_type: str | None = None
    principal_id: str | None = None
    principal_name: str | None = None
    organization_id: str | None = None
    api_url: str | None = None

    def __repr__(self) -> str:
        return (
            f"SandboxCredentials(access_token='***', expires_at={self.expires_at.isoformat()!r}, "
            f"principal_type={self.principal_type!r}, principal_name={self.principal_name!r})"
        )

    @classmethod
    def from_payload(cls, payload: Any) -> SandboxCredentials:
        """Validate and convert the JSON object the credentials endpoint returns.

        Args:
            payload: The decoded JSON body.

        Returns:
            The credentials.

        Raises:
            SerializationError: Not an object, ``access_token`` missing or empty, or ``expires_at`` missing or
                not an ISO 8601 date-time.

        """
        if not isinstance(payload, dict):
            raise SerializationError("sandbox credentials response is not a JSON object")
        token = payload.get("access_token")
        if not isinstance(token, str) or not token:
            raise SerializationError("sandbox credentials response has no access_token")
        expires = payload.get("expires_at")
        if not isinstance(expires, str):
            raise SerializationError("sandbox credentials response has no valid expires_at")
        try:
            expires_at = parse_iso_datetime(expires)
        except ValueError as exc:
            raise SerializationError(
                f"sandbox credentials expires_at is not a date-time: {expires!r}"
            ) from exc

        def optional(name: str) -> str | None:
            value = payload.get(name)
            return value if isinstance(value, str) and value else None

        return cls(
            access_token=token,
            expires_at=expires_at,
            principal_type=optional("principal_type"),
            principal_id=optional("principal_id"),
            principal_name=optional("principal_name"),
            organization_id=optional("organization_id"),
            api_url=optional("api_url"),
        )


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SandboxCredentialsProvider:
    """Fetches and caches the short-lived token a sandbox runtime serves at ``TILDE_SANDBOX_CREDENTIALS_URI``.

    Thread-safe: concurrent callers share one cached token and at most one fetch is in flight. The token is
    refetched when it is within two minutes of expiring.

    Args:
        credentials_uri: The URL to GET (no Authorization header is sent).
        http_client: The HTTP client to use; the provider owns (and closes) one it makes itself.
        timeout: Seconds allowed for one fetch.

    """

    def __init__(
        self, credentials_uri: str, *, http_client: httpx.Client | None = None, timeout: float = 5.0
    ) -> None:
        self._credentials_uri = credentials_uri
        self._owns_http = http_client is None
        self._http = http_client if http_client is not None else httpx.Client(timeout=timeout)
        self._timeout = timeout
        self._lock = threading.Lock()
        self._cached: SandboxCredentials | None = None
        # Replaceable clock, so expiry can be tested without waiting.
        self._now: Callable[[], datetime] = _utcnow

    @property
    def credentials_uri(self) -> str:
        """The URL the credentials are fetched from."""
        return self._credentials_uri

    def __repr__(self) -> str:
        return f"SandboxCredentialsProvider({self._credentials_uri!r})"

    def _is_fresh(self, credentials: SandboxCredentials | None) -> bool:
        return credentials is not None and self._now() + REFRESH_MARGIN < credentials.expires_at

    def peek_token(self) -> str | None:
        """Return the cached token if it is still fresh, without any I/O; None otherwise."""
        cached = self._cached
        return cached.access_token if cached is not None and self._is_fresh(cached) else None

    def get_credentials(self, *, force_refresh: bool = False) -> SandboxCredentials:
        """Return current credentials, fetching them when missing, near expiry or forced.

        Args:
            force_refresh: Fetch even if the cached credentials are still fresh.

        Returns:
            The credentials.

        Raises:
            ConfigurationError: The endpoint answered with a status other than 200.
            TransportError: The endpoint could not be reached.
            SerializationError: The answer is not a valid credentials object.

        """
        cached = self._cached
        if not force_refresh and self._is_fresh(cached):
            assert cached is not None
            return cached
        with self._lock:
            # Another thread may have refreshed while this one waited for the lock.
            cached = self._cached
            if not force_refresh and self._is_fresh(cached):
                assert cached is not None
                return cached
            fresh = self._fetch()
            self._cached = fresh
            return fresh

    def get_token(self) -> str:
        """Return a fresh access token (see `get_credentials`)."""
        return self.get_credentials().access_token

    def invalidate(self) -> None:
        """Drop the cached credentials; the next call fetches new ones."""
        with self._lock:
            self._cached = None

    def _fetch(self) -> SandboxCredentials:
        try:
            response = self._http.get(self._credentials_uri, timeout=self._timeout)
        except httpx.HTTPError as exc:
            raise TransportError(
                f"could not reach sandbox credentials endpoint {self._credentials_uri}: {exc}", cause=exc
            ) from exc
        if response.status_code != 200:
            raise ConfigurationError(
                f"sandbox credentials endpoint {self._credentials_uri} answered {response.status_code}: "
                f"{response.text[:_BODY_EXCERPT]}"
            )
        try:
            payload = json.loads(response.content)
        except ValueError as exc:
            raise SerializationError("sandbox credentials response is not valid JSON") from exc
        credentials = SandboxCredentials.from_payload(payload)
        # Who and until when, never the token itself.
        auth_logger.debug(
            "sandbox credentials from %s: %s %s, expiring at %s",
            redact_url(self._credentials_uri),
            credentials.principal_type or "principal",
            credentials.principal_name or credentials.principal_id or "?",
            credentials.expires_at.isoformat(),
        )
        return credentials

    def close(self) -> None:
        """Close the HTTP client if the provider made it. Idempotent."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> SandboxCredentialsProvider:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
