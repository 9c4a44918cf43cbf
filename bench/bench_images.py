"""Image pull throughput: the image store vs ``skopeo copy`` of the same image from the same registry.

A local ``docker-registry`` (Debian's distribution registry, as in the tests) holds an image of ``--layers``
layers of ``--layer-mib`` MiB of random bytes each (incompressible: the bytes moved are the image's size).
Each round, alternating the order, times:

- ``store``: ``ImageStore.ensure`` into an empty store: parallel layer downloads, digest checks, unpacking;
- ``skopeo``: ``skopeo copy docker://… oci:DIR`` (download and digest checks, no unpacking);
- ``skopeo+umoci``: the same copy followed by ``umoci unpack --rootless`` (the same work as the store).

The figures are medians in MiB/s of image bytes; the ratios are ours over each skopeo side, from the same
run. Run: ``hatch run python bench/bench_images.py [--layers N] [--layer-mib M] [--rounds R] [--json PATH]``.
Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _support import write_json

from tilde.server.images import ImageStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from oci_registry import build_image, files_layer, push_image, run_registry  # noqa: E402


def _timed(action: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="layers in the image (default 4)")
    parser.add_argument("--layer-mib", type=int, default=32, help="MiB of each layer (default 32)")
    parser.add_argument("--rounds", type=int, default=3, help="pulls per side (default 3)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    for tool in ("docker-registry", "skopeo", "umoci"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed (Debian package {tool})")

    layers = [
        files_layer({f"layer{i}/data.bin": os.urandom(args.layer_mib * 1024 * 1024)})
        for i in range(args.layers)
    ]
    image = build_image(layers)
    size = sum(len(blob) for blob in image.blobs)
    mib = size / (1024 * 1024)
    with tempfile.TemporaryDirectory(prefix="bench-images-") as scratch:
        work = Path(scratch)
        with run_registry(work / "registry") as registry:
            push_image(registry, "bench/image", "1", image)
            reference = f"{registry.host}/bench/image:1"
            source = f"docker://{reference}"

            def ours(round_: int) -> None:
                store = ImageStore(work / f"store-{round_}")
                asyncio.run(store.ensure(reference))
                shutil.rmtree(work / f"store-{round_}")

            def skopeo(round_: int, unpack: bool) -> None:
                layout = work / f"oci-{round_}"
                subprocess.run(
                    ["skopeo", "copy", "-q", "--src-tls-verify=false", source, f"oci:{layout}:1"],
                    check=True,
                    capture_output=True,
                )
                if unpack:
                    bundle = work / f"bundle-{round_}"
                    subprocess.run(
                        ["umoci", "unpack", "--rootless", "--image", f"{layout}:1", str(bundle)],
                        check=True,
                        capture_output=True,
                    )
                    shutil.rmtree(bundle)
                shutil.rmtree(layout)

            sides: dict[str, Callable[[int], None]] = {
                "store": ours,
                "skopeo": lambda r: skopeo(r, False),
                "skopeo+umoci": lambda r: skopeo(r, True),
            }
            for name, side in sides.items():  # warm-up: the registry's page cache, imports, binaries
                side(-1 - len(name))
            seconds: dict[str, list[float]] = {name: [] for name in sides}
            for round_ in range(args.rounds):
                order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
                for name in order:
                    seconds[name].append(_timed(lambda name=name, round_=round_: sides[name](round_)))

    median = {name: statistics.median(values) for name, values in seconds.items()}
    rate = {name: mib / value for name, value in median.items()}
    figures = {
        "image_mib": round(mib, 1),
        "layers": args.layers,
        "rounds": args.rounds,
        "median_s": {k: round(v, 3) for k, v in median.items()},
        "mib_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_vs_skopeo": round(rate["store"] / rate["skopeo"], 3),
        "ratio_vs_skopeo_umoci": round(rate["store"] / rate["skopeo+umoci"], 3),
    }
    print(f"image: {args.layers} layers, {mib:.1f} MiB; median of {args.rounds} rounds per side")
    print(f"{'side':<16}{'seconds':>10}{'MiB/s':>10}")
    for name in sides:
        print(f"{name:<16}{median[name]:>10.3f}{rate[name]:>10.1f}")
    print(f"store / skopeo copy: {figures['ratio_vs_skopeo']:.2f}x the throughput")
    print(f"store / skopeo copy + umoci unpack: {figures['ratio_vs_skopeo_umoci']:.2f}x the throughput")
    write_json(args.json, figures)


if __name__ == "__main__":
    main()
