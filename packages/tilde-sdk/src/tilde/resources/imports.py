"""Compatibility module: import jobs (`tilde.admin.imports`)."""

from tilde.admin.imports import ImportJob, Imports

__all__ = ["ImportJob", "Imports"]
