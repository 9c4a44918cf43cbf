"""The command-line guide is generated from the commands: it fails here when someone forgets to regenerate."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def _generator() -> object:
    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" / "gen_cli_docs.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_guide_is_current() -> None:
    generator = _generator()
    assert generator.main(["--check"]) == 0, "docs/guides/cli.md is stale: run python scripts/gen_cli_docs.py"  # type: ignore[attr-defined]


def test_the_guide_covers_every_command_with_an_example() -> None:
    text = (ROOT / "docs" / "guides" / "cli.md").read_text(encoding="utf-8")
    commands = [
        "auth login", "auth logout", "auth status", "org list", "org create", "repo list", "repo create",
        "repo delete", "ls", "cat", "cp", "rm", "log", "diff", "revert", "exec", "shell", "sandbox list",
        "sandbox logs", "sandbox cancel", "server",
    ]  # fmt: skip
    for command in commands:
        heading = f"## `tilde {command}`"
        assert heading in text, command
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        assert "**Example" in section, f"tilde {command} has no example"
        assert f"tilde {command.split()[0]}" in section.split("**Example", 1)[1], command


def test_the_guide_is_in_the_site_navigation() -> None:
    assert "guides/cli.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
