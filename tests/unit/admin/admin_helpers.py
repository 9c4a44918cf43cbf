"""Helpers shared by the admin unit tests."""

from __future__ import annotations

import json
from typing import Any

BASE = "http://tilde.test/api/v1"
ORG = "/organizations/acme"


def body_of(call: Any) -> Any:
    """The JSON body a recorded call sent."""
    return json.loads(call.request.content)


def query_of(call: Any) -> dict[str, str]:
    """The query parameters a recorded call sent."""
    return dict(call.request.url.params)
