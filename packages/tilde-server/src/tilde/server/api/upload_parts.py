"""Listing the parts of a multipart upload received so far (an extension of CONTRACT §5.3).

``GET R/object/multipart?session_id&path&upload_id&upload_token`` answers ``{upload_id, parts, part_size?}``
(``part_size`` when the parts are placed in one file at multiples of it),
each part ``{part_number, etag, size}``, so that a client whose process died in the middle of an upload can
resume it from another process and send only the parts the server lacks. Authorised like the other upload
calls (``PutObject`` on the path, in an open session, with the upload's token).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from tilde.server.api._direct import multipart_store
from tilde.server.api.common import engine_of, run_sync
from tilde.server.api.uploads import R, _open_session, _token_upload_id


async def list_parts(request: Request) -> Response:
    """Return the upload's part size and the parts received so far (ascending part numbers)."""
    repo_id, session_id, path = await _open_session(request)
    upload_id = _token_upload_id(request, repo_id, session_id, path, {})
    engine = engine_of(request)
    part_size, parts = await run_sync(engine.list_parts, repo_id, session_id, path, upload_id)
    listed = [{"part_number": p.number, "etag": f'"{p.sha256}"', "size": p.size} for p in parts]
    direct = await run_sync(multipart_store, engine, upload_id)
    if direct is not None:
        # The parts went to the object store: its ETags (not SHA-256 digests) are what complete needs.
        held = await run_sync(direct.list_multipart_parts, upload_id)
        listed = [{"part_number": number, "etag": etag, "size": size} for number, etag, size in held]
    body: dict[str, object] = {"upload_id": upload_id, "parts": listed}
    if part_size is not None:
        body["part_size"] = part_size
    return JSONResponse(body)


#: Routes under ``/api/v1``.
routes: list[BaseRoute] = [Route(R + "/object/multipart", list_parts, methods=["GET"])]
