"""The request/retry/error-mapping logic shared by the sync and async clients, free of I/O.

`RequestCore.exchange` is a generator that decides what to do and yields *actions* (`NeedToken`,
`Send`, `ReadBody`, `CloseResponse`, `Sleep`) for a driver to perform. The sync driver performs them with
blocking calls, the async driver with awaits; network exceptions are thrown back into the generator. So the
retry policy, the headers, the logging and the status → exception mapping exist exactly once.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Generator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NoReturn, Union

import httpx

from tilde.core._logging import http_logger as logger
from tilde.core._logging import redact_headers, redact_url
from tilde.core.errors import (
    APIConnectionError,
    APIError,
    APITimeoutError,
    SerializationError,
    TransportError,
    api_error_for_status,
    parse_retry_after,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "IDEMPOTENCY_KEY_HEADER",
    "IDEMPOTENT_METHODS",
    "UPLOAD_TIMEOUT",
    "Action",
    "CloseResponse",
    "Exchange",
    "NeedToken",
    "ReadBody",
    "RequestCore",
    "RetryPolicy",
    "Send",
    "Sleep",
    "error_from_response",
    "json_object",
    "optional_json_object",
    "transport_error",
]

#: API calls: connect 5 s, everything else 60 s.
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=5.0)
#: Presigned uploads: connect 30 s, read 120 s, write unlimited (large bodies on slow links).
UPLOAD_TIMEOUT = httpx.Timeout(connect=30.0, read=120.0, write=None, pool=30.0)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
#: A request carrying this header is retried whatever its method: the server answers a repeat with the
#: outcome of the first (session commits honour it).
IDEMPOTENCY_KEY_HEADER = "Idempotency-Key"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: The response header our server (and the hosted one) names each request with.
REQUEST_ID_HEADER = "X-Request-Id"

_MESSAGE_EXCERPT = 200

# Failures that happen before any byte of the request left: safe to retry whatever the method.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Failures after the request may have reached the server: retried for idempotent methods only.
_RETRYABLE_NETWORK = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


# The actions are plain slotted classes, not frozen dataclasses: one of each kind is made for every request,
# and a dataclass costs a compiled function per generated method when ``import tilde.core`` runs.


class NeedToken:
    """Ask the driver for the bearer token (it may fetch or refresh one)."""

    __slots__ = ()


class Send:
    """Send ``request``; the driver answers with the response or throws the `httpx.RequestError`."""

    __slots__ = ("follow_redirects", "request", "stream")

    def __init__(self, request: httpx.Request, stream: bool, follow_redirects: bool) -> None:
        self.request = request
        self.stream = stream
        self.follow_redirects = follow_redirects


class ReadBody:
    """Read the whole body of a streamed response."""

    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class CloseResponse:
    """Release a response that will not be returned (a retried or failed attempt)."""

    __slots__ = ("response",)

    def __init__(self, response: httpx.Response) -> None:
        self.response = response


class Sleep:
    """Wait ``seconds`` before the next attempt."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


Action = Union[NeedToken, Send, ReadBody, CloseResponse, Sleep]  # noqa: UP007 (runtime alias on 3.10)
Exchange = Generator[Action, Any, httpx.Response]


@dataclass
class RetryPolicy:
    """When and how long to wait before trying a request again.

    Attributes:
        max_retries: Attempts after the first one (0 disables retries).
        initial_delay: Backoff before the first retry, doubled for each further one.
        max_delay: Cap on the computed backoff.
        max_retry_after: Cap on a server-requested ``Retry-After``.

    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Exponential backoff with jitter: up to a quarter less than ``initial * 2**attempt`` (capped)."""
        base: float = min(self.max_delay, self.initial_delay * 2.0**attempt)
        return base * (1.0 - 0.25 * rng.random())

    def retry_after(self, response: httpx.Response, now: Callable[[], datetime]) -> float | None:
        """Seconds requested by the ``Retry-After`` header (delta or HTTP date), capped; None if absent."""
        seconds = parse_retry_after(response.headers.get("Retry-After"), now)
        return None if seconds is None else min(seconds, self.max_retry_after)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _is_replayable(content: Any) -> bool:
    # A generator or file body is consumed by the first attempt: it can only be retried if nothing was sent.
    return content is None or isinstance(content, (bytes, bytearray, memoryview, str))


def _clean_params(params: Any) -> Any:
    # Resource layers pass optional filters as None; dropping them makes "None" and "absent" the same.
    if isinstance(params, Mapping):
        return {key: value for key, value in params.items() if value is not None}
    return params


def transport_error(message: str, exc: BaseException) -> TransportError:
    """Wrap a network failure in the `TransportError` subclass that says what kind it was.

    Args:
        message: What failed (method and redacted URL).
        exc: The `httpx` exception (kept as ``cause`` and ``__cause__``).

    Returns:
        `APITimeoutError` for any timeout, `APIConnectionError` for refused or dropped connections, protocol
        and proxy failures, `TransportError` itself for anything else (an unsupported URL scheme, ...).

    """
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(message, cause=exc)
    if isinstance(exc, (httpx.NetworkError, httpx.ProtocolError, httpx.ProxyError)):
        return APIConnectionError(message, cause=exc)
    return TransportError(message, cause=exc)


def response_request_id(response: httpx.Response) -> str:
    """Return the server's id for this exchange (the ``X-Request-Id`` header), or ``""``."""
    request_id: str = response.headers.get(REQUEST_ID_HEADER, "")
    return request_id


def error_from_response(response: httpx.Response, *, method: str = "", url: str = "") -> APIError:
    """Build the `APIError` subclass for a non-2xx response whose body has been read.

    Args:
        response: The response (body already read).
        method: The request method (defaults to the response's request).
        url: The URL to report (defaults to the redacted request URL).

    Returns:
        The mapped exception, with ``message``, ``code`` and ``request_id`` taken from a JSON error body,
        or the start of the text otherwise.

    """
    text = response.text
    message = code = request_id = ""
    try:
        body = json.loads(response.content) if response.content else None
    except ValueError:
        body = None
    if isinstance(body, dict):
        raw_message = body.get("message")
        message = raw_message if isinstance(raw_message, str) else ""
        code = str(body.get("code") or "")
        request_id = str(body.get("request_id") or "")
    if not message:
        message = text[:_MESSAGE_EXCERPT]
    if not message and response.is_redirect:
        message = f"unexpected redirect to {redact_url(response.headers.get('Location', ''))}"
    if not message:
        message = response.reason_phrase
    request = response.request
    return api_error_for_status(
        response.status_code,
        message=message,
        code=code,
        request_id=request_id or response_request_id(response),
        method=method or request.method,
        url=url or redact_url(request.url),
        response_text=text,
        headers=response.headers,
    )


def json_object(response: httpx.Response) -> dict[str, Any]:
    """Decode a response body that must be a JSON object.

    Args:
        response: A successful response (body read).

    Returns:
        The object.

    Raises:
        SerializationError: The body is empty, not JSON, or not an object.

    """
    where = f"{response.request.method} {redact_url(response.request.url)}"
    try:
        body = json.loads(response.content)
    except ValueError as exc:
        raise SerializationError(
            f"{where}: expected a JSON object, got {response.text[:_MESSAGE_EXCERPT]!r}"
        ) from exc
    if not isinstance(body, dict):
        raise SerializationError(f"{where}: expected a JSON object, got {type(body).__name__}")
    return body


def optional_json_object(response: httpx.Response) -> dict[str, Any] | None:
    """Like `json_object`, but a 204 or an empty body gives None.

    Args:
        response: A successful response (body read).

    Returns:
        The object, or None.

    Raises:
        SerializationError: A non-empty body that is not a JSON object.

    """
    if response.status_code == 204 or not response.content.strip():
        return None
    return json_object(response)


class RequestCore:
    """Decides what every request sends and what every response means.

    Args:
        base_url: The API root (``…/api/v1``); relative paths are appended to it.
        user_agent: The ``User-Agent`` header value.
        retry: The retry policy.
        timeout: Default timeout for API calls, or None to use the HTTP client's own.
        default_headers: Headers sent with every API request (per-call headers win over them).
        request_ids: Where the request id of each API response is recorded, per thread or task.

    """

    def __init__(
        self,
        *,
        base_url: str,
        user_agent: str,
        retry: RetryPolicy,
        timeout: httpx.Timeout | None,
        default_headers: Mapping[str, str] | None = None,
        request_ids: ContextVar[str | None] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.user_agent = user_agent
        self.retry = retry
        self.timeout = timeout
        self.default_headers: dict[str, str] = dict(default_headers or {})
        self.request_ids = request_ids
        # Replaceable for tests: jitter source and wall clock (for Retry-After dates).
        self.rng = random.Random()
        self.now: Callable[[], datetime] = _utcnow

    def url_for(self, path: str) -> str:
        """Absolute URL for ``path`` (a path under the API root, or already an absolute URL)."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url + (path if path.startswith("/") else "/" + path)

    @property
    def ws_base_url(self) -> str:
        """The API root with ``ws``/``wss`` instead of ``http``/``https``."""
        if self.base_url.startswith("https://"):
            return "wss://" + self.base_url[len("https://") :]
        if self.base_url.startswith("http://"):
            return "ws://" + self.base_url[len("http://") :]
        return self.base_url

    def retry_delay(
        self,
        method: str,
        attempt: int,
        *,
        replayable: bool,
        error: httpx.RequestError | None = None,
        response: httpx.Response | None = None,
        keyed: bool = False,
    ) -> float | None:
        """Seconds to wait before retrying, or None when the outcome is final.

        Args:
            method: The request method.
            attempt: How many retries were already made.
            replayable: Whether the request body can be sent again.
            error: The network failure, if the attempt failed without a response.
            response: The response, if one arrived.
            keyed: The request carries an ``Idempotency-Key`` (retried like an idempotent method).

        Returns:
            The delay, or None. 401 and other 4xx are never retried; nothing is retried past ``max_retries``.

        """
        if attempt >= self.retry.max_retries:
            return None
        idempotent = keyed or method.upper() in IDEMPOTENT_METHODS
        if error is not None:
            if isinstance(error, _NOTHING_SENT):
                return self.retry.backoff(attempt, self.rng)
            if idempotent and replayable and isinstance(error, _RETRYABLE_NETWORK):
                return self.retry.backoff(attempt, self.rng)
            return None
        if response is not None and response.status_code in RETRY_STATUSES and idempotent and replayable:
            requested = self.retry.retry_after(response, self.now)
            return requested if requested is not None else self.retry.backoff(attempt, self.rng)
        return None

    def presigned_put(
        self,
        build_request: Callable[..., httpx.Request],
        url: str,
        content: Any,
        headers: Mapping[str, str] | None = None,
    ) -> Exchange:
        """Run a PUT to a self-authorising upload URL as a generator of driver actions.

        No Authorization header, the upload timeouts, ``Content-Type: application/octet-stream`` unless
        the caller sets one; a non-2xx answer becomes `TransportError` (the URL is storage, not the API).

        Args:
            build_request: The upload HTTP client's ``build_request``.
            url: The absolute presigned URL.
            content: Bytes, or an iterator of bytes (not retried once sent).
            headers: Extra headers.

        Returns:
            The generator; its return value is the successful response.

        """
        merged = {"Content-Type": "application/octet-stream", **(headers or {})}
        return self.exchange(
            build_request,
            "PUT",
            url,
            content=content,
            headers=merged,
            timeout=UPLOAD_TIMEOUT,
            authenticate=False,
            raise_api_errors=False,
        )

    def exchange(
        self,
        build_request: Callable[..., httpx.Request],
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
        follow_redirects: bool = False,
        timeout: Any = None,
        stream: bool = False,
        authenticate: bool = True,
        raise_api_errors: bool = True,
    ) -> Exchange:
        """Run one logical request (with its retries) as a generator of driver actions.

        Args:
            build_request: The HTTP client's ``build_request`` (so its own defaults still apply).
            method: HTTP method.
            path: Path under the API root, or an absolute URL.
            params: Query parameters; None values are dropped.
            json: JSON body.
            content: Raw body (bytes, str, or an iterator of bytes).
            headers: Extra headers (win over the defaults).
            follow_redirects: Follow 3xx answers (Authorization is dropped on cross-origin hops).
            timeout: Per-call timeout; None means the client default.
            stream: Return without reading the body (successful responses only).
            authenticate: Send ``Authorization`` (False for self-authorising presigned URLs).
            raise_api_errors: Map non-2xx to `APIError` subclasses; False maps them to `TransportError`
                (presigned URLs are storage, not the Tilde API).

        Returns:
            The generator; its return value is the successful response.

        """
        method = method.upper()
        url = self.url_for(path)
        replayable = _is_replayable(content)
        keyed = any(name.lower() == IDEMPOTENCY_KEY_HEADER.lower() for name in (headers or {}))
        params = _clean_params(params)
        if timeout is None:
            timeout = self.timeout if self.timeout is not None else httpx.USE_CLIENT_DEFAULT
        attempt = 0
        while True:
            request_headers = {"User-Agent": self.user_agent}
            if authenticate:
                # Presigned storage URLs get none of the API's default headers: they are signed as they are.
                request_headers.update(self.default_headers)
                token = yield NeedToken()
                request_headers["Authorization"] = f"Bearer {token}"
            if headers:
                request_headers.update(headers)
            request = build_request(
                method,
                url,
                params=params,
                json=json,
                content=content,
                headers=request_headers,
                timeout=timeout,
            )
            shown = redact_url(request.url)
            logger.debug(
                "request %s %s attempt=%d headers=%s",
                method,
                shown,
                attempt + 1,
                redact_headers(request.headers),
            )
            started = time.monotonic()
            try:
                response = yield Send(request, stream, follow_redirects)
            except httpx.RequestError as exc:
                delay = self.retry_delay(method, attempt, replayable=replayable, error=exc, keyed=keyed)
                if delay is None:
                    raise transport_error(f"{method} {shown} failed: {exc!r}", exc) from exc
                logger.info(
                    "%s %s failed (%r); retrying in %.2fs (retry %d of %d)",
                    method,
                    shown,
                    exc,
                    delay,
                    attempt + 1,
                    self.retry.max_retries,
                )
                yield Sleep(delay)
                attempt += 1
                continue
            assert isinstance(response, httpx.Response)
            elapsed = time.monotonic() - started
            request_id = response_request_id(response)
            if raise_api_errors and self.request_ids is not None:
                # Only the API's answers: a storage URL's id would mean nothing to Tilde's support.
                self.request_ids.set(request_id or None)
            logger.info(
                "%s %s -> %d (%.3fs) request_id=%s",
                method,
                shown,
                response.status_code,
                elapsed,
                request_id or "-",
            )
            delay = self.retry_delay(method, attempt, replayable=replayable, response=response, keyed=keyed)
            if delay is not None:
                logger.info(
                    "%s %s -> %d; retrying in %.2fs (retry %d of %d) request_id=%s",
                    method,
                    shown,
                    response.status_code,
                    delay,
                    attempt + 1,
                    self.retry.max_retries,
                    request_id or "-",
                )
                yield CloseResponse(response)
                yield Sleep(delay)
                attempt += 1
                continue
            if response.is_success:
                return response
            yield from self._fail(response, method, shown, stream=stream, raise_api_errors=raise_api_errors)

    def _fail(
        self, response: httpx.Response, method: str, shown: str, *, stream: bool, raise_api_errors: bool
    ) -> Generator[Action, Any, NoReturn]:
        """Raise the exception for a final non-2xx response (reading a streamed body first)."""
        if stream:
            try:
                yield ReadBody(response)
            except httpx.RequestError as exc:
                yield CloseResponse(response)
                raise transport_error(f"{method} {shown} failed: {exc!r}", exc) from exc
            yield CloseResponse(response)
        if not raise_api_errors:
            raise TransportError(
                f"{method} {shown} -> {response.status_code}: {response.text[:_MESSAGE_EXCERPT]}"
            )
        raise error_from_response(response, method=method, url=shown)
