"""Exceptions raised by the Tilde SDK.

Every exception the SDK raises on purpose derives from `TildeError`::

    TildeError
    ├── ConfigurationError          no token at request time, credentials URI answered non-200, bad plugin
    ├── ClientClosedError           a request on a closed client (or on a handle made from one)
    ├── TransportError              no HTTP answer; also a non-2xx answer from a presigned storage URL
    │   ├── APIConnectionError      could not connect, connection dropped, protocol error, proxy failure
    │   └── APITimeoutError         a timeout: connect, read, write or waiting for a pooled connection
    ├── SerializationError          a body that is not the JSON the contract promises
    ├── SandboxError                sandbox lifecycle timeouts, terminal state before running
    │   └── CommandError            a command exited non-zero (``.result``, ``.command``)
    └── APIError                    the server answered with a non-2xx status
        ├── BadRequestError         400
        ├── AuthenticationError     401
        ├── ForbiddenError          403
        ├── NotFoundError           404
        ├── ConflictError           409
        ├── GoneError               410
        ├── PreconditionFailedError 412
        ├── LockedError             423
        ├── RateLimitError          429 (``retry_after``: the seconds the server asked to wait, or None)
        └── ServerError             any status >= 500

Statuses with no subclass of their own (405, 416, ...) raise `APIError` itself.
`api_error_for_status` is the one place that maps a status code to its class; `parse_retry_after` reads a
``Retry-After`` header.

Every class is additive to the published tree: code catching `TransportError` still catches both timeouts
and connection failures, and code catching `APIError` still catches a 429. The timeout class is called
`APITimeoutError`, not ``TimeoutError``, so that ``from tilde.exceptions import *`` never shadows the
builtin `TimeoutError` (which sandbox waits and the standard library raise) in the caller's module.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Type-only, so tilde-core never imports tilde-compute at run time (the layers point the other way); on an
    # install without tilde-compute, type checkers see ``result`` as unknown, as before.
    from tilde.compute import RunResult

__all__ = [
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
    "api_error_for_status",
    "parse_retry_after",
]

#: How much of a response body an `APIError` keeps in ``response_text``.
RESPONSE_TEXT_LIMIT = 500

# Response headers an `APIError` never keeps: they carry credentials or session state, and errors are logged,
# pickled and shown in tracebacks.
_SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-amz-security-token",
        "www-authenticate",
    }
)


class TildeError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class ConfigurationError(TildeError):
    """The client is not configured well enough to make a request (for example: no API key)."""


class ClientClosedError(TildeError):
    """A request was made through a client that has been closed, or through a handle made from one.

    Handles (repositories, sessions, sandboxes, ...) keep the client they were made from; once it is closed
    (``client.close()``, the end of its ``with`` block, or `tilde.configure` replacing the default client)
    they cannot send requests. The message says how to get a fresh handle.
    """


class TransportError(TildeError):
    """The request did not get an HTTP answer: DNS failure, refused connection, timeout, broken stream.

    Also raised for a non-2xx answer from a presigned storage URL (storage, not the Tilde API). Catch
    `APITimeoutError` or `APIConnectionError` to tell timeouts from connection failures.

    Args:
        message: What failed, including the method and URL when known.
        cause: The underlying exception; also set as ``__cause__``.

    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class APIConnectionError(TransportError):
    """The server could not be reached or the connection broke (refused, DNS, reset, protocol error)."""


class APITimeoutError(TransportError):
    """A timeout expired: connecting, sending, waiting for the answer, or waiting for a pooled connection.

    Named so as not to shadow the builtin `TimeoutError` in modules that star-import the SDK's exceptions.
    """


class SerializationError(TildeError):
    """A response body could not be decoded into what the wire contract promises."""


class SandboxError(TildeError):
    """A sandbox did not reach the expected state (timeout, terminal before running, ...)."""


class CommandError(SandboxError):
    """A command run in a sandbox exited with a non-zero status.

    Args:
        message: Human-readable description, e.g. ``Command 'ls' exited with code 2``.
        result: The command's `RunResult` (stdout, stderr, exit code), when available.
        command: The command as a string (a list command is joined with spaces).

    """

    result: RunResult | None
    """The command's `tilde.compute.RunResult` (``stdout``, ``stderr``, ``exit_code``), when available."""

    def __init__(self, message: str, *, result: RunResult | None = None, command: str = "") -> None:
        super().__init__(message)
        self.result = result
        self.command = command


def _safe_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None) -> dict[str, str]:
    """Return response headers fit to keep on an exception: names lower-cased, credentials left out.

    Args:
        headers: The response headers (an `httpx.Headers`, a mapping or pairs), or None.

    Returns:
        A new dict without ``Authorization``, ``Set-Cookie`` and the like.

    """
    if headers is None:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    return {key.lower(): value for key, value in items if key.lower() not in _SECRET_HEADERS}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def parse_retry_after(value: str | None, now: Callable[[], datetime] = _utcnow) -> float | None:
    """Return the seconds a ``Retry-After`` header asks to wait.

    Args:
        value: The header value: a number of seconds or an HTTP date; None when the header is absent.
        now: The current time, for dates (replaceable in tests).

    Returns:
        Seconds, never negative (a date in the past gives 0); None when absent or unreadable.

    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - now()).total_seconds()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


class APIError(TildeError):
    """The server answered with a non-2xx status.

    Args:
        status_code: The HTTP status code.
        message: The ``message`` field of the error body (or the start of a non-JSON body).
        code: The machine-readable ``code`` field of the error body.
        request_id: The ``request_id`` field of the error body (or the ``X-Request-Id`` header).
        method: The HTTP method of the failed request.
        url: The URL of the failed request.
        response_text: The raw response body, truncated to 500 characters.
        headers: The response headers; kept with lower-cased names in ``headers``, without credentials
            (``Authorization``, ``Set-Cookie`` and the like are never kept).

    """

    def __init__(
        self,
        status_code: int,
        *,
        message: str = "",
        code: str = "",
        request_id: str = "",
        method: str = "",
        url: str = "",
        response_text: str = "",
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.code = code
        self.request_id = request_id
        self.method = method
        self.url = url
        self.response_text = response_text[:RESPONSE_TEXT_LIMIT]
        self.headers: dict[str, str] = _safe_headers(headers)
        super().__init__(self._describe())

    def _describe(self) -> str:
        text = f"{self.status_code}: {self.message}"
        if self.method:
            text = f"{self.method} {self.url} -> {text}"
        details = [
            f"{name}={value}"
            for name, value in (("code", self.code), ("request_id", self.request_id))
            if value
        ]
        if details:
            text += " [" + " ".join(details) + "]"
        return text

    def __str__(self) -> str:
        return self._describe()

    def _fields(self) -> dict[str, Any]:
        """Return the keyword arguments that rebuild this error (for pickling)."""
        return {
            "message": self.message,
            "code": self.code,
            "request_id": self.request_id,
            "method": self.method,
            "url": self.url,
            "response_text": self.response_text,
            "headers": dict(self.headers),
        }

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments: rebuild through a helper so errors survive pickling
        # (multiprocessing, concurrent.futures).
        return (_rebuild_api_error, (type(self), self.status_code, self._fields()))


def _rebuild_api_error(cls: type[APIError], status_code: int, fields: dict[str, Any]) -> APIError:
    return cls(status_code, **fields)


class BadRequestError(APIError):
    """400: the request was malformed or failed validation."""


class AuthenticationError(APIError):
    """401: the token is missing, invalid or expired. Never retried."""


class ForbiddenError(APIError):
    """403: a policy denies the caller this action."""


class NotFoundError(APIError):
    """404: the entity does not exist (or the caller may not know it does)."""


class ConflictError(APIError):
    """409: duplicate name, entity already in a terminal state, or a commit conflict."""


class GoneError(APIError):
    """410: the entity existed but is gone (deleted connector, expired logs, finished sandbox)."""


class PreconditionFailedError(APIError):
    """412: a precondition no longer holds (for example, an import source changed)."""


class LockedError(APIError):
    """423: the entity is locked (for example, a disabled connector)."""


class RateLimitError(APIError):
    """429: too many requests. Raised once the client's retries (which honour ``Retry-After``) are used up.

    Args:
        status_code: The HTTP status code (429).
        retry_after: Seconds the server asked to wait; by default read from the ``Retry-After`` header in
            ``headers`` (seconds or an HTTP date). None when the server did not say.
        **fields: The other `APIError` arguments.

    """

    def __init__(self, status_code: int = 429, *, retry_after: float | None = None, **fields: Any) -> None:
        super().__init__(status_code, **fields)
        self.retry_after = (
            retry_after if retry_after is not None else parse_retry_after(self.headers.get("retry-after"))
        )

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "retry_after": self.retry_after}


class ServerError(APIError):
    """Any status >= 500: the server failed."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    412: PreconditionFailedError,
    423: LockedError,
    429: RateLimitError,
}


def api_error_for_status(
    status_code: int,
    *,
    message: str = "",
    code: str = "",
    request_id: str = "",
    method: str = "",
    url: str = "",
    response_text: str = "",
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
) -> APIError:
    """Build the `APIError` subclass that stands for ``status_code``.

    Args:
        status_code: The HTTP status code.
        message: The error message.
        code: The machine-readable error code.
        request_id: The server's request id.
        method: The HTTP method of the failed request.
        url: The URL of the failed request.
        response_text: The raw body (truncated to 500 characters).
        headers: The response headers (credentials are dropped; a 429's ``Retry-After`` becomes
            `RateLimitError.retry_after`).

    Returns:
        An instance of the mapped class: the table in this module's docstring, `ServerError` for any
        status >= 500 and `APIError` itself for anything else.

    """
    cls = _STATUS_CLASSES.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else APIError
    return cls(
        status_code,
        message=message,
        code=code,
        request_id=request_id,
        method=method,
        url=url,
        response_text=response_text,
        headers=headers,
    )
