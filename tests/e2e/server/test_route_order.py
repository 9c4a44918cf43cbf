"""The mounted API routes: the busiest are tried first, and no request can change which route answers it."""

from __future__ import annotations

import httpx
from starlette.routing import Mount, Route

from tilde.server import LocalServer
from tilde.server._routing import HOT_ROUTES, paths_overlap
from tilde.server.app import API_PREFIX, _api_routes


def _mounted(server: LocalServer) -> list[Route]:
    mount = next(r for r in server.app.routes if isinstance(r, Mount) and r.path == API_PREFIX)
    return [route for route in mount.routes if isinstance(route, Route)]


def test_the_busiest_routes_are_tried_first(server: LocalServer) -> None:
    mounted = _mounted(server)
    assert [(sorted(r.methods or ())[0], r.path) for r in mounted[: len(HOT_ROUTES)]] == [
        ("GET", path) for _, path in HOT_ROUTES
    ]


def test_routes_that_can_match_one_path_keep_their_order(server: LocalServer) -> None:
    declared = [route for route in _api_routes()[0] if isinstance(route, Route)]
    mounted = _mounted(server)
    assert sorted(map(id, declared)) == sorted(map(id, mounted))
    position = {id(route): index for index, route in enumerate(mounted)}
    for i, first in enumerate(declared):
        for second in declared[i + 1 :]:
            if paths_overlap(first.path, second.path):
                assert position[id(first)] < position[id(second)], (first.path, second.path)


def test_overlap_is_judged_per_segment() -> None:
    assert paths_overlap("/a/{x}/c", "/a/b/{y}")
    assert not paths_overlap("/a/{x}/object", "/a/{x}/objects")
    assert not paths_overlap("/a/{x}", "/a/{x}/c")
    assert paths_overlap("/files/{rest:path}", "/a/b")


def test_the_api_mount_is_tried_first_and_the_other_routes_still_answer(
    server: LocalServer, api: httpx.Client
) -> None:
    assert isinstance(server.app.routes[0], Mount)
    assert server.app.routes[0].path == API_PREFIX
    base = server.endpoint_url
    assert httpx.get(base + "/healthz").json() == {"status": "ok"}
    assert httpx.get(base + "/openapi.json").status_code == 200
    assert httpx.put(base + "/uploads/nothing", content=b"x").status_code in (400, 401, 403, 404)
    assert httpx.get(base + "/nowhere").status_code == 404
    assert api.get("/organizations").status_code == 200
