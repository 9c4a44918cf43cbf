"""Lower layers shared between sandboxes that start from the same commit.

A commit's tree never changes, and an overlay never writes to its lower layer, so every sandbox whose session
has no staged changes yet can mount the same hard-link tree of its base commit (per path prefix). Building a
tree costs a link per object; reusing one costs nothing, which is what makes repeated sandboxes on a large
repository start quickly. Trees no sandbox uses are evicted beyond ``capacity``.

Used only from the runtime's event loop (no locking).
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tilde.server.sandbox.layers import LowerIndex

__all__ = ["LowerCache", "LowerKey", "LowerTree"]

#: ``(repo_id, base_commit_id, path_prefix)``.
LowerKey = tuple[str, "str | None", str]


@dataclass
class LowerTree:
    """One shared tree (the handle `LowerCache.acquire` returns).

    Attributes:
        path: The tree's directory.
        ready: Resolves to the tree's index once built.
        refs: Sandboxes using it.
        cached: False once `LowerCache.forget` took it out of the cache.

    """

    path: str
    ready: asyncio.Future[LowerIndex]
    refs: int = 0
    cached: bool = True


class LowerCache:
    """Shared, reference-counted lower trees under ``root``.

    Args:
        root: Directory holding the trees (on the blob store's filesystem, for hard links); emptied on start.
        capacity: Unused trees kept for reuse.

    """

    def __init__(self, root: Path, capacity: int = 8) -> None:
        self.root = root
        self.capacity = capacity
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True, exist_ok=True)
        self._entries: OrderedDict[LowerKey, LowerTree] = OrderedDict()

    async def acquire(
        self, key: LowerKey, build: Callable[[str], LowerIndex]
    ) -> tuple[LowerTree, LowerIndex]:
        """Return the tree for ``key``, built once by ``build(directory)``; release it later."""
        entry = self._entries.get(key)
        if entry is None:
            loop = asyncio.get_running_loop()
            path = str(self.root / uuid.uuid4().hex)
            entry = LowerTree(path, loop.create_future())
            self._entries[key] = entry
            try:
                Path(path).mkdir()
                index = await loop.run_in_executor(None, build, path)
            except BaseException as error:
                del self._entries[key]
                entry.ready.set_exception(error)
                entry.ready.exception()  # retrieved: waiters re-raise it themselves
                await loop.run_in_executor(None, shutil.rmtree, path, True)
                raise
            entry.ready.set_result(index)
        self._entries.move_to_end(key)
        entry.refs += 1
        try:
            index = await asyncio.shield(entry.ready)
        except BaseException:
            entry.refs -= 1
            raise
        return entry, index

    def prefixes(self, repo_id: str) -> set[str]:
        """Return the path prefixes of a repository's cached trees (what its sandboxes mount)."""
        return {prefix for repo, _, prefix in self._entries if repo == repo_id}

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def forget(self, key: LowerKey) -> None:
        """Stop offering ``key``'s tree to new sandboxes (it is removed once its users release it)."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            entry.cached = False

    async def release(self, tree: LowerTree) -> None:
        """Drop one use of a tree and evict unused trees beyond the capacity."""
        tree.refs -= 1
        loop = asyncio.get_running_loop()
        if not tree.cached and tree.refs <= 0:
            await loop.run_in_executor(None, shutil.rmtree, tree.path, True)
        unused = [k for k, e in self._entries.items() if e.refs <= 0 and e.ready.done()]
        for stale in unused[: max(0, len(unused) - self.capacity)]:
            gone = self._entries.pop(stale)
            gone.cached = False
            await loop.run_in_executor(None, shutil.rmtree, gone.path, True)
