"""Exceptions raised by the Tilde SDK.

Every exception the SDK raises on purpose derives from `TildeError`::

    TildeError
    ├── ConfigurationError          no token at request time, credentials URI answered non-200, bad plugin
    ├── TransportError              network failure (DNS, refused, timeout, broken connection)
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
        └── ServerError             any status >= 500

Statuses with no subclass of their own (405, 416, 429, ...) raise `APIError` itself.
`api_error_for_status` is the one place that maps a status code to its class.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIError",
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
]

#: How much of a response body an `APIError` keeps in ``response_text``.
RESPONSE_TEXT_LIMIT = 500


class TildeError(Exception):
    """Base class of every exception the SDK raises on purpose."""


class ConfigurationError(TildeError):
    """The client is not configured well enough to make a request (for example: no API key)."""


class TransportError(TildeError):
    """The request did not get an HTTP answer: DNS failure, refused connection, timeout, broken stream.

    Args:
        message: What failed, including the method and URL when known.
        cause: The underlying exception; also set as ``__cause__``.

    """

    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


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

    def __init__(self, message: str, *, result: Any = None, command: str = "") -> None:
        super().__init__(message)
        self.result = result
        self.command = command


class APIError(TildeError):
    """The server answered with a non-2xx status.

    Args:
        status_code: The HTTP status code.
        message: The ``message`` field of the error body (or the start of a non-JSON body).
        code: The machine-readable ``code`` field of the error body.
        request_id: The ``request_id`` field of the error body.
        method: The HTTP method of the failed request.
        url: The URL of the failed request.
        response_text: The raw response body, truncated to 500 characters.

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
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.code = code
        self.request_id = request_id
        self.method = method
        self.url = url
        self.response_text = response_text[:RESPONSE_TEXT_LIMIT]
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

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor arguments: rebuild through a helper so errors survive pickling
        # (multiprocessing, concurrent.futures).
        return (
            _rebuild_api_error,
            (
                type(self),
                self.status_code,
                {
                    "message": self.message,
                    "code": self.code,
                    "request_id": self.request_id,
                    "method": self.method,
                    "url": self.url,
                    "response_text": self.response_text,
                },
            ),
        )


def _rebuild_api_error(cls: type[APIError], status_code: int, fields: dict[str, str]) -> APIError:
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
    )
