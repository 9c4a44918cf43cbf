"""Version of the tilde-sdk distribution."""

__version__ = "0.8.0"
