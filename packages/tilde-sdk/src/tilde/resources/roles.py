"""Compatibility module: roles (`tilde.admin.roles`)."""

from tilde.admin.roles import Role, Roles

__all__ = ["Role", "Roles"]
