"""A raw keep-alive HTTP/1.1 load generator: N connections, one request in flight on each (no pipelining).

Bytes are written and parsed by hand on asyncio protocols, so the client costs far less per request than the
servers it measures. Run it in its own process, apart from the server:

    python bench/loadgen.py URL [URL …] [--header 'Authorization: Bearer …'] [--connections 16]
        [--seconds 5] [--warmup 1]

Several URLs (the same request on several servers, such as the replicas of a cluster) share the connections
round-robin: the first connection goes to the first URL, the second to the second, and so on.

Prints one JSON line: ``{"requests", "seconds", "rps", "p50_ms", "p90_ms", "p99_ms", "errors", "status"}``.
Every response must carry ``Content-Length`` or be chunked; any status other than the expected one counts as
an error.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import sys
import time
from urllib.parse import urlsplit


class _Connection(asyncio.Protocol):
    """One keep-alive connection that sends the same request again as soon as the previous answer ended."""

    def __init__(self, request: bytes, expected: int, stats: _Stats) -> None:
        self.request = request
        self.expected = expected
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.started = 0.0
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if self.stats.stop or self.transport is None:
            if self.transport is not None:
                self.transport.close()
            return
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = _response_end(self.buffer)
            if end is None:
                return
            status = int(self.buffer[9:12])
            del self.buffer[:end]
            self.stats.record(time.perf_counter() - self.started, status, self.expected)
            self._send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


def _response_end(buffer: bytearray) -> int | None:
    """Return where the first complete response in ``buffer`` ends, or None while it is incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = bytes(buffer[:head_end]).lower()
    body_start = head_end + 4
    marker = head.find(b"\r\ncontent-length:")
    if marker >= 0:
        value_end = head.find(b"\r\n", marker + 2)
        length = int(head[marker + 17 : value_end if value_end >= 0 else len(head)])
        end = body_start + length
        return end if len(buffer) >= end else None
    if b"\r\ntransfer-encoding: chunked" in head:
        position = body_start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                return None
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
            position = line_end + 2 + size + 2
            if len(buffer) < position:
                return None
            if size == 0:
                return position
    return body_start  # no body (204, 304)


class _Stats:
    def __init__(self) -> None:
        self.stop = False
        self.counting = False
        self.latencies: list[float] = []
        self.errors = 0
        self.statuses: dict[int, int] = {}

    def record(self, seconds: float, status: int, expected: int) -> None:
        if not self.counting:
            return
        self.latencies.append(seconds)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status != expected:
            self.errors += 1


def _request(url: str, headers: list[str]) -> tuple[str, int, bytes]:
    """Return ``(host, port, request bytes)`` of a GET of ``url``."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", *headers, "", ""]
    return host, port, "\r\n".join(lines).encode()


async def run(
    url: str | list[str],
    headers: list[str],
    connections: int,
    seconds: float,
    warmup: float,
    expected: int,
) -> dict[str, object]:
    """Load ``url`` (or several, connections spread round-robin) for ``warmup`` + ``seconds``.

    Returns the counted part's figures.
    """
    targets = [_request(one, headers) for one in ([url] if isinstance(url, str) else url)]
    stats = _Stats()
    loop = asyncio.get_running_loop()
    protocols = []
    for index in range(connections):
        host, port, request = targets[index % len(targets)]
        factory = functools.partial(_Connection, request, expected, stats)
        _, protocol = await loop.create_connection(factory, host, port)
        protocols.append(protocol)
    await asyncio.sleep(warmup)
    stats.counting = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    stats.counting = False
    elapsed = time.perf_counter() - started
    stats.stop = True
    await asyncio.wait([protocol.closed for protocol in protocols], timeout=5)
    ordered = sorted(stats.latencies)

    def percentile(fraction: float) -> float:
        if not ordered:
            return 0.0
        return round(ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000, 3)

    return {
        "requests": len(ordered),
        "seconds": round(elapsed, 3),
        "rps": round(len(ordered) / elapsed, 1),
        "p50_ms": percentile(0.5),
        "p90_ms": percentile(0.9),
        "p99_ms": percentile(0.99),
        "errors": stats.errors,
        "status": {str(code): count for code, count in sorted(stats.statuses.items())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="+", help="the URL to load; several share the connections")
    parser.add_argument("--header", action="append", default=[], help="a request header line (repeatable)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=5.0, help="measured duration")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured load before it")
    parser.add_argument("--expect", type=int, default=200, help="the status every response should have")
    args = parser.parse_args()
    result = asyncio.run(run(args.url, args.header, args.connections, args.seconds, args.warmup, args.expect))
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
