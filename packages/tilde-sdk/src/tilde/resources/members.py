"""Compatibility module: organization members (`tilde.admin.members`)."""

from tilde.admin.members import Member, Members

__all__ = ["Member", "Members"]
