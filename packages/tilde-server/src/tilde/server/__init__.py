"""A local Tilde-compatible server: storage engine, sandbox runtime and IAM."""

from tilde.server._version import __version__

__all__ = ["__version__"]
