"""Transport, configuration, credentials, errors and pagination for the Tilde SDK."""

from tilde.core._version import __version__

__all__ = ["__version__"]
