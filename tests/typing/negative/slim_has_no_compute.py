"""A data-only client's handles have no compute features."""

from __future__ import annotations

import tilde.data


def no_shell() -> None:
    client = tilde.data.Client()
    client.repository("acme/data").shell()  # expect-error
    client.repositories("acme").get("data").execute("true")  # expect-error
