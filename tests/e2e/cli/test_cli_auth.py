"""``tilde auth login/logout/status`` against a real server: keys are checked before anything is saved."""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import yaml
from cli_helpers import Cli

from tilde.core.config import resolve_config

if TYPE_CHECKING:
    from tilde.server import LocalServer


def _config_file() -> Path:
    return Path.home() / ".tilde" / "config.yaml"


@pytest.fixture
def anonymous() -> Cli:
    """The CLI with no credentials anywhere (the root conftest clears the environment and HOME)."""
    return Cli()


def test_login_checks_the_key_then_saves_a_private_file_the_sdk_reads(
    anonymous: Cli, server: LocalServer
) -> None:
    pasted = server.endpoint_url + "/api/v1/"
    result = anonymous.ok("auth", "login", "--api-key", server.api_key, "--endpoint-url", pasted)

    assert server.api_key not in result.output
    path = _config_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(path.read_text()) == {
        "api_key": server.api_key,
        "endpoint_url": server.endpoint_url,
    }
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]
    config = resolve_config()
    assert (config.api_key, config.endpoint_url) == (server.api_key, server.endpoint_url)
    # The saved settings work: the next command finds the server (no doubled /api/v1 in its URL).
    assert anonymous.ok("org", "list").exit_code == 0


def test_login_prompts_for_the_key_and_keeps_other_settings(anonymous: Cli, server: LocalServer) -> None:
    path = _config_file()
    path.parent.mkdir(parents=True)
    path.write_text(f"endpoint_url: {server.endpoint_url}\nextra: kept\napi_key: old\n")

    result = anonymous.ok("auth", "login", input=server.api_key + "\n")

    assert server.api_key not in result.output  # hidden input
    assert yaml.safe_load(path.read_text()) == {
        "api_key": server.api_key,
        "endpoint_url": server.endpoint_url,
        "extra": "kept",
    }


def test_login_refuses_a_wrong_key(anonymous: Cli, server: LocalServer) -> None:
    line = anonymous.fails("auth", "login", "--api-key", "tuk-wrong", "--endpoint-url", server.endpoint_url)
    assert "refused this API key" in line
    assert not _config_file().exists()


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("127.0.0.1:8000", "has no scheme: did you mean http://127.0.0.1:8000"),
        ("ftp://example.test", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://example.test/?x=1", "must not have a query"),
    ],
)
def test_login_refuses_a_malformed_endpoint(anonymous: Cli, endpoint: str, expected: str) -> None:
    result = anonymous("auth", "login", "--api-key", "tuk-x", "--endpoint-url", endpoint)
    assert result.exit_code == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
    assert not _config_file().exists()


def test_login_refuses_an_unreachable_endpoint(anonymous: Cli, unused_port: int) -> None:
    line = anonymous.fails(
        "auth", "login", "--api-key", "tuk-x", "--endpoint-url", f"http://127.0.0.1:{unused_port}"
    )
    assert line.startswith(f"Error: cannot reach http://127.0.0.1:{unused_port}")
    assert not _config_file().exists()


def test_login_refuses_a_server_that_is_not_tilde(anonymous: Cli, server: LocalServer) -> None:
    line = anonymous.fails(
        "auth", "login", "--api-key", "k", "--endpoint-url", server.endpoint_url + "/elsewhere"
    )
    assert "does not look like a Tilde server" in line


def test_login_rejects_an_empty_key(anonymous: Cli) -> None:
    result = anonymous("auth", "login", "--api-key", "  ")
    assert result.exit_code != 0
    assert "must not be empty" in result.stderr
    assert not _config_file().exists()


def test_logout_removes_only_the_key(anonymous: Cli, server: LocalServer) -> None:
    anonymous.ok("auth", "login", "--api-key", server.api_key, "--endpoint-url", server.endpoint_url)

    result = anonymous.ok("auth", "logout")

    assert "Removed the API key" in result.stdout
    assert yaml.safe_load(_config_file().read_text()) == {"endpoint_url": server.endpoint_url}
    assert "No stored API key" in anonymous.ok("auth", "logout").stdout


def test_status_shows_endpoint_principal_and_source(anonymous: Cli, server: LocalServer) -> None:
    anonymous.ok("auth", "login", "--api-key", server.api_key, "--endpoint-url", server.endpoint_url)

    out = anonymous.ok("auth", "status").stdout

    assert f"Endpoint:    {server.endpoint_url}  (from {_config_file()})" in out
    assert f"Credentials: API key from {_config_file()}" in out
    assert "Principal:   admin (user " in out
    assert "Status:      valid" in out
    assert server.api_key not in out


def test_status_from_the_environment(cli: Cli, server: LocalServer) -> None:
    out = cli.ok("auth", "status").stdout
    assert "(from environment variable TILDE_ENDPOINT_URL)" in out
    assert "API key from environment variable TILDE_API_KEY" in out


def test_status_without_credentials_or_with_a_refused_key(
    anonymous: Cli, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    missing = anonymous("auth", "status")
    assert missing.exit_code == 1
    assert "Credentials: none" in missing.stdout

    monkeypatch.setenv("TILDE_API_KEY", "tuk-wrong")
    refused = anonymous("auth", "status")
    assert refused.exit_code == 1
    assert "refuses this key" in refused.stdout


def test_commands_without_credentials_say_how_to_log_in(
    anonymous: Cli, server: LocalServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TILDE_ENDPOINT_URL", server.endpoint_url)
    assert "tilde auth login" in anonymous.fails("org", "list")
    monkeypatch.setenv("TILDE_API_KEY", "tuk-wrong")
    assert "refused the API key (401)" in anonymous.fails("repo", "list", "any")


def test_python_dash_m_tilde_runs_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tilde", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: tilde" in result.stdout
    for command in ("auth", "cp", "ls", "exec", "shell", "sandbox", "server"):
        assert f"  {command} " in result.stdout
