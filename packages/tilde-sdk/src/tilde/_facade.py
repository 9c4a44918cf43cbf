"""The module-level shortcuts of ``tilde``: `configure`, `repository` and the default client behind them.

They live here rather than in ``tilde/__init__.py`` so that the package's ``__init__`` stays a pkgutil-style
namespace module that documentation tools can merge with the other distributions' portions. The default
client itself is stored on the ``tilde`` module (``tilde._default_client``) so that it can be inspected and
reset there.
"""

from __future__ import annotations

import atexit
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tilde._composed import Client, Repository
    from tilde.core.credentials import CredentialsProvider

__all__ = ["configure", "get_default_client", "repository"]

_lock = threading.Lock()
_close_at_exit_registered = False


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
) -> None:
    """Set up the default client used by `tilde.repository` and `tilde.organizations`.

    Closes the previous default client (if any) and builds a new one. Arguments left as ``None`` fall back to
    the environment and ``~/.tilde/config.yaml``, as for `tilde.Client`.

    Args:
        api_key: The API key.
        endpoint_url: The server's root URL (default ``https://tilde.run``).
        default_sandbox_image: The image sandboxes use when a call names none.
        credentials_provider: An object with ``get_token() -> str``, asked for a token before each request.

    """
    import tilde
    from tilde._composed import Client

    with _lock:
        previous, tilde._default_client = tilde._default_client, None
        if previous is not None:
            previous.close()
        tilde._default_client = Client(
            api_key=api_key,
            endpoint_url=endpoint_url,
            default_sandbox_image=default_sandbox_image,
            credentials_provider=credentials_provider,
        )
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
