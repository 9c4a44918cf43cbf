"""The access log without secrets: query parameters that carry signatures, tokens or keys are redacted.

Presigned upload URLs (``/uploads/{id}?…&expires=…&signature=…``) authorize whoever holds them, and other
clients may put keys or tokens in query strings; uvicorn's access log prints the full request target. A
filter on the ``uvicorn.access`` logger rewrites such values to ``REDACTED`` before any handler sees them.
"""

from __future__ import annotations

import asyncio
import logging
import re
from urllib.parse import parse_qsl, quote, urlencode

__all__ = [
    "REDACTED",
    "RedactQueryFilter",
    "TurnFlushedStreamHandler",
    "defer_access_log_flush",
    "install_access_log_redaction",
    "redact_target",
]

#: What a secret value is replaced with.
REDACTED = "REDACTED"

#: Query parameter names (lowercase) whose values are secrets: any name containing one of these words.
_SECRET_WORDS = re.compile(r"sig|token|key|secret|password|passwd|credential|auth", re.IGNORECASE)
#: A query of ``name=value`` pairs in characters that form-decoding and re-encoding leave as they are.
_PLAIN_QUERY = re.compile(r"[\w.~/:-]+=[\w.~/:-]*(?:&[\w.~/:-]+=[\w.~/:-]*)*", re.ASCII)


def redact_target(target: str) -> str:
    """Return a request target (path and query) with secret query values replaced by `REDACTED`.

    Args:
        target: e.g. ``"/uploads/u1?expires=1&signature=abc"``.

    Returns:
        e.g. ``"/uploads/u1?expires=1&signature=REDACTED"``; targets without a query are returned unchanged.

    """
    path, sep, query = target.partition("?")
    if not sep:
        return target
    if _PLAIN_QUERY.fullmatch(query) and not _SECRET_WORDS.search(query):
        # Plain ``name=value`` pairs that re-encode to themselves, none of them secret: nothing to change.
        return target
    pairs = parse_qsl(query, keep_blank_values=True)
    if not pairs:
        # Not a form-encoded query: nothing to recognise a secret by, so show none of it.
        return f"{path}?{REDACTED}" if query else target
    redacted = [(name, REDACTED if _SECRET_WORDS.search(name) else value) for name, value in pairs]
    return f"{path}?{urlencode(redacted, quote_via=quote, safe='/:')}"


class RedactQueryFilter(logging.Filter):
    """A logging filter that redacts secret query values in access-log records (never drops a record)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record's string arguments that look like request targets."""
        args = record.args
        if isinstance(args, tuple) and args:
            record.args = tuple(
                redact_target(arg) if isinstance(arg, str) and "?" in arg else arg for arg in args
            )
        elif isinstance(record.msg, str) and "?" in record.msg and not args:
            record.msg = " ".join(redact_target(part) for part in record.msg.split(" "))
        return True


def install_access_log_redaction(logger_name: str = "uvicorn.access") -> RedactQueryFilter:
    """Attach a `RedactQueryFilter` to the access logger (once); returns the filter in place.

    Args:
        logger_name: The access logger's name.

    Returns:
        The filter attached to the logger.

    """
    logger = logging.getLogger(logger_name)
    for existing in logger.filters:
        if isinstance(existing, RedactQueryFilter):
            return existing
    redactor = RedactQueryFilter()
    logger.addFilter(redactor)
    return redactor


class TurnFlushedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that flushes once per turn of the running event loop rather than after every record.

    An access-log line is written per request; flushing each one is a ``write`` system call per request.
    Records logged on an event loop are flushed together when the loop's current turn ends (so a line is
    never held longer than that); records logged anywhere else are flushed at once, as usual.
    """

    _flush_pending = False

    def flush(self) -> None:
        """Flush at the end of the event loop's turn (at once outside an event loop)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().flush()
            return
        if not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        super().flush()


def defer_access_log_flush(logger_name: str = "uvicorn.access") -> None:
    """Swap the access logger's plain stream handlers for `TurnFlushedStreamHandler` ones (same settings)."""
    logger = logging.getLogger(logger_name)
    for index, handler in enumerate(list(logger.handlers)):
        if type(handler) is not logging.StreamHandler:
            continue
        replacement = TurnFlushedStreamHandler(handler.stream)
        replacement.setLevel(handler.level)
        replacement.setFormatter(handler.formatter)
        for handler_filter in handler.filters:
            replacement.addFilter(handler_filter)
        logger.handlers[index] = replacement
        handler.close()
