"""Folder transfers of many small files: our SDK versus a loop of calls with the published tilde-sdk 0.7.9.

One run, side by side, against one local tilde-server (in this process, on a loopback port). Every client
runs in its own child process, so the two clients never share an interpreter with each other or the server:

- upload, ours: ``session.objects.upload_folder(dir)`` and commit, in one session (batched: a handful of
  requests for the whole folder).
- upload, ours per file: the same with the server's batch routes switched off
  (``TILDE_SERVER_BATCH_UPLOADS=0``), i.e. what our SDK does against a server without them (concurrent
  single PUTs).
- upload, published: ``session.objects.put(path, bytes)`` for every file, then commit, in one session, with
  tilde-sdk 0.7.9 from the package registry in its own virtual environment (the venv the tests'
  ``published_python`` fixture makes, created here the same way, or passed with ``--published-python``).
- download, ours: ``commit.objects.download("", dir)``.
- download, published: list the commit, then ``objects.get(path).read()`` into a file for every object.

Run: ``hatch run python bench/bench_folders.py [--files N] [--size BYTES] [--published-python PATH]``.
Prints seconds, files per second, and each pair's ratio; asserts nothing (it checks that the bytes arrived).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

import httpx
from _support import write_json

from tilde.server import LocalServer

PUBLISHED = "tilde-sdk==0.7.9"

OURS_UPLOAD = """
import json, sys, time
from tilde.data import Client
endpoint, key, repo_path, source = sys.argv[1:5]
with Client(endpoint_url=endpoint, api_key=key) as client:
    started = time.perf_counter()
    with client.repository(repo_path).session() as session:
        result = session.objects.upload_folder(source)
        session.commit("bench upload")
    print(json.dumps({"seconds": time.perf_counter() - started, "files": result.files}))
"""

OURS_DOWNLOAD = """
import json, sys, time
from tilde.data import Client, ReadOnlyObjects
endpoint, key, repo_path, target = sys.argv[1:5]
with Client(endpoint_url=endpoint, api_key=key) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    result = ReadOnlyObjects(client, repo.org, repo.name).download("", target)
    print(json.dumps({"seconds": time.perf_counter() - started, "files": result.files}))
"""

PUBLISHED_UPLOAD = """
import json, os, sys, time
import tilde
endpoint, key, repo_path, source = sys.argv[1:5]
files = []
for directory, _, names in os.walk(source):
    for name in names:
        full = os.path.join(directory, name)
        files.append((os.path.relpath(full, source), full))
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    started = time.perf_counter()
    with client.repository(repo_path).session() as session:
        for path, full in files:
            with open(full, "rb") as handle:
                session.objects.put(path, handle.read())
        session.commit("bench upload")
    print(json.dumps({"seconds": time.perf_counter() - started, "files": len(files)}))
"""

PUBLISHED_DOWNLOAD = """
import json, os, sys, time
import tilde
endpoint, key, repo_path, target = sys.argv[1:5]
with tilde.Client(api_key=key, endpoint_url=endpoint) as client:
    repo = client.repository(repo_path)
    started = time.perf_counter()
    commit = next(iter(repo.commits.list()))
    count = 0
    for entry in commit.objects.list():
        destination = os.path.join(target, entry.path)
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        with commit.objects.get(entry.path) as reader, open(destination, "wb") as sink:
            sink.write(reader.read())
        count += 1
    print(json.dumps({"seconds": time.perf_counter() - started, "files": count}))
"""


def published_python(explicit: str | None) -> Path:
    """Return an interpreter with the published client: ``explicit``, or a cached venv like the fixture's."""
    if explicit:
        return Path(explicit)
    home = Path(tempfile.gettempdir()) / "tilde-bench-published-0.7.9"
    python = home / "bin" / "python"
    if not (home / ".ready").exists():
        venv.create(home, with_pip=True, clear=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", PUBLISHED], check=True, timeout=600)
        (home / ".ready").touch()
    return python


def write_tree(root: Path, files: int, size: int) -> str:
    """Write ``files`` distinct files of ``size`` bytes, 100 per directory; return a digest of the tree."""
    digest = hashlib.sha256()
    for index in range(files):
        path = root / f"d{index // 100:03d}" / f"f{index:05d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = hashlib.sha256(index.to_bytes(8, "big")).digest() * (size // 32 + 1)
        path.write_bytes(data[:size])
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + data[:size])
    return digest.hexdigest()


def tree_digest(root: Path) -> str:
    """Digest of every file under ``root`` in the order `write_tree` produces."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def run_child(python: Path, script: str, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a client script in a child process and return its JSON report."""
    done = subprocess.run(
        [str(python), "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
        env=env,
        timeout=3600,
    )
    if done.returncode != 0:
        raise SystemExit(f"client failed ({done.returncode})")
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def make_repo(http: httpx.Client, org: str, name: str) -> str:
    response = http.post(f"/organizations/{org}/repositories", json={"name": name, "visibility": "private"})
    response.raise_for_status()
    return f"{org}/{name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000, help="files in the folder (default 10000)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per file (default 1024)")
    parser.add_argument("--published-python", help="an interpreter with tilde-sdk 0.7.9 installed")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    published = published_python(args.published_python)
    # The published client must not see this workspace's packages.
    published_env = {"PATH": "/usr/bin:/bin", "HOME": str(published.parent.parent)}
    with tempfile.TemporaryDirectory(prefix="bench-folders-") as scratch:
        work = Path(scratch)
        source = work / "source"
        expected = write_tree(source, args.files, args.size)
        with LocalServer(data_dir=work / "server") as server:
            endpoint, key = server.endpoint_url, server.api_key
            with httpx.Client(
                base_url=endpoint + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60
            ) as http:
                http.post("/organizations", json={"name": "bench"}).raise_for_status()
                repos = {name: make_repo(http, "bench", name) for name in ("ours", "per-file", "published")}
            python = Path(sys.executable)
            rows: dict[str, dict[str, Any]] = {}
            rows["upload, ours (batched)"] = run_child(
                python, OURS_UPLOAD, endpoint, key, repos["ours"], str(source)
            )
            os.environ["TILDE_SERVER_BATCH_UPLOADS"] = "0"
            try:
                rows["upload, ours (server without batches)"] = run_child(
                    python, OURS_UPLOAD, endpoint, key, repos["per-file"], str(source)
                )
            finally:
                del os.environ["TILDE_SERVER_BATCH_UPLOADS"]
            rows["upload, published 0.7.9 put loop"] = run_child(
                published, PUBLISHED_UPLOAD, endpoint, key, repos["published"], str(source), env=published_env
            )
            ours_out, published_out = work / "ours-out", work / "published-out"
            rows["download, ours"] = run_child(
                python, OURS_DOWNLOAD, endpoint, key, repos["ours"], str(ours_out)
            )
            rows["download, published 0.7.9 get loop"] = run_child(
                published,
                PUBLISHED_DOWNLOAD,
                endpoint,
                key,
                repos["ours"],
                str(published_out),
                env=published_env,
            )
        intact = tree_digest(ours_out) == expected and tree_digest(published_out) == expected
    print(f"{args.files} files of {args.size} bytes; trees downloaded intact: {intact}")
    print(f"{'':42} {'seconds':>9} {'files/s':>9}")
    for name, row in rows.items():
        print(f"{name:42} {row['seconds']:9.2f} {row['files'] / row['seconds']:9.0f}")
    upload = rows["upload, published 0.7.9 put loop"]["seconds"] / rows["upload, ours (batched)"]["seconds"]
    fallback = (
        rows["upload, published 0.7.9 put loop"]["seconds"]
        / rows["upload, ours (server without batches)"]["seconds"]
    )
    download = rows["download, published 0.7.9 get loop"]["seconds"] / rows["download, ours"]["seconds"]
    print(f"upload ratio (ours batched / published): {upload:.1f}x   (target >= 10x)")
    print(f"upload ratio (ours without batches / published): {fallback:.1f}x")
    print(f"download ratio (ours / published): {download:.1f}x   (target >= 5x)")
    write_json(
        args.json,
        {
            "files": args.files,
            "size": args.size,
            "intact": intact,
            "seconds": {name: round(row["seconds"], 3) for name, row in rows.items()},
            "upload_ratio": round(upload, 2),
            "upload_ratio_without_batches": round(fallback, 2),
            "download_ratio": round(download, 2),
        },
    )


if __name__ == "__main__":
    main()
