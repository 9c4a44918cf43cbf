"""Version of the tilde-server distribution."""

__version__ = "0.1.0"
