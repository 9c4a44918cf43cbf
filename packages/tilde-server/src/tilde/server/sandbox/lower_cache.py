"""Lower layers shared between sandboxes that start from the same commit.

A commit's tree never changes, and an overlay never writes to its lower layer, so every sandbox whose session
has no staged changes yet can mount the same hard-link tree of its base commit (per path prefix). Building a
tree costs a link per object; reusing one costs nothing, which is what makes repeated sandboxes on a large
repository start quickly. Trees no sandbox uses are evicted beyond ``capacity``.

A tree can also be a thin layer over its parent commit's tree (``delta``): only the commit's changes, as links
and whiteouts, stacked on the parent's layers in the overlay. Building one costs O(changes), so a sandbox
started right after a commit (a trigger, say) does not wait for a link per object. Stacks are at most
`MAX_DEPTH` layers deep; beyond that a full tree is built again.

Used only from the runtime's event loop (no locking).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tilde.server._private import private_dir
from tilde.server.sandbox.layers import LowerIndex

__all__ = ["MAX_DEPTH", "DeltaUnsupported", "LowerCache", "LowerKey", "LowerTree"]

logger = logging.getLogger("tilde.server.sandbox")

#: Most layers a stacked tree may have.
MAX_DEPTH = 16

#: ``(repo_id, base_commit_id, path_prefix)``.
LowerKey = tuple[str, "str | None", str]


class DeltaUnsupported(Exception):
    """A commit's changes cannot be a layer over its parent's tree (build a full tree instead)."""


@dataclass(eq=False)
class LowerTree:
    """One shared tree (the handle `LowerCache.acquire` returns).

    Attributes:
        path: The tree's own directory (its top layer).
        ready: Resolves to the tree's index once built.
        refs: Users: sandboxes, and trees stacked on this one.
        cached: False once the tree left the cache (it is removed when its last user releases it).
        parent: The tree this one is stacked on, if it is a delta.
        depth: Number of layers.

    """

    path: str
    ready: asyncio.Future[LowerIndex]
    refs: int = 0
    cached: bool = True
    parent: LowerTree | None = None
    depth: int = 1

    @property
    def layers(self) -> list[str]:
        """The overlay lower layers, topmost first."""
        return [self.path] + (self.parent.layers if self.parent is not None else [])


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
        private_dir(root)
        self._entries: OrderedDict[LowerKey, LowerTree] = OrderedDict()

    def _stackable(self, key: LowerKey | None) -> LowerTree | None:
        parent = self._entries.get(key) if key is not None else None
        if parent is None or not parent.ready.done() or parent.ready.exception() is not None:
            return None
        return parent if parent.depth < MAX_DEPTH else None

    async def acquire(
        self,
        key: LowerKey,
        build: Callable[[str], LowerIndex],
        *,
        parent_key: LowerKey | None = None,
        delta: Callable[[str, LowerIndex], LowerIndex] | None = None,
    ) -> tuple[LowerTree, LowerIndex]:
        """Return the tree for ``key``, building it once; release it later.

        Args:
            key: The tree's key.
            build: ``build(directory)`` materialises the whole tree (in a worker thread).
            parent_key: The parent commit's key; when that tree is cached, ``delta`` may stack on it.
            delta: ``delta(directory, parent_index)`` materialises only the changes (in a worker thread); may
                raise `DeltaUnsupported`.

        Returns:
            The tree and its index.

        """
        entry = self._entries.get(key)
        if entry is None:
            loop = asyncio.get_running_loop()
            entry = LowerTree(str(self.root / uuid.uuid4().hex), loop.create_future())
            self._entries[key] = entry
            parent = self._stackable(parent_key) if delta is not None else None
            try:
                Path(entry.path).mkdir()
                index = None
                if parent is not None and delta is not None:
                    parent.refs += 1
                    entry.parent, entry.depth = parent, parent.depth + 1
                    try:
                        index = await loop.run_in_executor(None, delta, entry.path, parent.ready.result())
                    except Exception as error:
                        # DeltaUnsupported, or e.g. whiteouts refused by the filesystem: build it whole.
                        if not isinstance(error, DeltaUnsupported):
                            logger.warning("delta lower layer failed (%s); building the whole tree", error)
                        entry.parent, entry.depth = None, 1
                        parent.refs -= 1
                        await loop.run_in_executor(None, _reset, entry.path)
                if index is None:
                    index = await loop.run_in_executor(None, build, entry.path)
            except BaseException as error:
                del self._entries[key]
                entry.cached = False
                entry.ready.set_exception(error)
                entry.ready.exception()  # retrieved: waiters re-raise it themselves
                await self._discard(entry)
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
        if not tree.cached and tree.refs <= 0:
            await self._discard(tree)
        while True:
            unused = [k for k, e in self._entries.items() if e.refs <= 0 and e.ready.done()]
            if len(unused) <= self.capacity:
                return
            gone = self._entries.pop(unused[0])
            gone.cached = False
            await self._discard(gone)

    async def _discard(self, tree: LowerTree) -> None:
        """Remove a tree nobody uses; its parent loses a user (and goes too when it left the cache)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, shutil.rmtree, tree.path, True)
        parent, tree.parent = tree.parent, None
        if parent is not None:
            parent.refs -= 1
            if not parent.cached and parent.refs <= 0:
                await self._discard(parent)


def _reset(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
    Path(path).mkdir()
