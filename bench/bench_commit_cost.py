"""Commit cost versus repository size for the tilde-server storage engine.

Builds a large repository (100,000 objects; 10,000 with ``--quick``) and a small one (100 objects) side by
side, then times the same one-path commit (open a session, stage one blob, commit) on each. Commits write one
version row per changed path, so the ratio large/small should stay close to 1 whatever the repository size.

Run: ``hatch run python bench/bench_commit_cost.py [--quick] [--rounds N]``. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _support import write_json

from tilde.server.storage import Actor, BlobRef, StorageEngine

ACTOR = Actor(type="user", id="bench", name="Bench")


def build(engine: StorageEngine, repo: str, objects: int, blob: BlobRef, batch: int = 20_000) -> float:
    """Create a repository of ``objects`` objects in commits of ``batch``; returns the seconds it took."""
    started = time.perf_counter()
    engine.init_repository(repo)
    for first in range(0, objects, batch):
        session = engine.create_session(repo, ACTOR)
        paths = [f"dir-{n % 100:02d}/file-{n:07d}.bin" for n in range(first, min(first + batch, objects))]
        engine.stage_many(repo, session.id, [(path, blob) for path in paths])
        engine.commit_session(repo, session.id, message=f"load {first}", actor=ACTOR)
    return time.perf_counter() - started


def one_path_commit(engine: StorageEngine, repo: str, blob: BlobRef, n: int) -> float:
    """Time one commit that changes a single path."""
    started = time.perf_counter()
    session = engine.create_session(repo, ACTOR)
    engine.stage_blob(repo, session.id, f"dir-{n % 100:02d}/file-{n % 100:07d}.bin", blob)
    engine.commit_session(repo, session.id, message=f"touch {n}", actor=ACTOR)
    return time.perf_counter() - started


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def measure(rounds: int, action: Callable[[int], float]) -> list[float]:
    action(-1)  # warm caches and connections
    return [action(n) for n in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run: a 10,000-object large repository")
    parser.add_argument("--rounds", type=int, default=None, help="commits timed per repository")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    large_size = 10_000 if args.quick else 100_000
    rounds = args.rounds or (20 if args.quick else 50)

    with tempfile.TemporaryDirectory(prefix="bench-commit-") as tmp:
        engine = StorageEngine.open(Path(tmp))
        try:
            with engine.blobs.open_writer() as writer:
                writer.write(b"x" * 1024)
                blob = writer.commit()
            with engine.blobs.open_writer() as writer:
                writer.write(b"y" * 1024)
                other = writer.commit()
            build_small = build(engine, "small", 100, blob)
            build_large = build(engine, "large", large_size, blob)
            # Interleave the two repositories so drift on the machine affects both alike.
            small: list[float] = []
            large: list[float] = []
            for n in range(rounds):
                changed = other if n % 2 else blob
                small.append(one_path_commit(engine, "small", changed, n))
                large.append(one_path_commit(engine, "large", changed, n))
            list_small = measure(rounds, lambda _: _time(lambda: engine.list_objects("small", limit=100)))
            list_large = measure(rounds, lambda _: _time(lambda: engine.list_objects("large", limit=100)))
        finally:
            engine.close()

    ratio = median_ms(large) / median_ms(small)
    list_ratio = median_ms(list_large) / median_ms(list_small)
    rows = [
        ("repository build (s)", f"{build_small:.2f}", f"{build_large:.2f}", ""),
        (
            "one-path commit, median (ms)",
            f"{median_ms(small):.2f}",
            f"{median_ms(large):.2f}",
            f"{ratio:.2f}",
        ),
        (
            "first 100 of listing, median (ms)",
            f"{median_ms(list_small):.2f}",
            f"{median_ms(list_large):.2f}",
            f"{list_ratio:.2f}",
        ),
    ]
    header = ("", "100 objects", f"{large_size:,} objects", "ratio")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    print(f"commit cost vs repository size ({rounds} commits each, interleaved)")
    for row in [header, *rows]:
        print(
            "  ".join(
                cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
            )
        )
    write_json(
        args.json,
        {
            "large_objects": large_size,
            "rounds": rounds,
            "commit_small_ms": round(median_ms(small), 3),
            "commit_large_ms": round(median_ms(large), 3),
            "ratio": round(ratio, 3),
            "list_ratio": round(list_ratio, 3),
        },
    )


def _time(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
