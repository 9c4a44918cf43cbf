"""Image references, manifests, platform choice and registry settings: the parts that need no registry."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from tilde.server.images import ImageConfig, ImagePullError, ImageReferenceError, parse_reference
from tilde.server.images.distribution import registry_base_url, validate_mirror
from tilde.server.images.manifest import Manifest, parse_config, parse_manifest, select_platform
from tilde.server.images.settings import read_registry_credentials

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "canonical", "api_host"),
    [
        ("python:3.12", "docker.io/library/python:3.12", "registry-1.docker.io"),
        ("python", "docker.io/library/python:latest", "registry-1.docker.io"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest", "registry-1.docker.io"),
        ("docker.io/python:3.12", "docker.io/library/python:3.12", "registry-1.docker.io"),
        ("index.docker.io/library/python", "docker.io/library/python:latest", "registry-1.docker.io"),
        ("ghcr.io/org/team/app:v1.2-rc_3", "ghcr.io/org/team/app:v1.2-rc_3", "ghcr.io"),
        ("localhost/app", "localhost/app:latest", "localhost"),
        ("localhost:5000/app:1", "localhost:5000/app:1", "localhost:5000"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest", "127.0.0.1:5000"),
        (f"python@{DIGEST}", f"docker.io/library/python@{DIGEST}", "registry-1.docker.io"),
        (f"reg.example:443/app:1@{DIGEST}", f"reg.example:443/app:1@{DIGEST}", "reg.example:443"),
        ("my.registry/a__b/c-d/e.f", "my.registry/a__b/c-d/e.f:latest", "my.registry"),
    ],
)
def test_references_resolve_as_container_tools_do(text: str, canonical: str, api_host: str) -> None:
    ref = parse_reference(text)
    assert str(ref) == canonical
    assert ref.api_host == api_host
    assert parse_reference(canonical) == ref


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        (" python", "spaces"),
        ("Python", "lowercase"),
        ("team/App", "lowercase"),
        ("python:", "tag"),
        ("python:-x", "tag"),
        ("python:" + "x" * 129, "tag"),
        ("python@sha256:abc", "digest"),
        ("python@md5:" + "a" * 32, "digest"),
        ("a//b", "component"),
        ("a/-b", "component"),
        ("bad_host!:5000/app", "host"),
        ("x" * 300, "255"),
    ],
)
def test_malformed_references_say_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(ImageReferenceError, match=reason) as caught:
        parse_reference(text)
    assert isinstance(caught.value, ValueError)


def _index(*platforms: tuple[str, str, str]) -> Manifest:
    entries = []
    for position, (os_name, arch, variant) in enumerate(platforms):
        platform = {"os": os_name, "architecture": arch}
        if variant:
            platform["variant"] = variant
        entries.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": "sha256:" + f"{position:064x}",
                "size": 1,
                "platform": platform,
            }
        )
    return parse_manifest(
        json.dumps({"schemaVersion": 2, "manifests": entries}).encode(),
        "application/vnd.oci.image.index.v1+json",
    )


def test_platform_choice() -> None:
    index = _index(
        ("unknown", "unknown", ""), ("linux", "arm", "v7"), ("linux", "arm64", "v8"), ("linux", "amd64", "")
    )
    assert select_platform(index, ("linux", "amd64", "")).digest.endswith("3")
    assert select_platform(index, ("linux", "arm64", "v8")).digest.endswith("2")
    # An entry without a variant serves any variant of its architecture; a different variant does not.
    assert select_platform(_index(("linux", "arm64", "")), ("linux", "arm64", "v8")).digest.endswith("0")
    with pytest.raises(ImagePullError, match=r"no image for linux/arm/v6 .*linux/amd64, linux/arm/v7"):
        select_platform(index, ("linux", "arm", "v6"))


def test_manifests_and_configs_are_validated() -> None:
    with pytest.raises(ImagePullError, match="schema version"):
        parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}')
    with pytest.raises(ImagePullError, match="media type"):
        parse_manifest(b'{"schemaVersion": 2, "mediaType": "application/x-other", "layers": []}')
    with pytest.raises(ImagePullError, match="sha256 only"):
        parse_manifest(
            json.dumps(
                {"schemaVersion": 2, "config": {"digest": "sha512:ab", "size": 1}, "layers": []}
            ).encode()
        )
    with pytest.raises(ImagePullError, match="bad size"):
        parse_manifest(
            json.dumps({"schemaVersion": 2, "config": {"digest": DIGEST, "size": -1}, "layers": []}).encode()
        )
    with pytest.raises(ImagePullError, match="not JSON"):
        parse_manifest(b"<html>")
    config, diff_ids = parse_config(
        json.dumps(
            {
                "config": {"Env": ["A=1"], "Entrypoint": "/bin/sh", "User": "app"},
                "rootfs": {"diff_ids": [DIGEST]},
            }
        ).encode()
    )
    assert config == ImageConfig(env=("A=1",), user="app", entrypoint=("/bin/sh",))
    assert diff_ids == (DIGEST,)
    assert parse_config(b'{"config": null}') == (ImageConfig(), ())
    with pytest.raises(ImagePullError, match="list of strings"):
        parse_config(b'{"config": {"Cmd": [1, 2]}}')


def test_registry_urls_and_mirrors() -> None:
    assert registry_base_url("localhost:5000") == "http://localhost:5000"
    assert registry_base_url("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert registry_base_url("[::1]:5000") == "http://[::1]:5000"
    assert registry_base_url("ghcr.io") == "https://ghcr.io"
    assert registry_base_url("10.0.0.5:5000") == "https://10.0.0.5:5000"
    assert validate_mirror("https://mirror.example/") == "https://mirror.example"
    assert validate_mirror("http://10.1.2.3:5000") == "http://10.1.2.3:5000"
    assert validate_mirror("http://localhost:5000/") == "http://localhost:5000"
    for bad in ("http://8.8.8.8", "ftp://10.0.0.1", "https://user:pw@mirror.example", "mirror.example"):
        with pytest.raises(ValueError, match="registry mirror"):
            validate_mirror(bad)


def test_credentials_file_in_docker_config_form(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": base64.b64encode(b"hubuser:hub:pass").decode()},
                    "registry.internal:5000": {"username": "bot", "password": "s3cret"},
                }
            }
        )
    )
    assert read_registry_credentials(path) == {
        "docker.io": ("hubuser", "hub:pass"),
        "registry.internal:5000": ("bot", "s3cret"),
    }
    path.write_text(json.dumps({"auths": {"r.example": {"auth": "hunter2-in-clear"}}}))
    with pytest.raises(ValueError, match="'auth' is not base64") as caught:
        read_registry_credentials(path)
    assert "hunter2" not in str(caught.value)
    path.write_text("[]")
    with pytest.raises(ValueError, match="no 'auths'"):
        read_registry_credentials(path)
    with pytest.raises(ValueError, match="cannot read"):
        read_registry_credentials(tmp_path / "missing.json")
