"""Version of the tilde-data distribution."""

__version__ = "0.1.0"
