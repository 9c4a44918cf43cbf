"""Per-sandbox egress proxy: an allow-list of hosts, with every decision logged as NDJSON.

A sandbox created with ``"egress": {"allow": ["pypi.org", "*.pythonhosted.org", "localhost:8080"]}`` gets no
network namespace of the host, but ``HTTP_PROXY``/``HTTPS_PROXY`` pointing at the agent's loopback relay,
which forwards to this proxy in the server process. It understands ``CONNECT host:port`` (HTTPS and any other
TLS: the tunnel is opaque, so only the destination is known) and plain-HTTP requests in absolute form
(forwarded with ``Connection: close``; the upstream status is logged). Each request appends one JSON line to
the sandbox's network log (``GET …/logs/network``)::

    {"time": "...", "decision": "allow", "method": "GET", "url": "http://localhost:8080/x", "status": 200}
    {"time": "...", "decision": "deny", "method": "CONNECT", "url": "https://example.com:443", "reason": "…"}

A sandbox created with ``"network": true`` goes through the same proxy with every host name allowed: it never
shares the host's network namespace. Whatever the allow-list says, the proxy resolves the name itself and
connects only to public (globally routable) addresses: loopback, link-local (``169.254.169.254``), private,
shared (``100.100.100.200``), unique-local (``fd00:ec2::254``) and other special-purpose addresses are
refused unless the server's admin allows them in the sandbox setting ``network_allow``. The connection goes
to the very address that was checked, so a name that changes its answer between two lookups gains nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import ipaddress
import json
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tilde.server.errors import ApiError

__all__ = [
    "MAX_CONNECTIONS",
    "MAX_LOG_BYTES",
    "OPEN_POLICY",
    "AddressRule",
    "EgressPolicy",
    "address_allowed",
    "parse_address_rules",
    "parse_egress",
    "start_egress_proxy",
]

_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
_CONNECT_TIMEOUT = 10.0
#: How long a client may take to send its request head.
_HEAD_TIMEOUT = 30.0
#: Connections one sandbox may hold through its proxy at once (each costs the server two descriptors).
MAX_CONNECTIONS = 256
#: Bytes of network log one sandbox may write; one last line then says that later requests are not logged.
MAX_LOG_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class EgressPolicy:
    """Which destinations a sandbox may reach through its proxy.

    Attributes:
        allow: Patterns ``host`` or ``host:port`` (shell wildcards, e.g. ``*.example.com``); a pattern without
            a port allows every port.

    """

    allow: tuple[str, ...]

    def permits(self, host: str, port: int) -> bool:
        """Tell whether ``host:port`` matches an allowed pattern."""
        host = host.lower().rstrip(".")
        for pattern in self.allow:
            name, _, wanted = pattern.lower().rpartition(":") if ":" in pattern else (pattern.lower(), "", "")
            if fnmatch.fnmatchcase(host, name) and (not wanted or wanted == str(port)):
                return True
        return False

    def to_json(self) -> dict[str, Any]:
        """Return the policy as the Sandbox object shows it."""
        return {"allow": list(self.allow)}


#: The policy of a ``network: true`` sandbox: every host name (addresses are still checked).
OPEN_POLICY = EgressPolicy(("*",))


@dataclass(frozen=True)
class AddressRule:
    """A non-public network the admin lets sandboxes reach through the proxy.

    Attributes:
        network: The addresses (a single address is a ``/32`` or ``/128`` network).
        port: The only port allowed, or None for every port.

    """

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    def matches(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address, port: int) -> bool:
        """Tell whether ``address:port`` falls under this rule."""
        same = address.version == self.network.version
        return same and address in self.network and self.port in (None, port)


def parse_address_rules(entries: Sequence[str]) -> tuple[AddressRule, ...]:
    """Parse the ``network_allow`` setting, e.g. ``"10.0.0.0/8"``, ``"127.0.0.1:8080"``, ``"[::1]:8080"``.

    Raises:
        ValueError: For an entry that is not an address or network with an optional port.

    """
    rules: list[AddressRule] = []
    for entry in entries:
        text, port = entry.strip(), None
        if text.startswith("["):
            text, _, rest = text[1:].partition("]")
            if rest:
                if not rest.startswith(":") or not rest[1:].isdigit():
                    raise ValueError(f"network_allow: invalid entry {entry!r}")
                port = int(rest[1:])
        elif text.count(":") == 1:
            text, _, digits = text.partition(":")
            if not digits.isdigit():
                raise ValueError(f"network_allow: invalid entry {entry!r}")
            port = int(digits)
        try:
            network = ipaddress.ip_network(text, strict=False)
        except ValueError:
            raise ValueError(f"network_allow: {entry!r} is not an address or network") from None
        if port is not None and not 0 < port < 65536:
            raise ValueError(f"network_allow: invalid port in {entry!r}")
        rules.append(AddressRule(network, port))
    return tuple(rules)


def address_allowed(address: str, port: int, rules: Sequence[AddressRule] = ()) -> bool:
    """Tell whether the proxy may connect to ``address:port``: a public address, or one the admin allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(rule.matches(ip, port) for rule in rules):
        return True
    return ip.is_global and not ip.is_multicast


def parse_egress(value: Any) -> EgressPolicy | None:
    """Validate the ``egress`` field of a CreateSandbox body (None when absent).

    Raises:
        ApiError: 400 for a malformed policy.

    """
    if value is None:
        return None
    allow = value.get("allow") if isinstance(value, Mapping) else None
    if (
        not isinstance(allow, Sequence)
        or isinstance(allow, str)
        or not all(isinstance(a, str) for a in allow)
    ):
        raise ApiError(
            400, "invalid_sandbox", 'egress must be {"allow": ["host", "*.domain", "host:port", ...]}'
        )
    patterns = tuple(a.strip() for a in allow if a.strip())
    if any(any(c in p for c in "/ \t@") for p in patterns):
        raise ApiError(400, "invalid_sandbox", "egress patterns are host names with an optional :port")
    return EgressPolicy(patterns)


class _Log:
    def __init__(self, path: Path, limit: int) -> None:
        self.path = path
        self.limit = limit
        self.size = path.stat().st_size if path.exists() else 0
        self.full = False

    def write(self, entry: dict[str, Any]) -> None:
        if self.full:
            return
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        line = json.dumps({"time": now, **entry}) + "\n"
        if self.size + len(line) > self.limit:
            self.full = True
            note = "network log limit reached: later requests are not logged"
            line = json.dumps({"time": now, "note": note}) + "\n"
        self.size += len(line)
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(line)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError, OSError):
        await writer.wait_closed()


def _reply(writer: asyncio.StreamWriter, status: str, message: str = "") -> None:
    body = message.encode()
    writer.write(
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n\r\n".encode()
        + body
    )


def _target(method: str, target: str) -> tuple[str, int, str] | None:
    """``(host, port, url)`` of a proxy request, or None when it is not a proxy request."""
    if method == "CONNECT":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            return None
        return host.strip("[]"), int(port), f"https://{target}"
    parts = urlsplit(target)
    if parts.scheme != "http" or not parts.hostname:
        return None
    return parts.hostname, parts.port or 80, target


async def _resolve(host: str, port: int, rules: Sequence[AddressRule]) -> tuple[list[str], str]:
    """Return the addresses of ``host`` the proxy may connect to, and why there are none when empty."""
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(host, port, type=socket.SOCK_STREAM), _CONNECT_TIMEOUT
        )
    except (OSError, asyncio.TimeoutError) as error:
        return [], f"cannot resolve {host}: {error}"
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    allowed = [address for address in found if address_allowed(address, port, rules)]
    if not allowed:
        shown = ", ".join(found[:4])
        return [], f"{host} resolves to a non-public address ({shown}) the server does not allow"
    return allowed, ""


async def _connect(addresses: list[str], port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    error: Exception = OSError("no address")
    for address in addresses:
        try:
            return await asyncio.wait_for(asyncio.open_connection(address, port), _CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as failed:
            error = failed
    raise error


async def _handle(
    policy: EgressPolicy,
    rules: Sequence[AddressRule],
    log: _Log,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
    except (
        asyncio.IncompleteReadError,
        asyncio.LimitOverrunError,
        asyncio.TimeoutError,
        ConnectionError,
        OSError,
    ):
        await _close(writer)
        return
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target_text, _, version = rest.partition(" ")
    found = _target(method, target_text)
    if found is None:
        _reply(writer, "400 Bad Request", "not a proxy request\n")
        await _close(writer)
        return
    host, port, url = found
    if not policy.permits(host, port):
        log.write(
            {"decision": "deny", "method": method, "url": url, "reason": "not in the sandbox's allow-list"}
        )
        _reply(writer, "403 Forbidden", f"egress to {host}:{port} is not allowed for this sandbox\n")
        await _close(writer)
        return
    addresses, problem = await _resolve(host, port, rules)
    if not addresses:
        unresolved = problem.startswith("cannot resolve")
        decision = "allow" if unresolved else "deny"
        log.write({"decision": decision, "method": method, "url": url, "reason": problem})
        if unresolved:
            _reply(writer, "502 Bad Gateway", f"{problem}\n")
        else:
            _reply(writer, "403 Forbidden", f"egress to {host}:{port} is not allowed: {problem}\n")
        await _close(writer)
        return
    try:
        up_reader, up_writer = await _connect(addresses, port)
    except (OSError, asyncio.TimeoutError) as error:
        log.write({"decision": "allow", "method": method, "url": url, "error": f"connect failed: {error}"})
        _reply(writer, "502 Bad Gateway", f"cannot reach {host}:{port}\n")
        await _close(writer)
        return
    entry: dict[str, Any] = {"decision": "allow", "method": method, "url": url}
    try:
        if method == "CONNECT":
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await writer.drain()
            log.write(entry)
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            return
        parts = urlsplit(target_text)
        origin = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [
            line
            for line in lines[1:]
            if line and not line.lower().startswith(("proxy-connection:", "connection:", "keep-alive:"))
        ]
        request = (
            f"{method} {origin} {version}\r\n"
            + "".join(h + "\r\n" for h in headers)
            + "Connection: close\r\n\r\n"
        )
        up_writer.write(request.encode("latin-1"))
        await up_writer.drain()
        status_line = await up_reader.readline()
        status = status_line.split(b" ", 2)[1:2]
        entry["status"] = int(status[0]) if status and status[0].isdigit() else None
        log.write(entry)
        writer.write(status_line)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
    finally:
        await _close(up_writer)
        await _close(writer)


async def start_egress_proxy(
    path: str,
    policy: EgressPolicy,
    log_path: Path,
    rules: Sequence[AddressRule] = (),
    *,
    max_connections: int = MAX_CONNECTIONS,
    max_log_bytes: int = MAX_LOG_BYTES,
) -> asyncio.AbstractServer:
    """Serve the proxy on the unix socket ``path`` (the agent relays the sandbox's proxy port there).

    Args:
        path: Unix socket to listen on.
        policy: The sandbox's allow-list (`OPEN_POLICY` for ``network: true``).
        log_path: NDJSON file receiving one line per request.
        rules: Non-public networks the admin allows (``network_allow``); other non-public addresses are
            refused.
        max_connections: Connections served at once; more are answered ``503`` and closed.
        max_log_bytes: Size of the network log past which requests are no longer logged.

    Returns:
        The listening server.

    """
    log = _Log(log_path, max_log_bytes)
    active = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal active
        if active >= max_connections:
            _reply(writer, "503 Service Unavailable", f"more than {max_connections} connections at once\n")
            await _close(writer)
            return
        active += 1
        try:
            await _handle(policy, rules, log, reader, writer)
        finally:
            active -= 1

    return await asyncio.start_unix_server(handle, path=path, limit=_MAX_HEAD)
