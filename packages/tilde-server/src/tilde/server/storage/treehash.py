"""Tree ids: a homomorphic multiset hash of ``(path, etag)`` pairs.

The id of a tree is the sum, modulo 2^256, of SHA-256(path NUL etag) over its objects. Adding or removing an
object adds or subtracts its term, so a commit derives its tree id from its parent's in O(changes), and two
commits with the same objects have the same tree id whatever history led to them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

__all__ = ["EMPTY_TREE", "entry_term", "update_tree_id"]

_MODULUS = 1 << 256
EMPTY_TREE = "0" * 64


def entry_term(path: str, etag: str) -> int:
    """Return the hash term of one ``(path, etag)`` entry."""
    digest = hashlib.sha256(path.encode("utf-8") + b"\0" + etag.encode("utf-8")).digest()
    return int.from_bytes(digest, "big")


def update_tree_id(tree_id: str, added: Iterable[tuple[str, str]], removed: Iterable[tuple[str, str]]) -> str:
    """Derive a tree id from another one by adding and removing ``(path, etag)`` entries.

    Args:
        tree_id: The starting tree id (``EMPTY_TREE`` for no objects).
        added: Entries added.
        removed: Entries removed.

    Returns:
        The new tree id, 64 hex characters.

    """
    value = int(tree_id, 16)
    for path, etag in added:
        value += entry_term(path, etag)
    for path, etag in removed:
        value -= entry_term(path, etag)
    return format(value % _MODULUS, "064x")
