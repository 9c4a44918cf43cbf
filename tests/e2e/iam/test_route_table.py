"""The route → action table is complete, its documentation is current, and every route checks its action.

The last test is what ties each handler's literal action to `ROUTE_ACTIONS`: a member without any policy
calls every mounted route and must be refused with a 403 naming exactly the table's action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from iam_helpers import IamOrg, assert_forbidden
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tilde.server.iam.actions import ACTIONS
from tilde.server.iam.route_actions import ROUTE_ACTIONS, normalise_path, render_actions_page

ROOT = Path(__file__).resolve().parents[3]
API = "/api/v1"


def mounted_routes(app: Any) -> set[tuple[str, str]]:
    """Every ``(method, path relative to /api/v1)`` the application serves under the API prefix."""
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> None:
        for route in routes:
            if isinstance(route, Mount):
                walk(route.routes, prefix + route.path)
            elif isinstance(route, WebSocketRoute):
                found.add(("WEBSOCKET", prefix + route.path))
            elif isinstance(route, Route):
                for method in route.methods or ():
                    found.add((method, prefix + route.path))

    walk(app.routes, "")
    return {(method, path[len(API) :]) for method, path in found if path.startswith(API + "/")}


@pytest.mark.backends("local", "postgres")  # reads the routes of the in-process server's app
def test_every_mounted_route_has_exactly_one_action(server: Any) -> None:
    mounted = {(method, normalise_path(path)) for method, path in mounted_routes(server.app)}
    table = {(method, normalise_path(path)) for method, path in ROUTE_ACTIONS}
    # Starlette answers HEAD on every GET route with the GET handler, so the GET entry covers it.
    table |= {("HEAD", path) for method, path in table if method == "GET"}
    assert mounted - table == set(), "mounted routes missing from ROUTE_ACTIONS"
    assert table - mounted == set(), "ROUTE_ACTIONS entries that no mounted route serves"
    assert len({(m, normalise_path(p)) for m, p in ROUTE_ACTIONS}) == len(ROUTE_ACTIONS), "duplicate entries"


def test_every_action_in_the_table_is_in_the_catalogue() -> None:
    assert set(ROUTE_ACTIONS.values()) <= set(ACTIONS)
    # RunAs is checked on run_as bodies, UseSandboxNetwork on sandbox bodies asking for network.
    unguarded = set(ACTIONS) - set(ROUTE_ACTIONS.values()) - {"RunAs", "UseSandboxNetwork"}
    assert unguarded == set()


def test_the_actions_page_is_generated_from_the_tables() -> None:
    page = (ROOT / "docs" / "reference" / "actions.md").read_text(encoding="utf-8")
    regenerate = "python -m tilde.server.iam.route_actions > docs/reference/actions.md"
    assert page == render_actions_page(), f"docs/reference/actions.md is stale: {regenerate}"


def _concrete(path: str) -> str:
    """Fill a template's parameters with values a member can name (authorization comes before lookups)."""
    values = {"repo": "data", "name": "someone", "key": "SOME_KEY"}
    out = path
    while "{" in out:
        start, end = out.index("{"), out.index("}")
        param = out[start + 1 : end].split(":")[0]
        out = out[:start] + values.get(param, "00000000-0000-7000-8000-000000000000") + out[end + 1 :]
    return out


@pytest.fixture(scope="module")
def outsider_member(iam: IamOrg) -> httpx.Client:
    """A member of the module's organization with no policy at all (and a repository named ``data``)."""
    iam.repository("data")
    return iam.user()[1]


ROUTES = sorted(ROUTE_ACTIONS.items())


@pytest.mark.parametrize(("route", "action"), ROUTES, ids=[f"{m} {p}" for (m, p), _ in ROUTES])
def test_a_member_without_policies_is_refused_with_the_routes_action(
    iam: IamOrg, outsider_member: httpx.Client, server: Any, route: tuple[str, str], action: str
) -> None:
    method, template = route
    path = _concrete(template.replace("{org}", iam.name))
    if action in ("ListOrganizations", "GetOrganization"):
        # Any member may see its organizations; an outsider may not see this one.
        response = outsider_member.request(method, path)
        assert response.status_code == 200, response.text
        return
    if action == "CreateOrganization":
        # Users may always create organizations; agents and roles never may.
        role_client = iam.role()[1]
        assert_forbidden(role_client.post(path, json={"name": "never-made"}), action)
        return
    if method == "WEBSOCKET":
        url = server.endpoint_url.replace("http://", "ws://") + API + path
        headers = {"Authorization": outsider_member.headers["Authorization"]}
        with (
            pytest.raises(InvalidStatus) as refused,
            connect(url, additional_headers=headers, open_timeout=10),
        ):
            pass
        assert refused.value.response.status_code == 403
        return
    params = {"path": "a.txt", "session_id": "s", "source_path": "a.txt", "destination_path": "b.txt"}
    body = {"paths": ["a.txt"], "name": "x", "policy_text": "", "prompt": "read", "username": "x"}
    if method in ("GET", "HEAD", "DELETE"):
        response = outsider_member.request(method, path, params=params)
    else:
        response = outsider_member.request(method, path, params=params, json=body)
    if method == "HEAD":
        assert response.status_code == 403
        return
    assert_forbidden(response, action)
