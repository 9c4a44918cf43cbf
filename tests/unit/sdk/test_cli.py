"""The ``tilde`` command line: version and the credentials file."""

from __future__ import annotations

import stat
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

import tilde
from tilde.cli import TildeGroup, load_plugin_commands, main
from tilde.cli.hookspecs import hookimpl
from tilde.core.config import resolve_config
from tilde.core.errors import ConfigurationError
from tilde.core.plugins import make_plugin_manager


def _config_file() -> Path:
    return Path.home() / ".tilde" / "config.yaml"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"tilde, version {tilde.__version__}"


def test_login_writes_a_private_config_file_the_sdk_reads() -> None:
    result = CliRunner().invoke(
        main, ["auth", "login", "--api-key", "tuk-secret", "--endpoint-url", "http://127.0.0.1:8123"]
    )
    assert result.exit_code == 0, result.output

    path = _config_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert yaml.safe_load(path.read_text()) == {
        "api_key": "tuk-secret",
        "endpoint_url": "http://127.0.0.1:8123",
    }

    config = resolve_config()
    assert config.api_key == "tuk-secret"
    assert config.endpoint_url == "http://127.0.0.1:8123"
    # No temporary files left next to it.
    assert [p.name for p in path.parent.iterdir()] == ["config.yaml"]


def test_login_prompts_for_the_key_and_keeps_other_settings() -> None:
    path = _config_file()
    path.parent.mkdir(parents=True)
    path.write_text("endpoint_url: http://example.invalid\nextra: kept\napi_key: old\n")

    result = CliRunner().invoke(main, ["auth", "login"], input="tuk-new\n")

    assert result.exit_code == 0, result.output
    assert "tuk-new" not in result.output  # hidden input
    assert yaml.safe_load(path.read_text()) == {
        "api_key": "tuk-new",
        "endpoint_url": "http://example.invalid",
        "extra": "kept",
    }
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_login_rejects_an_empty_key() -> None:
    result = CliRunner().invoke(main, ["auth", "login", "--api-key", "  "])
    assert result.exit_code != 0
    assert "must not be empty" in result.output
    assert not _config_file().exists()


def test_logout_removes_only_the_key() -> None:
    runner = CliRunner()
    runner.invoke(main, ["auth", "login", "--api-key", "k", "--endpoint-url", "http://127.0.0.1:1"])

    result = runner.invoke(main, ["auth", "logout"])

    assert result.exit_code == 0, result.output
    assert yaml.safe_load(_config_file().read_text()) == {"endpoint_url": "http://127.0.0.1:1"}
    again = runner.invoke(main, ["auth", "logout"])
    assert again.exit_code == 0
    assert "No stored API key" in again.output


class _HelloPlugin:
    @hookimpl
    def tilde_register_commands(self, cli: click.Group) -> None:
        @cli.command()
        @click.argument("name")
        def hello(name: str) -> None:
            """Say hello."""
            click.echo(f"hello {name}")


def test_plugins_add_commands() -> None:
    group = TildeGroup(name="tilde-test")
    manager = make_plugin_manager(load_entry_points=False, plugins=[_HelloPlugin()])
    load_plugin_commands(group, manager)

    result = CliRunner().invoke(group, ["hello", "world"])

    assert result.exit_code == 0, result.output
    assert result.output == "hello world\n"


def test_main_lists_builtin_commands_without_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_PLUGINS", "")
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0, result.output
    assert "auth" in result.output


def test_a_broken_plugin_is_reported_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(cli: click.Group, manager: object = None) -> None:
        raise ConfigurationError("plugin 'x' failed to load: boom")

    monkeypatch.setattr("tilde.cli.load_plugin_commands", broken)
    group = TildeGroup(name="tilde-test")
    result = CliRunner().invoke(group, ["anything"])
    assert result.exit_code == 1
    assert "Error: plugin 'x' failed to load: boom" in result.output
    assert "Traceback" not in result.output
