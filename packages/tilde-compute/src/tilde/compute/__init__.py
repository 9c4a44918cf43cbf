"""Sandboxes, shells, one-shot execution and triggers for the Tilde SDK."""

from tilde.compute._version import __version__

__all__ = ["__version__"]
