"""Misused arguments are caught before the code runs."""

from __future__ import annotations

import tilde


def misuse(repo: tilde.Repository) -> None:
    repo.execute("true", network="yes")  # expect-error
    repo.session().commit(42)  # expect-error
    org = tilde.organizations.get("acme")
    org.repositories.create("r", visibility=1)  # expect-error
