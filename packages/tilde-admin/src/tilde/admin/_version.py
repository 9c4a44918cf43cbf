"""Version of the tilde-admin distribution."""

__version__ = "0.1.0"
