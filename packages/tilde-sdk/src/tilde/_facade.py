"""The module-level shortcuts of ``tilde``: `configure`, `repository` and the default client behind them.

They live here rather than in ``tilde/__init__.py`` so that the package's ``__init__`` stays a pkgutil-style
namespace module that documentation tools can merge with the other distributions' portions. The default
client itself is stored on the ``tilde`` module (``tilde._default_client``) so that it can be inspected and
reset there.

Handles and `configure`: a handle (``tilde.repository(...)``, ``tilde.organizations``, and everything reached
from them) stays bound to the client it was made from. `configure` closes the previous default client, so its
old handles raise `tilde.exceptions.ClientClosedError`, whose message says to take fresh handles after
configuring. Old handles do not silently follow the new default client: a session, sandbox or commit id made
against one endpoint or identity would otherwise be sent with another's key or to another server.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

    from tilde._composed import Client, Repository
    from tilde.core.credentials import CredentialsProvider

__all__ = ["configure", "get_default_client", "repository"]

_lock = threading.Lock()
_close_at_exit_registered = False

#: What `ClientClosedError` says for a handle whose default client `configure` replaced.
_REPLACED_BY_CONFIGURE = (
    "the default Tilde client this handle was made from was closed when tilde.configure() replaced it; take "
    "fresh handles after configuring (call tilde.repository('org/repo') or use tilde.organizations again)"
)


def _close_default_client_at_exit() -> None:
    """Close the default client's connection pool when the interpreter exits (no unclosed sockets)."""
    import tilde

    with _lock:
        client, tilde._default_client = tilde._default_client, None
    if client is not None:
        client.close()


def _ensure_closed_at_exit() -> None:
    """Register `_close_default_client_at_exit` once, the first time a default client is made."""
    global _close_at_exit_registered
    if not _close_at_exit_registered:
        atexit.register(_close_default_client_at_exit)
        _close_at_exit_registered = True


def configure(
    *,
    api_key: str | None = None,
    endpoint_url: str | None = None,
    default_sandbox_image: str | None = None,
    credentials_provider: CredentialsProvider | None = None,
    timeout: float | httpx.Timeout | None = None,
    max_retries: int | None = None,
    http_client: httpx.Client | None = None,
    extra_user_agent: str | None = None,
) -> None:
    """Set up the default client used by `tilde.repository` and `tilde.organizations`.

    Builds a new default client and closes the previous one (if any). Arguments left as ``None`` fall back to
    the environment and ``~/.tilde/config.yaml``, or to `tilde.Client`'s defaults. Handles made before this
    call belong to the closed client and raise `tilde.exceptions.ClientClosedError`: take fresh ones.

    Args:
        api_key: The API key.
        endpoint_url: The server's root URL (default ``https://tilde.run``).
        default_sandbox_image: The image sandboxes use when a call names none.
        credentials_provider: An object with ``get_token() -> str``, asked for a token before each request.
        timeout: Seconds (or an `httpx.Timeout`) per API call; default connect 5 s, everything else 60 s.
        max_retries: Retries after a connection failure, 429 or 502/503/504 (default 2).
        http_client: An `httpx.Client` to send API requests with; used as is and never closed by Tilde.
        extra_user_agent: Appended to the ``User-Agent`` after a space.

    Raises:
        ValueError: ``max_retries`` is negative or not an integer (the previous default client is kept).

    Example:
        ```python
        tilde.configure(endpoint_url="http://127.0.0.1:8080", timeout=120, max_retries=5)
        repo = tilde.repository("acme/data")
        ```

    """
    import tilde
    from tilde._composed import Client

    with _lock:
        # Build first: a bad argument leaves the working default client in place.
        replacement = Client(
            api_key=api_key,
            endpoint_url=endpoint_url,
            default_sandbox_image=default_sandbox_image,
            credentials_provider=credentials_provider,
            timeout=timeout,
            max_retries=2 if max_retries is None else max_retries,
            http_client=http_client,
            extra_user_agent=extra_user_agent,
        )
        previous, tilde._default_client = tilde._default_client, replacement
        if previous is not None:
            previous._close_hint = _REPLACED_BY_CONFIGURE
            previous.close()
        _ensure_closed_at_exit()


def get_default_client() -> Client:
    """Return the default client, creating it from the environment and config file on first use."""
    import tilde
    from tilde._composed import Client

    with _lock:
        client = tilde._default_client
        if client is None:
            client = tilde._default_client = Client()
            _ensure_closed_at_exit()
        return client


def repository(repo_path: str) -> Repository:
    """Return a handle on a repository through the default client; sends no request.

    Args:
        repo_path: ``"organization/repository"``.

    Returns:
        The repository handle, with data, compute and admin features.

    Raises:
        ValueError: ``repo_path`` is not of the form ``"organization/repository"``.

    """
    return get_default_client().repository(repo_path)
