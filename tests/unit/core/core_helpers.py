"""Shared helpers for tilde-core's unit tests (a uniquely named module, importable from any test here)."""

from __future__ import annotations

from collections.abc import Callable

import httpx

ENDPOINT = "http://tilde.test"
BASE = f"{ENDPOINT}/api/v1"

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers from a script and remembers every request."""

    def __init__(self, *responses: httpx.Response | Exception | Handler) -> None:
        self.script = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.script:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        step = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)
