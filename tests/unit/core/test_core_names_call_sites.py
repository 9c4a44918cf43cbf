"""Every resource layer checks names and ids before a request and percent-encodes what it puts in a path."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

import tilde

UUID = "0b7e0000-0000-4000-8000-000000000001"


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"no request should be sent, got {request.method} {request.url}")


@pytest.fixture
def client() -> Iterator[tilde.Client]:
    http = httpx.Client(transport=httpx.MockTransport(_refuse))
    with tilde.Client(endpoint_url="http://tilde.test", api_key="k", http_client=http) as c:
        yield c
    http.close()


BAD_CALLS: list[tuple[str, Callable[[tilde.Client], object]]] = [
    ("organization name", lambda c: c.organizations.get("acme/repositories")),
    ("organization name", lambda c: c.organizations.delete("acme?x")),
    ("repository name", lambda c: c.repository("acme/da?ta")),
    ("organization name", lambda c: c.repository("Acme/data")),
    ("repository name", lambda c: c.repositories("acme").get("da#ta")),
    ("repository name", lambda c: c.repositories("acme").delete("../x")),
    ("repository name", lambda c: c.repositories("acme").create("x")),
    ("role name", lambda c: tilde.models.Roles(c, "acme").get("a/b")),
    ("agent name", lambda c: tilde.models.Agents(c, "acme").delete("ag ent")),
    ("secret key", lambda c: c.repository("acme/data").secrets.get("KEY/../x")),
    ("secret key", lambda c: c.repository("acme/data").secrets.create("1KEY", "v")),
    ("session id", lambda c: c.repository("acme/data").attach("s1/../../x")),
    ("sandbox id", lambda c: c.repository("acme/data").sandboxes.get("sb1?x=1")),
    ("trigger id", lambda c: c.repository("acme/data").sandbox_triggers.get("t1")),
    ("import job id", lambda c: c.repository("acme/data").imports.get("job/1")),
    ("connector id", lambda c: c.repository("acme/data").connectors.detach("c 1")),
    ("group id", lambda c: tilde.models.Groups(c, "acme").get("g1")),
    ("policy id", lambda c: tilde.models.Policies(c, "acme").delete("p1")),
    ("connector id", lambda c: tilde.models.Connectors(c, "acme").get("..")),
    ("commit id", lambda c: c.repository("acme/data").commits.get("")),
    ("API key id", lambda c: _role(c).api_keys.get("..")),
]


def _role(client: tilde.Client) -> tilde.models.Role:
    return tilde.models.Role(client, "acme", name="ci-deployer")


@pytest.mark.parametrize(("what", "call"), BAD_CALLS)
def test_bad_names_and_ids_raise_before_any_request(
    client: tilde.Client, what: str, call: Callable[[tilde.Client], object]
) -> None:
    with pytest.raises(ValueError, match=f"invalid {what}"):
        call(client)


def test_what_goes_into_a_path_is_percent_encoded() -> None:
    seen: list[str] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.raw_path.decode().split("?")[0])
        if request.method == "DELETE":
            return httpx.Response(204)
        return httpx.Response(200, json={"id": "x", "message": "m"})

    http = httpx.Client(transport=httpx.MockTransport(record))
    with tilde.Client(endpoint_url="http://tilde.test", api_key="k", http_client=http) as c:
        c.repository("acme/data").commits.get("a/b?c")
        tilde.models.Members(c, "acme").delete(UUID)
        c.repository("acme/my_data").sandboxes.get(UUID.upper()).finish()
    http.close()
    assert seen == [
        "/api/v1/organizations/acme/repositories/data/commits/a%2Fb%3Fc",
        f"/api/v1/organizations/acme/members/{UUID}",
        f"/api/v1/organizations/acme/repositories/my_data/sandboxes/{UUID.upper()}/finish",
    ]
