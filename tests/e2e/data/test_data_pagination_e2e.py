"""Resuming listings from ``next_cursor`` against a real server: a new iterator gets exactly the rest."""

from __future__ import annotations

from tilde.data import Repository


def test_object_listing_resumes_after_a_cap_and_after_a_break(repo: Repository) -> None:
    paths = [f"items/{n:03}.txt" for n in range(25)]
    with repo.session() as session:
        for path in paths:
            session.objects.put(path, path.encode())
        session.commit("25 objects")
    objects = repo.commits.list(amount=1).__next__().objects

    capped = objects.list(amount=7, page_size=5)
    assert [entry.path for entry in capped] == paths[:7]
    assert capped.has_more
    resumed = objects.list(after=capped.next_cursor, page_size=5)
    assert [entry.path for entry in resumed] == paths[7:]
    assert (resumed.has_more, resumed.next_cursor) == (False, None)

    broken = objects.list(page_size=10)
    taken = [next(broken).path for _ in range(13)]  # stops in the middle of the second page
    assert taken == paths[:13]
    assert [entry.path for entry in objects.list(after=broken.next_cursor)] == paths[13:]

    pages = objects.list(page_size=10).iter_pages()
    assert [[entry.path for entry in page] for page in pages] == [paths[:10], paths[10:20], paths[20:]]


def test_commit_log_resumes_from_its_cursor(repo: Repository) -> None:
    for n in range(6):
        with repo.session() as session:
            session.objects.put("counter.txt", str(n).encode())
            session.commit(f"commit {n}")
    everything = [commit.id for commit in repo.commits.list()]
    first = repo.commits.list(amount=4, page_size=3)
    head = [commit.id for commit in first]
    rest = [commit.id for commit in repo.commits.list(after=first.next_cursor)]
    assert head + rest == everything
    assert head == everything[:4]
