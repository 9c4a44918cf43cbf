"""Version of the tilde-core distribution."""

__version__ = "0.1.0"
