"""The mounted API routes: the busiest are tried first, and no request can change which route answers it."""

from __future__ import annotations

import httpx
from starlette.routing import Mount, Route, WebSocketRoute

from tilde.server import LocalServer
from tilde.server._routing import HOT_ROUTES, paths_overlap
from tilde.server.app import API_PREFIX, _api_routes


def _mounted(server: LocalServer) -> list[Route]:
    """The API's HTTP routes as the application tries them, with paths relative to the API prefix."""
    return [
        Route(route.path.removeprefix(API_PREFIX), route.endpoint, methods=list(route.methods or ()))
        for route in server.app.routes
        if isinstance(route, Route) and route.path.startswith(API_PREFIX + "/")
    ]


def test_the_busiest_routes_are_tried_first(server: LocalServer) -> None:
    mounted = _mounted(server)
    assert [(sorted(r.methods or ())[0], r.path) for r in mounted[: len(HOT_ROUTES)]] == [
        ("GET", path) for _, path in HOT_ROUTES
    ]


def test_routes_that_can_match_one_path_keep_their_order(server: LocalServer) -> None:
    declared = [route for route in _api_routes()[0] if isinstance(route, Route)]
    mounted = _mounted(server)

    def key(route: Route) -> tuple[str, tuple[str, ...], object]:
        return route.path, tuple(sorted(route.methods or ())), route.endpoint

    assert sorted(map(key, declared), key=str) == sorted(map(key, mounted), key=str)
    position = {key(route): index for index, route in enumerate(mounted)}
    for i, first in enumerate(declared):
        for second in declared[i + 1 :]:
            if paths_overlap(first.path, second.path):
                assert position[key(first)] < position[key(second)], (first.path, second.path)


def test_overlap_is_judged_per_segment() -> None:
    assert paths_overlap("/a/{x}/c", "/a/b/{y}")
    assert not paths_overlap("/a/{x}/object", "/a/{x}/objects")
    assert not paths_overlap("/a/{x}", "/a/{x}/c")
    assert paths_overlap("/files/{rest:path}", "/a/b")


def test_the_api_routes_are_tried_first_without_a_mount_and_the_other_routes_still_answer(
    server: LocalServer, api: httpx.Client
) -> None:
    assert not any(isinstance(route, Mount) for route in server.app.routes)
    first = server.app.routes[0]
    assert isinstance(first, Route)
    assert first.path == API_PREFIX + HOT_ROUTES[0][1]
    websockets = [r for r in server.app.routes if isinstance(r, WebSocketRoute)]
    assert websockets
    assert all(r.path.startswith(API_PREFIX + "/") for r in websockets)
    base = server.endpoint_url
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(base + "/openapi.json").status_code == 200
    assert httpx.put(base + "/uploads/nothing", content=b"x").status_code in (400, 401, 403, 404)
    assert httpx.get(base + "/nowhere").status_code == 404
    assert api.get("/organizations").status_code == 200
