from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from storage_helpers import ALICE, commit_files, put, store

from tilde.server.storage import InvalidArgument, ListingItem, StorageEngine


def all_pages(engine: StorageEngine, repo: str, limit: int, **kwargs: object) -> list[ListingItem]:
    """Follow cursors to the end, checking each page's shape."""
    items: list[ListingItem] = []
    after = ""
    while True:
        page = engine.list_objects(repo, after=after, limit=limit, **kwargs)  # type: ignore[arg-type]
        assert len(page.items) <= limit
        items.extend(page.items)
        if not page.has_more:
            assert page.next_cursor is None
            return items
        assert len(page.items) == limit
        assert page.next_cursor == page.items[-1].path
        after = page.next_cursor


def expected_listing(paths: list[str], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """Reference implementation: (path, type) in order, common prefixes collapsed."""
    out: list[tuple[str, str]] = []
    for path in sorted(p for p in paths if p.startswith(prefix)):
        index = path.find(delimiter, len(prefix)) if delimiter else -1
        entry = (path[: index + len(delimiter)], "prefix") if index >= 0 else (path, "object")
        if not out or out[-1] != entry:
            out.append(entry)
    return out


@dataclass(frozen=True)
class BigRepo:
    engine: StorageEngine
    repo: str
    paths: list[str]


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigRepo]:
    """A repository with 10,000 objects in a few directory shapes (built once for the module)."""
    engine = StorageEngine.open(tmp_path_factory.mktemp("big") / "data")
    engine.init_repository("big")
    paths = [f"logs/{day:02d}/{n:04d}.log" for day in range(1, 31) for n in range(300)]  # 9000
    paths += [f"data/part-{n:04d}.parquet" for n in range(900)]
    paths += [f"docs/{name}" for name in ("a.md", "b.md", "sub/c.md", "sub/deeper/d.md")]
    paths += [f"top-{n:02d}.txt" for n in range(96)]
    assert len(paths) == 10_000
    blob = store(engine, b"x")
    session = engine.create_session("big", ALICE)
    assert engine.stage_many("big", session.id, [(p, blob) for p in paths]) == 10_000
    engine.commit_session("big", session.id, message="10k", actor=ALICE)
    yield BigRepo(engine, "big", paths)
    engine.close()


@pytest.mark.parametrize(
    ("prefix", "delimiter", "limit"),
    [
        ("", "", 1000),
        ("", "", 333),
        ("", "/", 1),
        ("", "/", 7),
        ("logs/", "/", 4),
        ("logs/", "", 1000),
        ("logs/1", "/", 3),
        ("logs/07/", "/", 50),
        ("docs/", "/", 1),
        ("docs/sub/", "/", 10),
        ("data/part-08", "", 13),
        ("nothing-here/", "/", 5),
        ("top-", "", 10),
        ("", "-", 2),
    ],
)
def test_paged_listing_has_no_gaps_or_duplicates(
    big: BigRepo, prefix: str, delimiter: str, limit: int
) -> None:
    items = all_pages(big.engine, big.repo, limit, prefix=prefix, delimiter=delimiter)
    assert [(i.path, i.type) for i in items] == expected_listing(big.paths, prefix, delimiter)
    for item in items:
        assert (item.version is not None) == (item.type == "object")
        assert item.status is None


def test_listing_with_delimiter_at_root(big: BigRepo) -> None:
    engine, repo = big.engine, big.repo
    page = engine.list_objects(repo, delimiter="/", limit=5)
    assert [(i.path, i.type) for i in page.items] == [
        ("data/", "prefix"),
        ("docs/", "prefix"),
        ("logs/", "prefix"),
        ("top-00.txt", "object"),
        ("top-01.txt", "object"),
    ]
    assert page.has_more
    assert page.next_cursor == "top-01.txt"


def test_cursor_that_is_a_prefix_skips_its_contents(big: BigRepo) -> None:
    engine, repo = big.engine, big.repo
    page = engine.list_objects(repo, delimiter="/", after="docs/", limit=2)
    assert [i.path for i in page.items] == ["logs/", "top-00.txt"]
    # Without a delimiter the same cursor is just a position.
    page = engine.list_objects(repo, after="docs/", limit=2)
    assert [i.path for i in page.items] == ["docs/a.md", "docs/b.md"]


def test_cursor_before_or_after_the_prefix(big: BigRepo) -> None:
    engine, repo = big.engine, big.repo
    assert engine.list_objects(repo, prefix="docs/", after="a", limit=1).items[0].path == "docs/a.md"
    assert engine.list_objects(repo, prefix="docs/", after="zzz").items == []
    assert engine.list_objects(repo, after="\U0010ffff").items == []


def test_session_listing_overlays_staged_changes(engine: StorageEngine, repo: str) -> None:
    commit_files(engine, repo, {f"d/{n}": b"c" for n in range(10)} | {"e/1": b"c"})
    session = engine.create_session(repo, ALICE)
    for n in (0, 3, 5):
        engine.stage_delete(repo, session.id, f"d/{n}")
    put(engine, repo, session.id, "d/1", b"changed")
    put(engine, repo, session.id, "d/10", b"new")
    engine.stage_delete(repo, session.id, "e/1")
    put(engine, repo, session.id, "f/1", b"new dir")
    items = all_pages(engine, repo, 2, session_id=session.id, prefix="d/")
    assert [i.path for i in items] == ["d/1", "d/10", "d/2", "d/4", "d/6", "d/7", "d/8", "d/9"]
    by_path = {i.path: i for i in items}
    assert by_path["d/1"].version is not None
    assert by_path["d/1"].version.size == len(b"changed")
    top = all_pages(engine, repo, 1, session_id=session.id, delimiter="/")
    assert [(i.path, i.type) for i in top] == [("d/", "prefix"), ("f/", "prefix")]
    # The committed view is unchanged.
    assert [i.path for i in all_pages(engine, repo, 100, delimiter="/")] == ["d/", "e/"]


def test_list_changes_paging(engine: StorageEngine, repo: str) -> None:
    session = engine.create_session(repo, ALICE)
    blob = store(engine, b"v")
    engine.stage_many(repo, session.id, [(f"p/{n:03d}", blob) for n in range(25)] + [("q", blob)])
    seen: list[str] = []
    after = ""
    while True:
        page = engine.list_changes(repo, session.id, prefix="p/", after=after, limit=10)
        seen += [c.path for c in page.items]
        if not page.has_more:
            break
        assert page.next_cursor is not None
        after = page.next_cursor
    assert seen == [f"p/{n:03d}" for n in range(25)]


def test_bad_limit(engine: StorageEngine, repo: str) -> None:
    with pytest.raises(InvalidArgument):
        engine.list_objects(repo, limit=0)
