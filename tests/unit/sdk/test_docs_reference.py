"""The API reference shows public paths only (issue 13 item 11, issue 9).

mkdocstrings names each object by the identifier a page asks for, so a page that writes
``::: tilde._composed.Client`` shows that private path. Every identifier in docs/reference/ is either public
or given a public ``heading``; the objects users reach through the facade are documented under ``tilde.*``.
The build itself (``hatch run docs:build``, strict) runs in CI.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import tilde
import tilde.core

ROOT = Path(__file__).resolve().parents[3]
PAGES = sorted((ROOT / "docs" / "reference").glob("*.md"))
_DIRECTIVE = re.compile(r"^::: (?P<identifier>\S+)\s*$")
_HEADING = re.compile(r"^\s+heading:\s*(?P<heading>\S+)\s*$")


def _private(path: str) -> bool:
    return any(part.startswith("_") for part in path.split("."))


def _directives(page: Path) -> list[tuple[str, str | None]]:
    """Each ``:::`` identifier of a page with its ``heading`` option, if it has one."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[tuple[str, str | None]] = []
    for index, line in enumerate(lines):
        match = _DIRECTIVE.match(line)
        if match is None:
            continue
        heading = None
        for option in lines[index + 1 :]:
            if not option.startswith(" "):
                break
            heading_match = _HEADING.match(option)
            if heading_match:
                heading = heading_match["heading"]
        found.append((match["identifier"], heading))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_documented_object_shows_a_public_path(page: Path) -> None:
    shown = [heading or identifier for identifier, heading in _directives(page)]
    assert [path for path in shown if _private(path)] == []


def test_the_facade_page_documents_the_public_names() -> None:
    shown = {heading or identifier for identifier, heading in _directives(ROOT / "docs/reference/sdk.md")}
    assert {"tilde.Client", "tilde.Repository", "tilde.configure", "tilde.repository"} <= shown


def test_the_core_page_documents_the_async_client() -> None:
    shown = {identifier for identifier, _ in _directives(ROOT / "docs/reference/core.md")}
    # The page renders the package's exported names, AsyncClient among them.
    assert "tilde.core" in shown
    assert "AsyncClient" in tilde.core.__all__


@pytest.mark.parametrize("cls", [tilde.core.Client, tilde.core.AsyncClient, tilde.Client])
def test_client_docstring_examples_use_public_methods_only(cls: type) -> None:
    examples = (cls.__doc__ or "").split("Example", 1)[-1]
    assert re.findall(r"\._[a-z]\w*\(", examples) == []
