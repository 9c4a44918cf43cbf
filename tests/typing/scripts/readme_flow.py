"""The README's flow as a user writes it, with the composed repository's compute and admin features."""

from __future__ import annotations

from typing_extensions import assert_type

import tilde
from tilde.server import LocalServer


def readme_flow() -> None:
    with LocalServer() as server:
        tilde.configure(api_key=server.api_key, endpoint_url=server.endpoint_url)

        org = tilde.organizations.create("my-org", display_name="My organization")
        repo = org.repositories.create("my-repo", description="A first repository")
        assert_type(repo, tilde.Repository)

        with repo.session() as session:
            session.objects.put("hello.txt", b"Hello, Tilde!")
            session.commit("say hello")

        latest = next(repo.commits.list())
        with latest.objects.get("hello.txt") as f:
            text: str = f.read().decode()
            print(text)

        # What the issue found missing on collection-built handles: compute and admin features.
        result = repo.execute("ls /sandbox", network=False)
        print(result.stdout.text())
        with repo.shell() as sh:
            print(sh.run("cat hello.txt").stdout)
        repo.secrets.create("TOKEN", "s3cret")

        for listed in org.repositories.list():
            assert_type(listed, tilde.Repository)
            listed.sandboxes.list()
        same = org.repositories.get("my-repo")
        assert_type(same, tilde.Repository)
        assert_type(tilde.repository("my-org/my-repo"), tilde.Repository)


def annotated(repo: tilde.Repository) -> tilde.models.RunResult:
    """Users annotate with the public name; the handle from every path fits it."""
    return repo.execute(["echo", "hi"], check=False)


def exceptions_and_models() -> None:
    try:
        tilde.repository("acme/data").refresh()
    except tilde.NotFoundError as error:
        print(error.status_code)
    except tilde.RateLimitError as error:
        print(error.retry_after)
    except tilde.exceptions.APIError as error:
        print(error.request_id)
    session: tilde.models.Session = tilde.repository("acme/data").attach("s1")
    print(session.id, session.session_id)
