"""Generated requests against a live server, held to the server's own OpenAPI document (``/openapi.json``).

Schemathesis generates valid and invalid requests for every operation the document lists and checks each
answer: no 5xx, a documented status, a documented content type, a body matching the documented schema, and
``405`` with an ``Allow`` header naming exactly the documented methods. Path parameters are pointed at real
entities half of the time, so the requests get past "not found" into the handlers' own validation.

Bounded and reproducible: a fixed number of examples per operation and a derandomised generator; the whole
run takes one to two minutes. Deleting an organization is left out: it would remove the entities the rest of
the run exercises.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from schemathesis import checks

from tilde.server import LocalServer
from tilde.server.openapi import server_document

ORG = "conformance"
REPO = "data"
AGENT = "bot"
ROLE = "ops"

#: Generated examples per operation; about 100 operations, so this is what bounds the run's time.
EXAMPLES = 30


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """A server of its own, with one organization, repository, agent and role to aim requests at."""
    with LocalServer(data_dir=tmp_path_factory.mktemp("conformance")) as server:
        with httpx.Client(
            base_url=server.endpoint_url + "/api/v1",
            headers={"Authorization": f"Bearer {server.api_key}"},
            timeout=60,
        ) as api:
            assert api.post("/organizations", json={"name": ORG}).status_code == 201
            assert api.post(f"/organizations/{ORG}/repositories", json={"name": REPO}).status_code == 201
            assert api.post(f"/organizations/{ORG}/agents", json={"name": AGENT}).status_code == 201
            assert api.post(f"/organizations/{ORG}/roles", json={"name": ROLE}).status_code == 201
        yield server


#: The document, built from the route table as the server builds it (a test below checks the two agree).
schema = schemathesis.openapi.from_dict(server_document())


#: Checks of how precisely the document describes valid input, left out: it cannot say that a name must
#: exist, that two fields go together, or that unknown query parameters are ignored (as HTTP allows).
NOT_EXPRESSIBLE = [checks.positive_data_acceptance, checks.negative_data_rejection]

#: Where a path parameter may be pointed at a real entity.
_REAL = {"org": ORG, "repo": REPO}


def _aim(case: Any) -> None:
    """Point the organization and repository at the real ones for about half of the cases (deterministic)."""
    if case.method == "DELETE" and case.path.endswith("/repositories/{repo}"):
        return  # deleting the repository would leave nothing for the other operations to find
    params = case.path_parameters or {}
    if "name" in params:
        params["name"] = AGENT if "/agents/" in case.path else ROLE
    if sum(map(ord, repr(sorted(params.items())))) % 2:
        for name, value in _REAL.items():
            if name in params:
                params[name] = value


@schema.exclude(method="DELETE", path="/organizations/{org}").parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_document(case: Any, live_server: LocalServer) -> None:
    _aim(case)
    case.call_and_validate(
        base_url=live_server.endpoint_url + "/api/v1",
        headers={"Authorization": f"Bearer {live_server.api_key}"},
        excluded_checks=NOT_EXPRESSIBLE,
    )


def test_document_lists_every_mounted_route(live_server: LocalServer) -> None:
    """The document is built from the route table: every ``/api/v1`` HTTP route is in it, and nothing else."""
    from starlette.routing import Mount, Route

    document = httpx.get(live_server.endpoint_url + "/openapi.json").json()
    assert document == server_document()
    documented = {(m.upper(), p) for p, ops in document["paths"].items() for m in ops}
    mounted: set[tuple[str, str]] = set()
    for route in live_server.app.routes:
        if isinstance(route, Mount) and route.path == "/api/v1":
            for inner in route.routes:
                if isinstance(inner, Route):
                    mounted |= {(m, inner.path) for m in (inner.methods or set()) - {"HEAD"}}
        elif isinstance(route, Route) and route.path.startswith("/api/v1/"):
            mounted |= {(m, route.path[len("/api/v1") :]) for m in (route.methods or set()) - {"HEAD"}}
    assert documented == mounted
