"""Route order for speed: the small requests clients make most are matched first.

Starlette tries a mount's routes one after another, a regular expression each, so a request for an object
used to try some twenty routes before its own. `hot_routes_first` moves the busiest routes to the front of the
list, each only past routes whose paths can never match the same request path: whichever route answered a
request before answers it still (and a 405 still names the same methods).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute

__all__ = ["HOT_ROUTES", "hot_routes_first", "paths_overlap", "under_prefix"]

R = "/organizations/{org}/repositories/{repo}"
#: ``(method, path)`` of the busiest routes, busiest first (paths relative to ``/api/v1``).
HOT_ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", R + "/object"),
    ("GET", R + "/objects"),
    ("GET", R),
)


def _segments(path: str) -> list[str | None] | None:
    """Split a route path into segments (None: a parameter); None when a parameter may span segments."""
    parts: list[str | None] = []
    for part in path.split("/"):
        if ":path}" in part:
            return None
        parts.append(None if "{" in part else part)
    return parts


def paths_overlap(first: str, second: str) -> bool:
    """Tell whether some request path could match both route paths (conservative: when unsure, yes)."""
    a, b = _segments(first), _segments(second)
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a, b, strict=True))


def hot_routes_first(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """Return ``routes`` with each of `HOT_ROUTES` moved as early as no overlapping route forbids."""
    ordered = list(routes)
    placed = 0  # the hot routes already moved stay ahead of the next ones
    for method, path in HOT_ROUTES:
        index = next(
            (
                i
                for i, route in enumerate(ordered)
                if isinstance(route, Route) and route.path == path and method in (route.methods or ())
            ),
            None,
        )
        if index is None:
            continue
        target = index
        while target > placed and not paths_overlap(_path_of(ordered[target - 1]), path):
            target -= 1
        ordered.insert(target, ordered.pop(index))
        placed = max(placed, target + 1)
    return ordered


def _path_of(route: BaseRoute) -> str:
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "/{anything:path}"


def under_prefix(prefix: str, routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """Return ``routes`` with ``prefix`` put in front of their paths, in the same order.

    The same routes as a ``Mount(prefix, routes=routes)`` would answer, without its second router: a request
    through a mount is matched by the outer router, then again by the mount's own, each layer a few
    microseconds of a small request.
    """
    flat: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route):
            flat.append(
                Route(
                    prefix + route.path,
                    route.endpoint,
                    methods=sorted(route.methods or ()) or None,
                    name=route.name,
                    include_in_schema=route.include_in_schema,
                )
            )
        elif isinstance(route, WebSocketRoute):
            flat.append(WebSocketRoute(prefix + route.path, route.endpoint, name=route.name))
        else:
            flat.append(Mount(prefix, routes=[route]))
    return flat
