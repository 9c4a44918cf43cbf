"""Compatibility module: repositories. `Repository` is the full SDK's handle, ``tilde.Repository``."""

from tilde._composed import Repository
from tilde.data.repositories import Repositories

__all__ = ["Repositories", "Repository"]
