"""An upload strategy that journals every upload it performs, and takes precedence over the built-ins."""

from __future__ import annotations

import json
import os
from collections.abc import Callable

from tilde.data.hookspecs import hookimpl
from tilde.data.models import PutObjectResult
from tilde.data.upload_strategies import SinglePutStrategy, UploadRequest, UploadStrategy

JOURNAL_ENV_VAR = "TILDE_UPLOAD_EXAMPLE_JOURNAL"


class JournalingStrategy:
    """Uploads everything in one presigned PUT and records each upload in a journal file."""

    name = "example-journal"
    priority = 100

    def accepts(self, upload: UploadRequest) -> bool:
        """Take every upload."""
        return True

    def upload(self, upload: UploadRequest) -> PutObjectResult:
        """Upload via the built-in single PUT, then journal it."""
        result = SinglePutStrategy().upload(upload)
        journal = os.environ.get(JOURNAL_ENV_VAR)
        if journal:
            with open(journal, "a", encoding="utf-8") as handle:
                handle.write(
                    json.dumps({"path": upload.path, "size": upload.source.size, "etag": result.etag})
                )
                handle.write("\n")
        return result


@hookimpl
def tilde_register_upload_strategies(register: Callable[[UploadStrategy], None]) -> None:
    """Offer the journaling strategy."""
    register(JournalingStrategy())
