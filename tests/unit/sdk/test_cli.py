"""The ``tilde`` command line without a server: version, endpoints, errors, ``tilde server``, plugins."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import tilde
from tilde.cli import TildeGroup, load_plugin_commands, main
from tilde.cli.auth import normalize_endpoint
from tilde.cli.hookspecs import hookimpl
from tilde.core.errors import ConfigurationError
from tilde.core.plugins import make_plugin_manager


def _config_file() -> Path:
    return Path.home() / ".tilde" / "config.yaml"


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == f"tilde, version {tilde.__version__}"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("  http://127.0.0.1:8000/  ", "http://127.0.0.1:8000"),
        ("http://127.0.0.1:8000/api/v1", "http://127.0.0.1:8000"),
        ("https://tilde.example/api/v1/", "https://tilde.example"),
        ("https://tilde.example/prefix/", "https://tilde.example/prefix"),
    ],
)
def test_endpoints_are_normalised(typed: str, expected: str) -> None:
    assert normalize_endpoint(typed) == expected


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("127.0.0.1:8000", "has no scheme"),
        ("tilde.example", "did you mean http://tilde.example or https://tilde.example?"),
        ("ftp://tilde.example", "must start with http:// or https://"),
        ("http://", "has no host"),
        ("http://host:99999", "invalid port"),
        ("http://host/#x", "must not have a query or a fragment"),
    ],
)
def test_malformed_endpoints_are_refused(typed: str, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("?", r"\?").replace(".", r"\.")):
        normalize_endpoint(typed)


def test_login_refuses_a_malformed_endpoint_before_any_request() -> None:
    result = CliRunner().invoke(main, ["auth", "login", "--api-key", "k", "--endpoint-url", "localhost:1"])
    assert result.exit_code == 2
    assert "has no scheme" in result.stderr
    assert not _config_file().exists()


def test_login_rejects_an_empty_key() -> None:
    result = CliRunner().invoke(main, ["auth", "login", "--api-key", "  "])
    assert result.exit_code != 0
    assert "must not be empty" in result.output
    assert not _config_file().exists()


def test_logout_without_a_file() -> None:
    result = CliRunner().invoke(main, ["auth", "logout"])
    assert result.exit_code == 0
    assert "No stored API key" in result.output


def test_server_runs_tilde_server_commands() -> None:
    from tilde.server import __version__ as server_version

    result = CliRunner().invoke(main, ["server", "--version"])
    assert result.exit_code == 0, result.output
    assert server_version in result.stdout
    helped = CliRunner().invoke(main, ["server", "--help"])
    assert helped.exit_code == 0
    assert "Usage: tilde server" in helped.stdout
    assert "serve" in helped.stdout
    bad = CliRunner().invoke(main, ["server", "serve", "--port", "not-a-port"])
    assert bad.exit_code == 2


def test_server_without_tilde_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes the import fail as if the distribution were absent.
    monkeypatch.setitem(sys.modules, "tilde.server.cli", None)
    result = CliRunner().invoke(main, ["server", "serve"])
    assert result.exit_code == 1
    assert result.stderr == "Error: the local server is not installed: pip install tilde-server\n"


def test_unexpected_errors_are_one_line_unless_debug(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setenv("TILDE_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("TILDE_API_KEY", "k")
    monkeypatch.setattr("tilde.admin.Organizations.list", broken)

    plain = CliRunner().invoke(main, ["org", "list"])
    assert plain.exit_code == 1
    assert plain.stderr == "Error: unexpected RuntimeError: boom (run `tilde --debug …` for the traceback)\n"

    debug = CliRunner().invoke(main, ["--debug", "org", "list"])
    assert isinstance(debug.exception, RuntimeError)


def test_server_down_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("TILDE_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("TILDE_API_KEY", "k")
    result = CliRunner().invoke(main, ["ls", "tilde://acme/data/"])
    assert result.exit_code == 1
    assert result.stderr.startswith(f"Error: cannot reach the server http://127.0.0.1:{port} (")
    assert len(result.stderr.splitlines()) == 1
    assert "Traceback" not in result.stderr


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


def test_help_loads_no_sdk_layer_and_no_progress_bar() -> None:
    # `tilde --help` stays fast: the data/compute/admin layers and tqdm load only when a command needs them.
    import subprocess

    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from tilde.cli import main\n"
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0\n"
        "heavy = ('tqdm', 'tilde.data', 'tilde.compute', 'tilde.admin', 'tilde.server', 'tilde._composed')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
        env={"PATH": "/usr/bin:/bin", "TILDE_PLUGINS": ""},
    )  # fmt: skip
    assert result.stdout.strip() == "[]"
