"""The SDK's logging: the ``tilde`` logger tree, switched on by ``TILDE_LOG``, and redaction of secrets.

Each layer logs to its own child of ``tilde``, so an application can tune one layer while ``TILDE_LOG`` (which
configures ``tilde``) still covers them all:

- ``tilde.core.http``: every request (DEBUG, with redacted headers), every response (INFO, with its status,
  time and request id), retries (INFO, with the attempt and the delay);
- ``tilde.core.auth``: where the token comes from, credential refreshes (DEBUG; never the token);
- ``tilde.data.upload``: multipart parts retried (INFO), multipart uploads aborted (WARNING);
- ``tilde.compute.exec``: websocket exec open, exit and close (DEBUG).

Nothing is logged unless the application configures logging or sets ``TILDE_LOG=debug|info``; tokens, upload
tokens and presigned signatures never appear in log records or error messages.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

__all__ = [
    "ENV_LOG",
    "LOGGER_NAME",
    "auth_logger",
    "configure_logging",
    "http_logger",
    "logger",
    "redact_headers",
    "redact_url",
]

LOGGER_NAME = "tilde"
ENV_LOG = "TILDE_LOG"
REDACTED = "***"

logger = logging.getLogger(LOGGER_NAME)
#: Requests, responses and retries of the API and presigned URLs.
http_logger = logging.getLogger(f"{LOGGER_NAME}.core.http")
#: The credential chain and token refreshes.
auth_logger = logging.getLogger(f"{LOGGER_NAME}.core.auth")

# Query parameters that authorise on their own: upload tokens, presigned-URL signatures and credentials.
_SECRET_QUERY_KEYS = frozenset(
    {
        "token",
        "upload_token",
        "access_token",
        "api_key",
        "signature",
        "sig",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "x-goog-signature",
        "x-goog-credential",
    }
)
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-amz-security-token"}
)
_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO}


class _TildeLogHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure_logging` installs, so it is installed once."""


def configure_logging(environ: Mapping[str, str] | None = None) -> None:
    """Attach a stderr handler to the ``tilde`` logger when ``TILDE_LOG`` is ``debug`` or ``info``.

    Idempotent; does nothing when the variable is unset or has another value, and never touches the root
    logger.

    Args:
        environ: The environment to read (defaults to `os.environ`).

    """
    value = (os.environ if environ is None else environ).get(ENV_LOG, "").strip().lower()
    level = _LEVELS.get(value)
    if level is None:
        return
    logger.setLevel(level)
    if not any(isinstance(handler, _TildeLogHandler) for handler in logger.handlers):
        handler = _TildeLogHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(name)s] %(message)s"))
        logger.addHandler(handler)


def redact_url(url: httpx.URL | str) -> str:
    """Return ``url`` with secret query values and any password replaced by ``***``.

    Args:
        url: An absolute or relative URL.

    Returns:
        The URL, safe to log.

    """
    parts = urlsplit(str(url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{hostport}" if ":" in userinfo else netloc
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(key, REDACTED if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in pairs],
                safe="*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_headers(headers: httpx.Headers | Mapping[str, str] | Iterable[tuple[str, str]]) -> dict[str, str]:
    """Return the headers as a dict with credentials replaced by ``***``.

    Args:
        headers: Request or response headers.

    Returns:
        A new dict, safe to log.

    """
    items = headers.items() if isinstance(headers, (httpx.Headers, Mapping)) else headers
    return {key: (REDACTED if key.lower() in _SECRET_HEADERS else value) for key, value in items}
