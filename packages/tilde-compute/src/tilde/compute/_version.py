"""Version of the tilde-compute distribution."""

__version__ = "0.1.0"
