"""Compatibility module: commits (`tilde.data.commits`)."""

from tilde.data.commits import Commit, Commits

__all__ = ["Commit", "Commits"]
