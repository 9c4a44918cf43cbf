"""``tilde-server image pull|list|rm|import`` as a user runs them, against a real registry and archives."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_registry import RunningRegistry, build_image, digest_of, files_layer, push_image, run_registry

from tilde.server.images import ImageStore


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def cli(*args: str, data_dir: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILDE_SERVER_")}
    done = subprocess.run(
        [sys.executable, "-m", "tilde.server", "image", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_pull_list_and_rm(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image([files_layer({"etc/os-release": b"ID=cli\n"})], cmd=("python3",))
    push_image(registry, "library/python", "3.12", image)
    pulled = cli("pull", "python:3.12", "--registry-mirror", registry.url, data_dir=tmp_path)
    assert pulled.stdout.startswith(f"docker.io/library/python:3.12\t{image.digest}\t1 layers\t")
    listed = cli("list", data_dir=tmp_path)
    assert listed.stdout.split("\t")[:2] == ["docker.io/library/python:3.12", image.digest]
    # The server's store (the same data directory) sees the pulled image without a network.
    found = ImageStore(tmp_path / "images").get("python:3.12")
    assert found is not None
    assert (found.layers[0] / "etc/os-release").read_text() == "ID=cli\n"
    assert cli("rm", "python:3.12", data_dir=tmp_path).stdout == "removed python:3.12\n"
    assert cli("list", data_dir=tmp_path).stdout == ""
    assert not found.layers[0].exists()
    missing = cli("rm", "python:3.12", data_dir=tmp_path, check=False)
    assert missing.returncode == 1
    assert missing.stderr == "error: no such image: python:3.12\n"


def test_pull_errors_are_one_line(registry: RunningRegistry, tmp_path: Path) -> None:
    missing = cli("pull", f"{registry.host}/absent:1", data_dir=tmp_path, check=False)
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: ")
    assert "not found" in missing.stderr
    assert missing.stderr.count("\n") == 1
    bad = cli("pull", "team/App", data_dir=tmp_path, check=False)
    assert bad.returncode == 1
    assert "lowercase" in bad.stderr
    mirror = cli("pull", "python:3.12", "--registry-mirror", "http://8.8.8.8", data_dir=tmp_path, check=False)
    assert mirror.returncode == 1
    assert "loopback or private-network" in mirror.stderr


def test_pull_with_credentials_from_an_auth_file(tmp_path: Path) -> None:
    image = build_image([files_layer({"secret": b"s"})])
    with run_registry(tmp_path / "registry", auth=True) as registry:
        assert registry.credentials is not None
        push_image(registry, "private/app", "1", image)
        denied = cli("pull", f"{registry.host}/private/app:1", data_dir=tmp_path, check=False)
        assert denied.returncode == 1
        assert "needs credentials" in denied.stderr
        user, password = registry.credentials
        auth_file = tmp_path / "auth.json"
        auth_file.write_text(json.dumps({"auths": {registry.host: {"username": user, "password": password}}}))
        pulled = cli(
            "pull",
            f"{registry.host}/private/app:1",
            "--registry-auth-file",
            str(auth_file),
            data_dir=tmp_path,
        )
        assert image.digest in pulled.stdout
        assert password not in pulled.stdout + pulled.stderr


def _docker_save_archive(path: Path) -> tuple[str, bytes]:
    """Write an archive the way ``docker save`` lays it out; return the image id and the layer's payload."""
    payload = b"print('from docker save')\n"
    layer_tar = files_layer({"app/main.py": payload})
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["python3", "/app/main.py"]},
            "rootfs": {"type": "layers", "diff_ids": [digest_of(layer_tar)]},
        }
    ).encode()
    config_name = digest_of(config).split(":")[1] + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": ["saved/app:2"], "Layers": ["abc/layer.tar"]}])
    with tarfile.open(path, "w") as archive:
        for name, data in (
            ("manifest.json", manifest.encode()),
            (config_name, config),
            ("abc/layer.tar", layer_tar),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return digest_of(config), payload


def test_import_a_docker_save_archive(tmp_path: Path) -> None:
    image_id, payload = _docker_save_archive(tmp_path / "saved.tar")
    imported = cli("import", str(tmp_path / "saved.tar"), data_dir=tmp_path / "data")
    assert imported.stdout.startswith(f"docker.io/saved/app:2\t{image_id}\t1 layers")
    found = ImageStore(tmp_path / "data/images").get("saved/app:2")
    assert found is not None
    assert found.config.cmd == ("python3", "/app/main.py")
    assert (found.layers[0] / "app/main.py").read_bytes() == payload
    renamed = cli(
        "import", str(tmp_path / "saved.tar"), "--name", "localhost:5000/mine:1", data_dir=tmp_path / "data"
    )
    assert renamed.stdout.startswith("localhost:5000/mine:1\t")


def test_import_an_oci_layout_made_by_umoci_and_skopeo(registry: RunningRegistry, tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    bundle = tmp_path / "bundle"
    for step in (
        ["umoci", "init", "--layout", str(layout)],
        ["umoci", "new", "--image", f"{layout}:1.0"],
        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1.0", str(bundle)],
    ):
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    (bundle / "rootfs/hello.txt").write_text("from umoci\n")
    for step in (
        ["umoci", "repack", "--image", f"{layout}:1.0", str(bundle)],
        [
            "umoci",
            "config",
            "--image",
            f"{layout}:1.0",
            "--config.env",
            "GREETING=hi",
            "--config.cmd",
            "/bin/sh",
        ],
    ):
        subprocess.run(step, check=True, capture_output=True, timeout=60)
    # The layout names its image "1.0" only: no reference, so the command asks for one.
    nameless = cli("import", str(layout), data_dir=tmp_path / "data", check=False)
    assert nameless.returncode == 1
    assert "records no image name" in nameless.stderr
    imported = cli("import", str(layout), "--name", "umoci/hello:1.0", data_dir=tmp_path / "data")
    assert imported.stdout.startswith("docker.io/umoci/hello:1.0\t")
    found = ImageStore(tmp_path / "data/images").get("umoci/hello:1.0")
    assert found is not None
    assert found.config.env == ("GREETING=hi",)
    assert (found.layers[-1] / "hello.txt").read_text() == "from umoci\n"

    # The same image through a registry and back into a tar of an OCI layout (skopeo), imported again.
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--dest-tls-verify=false",
            f"oci:{layout}:1.0",
            f"docker://{registry.host}/umoci/hello:1.0",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    copied = tmp_path / "copied"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--src-tls-verify=false",
            f"docker://{registry.host}/umoci/hello:1.0",
            f"oci:{copied}:{registry.host}/umoci/hello:1.0",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with tarfile.open(tmp_path / "copied.tar", "w") as archive:
        archive.add(copied, arcname=".")
    again = cli("import", str(tmp_path / "copied.tar"), data_dir=tmp_path / "other")
    assert again.stdout.startswith(f"{registry.host}/umoci/hello:1.0\t")
