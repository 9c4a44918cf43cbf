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

from tilde.server.api.common import engine_of, run_sync
from tilde.server.api.uploads import R, _open_session, _token_upload_id


async def list_parts(request: Request) -> Response:
    """Return the upload's part size and the parts received so far (ascending part numbers)."""
    repo_id, session_id, path = await _open_session(request)
    upload_id = _token_upload_id(request, repo_id, session_id, path, {})
    part_size, parts = await run_sync(engine_of(request).list_parts, repo_id, session_id, path, upload_id)
    body: dict[str, object] = {
        "upload_id": upload_id,
        "parts": [{"part_number": p.number, "etag": f'"{p.sha256}"', "size": p.size} for p in parts],
    }
    if part_size is not None:
        body["part_size"] = part_size
    return JSONResponse(body)


#: Routes under ``/api/v1``.
routes: list[BaseRoute] = [Route(R + "/object/multipart", list_parts, methods=["GET"])]
