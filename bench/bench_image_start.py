"""Start of a sandbox on a cached OCI image vs on the host's root filesystem, measured side by side.

Both sides run ``repo.execute("true", image=...)`` (create a one-shot sandbox, learn that it ended, read its
output) against one ``tilde-server serve`` process, alternating: ``image="host"`` (the host's root, enabled
with ``TILDE_SERVER_HOST_IMAGE=allow``) and ``image="mini"``, the minimal test image of ``tests/oci_images``
(two layers), pulled into the server's image store from a local registry before the server starts, so every
measured start takes it from the cache. The target: a cached image starts within 100 ms of a host-root start.

Run: ``hatch run python bench/bench_image_start.py [--rounds N] [--json PATH]``. Prints a table; asserts
nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _support import tilde_server, write_json

from tilde.compute import Client
from tilde.server.images import ImageStore

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "e2e" / "images")]

from oci_images import minimal_image, push  # noqa: E402
from run_support import registry_address  # noqa: E402


def _percentile_ms(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="starts per side (default 20)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    os.environ["TILDE_SERVER_HOST_IMAGE"] = "allow"

    with tempfile.TemporaryDirectory(prefix="bench-image-start-") as scratch:
        work = Path(scratch)
        with registry_address(work / "registry") as registry:
            push(minimal_image(), f"{registry}/library/mini:latest")
            store = ImageStore(work / "data" / "images", mirrors=[f"http://{registry}"])
            asyncio.run(store.ensure("mini"))
        samples: dict[str, list[float]] = {"host": [], "mini": []}
        with tilde_server(work / "data") as (endpoint, key, _):
            with httpx.Client(
                base_url=endpoint + "/api/v1", headers={"Authorization": f"Bearer {key}"}
            ) as api:
                api.post("/organizations", json={"name": "bench", "display_name": "Bench"}).raise_for_status()
                api.post("/organizations/bench/repositories", json={"name": "images"}).raise_for_status()
            with Client(endpoint_url=endpoint, api_key=key) as client:
                repo = client.repository("bench/images")
                for image in samples:  # warm up both: page cache, first connections
                    assert repo.execute("true", image=image).exit_code == 0
                for _ in range(args.rounds):
                    for image, taken in samples.items():
                        started = time.perf_counter()
                        result = repo.execute("true", image=image)
                        taken.append(time.perf_counter() - started)
                        assert result.exit_code == 0, result

    print(f"{'start of':<28}  {'n':>3}  {'p50 ms':>9}  {'p90 ms':>9}")
    for image, taken in samples.items():
        label = "host root (image=host)" if image == "host" else "cached image (image=mini)"
        p50, p90 = _percentile_ms(taken, 0.5), _percentile_ms(taken, 0.9)
        print(f"{label:<28}  {len(taken):>3}  {p50:>9.1f}  {p90:>9.1f}")
    extra = (statistics.median(samples["mini"]) - statistics.median(samples["host"])) * 1000
    print(f"\ncached image - host root (medians): {extra:+.1f} ms (target: within 100 ms)")
    write_json(
        args.json,
        {
            "host": {"p50_ms": round(_percentile_ms(samples["host"], 0.5), 2), "n": len(samples["host"])},
            "image": {"p50_ms": round(_percentile_ms(samples["mini"], 0.5), 2), "n": len(samples["mini"])},
            "extra_ms": round(extra, 2),
        },
    )


if __name__ == "__main__":
    main()
