"""Placeholder: routes arrive with the IAM work (CONTRACT §4.7-§4.10)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
