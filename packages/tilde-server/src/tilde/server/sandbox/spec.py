"""Validation of the CreateSandbox body (CONTRACT §6.1 plus ``network``) into a `SandboxSpec`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tilde.server.errors import ApiError
from tilde.server.sandbox.egress import EgressPolicy, parse_egress

__all__ = ["MODES", "MOUNT_ROOTS", "SandboxSpec", "canonical_mountpoint", "parse_spec"]

MODES = ("one-shot", "service", "interactive")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
#: Where a repository may be mounted: one of these directories or a directory below it. Everything else
#: belongs to the system or the runtime (``/usr``, ``/etc``, ``/proc``, ``/run/tilde``, the agent's
#: ``/.tilde``).
MOUNT_ROOTS = ("/sandbox", "/data", "/mnt", "/work", "/workspace", "/home", "/srv")
#: Longest mountpoint accepted (bytes of UTF-8), and longest segment (a file name on Linux).
_MAX_MOUNTPOINT = 1024
_MAX_SEGMENT = 255


@dataclass(frozen=True)
class SandboxSpec:
    """A validated sandbox request.

    Attributes:
        image: Image reference as given (the server's default image when the request names none).
        command: argv of the main command (one-shot), or None (service; or one-shot running the image's
            ``Entrypoint``/``Cmd``).
        mode: ``"one-shot"`` or ``"service"``.
        env_vars: Environment given by the caller.
        mountpoint: Absolute, normalised directory where the repository appears.
        path_prefix: Repository prefix mounted there (``""`` or ending with ``/``).
        timeout_seconds: Wall-clock limit.
        run_as: ``{"type", "id"}`` of the principal to run as, or None.
        network: Whether the sandbox may use the host's network.
        egress: Allow-list of the sandbox's HTTP(S) proxy (no direct network), or None.

    """

    image: str
    command: list[str] | None
    mode: str
    env_vars: dict[str, str] = field(default_factory=dict)
    mountpoint: str = "/sandbox"
    path_prefix: str = ""
    timeout_seconds: int = 3600
    run_as: dict[str, str] | None = None
    network: bool = False
    egress: EgressPolicy | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the fields as the full Sandbox object shows them."""
        return {
            "image": self.image,
            "command": list(self.command or []),
            "mode": self.mode,
            "env_vars": dict(self.env_vars),
            "mountpoint": self.mountpoint,
            "path_prefix": self.path_prefix,
            "timeout_seconds": self.timeout_seconds,
            "network": self.network,
            "egress": self.egress.to_json() if self.egress else None,
        }


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_sandbox", message)


def _command(value: Any) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return ["sh", "-c", value]
    if not isinstance(value, list) or not all(isinstance(part, str) for part in value):
        raise _bad("command must be a list of strings")
    if any("\0" in part for part in value):
        raise _bad("command must not contain NUL characters")
    return list(value) or None


def _env(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad("env_vars must be an object of strings")
    env: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise _bad(f"invalid environment variable name: {key!r}")
        if not isinstance(item, str) or "\0" in item:
            raise _bad(f"environment variable {key} must be a string without NUL characters")
        env[key] = item
    return env


def canonical_mountpoint(value: str) -> str:
    """Return the one spelling of an absolute mountpoint, or raise a 400 `ApiError`.

    Repeated slashes, ``.`` segments and a trailing slash are dropped (``"//etc"`` is ``/etc``, which is then
    refused); ``..`` segments, control characters and over-long names are refused outright. The result must be
    one of `MOUNT_ROOTS` or lie below one of them.
    """
    if not value.startswith("/"):
        raise _bad("mountpoint must be an absolute path")
    if any(ord(char) < 32 or char == "\x7f" for char in value):
        raise _bad("mountpoint must not contain control characters")
    segments = [part for part in value.split("/") if part not in ("", ".")]
    if ".." in segments:
        raise _bad("mountpoint must not contain '..'")
    canonical = "/" + "/".join(segments)
    try:
        too_long = len(canonical.encode("utf-8")) > _MAX_MOUNTPOINT or any(
            len(part.encode("utf-8")) > _MAX_SEGMENT for part in segments
        )
    except UnicodeEncodeError:
        raise _bad("mountpoint must be valid Unicode (no lone surrogates)") from None
    if too_long:
        raise _bad("mountpoint is too long")
    if not any(canonical == root or canonical.startswith(root + "/") for root in MOUNT_ROOTS):
        roots = ", ".join(MOUNT_ROOTS)
        raise _bad(f"mountpoint {value!r} is not allowed: use {roots} or a directory below one of them")
    return canonical


def _mountpoint(value: Any) -> str:
    if value is None or value == "":
        return "/sandbox"
    if not isinstance(value, str):
        raise _bad("mountpoint must be an absolute path")
    return canonical_mountpoint(value)


def _path_prefix(value: Any) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        raise _bad("path_prefix must be a string")
    prefix = value.strip("/")
    if not prefix:
        return ""
    parts = prefix.split("/")
    if any(part in ("", ".", "..") for part in parts) or any(ord(c) < 32 for c in prefix):
        raise _bad(f"invalid path_prefix: {value!r}")
    return prefix + "/"


def _timeout(value: Any, default: int, max_seconds: int | None) -> int:
    if value is None:
        timeout = default if max_seconds is None else min(default, max_seconds)
        return timeout
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 1:
        raise _bad("timeout_seconds must be an integer >= 1")
    if max_seconds is not None and value > max_seconds:
        raise _bad(f"timeout_seconds exceeds the repository's session maximum ({max_seconds} s)")
    return int(value)


def _run_as(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if (
        not isinstance(value, Mapping)
        or value.get("type") not in ("agent", "role")
        or not isinstance(value.get("id"), str)
        or not value.get("id")
    ):
        raise _bad('run_as must be {"type": "agent"|"role", "id": "<id>"}')
    return {"type": str(value["type"]), "id": str(value["id"])}


def _check_reference(image: str) -> None:
    """Refuse an image name that is no valid reference (``Bad:Name``, ``a b``) with a 400."""
    from tilde.server.images import ImageReferenceError, parse_reference

    try:
        parse_reference(image)
    except ImageReferenceError as error:
        raise _bad(str(error)) from None


def parse_spec(
    body: Any, *, default_timeout: int, max_timeout: int | None, default_image: str | None = None
) -> SandboxSpec:
    """Validate a CreateSandbox body.

    Args:
        body: The decoded JSON body.
        default_timeout: Timeout used when the body gives none.
        max_timeout: The repository's session maximum in seconds (None: no limit).
        default_image: The image of a body that names none (None: ``image`` is required).

    Returns:
        The validated spec.

    Raises:
        ApiError: 400 with a specific message for each invalid field.

    """
    if not isinstance(body, Mapping):
        raise _bad("the request body must be a JSON object")
    image = body.get("image")
    if image is None and default_image:
        image = default_image
    if not isinstance(image, str) or not image.strip():
        raise _bad("image must be a non-empty image reference" if default_image else "image is required")
    _check_reference(image.strip())
    mode = body.get("mode") or "one-shot"
    if mode not in MODES:
        raise _bad(f"mode must be one of {', '.join(MODES)}")
    if mode == "interactive":
        raise ApiError(
            400, "unsupported_mode", "interactive sandboxes are not supported by the local runtime"
        )
    # Without a command a one-shot sandbox runs the image's Entrypoint/Cmd (failed/no_command when it has
    # none).
    command = _command(body.get("command"))
    network = body.get("network", False)
    if not isinstance(network, bool):
        raise _bad("network must be a boolean")
    egress = parse_egress(body.get("egress"))
    if egress is not None and network:
        raise _bad("egress (a proxied allow-list) and network (direct access) exclude each other")
    return SandboxSpec(
        image=image.strip(),
        command=command if mode == "one-shot" else None,
        mode=mode,
        env_vars=_env(body.get("env_vars")),
        mountpoint=_mountpoint(body.get("mountpoint")),
        path_prefix=_path_prefix(body.get("path_prefix")),
        timeout_seconds=_timeout(body.get("timeout_seconds"), default_timeout, max_timeout),
        run_as=_run_as(body.get("run_as")),
        network=network,
        egress=egress,
    )
