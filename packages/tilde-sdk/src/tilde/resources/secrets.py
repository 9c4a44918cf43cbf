"""Compatibility module: secrets (`tilde.admin.secrets`)."""

from tilde.admin.secrets import Secret, Secrets

__all__ = ["Secret", "Secrets"]
