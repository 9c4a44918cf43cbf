"""Self-authorising upload URLs and upload tokens (HMAC-SHA256 with the per-server secret).

An upload URL binds repository, session, path, upload id, part number (multipart) and expiry; changing any
query parameter breaks the signature. An upload token binds the same minus the part number, and is what
finalize / multipart calls check against the session and path they name.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from tilde.server.errors import ApiError

_SEP = "\x1f"


def _sign(secret: bytes, *fields: str) -> str:
    return hmac.new(secret, _SEP.join(fields).encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class UploadTarget:
    """What a verified upload URL authorises.

    Attributes:
        upload_id: The upload (single or multipart).
        repo_id: Repository.
        session_id: Session.
        path: Object path.
        part_number: The part for multipart uploads, None for single uploads.

    """

    upload_id: str
    repo_id: str
    session_id: str
    path: str
    part_number: int | None


def upload_url(
    secret: bytes, base_url: str, target: UploadTarget, ttl: float, *, now: float | None = None
) -> str:
    """Return the absolute presigned URL for ``target``, valid ``ttl`` seconds.

    Args:
        secret: The server's signing secret.
        base_url: ``scheme://host[:port]`` of this server.
        target: What the URL authorises.
        ttl: Lifetime in seconds.
        now: The current time (tests).

    """
    expires = f"{(time.time() if now is None else now) + ttl:.3f}"
    part = "" if target.part_number is None else str(target.part_number)
    fields = ("url", target.repo_id, target.session_id, target.path, target.upload_id, part, expires)
    params = {"repo": target.repo_id, "session": target.session_id, "path": target.path}
    if part:
        params["part"] = part
    params["expires"] = expires
    params["signature"] = _sign(secret, *fields)
    return f"{base_url}/uploads/{target.upload_id}?{urlencode(params)}"


def verify_upload_url(secret: bytes, upload_id: str, params: dict[str, str]) -> UploadTarget:
    """Check a presigned URL's query parameters; 403 JSON error when tampered with or expired.

    Args:
        secret: The server's signing secret.
        upload_id: The ``{upload_id}`` path segment.
        params: The query parameters.

    """
    try:
        repo_id, session_id, path = params["repo"], params["session"], params["path"]
        expires, signature = params["expires"], params["signature"]
        part = params.get("part", "")
        expiry = float(expires)
        part_number = int(part) if part else None
    except (KeyError, ValueError):
        raise ApiError(403, "invalid_signature", "malformed upload URL") from None
    expected = _sign(secret, "url", repo_id, session_id, path, upload_id, part, expires)
    if not hmac.compare_digest(expected, signature):
        raise ApiError(403, "invalid_signature", "upload URL signature does not match")
    if time.time() > expiry:
        raise ApiError(403, "url_expired", "upload URL has expired")
    return UploadTarget(upload_id, repo_id, session_id, path, part_number)


def upload_token(secret: bytes, repo_id: str, session_id: str, path: str, upload_id: str, ttl: float) -> str:
    """Return an opaque token binding an upload id to its repository, session and path.

    Args:
        secret: The server's signing secret.
        repo_id: Repository.
        session_id: Session.
        path: Object path.
        upload_id: The upload.
        ttl: Lifetime in seconds.

    """
    expires = str(int(time.time() + ttl))
    signature = _sign(secret, "token", repo_id, session_id, path, upload_id, expires)
    return f"{upload_id}.{expires}.{signature}"


def check_upload_token(secret: bytes, token: object, repo_id: str, session_id: str, path: str) -> str:
    """Return the upload id in ``token`` if it was issued for this repository, session and path (else 400).

    Args:
        secret: The server's signing secret.
        token: The ``upload_token`` the client sent back.
        repo_id: Repository of the request.
        session_id: Session of the request.
        path: Object path of the request.

    """
    if not isinstance(token, str) or token.count(".") < 2:
        raise ApiError(400, "invalid_upload_token", "upload_token is missing or malformed")
    upload_id, expires, signature = token.rsplit(".", 2)
    expected = _sign(secret, "token", repo_id, session_id, path, upload_id, expires)
    if not hmac.compare_digest(expected, signature):
        raise ApiError(400, "invalid_upload_token", "upload_token does not belong to this session and path")
    if not expires.isdigit() or time.time() > int(expires):
        raise ApiError(400, "upload_token_expired", "upload_token has expired")
    return upload_id
