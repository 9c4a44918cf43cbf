"""The pieces of running on an image that need no sandbox: names, users, environment, package indexes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tilde.server.errors import ApiError
from tilde.server.sandbox.image_root import (
    ImageUser,
    image_environment,
    index_environment,
    package_index_policy,
    package_indexes,
    resolve_user,
)
from tilde.server.sandbox.isolation import resolve_image
from tilde.server.sandbox.settings import SandboxSettings
from tilde.server.sandbox.spec import parse_spec


def _settings(**values: object) -> SandboxSettings:
    return SandboxSettings.from_mapping({"allow_host_image": False, **values})


def _layers(tmp_path: Path) -> list[Path]:
    lower, upper = tmp_path / "0", tmp_path / "1"
    (lower / "etc").mkdir(parents=True)
    (upper / "etc").mkdir(parents=True)
    (lower / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nold:x:7:7::/old:/bin/sh\n")
    # The topmost layer's copy wins.
    (upper / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nweb:x:33:34:web:/var/www:/bin/sh\n")
    (upper / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    return [lower, upper]


def test_users_resolve_against_the_image_files(tmp_path: Path) -> None:
    layers, settings = _layers(tmp_path), _settings()
    assert resolve_user(layers, "web", settings) == ImageUser(33, 34, "/var/www")
    assert resolve_user(layers, "33", settings) == ImageUser(33, 34, "/var/www")
    assert resolve_user(layers, "web:staff", settings) == ImageUser(33, 50, "/var/www")
    assert resolve_user(layers, "5000:5001", settings) == ImageUser(5000, 5001, "")
    assert resolve_user(layers, "5000", settings) == ImageUser(5000, 5000, "")


def test_root_and_no_user_become_the_sandbox_user(tmp_path: Path) -> None:
    layers, settings = _layers(tmp_path), _settings(uid=1234, gid=1235)
    assert resolve_user(layers, "", settings) == ImageUser(1234, 1235, "/root")
    assert resolve_user(layers, "root", settings) == ImageUser(1234, 1235, "/root")
    assert resolve_user(layers, "0:0", settings) == ImageUser(1234, 1235, "/root")


@pytest.mark.parametrize(("user", "fragment"), [("old", "no user 'old'"), ("web:nogroup", "no group")])
def test_unknown_names_are_refused(tmp_path: Path, user: str, fragment: str) -> None:
    with pytest.raises(LookupError, match=fragment):
        resolve_user(_layers(tmp_path), user, _settings())


def test_the_image_env_comes_first_with_path_and_home_filled_in() -> None:
    user = ImageUser(33, 34, "/var/www")
    env = image_environment(["A=1", "B=x=y", "broken", "A=2"], user, "/bin")
    assert env == {"A": "2", "B": "x=y", "PATH": "/bin", "HOME": "/var/www"}
    assert image_environment(["PATH=/opt", "HOME=/h"], ImageUser(1, 1, ""), "/bin") == {
        "PATH": "/opt",
        "HOME": "/h",
    }
    assert image_environment([], ImageUser(1, 1, ""), "/bin")["HOME"] == "/tmp"


def test_package_index_allow_list() -> None:
    policy = package_index_policy(["https://pypi.org/simple", "http://localhost:3141/root/+simple/"])
    assert policy is not None
    assert policy.allow == ("pypi.org:443", "files.pythonhosted.org:443", "localhost:3141")
    assert policy.permits("files.pythonhosted.org", 443)
    assert not policy.permits("example.com", 443)
    assert not policy.permits("localhost", 8080)
    assert package_index_policy([]) is None


def test_pip_inside_is_pointed_at_indexes_other_than_pypi() -> None:
    assert index_environment(["https://pypi.org/simple"]) == {}
    assert index_environment(["http://a/simple", "http://b/simple"]) == {
        "PIP_INDEX_URL": "http://a/simple",
        "PIP_EXTRA_INDEX_URL": "http://b/simple",
    }


def test_package_indexes_follow_the_servers_pip_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_INDEX_URL", "http://mirror.internal/simple")
    monkeypatch.setenv("PIP_EXTRA_INDEX_URL", "http://extra.internal/simple")
    assert package_indexes(_settings()) == ["http://mirror.internal/simple", "http://extra.internal/simple"]
    assert package_indexes(_settings(package_indexes=["http://given/simple"])) == ["http://given/simple"]
    assert package_indexes(_settings(package_indexes=[])) == []


def test_image_names(tmp_path: Path) -> None:
    closed = _settings()
    assert resolve_image(closed, "python:3.12").reference == "python:3.12"
    refused = resolve_image(closed, "host")
    assert refused.error is not None
    assert "allow_host_image" in refused.error
    opened = _settings(allow_host_image=True, images={"mine": str(tmp_path), "legacy": "host"})
    assert resolve_image(opened, "host").error is None
    assert resolve_image(opened, "host").reference is None
    assert "host root" in resolve_image(opened, "legacy").note
    assert resolve_image(opened, "mine").rootfs == str(tmp_path)
    assert resolve_image(opened, "other").reference == "other"
    everything = _settings(allow_host_image=True, images={"*": "host"})
    assert "every image name" in resolve_image(everything, "ubuntu:22.04").note
    strict = _settings(strict_images=True)
    assert resolve_image(strict, "python:3.12").error is not None


def test_the_host_image_environment_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_SERVER_HOST_IMAGE", "all")
    settings = SandboxSettings.from_mapping({})
    assert settings.allow_host_image is True
    assert settings.images == {"*": "host"}
    assert SandboxSettings.from_mapping({"allow_host_image": False}).allow_host_image is False
    monkeypatch.setenv("TILDE_SERVER_HOST_IMAGE", "allow")
    assert SandboxSettings.from_mapping({}).images == {}
    monkeypatch.setenv("TILDE_SERVER_HOST_IMAGE", "yes")
    with pytest.raises(ValueError, match="TILDE_SERVER_HOST_IMAGE"):
        SandboxSettings.from_mapping({})
    monkeypatch.delenv("TILDE_SERVER_HOST_IMAGE")
    assert SandboxSettings.from_mapping({}).allow_host_image is False


def test_requests_may_leave_out_the_image_and_a_one_shot_command() -> None:
    spec = parse_spec({}, default_timeout=60, max_timeout=None, default_image="python:3.12")
    assert (spec.image, spec.command, spec.mode) == ("python:3.12", None, "one-shot")
    with pytest.raises(ApiError, match="image is required"):
        parse_spec({"command": ["true"]}, default_timeout=60, max_timeout=None)
