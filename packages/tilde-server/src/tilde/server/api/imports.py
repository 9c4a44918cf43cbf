"""Import routes (CONTRACT §4.7 #56-#57, §6.5): start an import job, read its state.

``POST R/import`` names exactly one source: ``{connector_id}`` (a connector **attached** to this repository,
as the contract's flow attaches before importing) or ``{source_organization, source_repository}`` (another
repository the caller may list and read). Everything checkable is checked before answering 202: the body
(400), the connector (404 unknown or not attached, 410 deleted, 423 disabled), the caller's right to read the
source repository (403), and that no other import into this repository is running (409). The copy itself runs
in the background (`tilde.server.connectors.ImportRunner`).

``destination_path`` is a folder of this repository ("" for the root; a missing trailing ``/`` is added) and
each object lands at ``destination_path`` + its key relative to the import's base prefix. ``source_prefix``
is, for s3 connectors, a key prefix inside the bucket that must lie within the connector's own prefix (empty:
the connector's prefix); for local connectors a path prefix inside the directory; for repositories a path
prefix. Agents cannot import into repositories whose agent commits need approval (403): an import commits at
once.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._validate import opt_str
from tilde.server.api.common import (
    auth_of,
    lookup_org,
    read_json,
    registry_of,
    require_principal,
    resolve_repo,
    run_sync,
)
from tilde.server.api.connectors import store_of
from tilde.server.auth import Principal
from tilde.server.connectors import ImportRunner, parse_s3_uri
from tilde.server.errors import ApiError
from tilde.server.registry import OrgRecord, RepoRecord
from tilde.server.storage import InvalidArgument, validate_path

_BASE = "/organizations/{org}/repositories/{repo}/import"


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_import", message)


def _folder(value: str, what: str) -> str:
    """Return ``value`` as a folder prefix ("" or ending with ``/``), after checking it makes valid paths."""
    if not value:
        return ""
    folder = value if value.endswith("/") else value + "/"
    try:
        validate_path(folder + "x")
    except InvalidArgument as error:
        raise _bad(f"{what} {value!r} is not a valid path prefix: {error.message}") from None
    return folder


def _relative_prefix(value: str, what: str) -> str:
    """Check a path prefix (no leading ``/``, no ``.``/``..`` segment); keep it as given."""
    if value:
        try:
            validate_path(value + "x" if value.endswith("/") else value)
        except InvalidArgument as error:
            raise _bad(f"{what} {value!r} is not a valid path prefix: {error.message}") from None
    return value


def _connector_fields(
    request: Request, org: OrgRecord, repo: RepoRecord, body: dict[str, Any]
) -> dict[str, Any]:
    connector_id = body["connector_id"]
    if not isinstance(connector_id, str) or not connector_id:
        raise _bad("connector_id must be a non-empty string")
    store = store_of(request)
    connector = store.get_connector(org.id, connector_id)
    if not store.is_attached(repo.id, connector.id):
        raise ApiError(
            404,
            "not_found",
            f"connector {connector_id!r} is not attached to repository {repo.name!r} (attach it first)",
        )
    if connector.disabled:
        raise ApiError(423, "locked", f"connector {connector.name!r} is disabled")
    prefix = opt_str(body, "source_prefix", "", max_len=1024) or ""
    if connector.type == "s3":
        own = parse_s3_uri(connector.source_uri).prefix
        if prefix and not prefix.startswith(own):
            raise _bad(
                f"source_prefix {prefix!r} is outside the connector's prefix {own!r}"
                f" (give the bucket key prefix, e.g. {own + 'sub/'!r})"
            )
        if prefix.startswith("/"):
            raise _bad("source_prefix must not start with '/'")
    else:
        prefix = _relative_prefix(prefix, "source_prefix")
    return {"connector_id": connector.id, "source_prefix": prefix, "_label": connector.name}


def _repository_fields(request: Request, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    org_name, repo_name = body.get("source_organization"), body.get("source_repository")
    if not isinstance(org_name, str) or not org_name or not isinstance(repo_name, str) or not repo_name:
        raise _bad("source_organization and source_repository must both be non-empty strings")
    registry = registry_of(request)
    auth = auth_of(request)
    source_org = lookup_org(request, principal, org_name, "ListObjects")
    if not auth.can_access_org(principal, source_org):
        # Checked before looking the repository up, so outsiders cannot probe repository names.
        raise ApiError(403, "forbidden", f"no access to organization {org_name!r} (ListObjects refused)")
    source_repo = registry.get_repo(source_org.id, repo_name)
    prefix = _relative_prefix(opt_str(body, "source_prefix", "", max_len=1024) or "", "source_prefix")
    # Importing reads the whole prefix: the caller needs both the listing and the reading right on it.
    auth.authorize(principal, "ListObjects", org=source_org, repo=source_repo, path=prefix)
    auth.authorize(principal, "GetObject", org=source_org, repo=source_repo, path=prefix)
    return {
        "source_repository_id": source_repo.id,
        "source_organization": source_org.name,
        "source_repository": source_repo.name,
        "source_prefix": prefix,
        "_label": f"{source_org.name}/{source_repo.name}",
    }


async def create_import(request: Request) -> Response:
    """Validate an import request and start its job: 202 ``{job_id}``."""
    org, repo = resolve_repo(request, "CreateImport")
    principal = require_principal(request)
    body = await read_json(request)
    by_connector = body.get("connector_id") is not None
    by_repository = body.get("source_organization") is not None or body.get("source_repository") is not None
    if by_connector == by_repository:
        raise _bad("give exactly one source: connector_id, or source_organization and source_repository")
    if "destination_path" not in body:
        raise _bad("destination_path is required")
    destination = _folder(opt_str(body, "destination_path", "", max_len=1000) or "", "destination_path")
    message = opt_str(body, "commit_message", "", max_len=10_000) or ""
    if principal.type == "agent" and repo.agent_commits_require_approval:
        raise ApiError(
            403, "forbidden", "agents cannot import into a repository whose agent commits need approval"
        )
    if by_connector:
        fields = _connector_fields(request, org, repo, body)
    else:
        fields = _repository_fields(request, principal, body)
    label = fields.pop("_label")
    runner: ImportRunner = request.app.state.import_runner
    if runner.node_id is not None:
        fields["node_id"] = runner.node_id  # the replica that runs it (a cluster's recovery needs it)
    job = await run_sync(
        store_of(request).create_job,
        org_id=org.id,
        repo_id=repo.id,
        destination_path=destination,
        commit_message=message or f"Import from {label}",
        created_by_type=principal.type,
        created_by=principal.id,
        created_by_name=principal.name,
        **fields,
    )
    runner.submit(job)
    return JSONResponse({"job_id": job.id}, status_code=202)


async def get_import(request: Request) -> Response:
    """Return an import job of this repository (ImportJob)."""
    _, repo = resolve_repo(request, "GetImport")
    job = await run_sync(store_of(request).get_job, repo.id, request.path_params["job_id"])
    return JSONResponse(job.json())


routes: list[BaseRoute] = [
    Route(_BASE, create_import, methods=["POST"]),
    Route(_BASE + "/{job_id}", get_import, methods=["GET"]),
]
