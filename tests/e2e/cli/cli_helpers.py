"""Helpers for the CLI tests (kept out of conftest: test directories collected together must not clash)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from click.testing import CliRunner, Result

from tilde.cli import main


@dataclass
class Cli:
    """Runs ``tilde`` in-process with click's runner (stdout and stderr kept apart)."""

    def __call__(self, *args: str, input: str | bytes | None = None) -> Result:
        """Run ``tilde ARGS…`` and return the result (never raises for the command's own failures)."""
        return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)

    def ok(self, *args: str, input: str | bytes | None = None) -> Result:
        """Run and assert exit status 0."""
        result = self(*args, input=input)
        assert result.exit_code == 0, (
            f"exit {result.exit_code}\nstdout: {result.stdout}\nstderr: {result.stderr}"
        )
        return result

    def fails(self, *args: str, input: str | bytes | None = None) -> str:
        """Run, assert a non-zero exit with exactly one line on stderr and no traceback; return that line."""
        result = self(*args, input=input)
        assert result.exit_code != 0, result.stdout
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        return lines[0]


def tree(root: object) -> dict[str, bytes]:
    """Every file under ``root`` (a Path) as ``{relative posix path: bytes}``."""
    from pathlib import Path

    base = Path(str(root))
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def unique_name(prefix: str) -> str:
    """A new name starting with ``prefix``."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"
