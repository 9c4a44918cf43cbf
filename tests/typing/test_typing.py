"""User-style scripts checked by mypy --strict and by (based)pyright in strict mode.

``scripts/`` holds what users write (the README's flow, an explicit client with compute, an admin flow, a
data-only install and a plugin author's own repository class): both checkers must accept them. ``negative/``
holds misuse that both must reject, each expected error marked on its line with ``# expect-error``, so the
check proves it can fail. The scripts are only type-checked, never run.

Pyright reads the distributions through one merged ``tilde/`` tree, as a wheel install lays them out: it does
not merge the pkgutil-style namespace portions of an editable workspace the way Python (and mypy) do.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
SCRIPTS = sorted((HERE / "scripts").glob("*.py"))
NEGATIVE = sorted((HERE / "negative").glob("*.py"))
_MYPY_LINE = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+):(?:\d+:)? error: ")

Errors = dict[str, set[int]]


def _expected(paths: list[Path]) -> Errors:
    expected: Errors = {}
    for path in paths:
        lines = path.read_text().splitlines()
        expected[path.name] = {n for n, text in enumerate(lines, start=1) if "# expect-error" in text}
        assert expected[path.name], f"{path.name} marks no expected error"
    return expected


def _report(output: str) -> str:
    return output[-4000:]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=600, check=False, cwd=cwd)


@pytest.fixture(scope="module")
def mypy_errors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Errors, str]:
    cache = tmp_path_factory.mktemp("mypy-cache")
    # The workspace's own configuration (strict, mypy_path over every distribution's src/).
    result = _run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), *map(str, SCRIPTS + NEGATIVE)],
        ROOT,
    )
    errors: Errors = defaultdict(set)
    for line in result.stdout.splitlines():
        match = _MYPY_LINE.match(line)
        if match:
            errors[Path(match["path"]).name].add(int(match["line"]))
    assert result.returncode in (0, 1), _report(result.stdout + result.stderr)
    shutil.rmtree(cache, ignore_errors=True)
    return errors, result.stdout


def _merged_tilde_tree(site: Path) -> None:
    """Lay every distribution's ``src/tilde`` out in one ``site/tilde`` directory, as wheels install them."""
    for source in sorted(ROOT.glob("packages/*/src/tilde")):
        shutil.copytree(
            source, site / "tilde", dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )


@pytest.fixture(scope="module")
def pyright_errors(tmp_path_factory: pytest.TempPathFactory) -> tuple[Errors, str]:
    executable = shutil.which("basedpyright", path=str(Path(sys.executable).parent))
    assert executable is not None, "basedpyright is a dependency of the default hatch environment"
    work = tmp_path_factory.mktemp("pyright")
    _merged_tilde_tree(work / "site")
    config = {
        "typeCheckingMode": "strict",
        "pythonVersion": "3.10",
        "extraPaths": [str(work / "site")],
        "include": [str(path) for path in SCRIPTS + NEGATIVE],
    }
    (work / "pyrightconfig.json").write_text(json.dumps(config))
    result = _run(
        [executable, "--outputjson", "--pythonpath", sys.executable, "-p", str(work / "pyrightconfig.json")],
        work,
    )
    shutil.rmtree(work, ignore_errors=True)
    assert result.returncode in (0, 1), _report(result.stdout + result.stderr)
    report = json.loads(result.stdout)
    errors: Errors = defaultdict(set)
    for diagnostic in report["generalDiagnostics"]:
        if diagnostic["severity"] == "error":
            # Pyright counts lines from 0.
            errors[Path(diagnostic["file"]).name].add(diagnostic["range"]["start"]["line"] + 1)
    return errors, result.stdout


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_user_scripts_type_check(checker: str, request: pytest.FixtureRequest) -> None:
    errors, output = request.getfixturevalue(f"{checker}_errors")
    found = {path.name: errors[path.name] for path in SCRIPTS if errors.get(path.name)}
    assert found == {}, _report(output)


@pytest.mark.parametrize("checker", ["mypy", "pyright"])
def test_misuse_is_rejected_on_exactly_the_marked_lines(checker: str, request: pytest.FixtureRequest) -> None:
    errors, output = request.getfixturevalue(f"{checker}_errors")
    found = {path.name: set(errors.get(path.name, set())) for path in NEGATIVE}
    assert found == _expected(NEGATIVE), _report(output)
