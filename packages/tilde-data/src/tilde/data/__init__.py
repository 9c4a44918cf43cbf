"""Versioned objects, sessions and commits for the Tilde SDK."""

from tilde.data._version import __version__

__all__ = ["__version__"]
