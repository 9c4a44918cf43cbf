"""The access log without secrets: query parameters that carry signatures, tokens or keys are redacted.

Presigned upload URLs (``/uploads/{id}?…&expires=…&signature=…``) authorize whoever holds them, and other
clients may put keys or tokens in query strings; uvicorn's access log prints the full request target. A
filter on the ``uvicorn.access`` logger rewrites such values to ``REDACTED`` before any handler sees them.

The access log is also a large share of a small request's cost when every line goes through `logging` (a
record, a walk up the stack for the caller, a copy of the record to format it, a lock and a write per line).
When the access logger is configured as ``tilde-server serve`` configures it (uvicorn's plain line format on
one stream handler), `AccessLineWriter` writes the very same lines, redacted the same way, straight to that
handler's stream, all the lines of one turn of the event loop in one write; any other configuration (colours,
another format, more handlers or filters) keeps the `logging` path.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from uvicorn.logging import AccessFormatter
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

__all__ = [
    "REDACTED",
    "UVICORN_ACCESS_FORMAT",
    "AccessLineWriter",
    "RedactQueryFilter",
    "TurnFlushedStreamHandler",
    "access_line_writer",
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


#: The access-line format of uvicorn's default logging configuration (the one `AccessLineWriter` writes).
UVICORN_ACCESS_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'

#: ``"200 OK"`` and the like, as uvicorn's access formatter writes a status (the code alone when unknown).
_STATUS_TEXT = {int(status): f"{int(status)} {status.phrase}" for status in http.HTTPStatus}


class AccessLineWriter:
    """Writes uvicorn's plain access lines to a stream handler's stream, one write per event-loop turn.

    The line is the one uvicorn's default configuration logs (``INFO:     client - "GET /path HTTP/1.1" 200
    OK``) with the target redacted by `redact_target`. Lines are written and flushed under the handler's lock
    when the current turn of the event loop ends, like `TurnFlushedStreamHandler`.

    Args:
        handler: The access logger's stream handler.

    """

    __slots__ = ("_handler", "_pending")

    def __init__(self, handler: logging.StreamHandler) -> None:  # type: ignore[type-arg]
        self._handler = handler
        self._pending: list[str] = []

    def log(self, scope: Any, status: int) -> None:
        """Queue the access line of a response to ``scope`` with ``status`` (written when the turn ends)."""
        target = get_path_with_query_string(scope)
        if "?" in target:
            target = redact_target(target)
        status_text = _STATUS_TEXT.get(status) or f"{status} "
        pending = self._pending
        pending.append(
            f'INFO:     {get_client_addr(scope)} - "{scope["method"]} {target} HTTP/{scope["http_version"]}" '
            f"{status_text}\n"
        )
        if len(pending) == 1:
            asyncio.get_running_loop().call_soon(self._write)

    def _write(self) -> None:
        lines, self._pending = self._pending, []
        handler = self._handler
        handler.acquire()
        try:
            stream = handler.stream
            stream.write("".join(lines))
            stream.flush()
        except Exception:  # a broken stream must not break requests; logging reports it as it would
            handler.handleError(logging.makeLogRecord({"msg": "access log write failed"}))
        finally:
            handler.release()


_writers: dict[int, AccessLineWriter] = {}


def access_line_writer(logger_name: str = "uvicorn.access") -> AccessLineWriter | None:
    """Return the writer for the access logger, or None when its configuration needs the `logging` path.

    The writer applies when the logger logs INFO lines to exactly one stream handler of its own (no
    propagation) with uvicorn's access formatter in its plain format and no colours, and the only filter on
    the logger or the handler is a `RedactQueryFilter` (the writer redacts the same way).

    Args:
        logger_name: The access logger's name.

    """
    logger = logging.getLogger(logger_name)
    if logger.propagate or logger.disabled or not logger.isEnabledFor(logging.INFO):
        return None
    handlers = logger.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    formatter = handler.formatter
    if (
        not isinstance(handler, logging.StreamHandler)
        or handler.level > logging.INFO
        or not isinstance(formatter, AccessFormatter)
        or formatter.use_colors
        or formatter._fmt != UVICORN_ACCESS_FORMAT
        or not all(isinstance(f, RedactQueryFilter) for f in (*logger.filters, *handler.filters))
    ):
        return None
    writer = _writers.get(id(handler))
    if writer is None or writer._handler is not handler:
        writer = _writers[id(handler)] = AccessLineWriter(handler)
    return writer
