"""Compatibility module: organizations (`tilde.admin.organizations`)."""

from tilde.admin.organizations import Organization, Organizations

__all__ = ["Organization", "Organizations"]
