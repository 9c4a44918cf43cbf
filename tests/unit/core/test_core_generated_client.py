"""The sync client is generated from the async one: client.py must be what scripts/unasync.py writes."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "unasync.py"


def load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("unasync_script", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_sync_client_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    unasync = load_script()
    stale = tmp_path / "client.py"
    stale.write_text(unasync.TARGET.read_text(encoding="utf-8") + "# hand edit\n", encoding="utf-8")
    monkeypatch.setattr(unasync, "TARGET", stale)
    assert unasync.main(["--check"]) == 1
    assert unasync.main([]) == 0
    assert unasync.main(["--check"]) == 0


def test_generated_client_keeps_no_async_names() -> None:
    unasync = load_script()
    text = unasync.unasync(unasync.SOURCE.read_text(encoding="utf-8"))
    assert text.startswith("# Generated from async_client.py by scripts/unasync.py")
    for word in ("async ", "await ", "anyio", "Async", "aclose", "aread", "_async_support", "coroutine"):
        assert word not in text, word


def test_reworded_source_is_refused() -> None:
    unasync = load_script()
    source = unasync.SOURCE.read_text(encoding="utf-8").replace("for asyncio or trio code", "for async code")
    with pytest.raises(ValueError, match="expected once"):
        unasync.unasync(source)
