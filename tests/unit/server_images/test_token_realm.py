"""Where registry passwords go: only to token services over https or on a local network (client-only)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tilde.server.images import ImageNotFound, ImageStore


def _pull_through(realm: str, tmp_path: Path) -> list[str | None]:
    sent: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            sent.append(request.headers.get("authorization"))
            return httpx.Response(200, json={"token": "t0k"})
        if request.headers.get("authorization") != "Bearer t0k":
            return httpx.Response(401, headers={"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'})
        return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            store = ImageStore(tmp_path / "images", credentials=lambda host: ("robot", "pw"), http=http)
            with pytest.raises(ImageNotFound):
                await store.ensure("registry.example/app:1")

    asyncio.run(run())
    return sent


def test_credentials_go_to_an_https_token_service(tmp_path: Path) -> None:
    assert _pull_through("https://auth.example/token", tmp_path) == ["Basic cm9ib3Q6cHc="]


def test_credentials_never_go_to_a_plain_http_token_service_on_the_internet(tmp_path: Path) -> None:
    assert _pull_through("http://auth.example/token", tmp_path) == [None]


def test_a_token_service_on_a_private_network_may_use_plain_http(tmp_path: Path) -> None:
    assert _pull_through("http://10.1.2.3/token", tmp_path) == ["Basic cm9ib3Q6cHc="]
