"""Run by test_published_client.py with the published tilde-sdk, in its own virtual environment.

Arguments: endpoint_url api_key org/repo. Prints one ``OK <step>`` line per checked step.
"""

import io
import sys

import tilde

endpoint, key, repo_path = sys.argv[1:4]
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    repo = client.repository(repo_path)

    with repo.session() as session:
        session.objects.put("data/hello.txt", b"Hello, Tilde!")
        session.objects.put("data/stream.bin", io.BytesIO(b"x" * 100_000))
        session.objects.put("readme.md", b"# readme")
        with session.objects.get("data/hello.txt") as f:
            assert f.read() == b"Hello, Tilde!"
        meta = session.objects.head("data/hello.txt")
        assert meta.content_length == 13, meta
        assert sorted(e.path for e in session.uncommitted()) == [
            "data/hello.txt",
            "data/stream.bin",
            "readme.md",
        ]
        session.commit("first upload")
    print("OK session put/get/commit")

    commits = list(repo.commits.list())
    assert [c.message for c in commits] == ["first upload"], commits
    commit = commits[0]
    top = [(e.path, e.type) for e in commit.objects.list(delimiter="/")]
    assert top == [("data/", "prefix"), ("readme.md", "object")], top
    print("OK list")

    with commit.objects.get("data/hello.txt") as f:
        assert f.read() == b"Hello, Tilde!"
    with commit.objects.get("data/hello.txt", byte_range=(0, 4)) as f:
        assert f.read() == b"Hello"
    with commit.objects.get("data/stream.bin", byte_range=(99_990, None)) as f:
        assert f.read() == b"x" * 10
        assert f.content_range == "bytes 99990-99999/100000", f.content_range
    print("OK get")

    session = repo.session()
    session.objects.delete("readme.md")
    session.objects.copy("data/hello.txt", "data/copy.txt")
    session.commit("second")
    latest = next(iter(repo.commits.list()))
    assert sorted(e.path for e in latest.objects.list()) == [
        "data/copy.txt",
        "data/hello.txt",
        "data/stream.bin",
    ]
    print("OK delete/copy")
