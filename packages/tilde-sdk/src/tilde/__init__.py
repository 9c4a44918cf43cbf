"""The Tilde Python SDK facade (placeholder until the facade lands)."""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from tilde._version import __version__  # noqa: E402

__all__ = ["__version__"]
