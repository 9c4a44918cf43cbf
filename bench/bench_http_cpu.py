"""CPU time per small request, uvicorn's protocol and the app in one process, without sockets.

`bench_http.py` measures throughput over the loopback, which on a busy shared machine moves with the load of
everything else. This drives the same stack (uvicorn's httptools protocol, tilde-server's connection guard,
middleware, routes and access log, as ``tilde-server serve`` configures them; and the bare Starlette app of
`bench_http.py` under plain uvicorn) through a transport that only collects the bytes written, one request
after the other, and reports the best CPU time per request of several runs: what each request costs in
Python, with no ``send``, no load generator and little of the machine's noise. It has no target of its own
(the targets are throughput ratios); use it to see what a change to the request path is worth.

Run: ``hatch run python bench/bench_http_cpu.py [--requests N] [--runs N] [--cases bare,get_repo,...]``.
Prints µs per request and the bare app's figure divided by each case's; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import uvicorn
from _support import tilde_server
from bench_http import prepare
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from uvicorn.server import ServerState

BASE = "/api/v1/organizations/bench/repositories/perf"
TARGETS = {
    "get_repo": BASE,
    "get_object": BASE + "/object?path=small.bin",
    "list_objects": BASE + "/objects?prefix=list/&amount=100",
}


class _Collector(asyncio.Transport):
    """A transport keeping what is written (the response), for one connection."""

    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


async def _bare_home(request: Request) -> JSONResponse:
    return JSONResponse({"id": "r1", "name": "perf", "visibility": "private"})


def bare_config() -> uvicorn.Config:
    """The bare app of `bench_http.py` under uvicorn as it runs there."""
    app = Starlette(routes=[Route("/", _bare_home)])
    return uvicorn.Config(app, http="httptools", loop="asyncio", log_level="info")


def tilde_config(data_dir: Path) -> uvicorn.Config:
    """tilde-server's app on ``data_dir`` under uvicorn as ``tilde-server serve`` configures it."""
    from tilde.server.access_log import defer_access_log_flush, install_access_log_redaction
    from tilde.server.app import create_app
    from tilde.server.config import ServerConfig
    from tilde.server.connection_guard import make_server

    app = create_app(ServerConfig(data_dir=data_dir))
    server = make_server(app, app.state.config, host="127.0.0.1", port=8080, log_level="info")
    install_access_log_redaction()
    defer_access_log_flush()
    return server.config


async def cpu_per_request(
    config: uvicorn.Config, target: str, headers: list[str], requests: int, runs: int
) -> float:
    """Return the best CPU seconds per request of ``runs`` runs of ``requests`` requests for ``target``."""
    if not config.loaded:
        config.load()
    protocol = config.http_protocol_class(  # type: ignore[call-arg]
        config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop()
    )
    transport = _Collector()
    protocol.connection_made(transport)
    head = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n" + "".join(f"{h}\r\n" for h in headers)
    request = (head + "\r\n").encode()

    async def one() -> None:
        transport.out.clear()
        protocol.data_received(request)
        for turn in range(20000):
            # Most answers come within a few turns of the loop; a listing is encoded on a worker thread.
            await asyncio.sleep(0 if turn < 50 else 0.0001)
            block, sep, body = bytes(transport.out).partition(b"\r\n\r\n")
            if not sep:
                continue
            lengths = [line for line in block.split(b"\r\n") if line.lower().startswith(b"content-length:")]
            if lengths and len(body) >= int(lengths[0].split(b":")[1]):
                if not block.startswith(b"HTTP/1.1 200"):
                    raise SystemExit(f"{target}: {block[:200]!r}")
                return
        raise SystemExit(f"{target}: no complete response")

    for _ in range(300):  # warm-up: caches, the first connection's work
        await one()
    best = float("inf")
    for _ in range(runs):
        started = time.process_time()
        for _ in range(requests):
            await one()
        best = min(best, (time.process_time() - started) / requests)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per run (default 1000)")
    parser.add_argument("--runs", type=int, default=15, help="runs per case; the best counts (default 15)")
    parser.add_argument("--cases", default="bare,get_repo,get_object,list_objects", help="comma-separated")
    args = parser.parse_args()
    cases = args.cases.split(",")
    # The access log goes where `bench_http.py` sends it: nowhere (after the figures' own descriptor is kept).
    out = os.fdopen(os.dup(1), "w")
    with tempfile.TemporaryDirectory(prefix="bench-http-cpu-") as scratch:
        data_dir = Path(scratch) / "server"
        with tilde_server(data_dir) as (endpoint, key, _):
            prepare(endpoint, key)
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)

        async def run() -> None:
            figures: dict[str, float] = {}
            for case in cases:
                if case == "bare":
                    config, target, headers = bare_config(), "/", []
                else:
                    config, target = tilde_config(data_dir), TARGETS[case]
                    headers = [f"Authorization: Bearer {key}"]
                figures[case] = await cpu_per_request(config, target, headers, args.requests, args.runs)
                ratio = f"  bare / this {figures['bare'] / figures[case]:.3f}" if "bare" in figures else ""
                print(f"{case:13} {figures[case] * 1e6:7.1f} µs CPU per request{ratio}", file=out, flush=True)

        try:
            asyncio.run(run())
        except SystemExit as failed:
            print(failed, file=out)
            raise
        finally:
            out.close()


if __name__ == "__main__":
    main()
