"""Compatibility module: objects, their reader and the upload limits of earlier releases."""

from tilde.data.object_reader import ObjectReader
from tilde.data.objects import ReadOnlyObjects, SessionObjects
from tilde.data.upload_strategies import DEFAULT_PART_SIZE, DEFAULT_UPLOAD_THRESHOLD

#: Objects of known size below this many bytes go up in one request (a client's ``upload_threshold``).
SINGLE_UPLOAD_LIMIT = DEFAULT_UPLOAD_THRESHOLD
#: Bytes per part of a multipart upload (a client's ``multipart_part_size``).
MULTIPART_PART_SIZE = DEFAULT_PART_SIZE

__all__ = ["MULTIPART_PART_SIZE", "SINGLE_UPLOAD_LIMIT", "ObjectReader", "ReadOnlyObjects", "SessionObjects"]
