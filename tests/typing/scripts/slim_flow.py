"""A data-only install: `tilde.data.Client` hands out `tilde.data.Repository`, with no type argument."""

from __future__ import annotations

from typing_extensions import assert_type

import tilde.data


def slim_flow() -> None:
    client = tilde.data.Client()
    assert_type(client, tilde.data.Client[tilde.data.Repository])
    repo = client.repository("acme/data")
    assert_type(repo, tilde.data.Repository)
    assert_type(client.repositories("acme").create("data"), tilde.data.Repository)
    with repo.session() as session:
        session.objects.put("a.txt", b"a")
        print(session.commit("a"))
    for commit in repo.commits.list(amount=1):
        for entry in commit.objects.list(prefix="a"):
            print(entry.path)
    client.close()


class MyRepository(tilde.data.Repository):
    """A plugin author's own handle type."""

    def hello(self) -> str:
        return f"hello from {self.org}/{self.name}"


class MyClient(tilde.data.Client[MyRepository]):
    repository_class = MyRepository


def custom_flow() -> None:
    with MyClient() as client:
        print(client.repository("acme/data").hello())
        print(client.repositories("acme").get("data").hello())
