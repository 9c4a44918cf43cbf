from __future__ import annotations

from pathlib import Path

import pytest

from tilde.core import config as config_module
from tilde.core.config import (
    DEFAULT_ENDPOINT_URL,
    DEFAULT_SANDBOX_IMAGE,
    Configuration,
    read_config_file,
    resolve_config,
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_with_nothing_configured() -> None:
    config = resolve_config()
    assert config == Configuration(
        endpoint_url=DEFAULT_ENDPOINT_URL, api_key=None, default_sandbox_image=DEFAULT_SANDBOX_IMAGE
    )
    assert config.endpoint_url == "https://tilde.run"
    assert config.default_sandbox_image == "ubuntu:22.04"
    assert config.base_url == "https://tilde.run/api/v1"


def test_base_url_strips_all_trailing_slashes() -> None:
    assert resolve_config(endpoint_url="http://h:8080///").base_url == "http://h:8080/api/v1"


def test_configuration_is_frozen_and_repr_hides_the_key() -> None:
    config = resolve_config(api_key="tuk-very-secret")
    with pytest.raises(AttributeError):
        config.api_key = "x"  # type: ignore[misc]
    assert "tuk-very-secret" not in repr(config)


# -- endpoint: explicit > TILDE_ENDPOINT_URL > TILDE_API_URL > file > default --------------------------------


def test_endpoint_every_level(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    write(config_file, "endpoint_url: http://file\n")
    assert resolve_config().endpoint_url == "http://file"
    monkeypatch.setenv("TILDE_API_URL", "http://api-url")
    assert resolve_config().endpoint_url == "http://api-url"
    monkeypatch.setenv("TILDE_ENDPOINT_URL", "http://endpoint")
    assert resolve_config().endpoint_url == "http://endpoint"
    assert resolve_config(endpoint_url="http://explicit").endpoint_url == "http://explicit"


def test_empty_strings_count_as_unset(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    write(config_file, "endpoint_url: http://file\napi_key: tuk-file\n")
    monkeypatch.setenv("TILDE_ENDPOINT_URL", "")
    monkeypatch.setenv("TILDE_API_URL", "")
    monkeypatch.setenv("TILDE_API_KEY", "")
    monkeypatch.setenv("TILDE_DEFAULT_SANDBOX_IMAGE", "")
    config = resolve_config(endpoint_url="", api_key="", default_sandbox_image="")
    assert config.endpoint_url == "http://file"
    assert config.api_key == "tuk-file"
    assert config.default_sandbox_image == DEFAULT_SANDBOX_IMAGE


# -- api key: explicit > TILDE_API_KEY > file ---------------------------------------------------------------


def test_api_key_every_level(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    assert resolve_config().api_key is None
    write(config_file, "api_key: tuk-file\n")
    assert resolve_config().api_key == "tuk-file"
    monkeypatch.setenv("TILDE_API_KEY", "tuk-env")
    assert resolve_config().api_key == "tuk-env"
    assert resolve_config(api_key="tuk-arg").api_key == "tuk-arg"


def test_sandbox_image_levels(monkeypatch: pytest.MonkeyPatch, config_file: Path) -> None:
    # The config file is never consulted for the image.
    write(config_file, "default_sandbox_image: from-file\n")
    assert resolve_config().default_sandbox_image == DEFAULT_SANDBOX_IMAGE
    monkeypatch.setenv("TILDE_DEFAULT_SANDBOX_IMAGE", "alpine:3")
    assert resolve_config().default_sandbox_image == "alpine:3"
    assert resolve_config(default_sandbox_image="python:3.12").default_sandbox_image == "python:3.12"


def test_explicit_environ_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_API_KEY", "tuk-os")
    assert resolve_config(environ={}).api_key is None
    assert resolve_config(environ={"TILDE_API_KEY": "tuk-map"}).api_key == "tuk-map"


# -- the config file -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   \n",
        "just a string\n",
        "- a\n- list\n",
        "api_key: [unclosed\n",
        ":\n  - : -\n\t bad",
        "api_key: 12345\nendpoint_url: true\n",
        "api_key: ''\nendpoint_url: null\n",
        "42\n",
    ],
)
def test_malformed_or_useless_files_are_ignored(config_file: Path, text: str) -> None:
    write(config_file, text)
    assert read_config_file() == {}
    config = resolve_config()
    assert config.api_key is None
    assert config.endpoint_url == DEFAULT_ENDPOINT_URL


def test_missing_file_is_ignored(home: Path) -> None:
    assert not (home / ".tilde").exists()
    assert read_config_file() == {}


def test_unreadable_file_is_ignored(config_file: Path) -> None:
    config_file.mkdir()  # a directory where the file should be: reading raises IsADirectoryError
    assert read_config_file() == {}


def test_undecodable_file_is_ignored(config_file: Path) -> None:
    config_file.write_bytes(b"api_key: \xff\xfe\xfa\n")
    assert read_config_file() == {}


def test_unknown_keys_are_ignored(config_file: Path) -> None:
    write(config_file, "api_key: tuk-1\nendpoint_url: http://e\nprofile: dev\nextra: {a: 1}\n")
    assert read_config_file() == {"api_key": "tuk-1", "endpoint_url": "http://e"}


def test_home_is_looked_up_at_call_time(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other_home = tmp_path / "other-home"
    (other_home / ".tilde").mkdir(parents=True)
    write(other_home / ".tilde" / "config.yaml", "api_key: tuk-other\n")
    assert resolve_config().api_key is None
    monkeypatch.setenv("HOME", str(other_home))
    assert resolve_config().api_key == "tuk-other"


def test_default_path_function_can_be_replaced(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    custom = write(tmp_path / "custom.yaml", "api_key: tuk-custom\n")
    monkeypatch.setattr(config_module, "_default_config_path", lambda: custom)
    assert resolve_config().api_key == "tuk-custom"


def test_explicit_path_and_preread_settings(tmp_path: Path) -> None:
    path = write(tmp_path / "c.yaml", "endpoint_url: http://path\n")
    assert resolve_config(config_path=path).endpoint_url == "http://path"
    assert resolve_config(config_file={"endpoint_url": "http://given"}).endpoint_url == "http://given"
