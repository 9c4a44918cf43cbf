"""Run the Python examples of README.md and docs/**/*.md against a real tilde-server.

Each document runs as one script: its fenced ``python`` blocks execute in order in one namespace, so later
blocks use what earlier ones made. A block preceded by ``<!-- not-tested: reason -->`` is skipped (the reason
is required). Before a document runs, the environment points the SDK at the ``server`` fixture
(``TILDE_API_KEY``, ``TILDE_ENDPOINT_URL``), and a fresh organization with a repository ``my-repo`` exists;
the placeholder organization name ``my-org`` in the examples is replaced with that organization's unique
name, so documents never see each other's data.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

import tilde

if TYPE_CHECKING:
    from tilde.server import LocalServer

ROOT = Path(__file__).resolve().parents[3]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# Documents whose examples start sandboxes.
NEEDS_SANDBOX = {"docs/guides/compute.md", "docs/index.md"}

_FENCE = re.compile(r"^```(\S*)\s*$")
_NOT_TESTED = re.compile(r"^<!--\s*not-tested:\s*(?P<reason>\S.*?)\s*-->$")


@dataclass
class Block:
    line: int  # 1-based line of the first code line
    code: str
    skip_reason: str | None


def extract_python_blocks(text: str) -> list[Block]:
    """Every fenced ``python`` block, with the not-tested reason written just above it (if any)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    previous = ""  # the last non-blank line outside a fence
    while index < len(lines):
        match = _FENCE.match(lines[index])
        if match is None:
            if lines[index].strip():
                previous = lines[index].strip()
            index += 1
            continue
        language, start = match.group(1), index + 1
        end = start
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if language == "python":
            marker = _NOT_TESTED.match(previous)
            blocks.append(Block(start + 1, "\n".join(lines[start:end]), marker["reason"] if marker else None))
        previous = ""
        index = end + 1
    return blocks


def _relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _params() -> list[Any]:
    # Documents without runnable examples (reference pages, architecture, plugin shapes) are not collected.
    params = []
    for path in DOCUMENTS:
        if not any(b.skip_reason is None for b in extract_python_blocks(path.read_text(encoding="utf-8"))):
            continue
        marks = [pytest.mark.sandbox] if _relative(path) in NEEDS_SANDBOX else []
        params.append(pytest.param(path, id=_relative(path), marks=marks))
    return params


def test_extraction_understands_markers() -> None:
    text = (
        "intro\n\n```python\nx = 1\n```\n\n"
        "<!-- not-tested: needs a cloud account -->\n```python\ny = 2\n```\n"
        "\n```bash\nls\n```\n\n```python\nz = 3\n```\n"
    )
    blocks = extract_python_blocks(text)
    assert [(b.code, b.skip_reason) for b in blocks] == [
        ("x = 1", None),
        ("y = 2", "needs a cloud account"),
        ("z = 3", None),
    ]
    assert blocks[0].line == 4


def test_the_documents_have_runnable_examples() -> None:
    runnable = {
        _relative(p): sum(b.skip_reason is None for b in extract_python_blocks(p.read_text()))
        for p in DOCUMENTS
    }
    for name in ("README.md", "docs/getting-started.md", "docs/guides/data.md", "docs/guides/compute.md"):
        assert runnable[name] > 0, name
    assert sum(runnable.values()) >= 35


@pytest.mark.parametrize("document", _params())
def test_document_examples(
    document: Path,
    server: LocalServer,
    api: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    blocks = [b for b in extract_python_blocks(document.read_text(encoding="utf-8")) if b.skip_reason is None]

    org = f"docs-{uuid.uuid4().hex[:10]}"
    created = api.post("/organizations", json={"name": org, "display_name": org})
    assert created.status_code == 201, created.text
    created = api.post(
        f"/organizations/{org}/repositories", json={"name": "my-repo", "visibility": "private"}
    )
    assert created.status_code == 201, created.text

    monkeypatch.setenv("TILDE_API_KEY", server.api_key)
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    _reset_default_client()
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    saved_levels = _tilde_logger_levels()
    try:
        for block in blocks:
            code = compile(block.code.replace("my-org", org), f"{_relative(document)}:{block.line}", "exec")
            exec(code, namespace)
    finally:
        _reset_default_client()
        _stop_servers(namespace)
        # Examples tune the SDK's loggers (the configuration guide does); later tests must not inherit that.
        for logger, level in saved_levels.items():
            logger.setLevel(level)


def _tilde_logger_levels() -> dict[logging.Logger, int]:
    """The level of the ``tilde`` logger and of every child logger that exists now or an example may make."""
    names = ["tilde", *(n for n in logging.root.manager.loggerDict if n.startswith("tilde."))]
    names += ["tilde.core.http", "tilde.core.auth", "tilde.data.upload", "tilde.compute.exec"]
    return {logging.getLogger(name): logging.getLogger(name).level for name in dict.fromkeys(names)}


def _reset_default_client() -> None:
    client, tilde._default_client = tilde._default_client, None
    if client is not None:
        client.close()


def _stop_servers(namespace: dict[str, Any]) -> None:
    # A failing example must not leave a LocalServer thread (and its temporary directory) behind.
    from tilde.server import LocalServer

    for value in namespace.values():
        if isinstance(value, LocalServer):
            value.stop()
