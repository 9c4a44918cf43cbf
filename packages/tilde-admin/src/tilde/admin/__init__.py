"""Organizations, IAM, secrets, connectors and imports for the Tilde SDK."""

from tilde.admin._version import __version__

__all__ = ["__version__"]
