"""Compatibility module: API keys (`tilde.admin.api_keys`)."""

from tilde.admin.api_keys import APIKey, APIKeys

__all__ = ["APIKey", "APIKeys"]
