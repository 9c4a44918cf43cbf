"""Pulling images from a real registry (Debian's docker-registry on loopback) into the image store."""

from __future__ import annotations

import asyncio
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci_registry import (
    RunningRegistry,
    build_image,
    cutting_proxy,
    digest_of,
    entry,
    files_layer,
    layer,
    push_image,
    push_index,
    run_registry,
    token_gate,
)

from tilde.server.images import (
    ImageAuthError,
    ImageConfig,
    ImageNotFound,
    ImagePullError,
    ImageReferenceError,
    ImageStore,
    LocalImage,
)
from tilde.server.images.manifest import host_platform


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningRegistry]:
    with run_registry(tmp_path_factory.mktemp("registry")) as running:
        yield running


def base_layer(tag: str = "base") -> bytes:
    return files_layer({"etc/os-release": f"ID={tag}\n".encode(), "usr/bin/tool": b"#!/bin/sh\necho tool\n"})


def test_pull_by_tag_unpacks_layers_and_reads_the_config(registry: RunningRegistry, tmp_path: Path) -> None:
    upper = layer(
        entry("usr/bin/tool", b"#!/bin/sh\necho v2\n", mode=0o755), entry("app/main.py", b"print(1)\n")
    )
    image = build_image(
        [base_layer(), upper],
        env=("PATH=/usr/bin:/bin", "LANG=C.UTF-8"),
        entrypoint=("python3",),
        cmd=("main.py",),
        user="1000:1000",
        working_dir="/app",
    )
    push_image(registry, "team/app", "1.0", image)
    store = ImageStore(tmp_path / "images")
    seen: list[tuple[int, int]] = []
    found = asyncio.run(
        store.ensure(f"{registry.host}/team/app:1.0", progress=lambda d, t: seen.append((d, t)))
    )
    assert found.reference == f"{registry.host}/team/app:1.0"
    assert found.digest == image.digest
    assert found.config == ImageConfig(
        env=("PATH=/usr/bin:/bin", "LANG=C.UTF-8"),
        working_dir="/app",
        user="1000:1000",
        entrypoint=("python3",),
        cmd=("main.py",),
    )
    assert [p.name for p in found.layers] == [d.replace(":", "-") for d in image.diff_ids]
    assert (found.layers[0] / "etc/os-release").read_text() == "ID=base\n"
    assert (found.layers[1] / "usr/bin/tool").read_text() == "#!/bin/sh\necho v2\n"
    assert found.size == sum(len(data) for data in [b"ID=base\n", b"#!/bin/sh\necho tool\n"]) + len(
        b"#!/bin/sh\necho v2\n"
    ) + len(b"print(1)\n")
    total = sum(len(blob) for blob in image.blobs)
    assert seen[0] == (0, total)
    assert seen[-1] == (total, total)
    assert store.bytes_received == total
    # The layer archives are gone once unpacked; manifest and config stay.
    blobs = {p.name for p in (tmp_path / "images/blobs/sha256").iterdir()}
    assert blobs == {image.digest.split(":")[1], digest_of(image.config).split(":")[1]}
    # The store's own files are private, like the rest of a server's data directory (layers keep the image's
    # modes: a sandbox reads them as the same user).
    for path in [tmp_path / "images", *(tmp_path / "images").rglob("*")]:
        if "layers" not in path.relative_to(tmp_path).parts[1:2]:
            assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_pull_by_digest_and_docker_schema_2(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image([base_layer("docker")], docker=True)
    push_image(registry, "legacy", "latest", image)
    store = ImageStore(tmp_path / "images")
    found = asyncio.run(store.ensure(f"{registry.host}/legacy@{image.digest}"))
    assert found.digest == image.digest
    assert (found.layers[0] / "etc/os-release").read_text() == "ID=docker\n"
    # The tag without a digest is another name: the store asks the registry, which has the same manifest.
    assert asyncio.run(store.ensure(f"{registry.host}/legacy")).digest == image.digest


def test_an_index_resolves_to_this_machines_platform(registry: RunningRegistry, tmp_path: Path) -> None:
    _, arch, variant = host_platform()
    other = "s390x" if arch != "s390x" else "amd64"
    mine = build_image([base_layer("mine")], architecture=arch)
    theirs = build_image([base_layer("theirs")], architecture=other)
    push_index(registry, "multi", "1", [(theirs, other, ""), (mine, arch, variant)])
    store = ImageStore(tmp_path / "images")
    found = asyncio.run(store.ensure(f"{registry.host}/multi:1"))
    assert found.digest == mine.digest
    assert (found.layers[0] / "etc/os-release").read_text() == "ID=mine\n"

    push_index(registry, "elsewhere", "1", [(theirs, other, "")])
    with pytest.raises(ImagePullError, match=f"no image for linux/{arch}"):
        asyncio.run(store.ensure(f"{registry.host}/elsewhere:1"))


def test_missing_images_and_bad_references(registry: RunningRegistry, tmp_path: Path) -> None:
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImageNotFound):
        asyncio.run(store.ensure(f"{registry.host}/nothing-here:1"))
    with pytest.raises(ImageReferenceError, match="tag"):
        asyncio.run(store.ensure("python:3.12!"))
    with pytest.raises(ImageReferenceError, match="lowercase"):
        asyncio.run(store.ensure("Python"))


def test_a_second_ensure_does_not_touch_the_network(tmp_path: Path) -> None:
    image = build_image([base_layer("cached")])
    with run_registry(tmp_path / "registry") as registry:
        push_image(registry, "cached", "1", image)
        first = asyncio.run(ImageStore(tmp_path / "images").ensure(f"{registry.host}/cached:1"))
    # The registry is gone: a new store on the same directory (a restarted server) still has the image.
    store = ImageStore(tmp_path / "images")
    again = asyncio.run(store.ensure(f"{registry.host}/cached:1"))
    assert again == first
    assert store.bytes_received == 0
    assert store.get(f"{registry.host}/cached@{image.digest}") == first
    with pytest.raises(ImagePullError, match="cannot reach"):
        asyncio.run(store.ensure(f"{registry.host}/cached:2"))


def test_layers_shared_between_images_are_downloaded_once(registry: RunningRegistry, tmp_path: Path) -> None:
    shared = base_layer("shared")
    one = build_image([shared, files_layer({"one": b"1"})])
    two = build_image([shared, files_layer({"two": b"2"})])
    push_image(registry, "shared/one", "1", one)
    push_image(registry, "shared/two", "1", two)
    store = ImageStore(tmp_path / "images")
    first = asyncio.run(store.ensure(f"{registry.host}/shared/one:1"))
    before = store.bytes_received
    second = asyncio.run(store.ensure(f"{registry.host}/shared/two:1"))
    assert first.layers[0] == second.layers[0]
    assert store.bytes_received - before == len(two.blobs[1])


def test_concurrent_pulls_sharing_a_layer_download_it_once(registry: RunningRegistry, tmp_path: Path) -> None:
    shared = files_layer({"base.bin": os.urandom(2 * 1024 * 1024)})
    one = build_image([shared, files_layer({"one": b"1"})])
    two = build_image([shared, files_layer({"two": b"2"})])
    push_image(registry, "together/one", "1", one)
    push_image(registry, "together/two", "1", two)
    store = ImageStore(tmp_path / "images")

    async def both() -> list[LocalImage]:
        return list(
            await asyncio.gather(
                store.ensure(f"{registry.host}/together/one:1"),
                store.ensure(f"{registry.host}/together/two:1"),
            )
        )

    first, second = asyncio.run(both())
    assert first.layers[0] == second.layers[0]
    assert (first.layers[0] / "base.bin").stat().st_size == 2 * 1024 * 1024
    assert store.bytes_received == len(one.blobs[0]) + len(one.blobs[1]) + len(two.blobs[1])


def test_two_stores_on_one_directory_fetch_a_shared_layer_once(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    # As a server and `tilde-server image pull` on the same data directory would (two stores, one root).
    shared = files_layer({"base.bin": os.urandom(2 * 1024 * 1024)})
    one = build_image([shared, files_layer({"one": b"1"})])
    two = build_image([shared, files_layer({"two": b"2"})])
    push_image(registry, "apart/one", "1", one)
    push_image(registry, "apart/two", "1", two)
    server, command = ImageStore(tmp_path / "images"), ImageStore(tmp_path / "images")

    async def both() -> list[LocalImage]:
        return list(
            await asyncio.gather(
                server.ensure(f"{registry.host}/apart/one:1"), command.ensure(f"{registry.host}/apart/two:1")
            )
        )

    first, second = asyncio.run(both())
    assert first.layers[0] == second.layers[0]
    assert (first.layers[0] / "base.bin").stat().st_size == 2 * 1024 * 1024
    assert server.bytes_received + command.bytes_received == len(one.blobs[0]) + len(one.blobs[1]) + len(
        two.blobs[1]
    )
    assert {image.reference for image in server.list()} == {first.reference, second.reference}


def test_basic_auth_from_configured_credentials(tmp_path: Path) -> None:
    image = build_image([base_layer("private")])
    with run_registry(tmp_path / "registry", auth=True) as registry:
        assert registry.credentials is not None
        push_image(registry, "private", "1", image)
        with pytest.raises(ImageAuthError, match="needs credentials"):
            asyncio.run(ImageStore(tmp_path / "anonymous").ensure(f"{registry.host}/private:1"))
        wrong = ImageStore(tmp_path / "wrong", credentials=lambda host: ("docker", "not-the-password"))
        with pytest.raises(ImageAuthError, match="refused"):
            asyncio.run(wrong.ensure(f"{registry.host}/private:1"))
        asked: list[str] = []

        def lookup(host: str) -> tuple[str, str] | None:
            asked.append(host)
            return registry.credentials if host == registry.host else None

        store = ImageStore(tmp_path / "images", credentials=lookup)
        found = asyncio.run(store.ensure(f"{registry.host}/private:1"))
        assert found.digest == image.digest
        assert asked
        assert set(asked) == {registry.host}


def test_bearer_token_flow(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image([base_layer("token")])
    push_image(registry, "tokened/app", "1", image)
    with token_gate(registry, ("robot", "s3cret")) as gate:
        host = gate.url.removeprefix("http://")
        with pytest.raises(ImageAuthError, match="token service"):
            asyncio.run(ImageStore(tmp_path / "anonymous").ensure(f"{host}/tokened/app:1"))
        store = ImageStore(tmp_path / "images", credentials=lambda h: gate.credentials if h == host else None)
        found = asyncio.run(store.ensure(f"{host}/tokened/app:1"))
        assert found.digest == image.digest
        # One token for the whole pull (manifest, config and layers), for the image's repository.
        assert gate.tokens_issued == 1
        assert gate.scopes[-1] == "repository:tokened/app:pull"


def test_anonymous_bearer_tokens(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image([base_layer("anonymous")])
    push_image(registry, "public/app", "1", image)
    with token_gate(registry, None) as gate:
        host = gate.url.removeprefix("http://")
        store = ImageStore(tmp_path / "images")
        assert asyncio.run(store.ensure(f"{host}/public/app:1")).digest == image.digest
        assert gate.tokens_issued == 1
        assert gate.scopes == ["repository:public/app:pull"]


def test_docker_hub_names_go_to_the_mirror(registry: RunningRegistry, tmp_path: Path) -> None:
    image = build_image([base_layer("python")], cmd=("python3",))
    push_image(registry, "library/python", "3.12", image)
    store = ImageStore(tmp_path / "images", mirrors=[registry.url])
    found = asyncio.run(store.ensure("python:3.12"))
    assert found.reference == "docker.io/library/python:3.12"
    assert found.digest == image.digest
    assert store.get("docker.io/library/python:3.12") == found
    assert store.get("index.docker.io/library/python:3.12") == found


def test_mirror_urls_are_checked() -> None:
    with pytest.raises(ValueError, match="http:// only for loopback or private"):
        ImageStore(Path("/nonexistent-never-created"), mirrors=["http://8.8.8.8:5000"])
    with pytest.raises(ValueError, match="http:// or https://"):
        ImageStore(Path("/nonexistent-never-created"), mirrors=["ftp://mirror.internal"])


def test_an_interrupted_download_resumes_where_it_stopped(registry: RunningRegistry, tmp_path: Path) -> None:
    payload = os.urandom(3 * 1024 * 1024)  # incompressible: the blob is as large as its contents
    image = build_image([files_layer({"data.bin": payload})])
    push_image(registry, "library/big", "1", image)
    blob = len(image.blobs[0])
    with cutting_proxy(registry, cut_after=blob // 2) as proxy:
        store = ImageStore(tmp_path / "images", mirrors=[proxy.url])
        found = asyncio.run(store.ensure("big:1"))
    assert (found.layers[0] / "data.bin").read_bytes() == payload
    assert proxy.cuts == 1
    # Starting over would have sent half the blob again; a Range request only re-sends what was lost.
    assert store.bytes_received == blob
    assert proxy.sent < blob + blob // 8


def test_a_registry_that_ignores_range_sends_the_blob_again(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    payload = os.urandom(2 * 1024 * 1024)
    image = build_image([files_layer({"data.bin": payload})])
    push_image(registry, "library/norange", "1", image)
    blob = len(image.blobs[0])
    with (
        token_gate(registry, ("robot", "pw"), honour_range=False) as gate,
        cutting_proxy(gate.url.removeprefix("http://"), cut_after=blob // 2) as proxy,
    ):
        proxy_host = proxy.url.removeprefix("http://")
        store = ImageStore(
            tmp_path / "images",
            mirrors=[proxy.url],
            credentials=lambda host: gate.credentials if host == proxy_host else None,
        )
        found = asyncio.run(store.ensure("norange:1"))
    assert proxy.cuts == 1
    # The layer was being unpacked as it arrived; after the restart it is unpacked again from the whole file.
    assert (found.layers[0] / "data.bin").read_bytes() == payload
    assert store.bytes_received > blob
    assert not any(p.name.startswith(".tmp") for p in (tmp_path / "images/layers").iterdir())


def test_a_partial_download_left_by_an_earlier_pull_is_continued(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    payload = os.urandom(1024 * 1024)
    image = build_image([files_layer({"data.bin": payload})])
    push_image(registry, "partial", "1", image)
    blob = image.blobs[0]
    partial = tmp_path / "images/partial" / digest_of(blob).split(":")[1]
    partial.parent.mkdir(parents=True)
    partial.write_bytes(blob[: len(blob) // 3])
    store = ImageStore(tmp_path / "images")
    seen: list[tuple[int, int]] = []
    found = asyncio.run(store.ensure(f"{registry.host}/partial:1", progress=lambda d, t: seen.append((d, t))))
    assert (found.layers[0] / "data.bin").read_bytes() == payload
    assert store.bytes_received == len(blob) - len(blob) // 3
    assert seen[1] == (len(blob) // 3, len(blob))
    assert not partial.exists()


def test_a_corrupt_partial_download_fails_the_digest_check_and_is_discarded(
    registry: RunningRegistry, tmp_path: Path
) -> None:
    image = build_image([files_layer({"data.bin": os.urandom(256 * 1024)})])
    push_image(registry, "corrupt", "1", image)
    blob = image.blobs[0]
    partial = tmp_path / "images/partial" / digest_of(blob).split(":")[1]
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"\0" * 1000)
    store = ImageStore(tmp_path / "images")
    with pytest.raises(ImagePullError, match="does not match its digest"):
        asyncio.run(store.ensure(f"{registry.host}/corrupt:1"))
    assert not partial.exists()
    # The next attempt downloads the blob whole and succeeds.
    assert asyncio.run(store.ensure(f"{registry.host}/corrupt:1")).digest == image.digest


def test_lru_eviction_never_removes_pinned_layers(registry: RunningRegistry, tmp_path: Path) -> None:
    images = {}
    for name in ("a", "b", "c"):
        images[name] = build_image([files_layer({f"{name}.bin": os.urandom(100_000)})])
        push_image(registry, f"lru/{name}", "1", images[name])
    store = ImageStore(tmp_path / "images", max_bytes=250_000)
    a = asyncio.run(store.ensure(f"{registry.host}/lru/a:1"))
    with store.pin(a):
        asyncio.run(store.ensure(f"{registry.host}/lru/b:1"))
        asyncio.run(store.ensure(f"{registry.host}/lru/c:1"))
        # a is the least recently used but pinned: b goes instead.
        names = {image.reference.rsplit("/", 1)[1] for image in store.list()}
        assert names == {"a:1", "c:1"}
        assert all(path.is_dir() for path in a.layers)
        assert store.remove(a.reference)
        # Forgotten, but its layer stays on disk while pinned.
        assert all(path.is_dir() for path in a.layers)
    assert store.total_bytes() <= 250_000 + 100_000
    asyncio.run(store.ensure(f"{registry.host}/lru/b:1"))
    # The unpinned, unreferenced layer of a is collected by the next eviction pass.
    assert not any(path.exists() for path in a.layers)
    assert store.total_bytes() <= 250_000
    assert {image.reference.rsplit("/", 1)[1] for image in store.list()} == {"b:1", "c:1"}


def test_remove_keeps_layers_other_images_use(registry: RunningRegistry, tmp_path: Path) -> None:
    shared = base_layer("rm-shared")
    one = build_image([shared, files_layer({"one": b"1"})])
    two = build_image([shared, files_layer({"two": b"2"})])
    push_image(registry, "rm/one", "1", one)
    push_image(registry, "rm/two", "1", two)
    store = ImageStore(tmp_path / "images")
    first = asyncio.run(store.ensure(f"{registry.host}/rm/one:1"))
    second = asyncio.run(store.ensure(f"{registry.host}/rm/two:1"))
    assert store.remove(f"{registry.host}/rm/one:1")
    assert not store.remove(f"{registry.host}/rm/one:1")
    assert first.layers[0].is_dir()
    assert not first.layers[1].exists()
    assert store.get(f"{registry.host}/rm/two:1") == second
    with pytest.raises(ImageNotFound, match="ensure it again"), store.pin(first):
        pass


def test_symlinked_and_hard_linked_files_survive_a_pull(registry: RunningRegistry, tmp_path: Path) -> None:
    data = layer(
        entry("usr/lib/libx.so.1", b"lib"),
        entry("usr/lib/libx.so", kind=tarfile.SYMTYPE, linkname="libx.so.1"),
        entry("usr/bin/python3.12", b"py", mode=0o755),
        entry("usr/bin/python3", kind=tarfile.LNKTYPE, linkname="usr/bin/python3.12"),
    )
    push_image(registry, "links", "1", build_image([data]))
    found = asyncio.run(ImageStore(tmp_path / "images").ensure(f"{registry.host}/links:1"))
    root = found.layers[0]
    assert os.readlink(root / "usr/lib/libx.so") == "libx.so.1"
    assert os.path.samefile(root / "usr/bin/python3", root / "usr/bin/python3.12")
