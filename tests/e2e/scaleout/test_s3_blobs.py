"""A server with blobs in S3 (SeaweedFS): bytes go straight between clients and the object store.

Every request to the API goes through a counting TCP proxy (`ByteCounter`), so the tests measure what the API
server itself receives and sends while clients upload and download through presigned object-store URLs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from weed_s3 import S3Server

from tilde.data import Client
from tilde.server import LocalServer, ServerConfig

MiB = 1024 * 1024


class ByteCounter:
    """A loopback TCP proxy in front of ``target`` counting the bytes each way."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.to_server = 0
        self.to_client = 0
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._open.update((client, upstream))
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, inbound: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                with self._lock:
                    if inbound:
                        self.to_server += len(data)
                    else:
                        self.to_client += len(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            # Each direction closes the socket it read from: both are closed once both directions end.
            source.close()

    def close(self) -> None:
        """Stop accepting and cut every open connection."""
        try:
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (close alone does not)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            connections, self._open = list(self._open), set()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def _s3_config(data_dir: Path, s3: S3Server, bucket: str) -> ServerConfig:
    return ServerConfig(
        data_dir=data_dir,
        blob_store=f"s3://{bucket}/tilde",
        s3_endpoint_url=s3.endpoint_url,
        s3_region=s3.region,
        s3_credentials=(s3.access_key_id, s3.secret_access_key),
    )


@pytest.fixture(scope="module")
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket({})


@pytest.fixture(scope="module")
def s3_backed(
    tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server, bucket: str
) -> Iterator[LocalServer]:
    """A server whose blobs live in ``bucket``."""
    config = _s3_config(tmp_path_factory.mktemp("s3-backed"), s3_server, bucket)
    with LocalServer(config=config) as srv:
        yield srv


@pytest.fixture
def counted(s3_backed: LocalServer) -> Iterator[ByteCounter]:
    counter = ByteCounter(("127.0.0.1", s3_backed.port))
    yield counter
    counter.close()


@pytest.fixture
def repo_name(s3_backed: LocalServer) -> str:
    """A fresh repository ``org-…/repo`` on the S3-backed server."""
    name = f"org-{os.urandom(5).hex()}"
    with _api(s3_backed) as api:
        assert api.post("/organizations", json={"name": name, "display_name": name}).status_code == 201
        created = api.post(
            f"/organizations/{name}/repositories", json={"name": "repo", "visibility": "private"}
        )
        assert created.status_code == 201, created.text
    return f"{name}/repo"


def _api(server: LocalServer, base: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=(base or server.endpoint_url).rstrip("/") + "/api/v1",
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=120,
    )


def _blob_keys(s3: S3Server, bucket: str) -> set[str]:
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix="tilde/blobs/")
    return {item["Key"].rsplit("/", 1)[-1] for item in listed.get("Contents", [])}


def _upload_bytes(counted: ByteCounter, server: LocalServer, repo: str, size: int) -> bytes:
    """Upload ``size`` random bytes with the SDK through the counting proxy, commit, return the bytes."""
    data = os.urandom(size)
    with (
        Client(endpoint_url=counted.url, api_key=server.api_key) as client,
        client.repository(repo).session() as session,
    ):
        session.objects.put("big.bin", data)
        session.commit("big")
    return data


def test_upload_bytes_go_to_the_object_store_not_the_api(
    s3_backed: LocalServer, counted: ByteCounter, repo_name: str, s3_server: S3Server, bucket: str
) -> None:
    size = 48 * MiB
    data = _upload_bytes(counted, s3_backed, repo_name, size)
    # Requests, headers and JSON only: a few kilobytes, whatever the object's size.
    assert counted.to_server < 256 * 1024, counted.to_server
    assert hashlib.sha256(data).hexdigest() in _blob_keys(s3_server, bucket)


@pytest.mark.slow
def test_one_gib_upload_never_reaches_the_api(
    s3_backed: LocalServer, counted: ByteCounter, repo_name: str, s3_server: S3Server, bucket: str
) -> None:
    size = 1024 * MiB
    started = time.monotonic()
    data = _upload_bytes(counted, s3_backed, repo_name, size)
    elapsed = time.monotonic() - started
    print(
        f"1 GiB through S3: API received {counted.to_server} bytes, sent {counted.to_client}; {elapsed:.1f} s"
    )
    assert counted.to_server < 1024 * 1024, counted.to_server
    digest = hashlib.sha256(data).hexdigest()
    del data
    assert digest in _blob_keys(s3_server, bucket)


def test_download_redirects_to_the_object_store_and_ranges_work(
    s3_backed: LocalServer, counted: ByteCounter, repo_name: str, s3_server: S3Server, tmp_path: Path
) -> None:
    data = os.urandom(3 * MiB + 17)
    with (
        Client(endpoint_url=s3_backed.endpoint_url, api_key=s3_backed.api_key) as client,
        client.repository(repo_name).session() as session,
    ):
        session.objects.put("obj.bin", data, content_type="application/x-test")
        session.commit("obj")
    where = {"path": "obj.bin"}
    with _api(s3_backed, counted.url) as api:
        head = api.head(f"/organizations/{repo_name.split('/')[0]}/repositories/repo/object", params=where)
        assert head.status_code == 200
        assert head.headers["etag"] == '"' + hashlib.sha256(data).hexdigest() + '"'
        assert head.headers["content-length"] == str(len(data))
        url = f"/organizations/{repo_name.split('/')[0]}/repositories/repo/object"
        redirect = api.get(url, params=where)
        assert redirect.status_code == 307
        location = redirect.headers["location"]
        assert urlsplit(location).netloc == urlsplit(s3_server.endpoint_url).netloc
        assert redirect.headers["etag"] == head.headers["etag"]
        # Following it: the Bearer header stays behind (another origin), the object store honours Range.
        ranged = api.get(url, params=where, headers={"Range": "bytes=100-1099"}, follow_redirects=True)
        assert ranged.status_code == 206
        assert ranged.content == data[100:1100]
        assert ranged.headers["content-range"] == f"bytes 100-1099/{len(data)}"
        assert ranged.headers["content-type"] == "application/x-test"
        assert "authorization" not in {k.lower() for k in ranged.request.headers}
    # The SDK follows the redirect too, for whole reads, ranged reads and parallel file downloads.
    before = counted.to_client
    with Client(endpoint_url=counted.url, api_key=s3_backed.api_key) as client:
        session = client.repository(repo_name).session()
        assert session.objects.get("obj.bin").read() == data
        with session.objects.get("obj.bin", cache=False) as reader:
            reader.seek(2 * MiB)
            assert reader.read(10) == data[2 * MiB : 2 * MiB + 10]
        assert session.objects.download_file("obj.bin", tmp_path) == len(data)
        session.rollback()
    assert (tmp_path / "obj.bin").read_bytes() == data
    assert counted.to_client - before < 256 * 1024


def test_finalize_verifies_what_the_client_put(s3_backed: LocalServer, repo_name: str) -> None:
    org = repo_name.split("/")[0]
    base = f"/organizations/{org}/repositories/repo"
    with _api(s3_backed) as api:
        session_id = api.post(f"{base}/sessions").json()["session_id"]
        where = {"session_id": session_id, "path": "a.bin"}

        def stage(**extra: str) -> dict[str, str]:
            answer = api.put(f"{base}/object", params={**where, **extra})
            assert answer.status_code == 200, answer.text
            return answer.json()

        # Nothing uploaded yet.
        staged = stage()
        nothing = api.post(
            f"{base}/object/finalize", params=where, json={"upload_token": staged["upload_token"]}
        )
        assert nothing.status_code == 404
        assert nothing.json()["code"] == "upload_not_found"
        # A checksum that is neither the object store's ETag nor the SHA-256.
        put = httpx.put(staged["upload_url"], content=b"hello")
        assert put.status_code == 200
        wrong = api.post(
            f"{base}/object/finalize",
            params=where,
            json={"upload_token": staged["upload_token"], "checksum": "0" * 32},
        )
        assert wrong.status_code == 400
        assert wrong.json()["code"] == "checksum_mismatch"
        # More bytes than declared.
        declared = stage(size_bytes="3")
        assert httpx.put(declared["upload_url"], content=b"hello").status_code == 200
        over = api.post(
            f"{base}/object/finalize", params=where, json={"upload_token": declared["upload_token"]}
        )
        assert over.status_code == 413
        assert over.json()["code"] == "upload_too_large"
        # A good one, with the object store's ETag as checksum; then the upload is consumed.
        good = stage()
        put = httpx.put(good["upload_url"], content=b"right bytes")
        finalized = api.post(
            f"{base}/object/finalize",
            params=where,
            json={"upload_token": good["upload_token"], "checksum": put.headers["etag"].strip('"')},
        )
        assert finalized.status_code == 201, finalized.text
        assert finalized.json()["etag"] == '"' + hashlib.sha256(b"right bytes").hexdigest() + '"'
        assert httpx.put(good["upload_url"], content=b"other bytes").status_code == 200
        again = api.post(f"{base}/object/finalize", params=where, json={"upload_token": good["upload_token"]})
        assert again.status_code == 409
        assert again.json()["code"] == "upload_consumed"
        got = api.get(f"{base}/object", params=where, follow_redirects=True)
        assert got.content == b"right bytes"


def test_multipart_parts_go_to_the_object_store(s3_backed: LocalServer, repo_name: str) -> None:
    org = repo_name.split("/")[0]
    base = f"/organizations/{org}/repositories/repo"
    parts = [os.urandom(5 * MiB), os.urandom(1234)]
    with _api(s3_backed) as api:
        session_id = api.post(f"{base}/sessions").json()["session_id"]
        where = {"session_id": session_id, "path": "mp.bin"}
        ids = api.post(f"{base}/object/multipart", params=where).json()
        etags = []
        for number, data in enumerate(parts, start=1):
            url = api.get(
                f"{base}/object/multipart/part", params={**where, **ids, "part_number": number}
            ).json()
            assert not url["upload_url"].startswith(s3_backed.endpoint_url)
            put = httpx.put(url["upload_url"], content=data)
            assert put.status_code == 200
            etags.append(put.headers["etag"])
        listed = api.get(f"{base}/object/multipart", params={**where, **ids}).json()
        assert [(p["part_number"], p["etag"], p["size"]) for p in listed["parts"]] == [
            (1, etags[0], len(parts[0])),
            (2, etags[1], len(parts[1])),
        ]
        body = {
            **ids,
            "parts": [{"part_number": n, "etag": e} for n, e in enumerate(etags, start=1)],
            "size_bytes": sum(map(len, parts)),
        }
        wrong = api.post(
            f"{base}/object/multipart/complete",
            params=where,
            json={
                **body,
                "parts": [{"part_number": 1, "etag": etags[1]}, {"part_number": 2, "etag": etags[1]}],
            },
        )
        assert wrong.status_code == 400, wrong.text
        done = api.post(f"{base}/object/multipart/complete", params=where, json=body)
        assert done.status_code == 201, done.text
        assert done.json()["etag"] == '"' + hashlib.sha256(b"".join(parts)).hexdigest() + '"'
        got = api.get(
            f"{base}/object", params={"path": "mp.bin", "session_id": session_id}, follow_redirects=True
        )
        assert got.content == b"".join(parts)
        # A zero-length stream: no parts at all.
        empty = {"session_id": session_id, "path": "empty.bin"}
        ids = api.post(f"{base}/object/multipart", params=empty).json()
        body = {**ids, "parts": [], "size_bytes": 0}
        done = api.post(f"{base}/object/multipart/complete", params=empty, json=body)
        assert done.status_code == 201, done.text
        assert done.json()["etag"] == '"' + hashlib.sha256(b"").hexdigest() + '"'
        # An aborted upload leaves nothing behind in the object store.
        gone = {"session_id": session_id, "path": "gone.bin"}
        ids = api.post(f"{base}/object/multipart", params=gone).json()
        store = s3_backed.app.state.engine.blobs
        assert store.has_multipart(ids["upload_id"])
        assert api.delete(f"{base}/object/multipart", params={**gone, **ids}).status_code == 204
        assert not store.has_multipart(ids["upload_id"])


def test_garbage_collection_deletes_unreferenced_blobs_in_the_bucket(
    s3_backed: LocalServer, repo_name: str, s3_server: S3Server, bucket: str
) -> None:
    kept, dropped = os.urandom(1000), os.urandom(1001)
    with Client(endpoint_url=s3_backed.endpoint_url, api_key=s3_backed.api_key) as client:
        repo = client.repository(repo_name)
        with repo.session() as session:
            session.objects.put("kept.bin", kept)
            session.commit("kept")
        session = repo.session()
        session.objects.put("dropped.bin", dropped)
        session.rollback()
    keys = _blob_keys(s3_server, bucket)
    kept_key, dropped_key = hashlib.sha256(kept).hexdigest(), hashlib.sha256(dropped).hexdigest()
    assert {kept_key, dropped_key} <= keys
    engine = s3_backed.app.state.engine
    registry = s3_backed.app.state.registry
    assert engine.collect_garbage(grace_seconds=0, keep=registry.pending_upload_blob_keys()) >= 1
    keys = _blob_keys(s3_server, bucket)
    assert kept_key in keys
    assert dropped_key not in keys


def test_serve_command_with_an_s3_blob_store(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "AWS_REGION": s3_server.region,
    }
    base = [sys.executable, "-m", "tilde.server", "serve", "--port", "0", "--data-dir", str(tmp_path / "d")]
    missing = subprocess.run(
        [*base, "--blob-store", "s3://no-such-bucket/x", "--s3-endpoint-url", s3_server.endpoint_url],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert missing.returncode != 0
    assert "no-such-bucket" in missing.stderr
    assert missing.stderr.strip().count("\n") == 0, missing.stderr
    assert not (tmp_path / "d" / "blob_store").exists()  # a store that did not open is not remembered
    bad = subprocess.run(
        [*base, "--blob-store", "/var/blobs"], capture_output=True, text=True, timeout=60, env=env
    )
    assert bad.returncode != 0
    assert "s3://bucket" in bad.stderr


PUBLISHED_SCRIPT = Path(__file__).parents[1] / "server" / "published_client_script.py"


@pytest.mark.slow
def test_published_client_uploads_to_and_downloads_from_the_object_store(
    published_python: Path, s3_backed: LocalServer, repo_name: str, s3_server: S3Server, bucket: str
) -> None:
    result = subprocess.run(
        [str(published_python), str(PUBLISHED_SCRIPT), s3_backed.endpoint_url, s3_backed.api_key, repo_name],
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "HOME": str(published_python.parent.parent)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "OK session put/get/commit",
        "OK list",
        "OK get",
        "OK delete/copy",
    ]
    # Its uploads went to the object store: their bytes are blobs in the bucket.
    assert hashlib.sha256(b"x" * 100_000).hexdigest() in _blob_keys(s3_server, bucket)


@pytest.mark.sandbox
def test_sandboxes_read_blobs_through_the_node_cache_and_commit_to_the_bucket(
    s3_backed: LocalServer, repo_name: str, s3_server: S3Server, bucket: str
) -> None:
    from tilde.compute import Client as ComputeClient

    inputs = {f"in/{n}.txt": os.urandom(2000 + n) for n in range(20)}
    with ComputeClient(endpoint_url=s3_backed.endpoint_url, api_key=s3_backed.api_key) as client:
        repo = client.repository(repo_name)
        with repo.session() as session:
            for path, data in inputs.items():
                session.objects.put(path, data)
            session.commit("inputs")
        cache = s3_backed.data_dir / "blob-cache"
        # Uploaded straight to the bucket: this node has not cached them.
        cached = {p.name for p in cache.glob("??/*")}
        assert not {hashlib.sha256(d).hexdigest() for d in inputs.values()} & cached
        result = repo.execute("cat /sandbox/in/*.txt | sha256sum > /sandbox/out.txt")
        assert result.exit_code == 0
    expected = hashlib.sha256(b"".join(inputs[p] for p in sorted(inputs))).hexdigest()
    out = f"{expected}  -\n".encode()
    cached = {p.name for p in cache.glob("??/*")}
    assert {hashlib.sha256(d).hexdigest() for d in inputs.values()} <= cached
    # What the sandbox wrote went to the bucket with the commit.
    assert hashlib.sha256(out).hexdigest() in _blob_keys(s3_server, bucket)


def test_a_declared_sha256_is_verified_by_the_object_store_not_read_back(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    # The server reaches the object store through a counter: what it reads from S3 is measured.
    host, port = urlsplit(s3_server.endpoint_url).netloc.split(":")
    s3_counter = ByteCounter((host, int(port)))
    config = _s3_config(tmp_path / "data", s3_server, bucket)
    config.s3_endpoint_url = s3_counter.url
    data = os.urandom(8 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    try:
        with LocalServer(config=config) as srv, _api(srv) as api:
            org = f"org-{os.urandom(5).hex()}"
            assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
            base = f"/organizations/{org}/repositories/repo"
            created = api.post(
                f"/organizations/{org}/repositories", json={"name": "repo", "visibility": "private"}
            )
            assert created.status_code == 201
            session_id = api.post(f"{base}/sessions").json()["session_id"]
            where = {"session_id": session_id, "path": "declared.bin"}
            bad = api.put(f"{base}/object", params={**where, "sha256": "xyz"})
            assert bad.status_code == 400
            assert bad.json()["code"] == "invalid_parameter"

            def finalize(staged: dict[str, object]) -> httpx.Response:
                return api.post(
                    f"{base}/object/finalize", params=where, json={"upload_token": staged["upload_token"]}
                )

            def read_back(staged: dict[str, object], headers: dict[str, str]) -> tuple[httpx.Response, int]:
                put = httpx.put(str(staged["upload_url"]), content=data, headers=headers)
                assert put.status_code == 200, put.text
                before = s3_counter.to_client
                answer = finalize(staged)
                return answer, s3_counter.to_client - before

            staged = api.put(f"{base}/object", params={**where, "sha256": digest}).json()
            headers: dict[str, str] = staged["upload_headers"]
            # The object store itself refuses other bytes, and the URL without the header.
            assert httpx.put(staged["upload_url"], content=b"other", headers=headers).status_code == 400
            assert httpx.put(staged["upload_url"], content=data).status_code == 403
            answer, from_store = read_back(staged, headers)
            assert answer.status_code == 201, answer.text
            assert answer.json()["etag"] == f'"{digest}"'
            assert from_store < 64 * 1024, from_store
            # Without the declared digest the server reads the bytes back once to hash them.
            where["path"] = "undeclared.bin"
            answer, from_store = read_back(api.put(f"{base}/object", params=where).json(), {})
            assert answer.status_code == 201, answer.text
            assert from_store >= len(data)
            got = api.get(f"{base}/object", params={**where, "path": "declared.bin"}, follow_redirects=True)
            assert got.content == data
    finally:
        s3_counter.close()


def test_an_unreachable_object_store_answers_503(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    host, port = urlsplit(s3_server.endpoint_url).netloc.split(":")
    s3_proxy = ByteCounter((host, int(port)))
    config = _s3_config(tmp_path / "data", s3_server, bucket)
    config.s3_endpoint_url = s3_proxy.url
    with LocalServer(config=config) as srv, _api(srv) as api:
        org = f"org-{os.urandom(5).hex()}"
        assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
        base = f"/organizations/{org}/repositories/repo"
        created = api.post(
            f"/organizations/{org}/repositories", json={"name": "repo", "visibility": "private"}
        )
        assert created.status_code == 201
        session_id = api.post(f"{base}/sessions").json()["session_id"]
        where = {"session_id": session_id, "path": "a.bin"}
        staged = api.put(f"{base}/object", params=where).json()
        assert httpx.put(staged["upload_url"], content=b"bytes").status_code == 200
        s3_proxy.close()
        for answer in (
            api.post(f"{base}/object/finalize", params=where, json={"upload_token": staged["upload_token"]}),
            api.post(f"{base}/object/multipart", params=where),
        ):
            assert answer.status_code == 503, answer.text
            assert answer.json()["code"] == "blob_store_unavailable"
            assert answer.json()["request_id"]
            assert answer.headers["retry-after"] == "1"


def test_copy_blobs_moves_a_local_data_directory_onto_s3(tmp_path: Path, s3_server: S3Server) -> None:
    data_dir = tmp_path / "data"
    objects = {f"file-{n}.bin": os.urandom(1000 + n) for n in range(5)}
    with LocalServer(data_dir=data_dir) as local, _api(local) as api:
        assert api.post("/organizations", json={"name": "moving", "display_name": "m"}).status_code == 201
        created = api.post(
            "/organizations/moving/repositories", json={"name": "repo", "visibility": "private"}
        )
        assert created.status_code == 201
        with (
            Client(endpoint_url=local.endpoint_url, api_key=local.api_key) as client,
            client.repository("moving/repo").session() as session,
        ):
            for path, data in objects.items():
                session.objects.put(path, data)
            session.commit("before the move")
    bucket = s3_server.new_bucket({})
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": s3_server.access_key_id,
        "AWS_SECRET_ACCESS_KEY": s3_server.secret_access_key,
        "AWS_REGION": s3_server.region,
    }
    command = [
        sys.executable,
        "-m",
        "tilde.server",
        "copy-blobs",
        "--data-dir",
        str(data_dir),
        "--blob-store",
        f"s3://{bucket}/tilde",
        "--s3-endpoint-url",
        s3_server.endpoint_url,
    ]
    # A blob file whose bytes do not match its name is refused, and nothing wrong is stored.
    victim = next(
        p
        for p in (data_dir / "blobs").glob("??/??/*")
        if p.name == hashlib.sha256(objects["file-0.bin"]).hexdigest()
    )
    good = victim.read_bytes()
    victim.write_bytes(b"tampered")
    refused = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode != 0
    assert victim.name in refused.stderr
    assert victim.name not in _blob_keys(s3_server, bucket)
    victim.write_bytes(good)
    copied = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert copied.returncode == 0, copied.stderr
    assert {hashlib.sha256(d).hexdigest() for d in objects.values()} <= _blob_keys(s3_server, bucket)
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert "copied 0 blobs" in again.stdout
    # The same data directory now serves from the bucket, local blob files gone: it remembers the blob store.
    shutil.rmtree(data_dir / "blobs")
    config = ServerConfig(
        data_dir=data_dir, s3_credentials=(s3_server.access_key_id, s3_server.secret_access_key)
    )
    with LocalServer(config=config) as moved, _api(moved) as api:
        for path, data in objects.items():
            answer = api.get("/organizations/moving/repositories/repo/object", params={"path": path})
            assert answer.status_code == 307
            assert httpx.get(answer.headers["location"]).content == data


def test_a_data_directory_keeps_its_blob_store_across_restarts(
    tmp_path: Path, s3_server: S3Server, bucket: str
) -> None:
    config = _s3_config(tmp_path / "data", s3_server, bucket)
    with LocalServer(config=config) as first, _api(first) as api:
        assert api.post("/organizations", json={"name": "kept", "display_name": "k"}).status_code == 201
    assert oct((tmp_path / "data" / "blob_store").stat().st_mode & 0o777) == "0o600"
    again = ServerConfig(data_dir=tmp_path / "data", s3_credentials=config.s3_credentials)
    with LocalServer(config=again) as second:
        assert second.app.state.engine.blobs.bucket == bucket


def test_presigned_urls_use_the_public_endpoint(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    # The server reaches the object store by one address (here a proxy), clients by another.
    host, port = urlsplit(s3_server.endpoint_url).netloc.split(":")
    internal = ByteCounter((host, int(port)))
    config = _s3_config(tmp_path / "data", s3_server, bucket)
    config.s3_endpoint_url = internal.url
    config.s3_public_endpoint_url = s3_server.endpoint_url
    try:
        with LocalServer(config=config) as srv, _api(srv) as api:
            org = f"org-{os.urandom(5).hex()}"
            assert api.post("/organizations", json={"name": org, "display_name": org}).status_code == 201
            base = f"/organizations/{org}/repositories/repo"
            created = api.post(
                f"/organizations/{org}/repositories", json={"name": "repo", "visibility": "private"}
            )
            assert created.status_code == 201
            session_id = api.post(f"{base}/sessions").json()["session_id"]
            where = {"session_id": session_id, "path": "p.bin"}
            staged = api.put(f"{base}/object", params=where).json()
            assert urlsplit(staged["upload_url"]).netloc == urlsplit(s3_server.endpoint_url).netloc
            before = internal.to_server
            assert httpx.put(staged["upload_url"], content=b"public bytes").status_code == 200
            assert internal.to_server == before  # the client's bytes did not take the server's route
            finalized = api.post(
                f"{base}/object/finalize", params=where, json={"upload_token": staged["upload_token"]}
            )
            assert finalized.status_code == 201, finalized.text
            answer = api.get(f"{base}/object", params=where)
            assert urlsplit(answer.headers["location"]).netloc == urlsplit(s3_server.endpoint_url).netloc
            assert httpx.get(answer.headers["location"]).content == b"public bytes"
            assert internal.to_server > 0  # the server itself used the internal address
    finally:
        internal.close()
