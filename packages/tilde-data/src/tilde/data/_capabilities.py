"""The server's optional extensions (``GET /capabilities``), asked once per client and remembered.

A server without the document (404, 405, 501: the hosted API today, servers that predate it) is remembered
as having no extensions for the rest of the client's life; other failures are not remembered.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tilde.core.errors import APIError

if TYPE_CHECKING:
    from tilde.core import Client as CoreClient

__all__ = ["ABSENT_STATUSES", "BatchRoute", "Capabilities", "capabilities", "forget_batch_routes"]

#: What a server answers for a route it does not have (no route, no such method, not implemented).
ABSENT_STATUSES = frozenset({404, 405, 501})

_PATH = "/capabilities"
_ATTRIBUTE = "_tilde_capabilities"
_lock = threading.Lock()


@dataclass(frozen=True)
class BatchRoute:
    """One advertised batch route.

    Attributes:
        path: The route template with ``{org}`` and ``{repo}``, relative to the API base URL.
        max_files: Most files per request.
        max_file_bytes: Largest file per request (uploads; 0 when the server states none).
        max_body_bytes: Largest request body (uploads; 0 when the server states none).

    """

    path: str
    max_files: int
    max_file_bytes: int = 0
    max_body_bytes: int = 0

    def url(self, org: str, repo: str) -> str:
        """Return the route for one repository."""
        return self.path.replace("{org}", org).replace("{repo}", repo)


@dataclass(frozen=True)
class Capabilities:
    """The extensions a server advertises.

    Attributes:
        batch_upload: The ``objects:batch`` route, if any.
        batch_download: The ``objects:download`` route, if any.

    """

    batch_upload: BatchRoute | None = None
    batch_download: BatchRoute | None = None


_NONE = Capabilities()


def capabilities(client: CoreClient) -> Capabilities:
    """Return what ``client``'s server advertises, asking it once per client.

    Args:
        client: The client.

    Returns:
        The capabilities (none on a server without the document, or when asking failed).

    """
    known = getattr(client, _ATTRIBUTE, None)
    if isinstance(known, Capabilities):
        return known
    with _lock:
        known = getattr(client, _ATTRIBUTE, None)
        if isinstance(known, Capabilities):
            return known
        try:
            document = client._get_json(_PATH)
        except APIError as error:
            if error.status_code in ABSENT_STATUSES:
                setattr(client, _ATTRIBUTE, _NONE)
            return _NONE
        found = Capabilities(
            batch_upload=_route(document.get("batch_upload"), upload=True),
            batch_download=_route(document.get("batch_download"), upload=False),
        )
        setattr(client, _ATTRIBUTE, found)
        return found


def forget_batch_routes(client: CoreClient) -> None:
    """Remember that the batch routes are absent after all (a route answered 404, 405 or 501)."""
    setattr(client, _ATTRIBUTE, _NONE)


def _positive(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def _route(value: Any, *, upload: bool) -> BatchRoute | None:
    if not isinstance(value, dict):
        return None
    path = value.get("path")
    if not isinstance(path, str) or "{org}" not in path or "{repo}" not in path:
        return None
    max_files = _positive(value.get("max_files"))
    if max_files is None:
        return None
    if not upload:
        return BatchRoute(path, max_files)
    max_file_bytes = _positive(value.get("max_file_bytes"))
    max_body_bytes = _positive(value.get("max_body_bytes"))
    if max_file_bytes is None or max_body_bytes is None:
        return None
    return BatchRoute(path, max_files, max_file_bytes, max_body_bytes)
