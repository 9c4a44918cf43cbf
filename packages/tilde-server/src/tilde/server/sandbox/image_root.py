"""Running a sandbox on an OCI image: the agent's interpreter, the image's user, environment and indexes.

The image's unpacked layers become the read-only lower layers of a second overlay (the *system overlay*)
whose throw-away upper layer takes every write outside the repository (``pip install`` into
``/usr/local``), and which bubblewrap binds as the sandbox's ``/``. The repository overlay is mounted at the
mountpoint exactly as on the host's root filesystem, and only it is committed.

The in-sandbox agent must not depend on what the image contains (an image may have no Python, or an old
one, or a C library of its own): it runs on the server's interpreter, bound read-only below ``/.tilde``
together with the C library and loader that interpreter was linked against, and is started through that
loader (``ld.so --library-path``), so neither the image's libraries nor an ``LD_*`` variable reach it and the
commands it starts see the image alone.
"""

from __future__ import annotations

import functools
import os
import sys
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tilde.server.sandbox.egress import EgressPolicy
from tilde.server.sandbox.settings import SandboxSettings

if TYPE_CHECKING:
    from tilde.server.images import ImageStore

__all__ = [
    "DEFAULT_INDEX",
    "REGISTRY_AUTH_SECRET",
    "AgentRuntime",
    "ImageUser",
    "agent_runtime",
    "image_environment",
    "image_store",
    "index_environment",
    "network_denied",
    "package_index_policy",
    "package_indexes",
    "registry_credentials",
    "resolve_user",
]

#: Where the agent's interpreter and libraries appear inside an image sandbox.
_AGENT_DIR = "/.tilde"
#: Mapped shared objects in these directories are Python modules, not libraries the interpreter links.
_MODULE_DIRS = ("/site-packages/", "/dist-packages/", "/lib-dynload/")
#: The repository or agent secret holding a sandbox's own registry credentials (Docker ``config.json`` form).
#: The runtime reads it for pulls and never passes it into the sandbox's environment.
REGISTRY_AUTH_SECRET = "TILDE_REGISTRY_AUTH"
#: pip's default index, and the host its files come from.
DEFAULT_INDEX = "https://pypi.org/simple"
_PYPI_FILES = "files.pythonhosted.org"


@dataclass(frozen=True)
class AgentRuntime:
    """The server's interpreter as bound into an image sandbox.

    Attributes:
        binds: ``(host path, sandbox path)`` pairs to bind read-only.
        argv: The command prefix that starts the interpreter inside (loader, library path, interpreter).

    """

    binds: tuple[tuple[str, str], ...]
    argv: tuple[str, ...]


def _mapped_libraries() -> list[str]:
    """Return the paths of the shared libraries this process has mapped (its loader included), in order.

    Every library the interpreter was linked against is among them (C library, ``libm``, ``libpython``,
    ``libz``, ``libexpat``, ...), whichever Python runs the server.
    """
    found: dict[str, None] = {}
    with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) < 6 or not fields[5].startswith("/"):
                continue
            path = fields[5].strip()
            if ".so" in os.path.basename(path) and not any(d in path for d in _MODULE_DIRS):
                found.setdefault(path, None)
    return [path for path in found if os.path.isfile(path)]


@functools.lru_cache(maxsize=1)
def agent_runtime() -> AgentRuntime:
    """Work out how the server's own interpreter runs inside an image (cached: it never changes).

    The directories of the libraries the server process has mapped are bound whole (read-only) at
    ``/.tilde/lib/N``, so a library is found under its link name (``libz.so.1``) as the interpreter asks for
    it, whatever file it resolves to; they lie inside the installation too when the server runs on a system
    Python (its prefix is ``/usr``).

    Raises:
        RuntimeError: When the interpreter's installation or its loader cannot be found.

    """
    python, prefix = os.path.realpath(sys.executable), os.path.realpath(sys.base_prefix)
    relative = os.path.relpath(python, prefix)
    if relative.startswith(".."):
        raise RuntimeError(f"the server's interpreter {python} is not inside its installation {prefix}")
    libraries = _mapped_libraries()
    directories = list(dict.fromkeys(os.path.dirname(path) for path in libraries))
    inside = {directory: f"{_AGENT_DIR}/lib/{number}" for number, directory in enumerate(directories)}
    loader = next(
        (p for p in libraries if os.path.basename(p).startswith(("ld-linux", "ld64", "ld-musl"))), None
    )
    if loader is None:
        raise RuntimeError("the dynamic loader of the server's interpreter was not found")
    binds = [(prefix, f"{_AGENT_DIR}/python"), *inside.items()]
    argv = (
        f"{inside[os.path.dirname(loader)]}/{os.path.basename(loader)}",
        "--library-path",
        ":".join([*inside.values(), f"{_AGENT_DIR}/python/lib"]),
        f"{_AGENT_DIR}/python/{relative}",
    )
    return AgentRuntime(tuple(binds), argv)


@dataclass(frozen=True)
class ImageUser:
    """The user an image's processes run as inside the sandbox's user namespace.

    Attributes:
        uid: User id inside (never 0: the image's root is the runtime's sandbox user).
        gid: Group id inside.
        home: Home directory from the image's ``/etc/passwd`` ("" when unknown).

    """

    uid: int
    gid: int
    home: str


def _image_file(layers: Sequence[Path], relative: str) -> Path | None:
    """Return the topmost layer's copy of a regular file of the image (None when absent)."""
    for layer in reversed(layers):
        candidate = layer / relative
        if candidate.is_symlink() or not candidate.exists():
            continue
        return candidate if candidate.is_file() else None
    return None


def _table(layers: Sequence[Path], relative: str) -> list[list[str]]:
    found = _image_file(layers, relative)
    if found is None:
        return []
    try:
        text = found.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def resolve_user(layers: Sequence[Path], user: str, settings: SandboxSettings) -> ImageUser:
    """Resolve an image's ``User`` (``""``, ``name``, ``uid``, ``uid:gid``, ``name:group``) against its files.

    The user namespace maps this one id to the server's user outside, so whatever it is, the image's files
    appear as its own. Root (and an unset ``User``, which means root) becomes the runtime's sandbox user:
    no sandbox process runs as uid 0.

    Args:
        layers: The image's layer directories, bottom first.
        user: The image config's ``User``.
        settings: Runtime settings (the sandbox ``uid``/``gid`` that stand in for root).

    Raises:
        LookupError: A user or group name the image does not define.

    """
    name, _, group = (user or "root").partition(":")
    passwd = _table(layers, "etc/passwd")
    uid: int | None = None
    gid: int | None = None
    home = ""
    for entry in passwd:
        if len(entry) >= 6 and (entry[0] == name or entry[2] == name):
            uid, gid, home = int(entry[2]), int(entry[3]), entry[5]
            break
    if uid is None:
        if not name.isdigit():
            raise LookupError(f"the image has no user {name!r} (its /etc/passwd does not define it)")
        uid = int(name)
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            matches = [int(e[2]) for e in _table(layers, "etc/group") if len(e) >= 3 and e[0] == group]
            if not matches:
                raise LookupError(f"the image has no group {group!r} (its /etc/group does not define it)")
            gid = matches[0]
    if gid is None:
        gid = uid
    return ImageUser(
        uid=uid or settings.uid,
        gid=gid if uid and gid else settings.gid,
        home=home,
    )


def image_environment(config_env: Sequence[str], user: ImageUser, fallback_path: str) -> dict[str, str]:
    """Return the environment an image asks for (``Env`` entries, in order), ``PATH`` and ``HOME`` filled in.

    Args:
        config_env: The image config's ``Env`` (``KEY=value``).
        user: The resolved user (its home becomes ``HOME`` unless the image sets one).
        fallback_path: ``PATH`` when the image sets none.

    """
    env: dict[str, str] = {}
    for entry in config_env:
        key, sep, value = entry.partition("=")
        if sep and key:
            env[key] = value
    env.setdefault("PATH", fallback_path)
    env.setdefault("HOME", user.home or "/tmp")
    return env


def _pip_config_urls() -> list[str]:
    """Pip's index URLs of the server's own configuration (environment, then its configuration files)."""
    import configparser

    urls: list[str] = []
    index = os.environ.get("PIP_INDEX_URL", "").strip()
    extra = os.environ.get("PIP_EXTRA_INDEX_URL", "").split()
    if not index:
        files = [os.environ.get("PIP_CONFIG_FILE", ""), "/etc/pip.conf", "/etc/xdg/pip/pip.conf"]
        home = Path.home()
        files += [str(home / ".config" / "pip" / "pip.conf"), str(home / ".pip" / "pip.conf")]
        parser = configparser.ConfigParser(interpolation=None)
        parser.read([f for f in files if f])
        for section in ("install", "global"):
            if parser.has_option(section, "index-url") and not index:
                index = parser.get(section, "index-url").strip()
            if parser.has_option(section, "extra-index-url") and not extra:
                extra = parser.get(section, "extra-index-url").split()
    urls.append(index or DEFAULT_INDEX)
    urls += extra
    return urls


def package_indexes(settings: SandboxSettings) -> list[str]:
    """Return the package index URLs sandboxes on images may use (``SandboxSettings.package_indexes``)."""
    if settings.package_indexes is not None:
        return list(settings.package_indexes)
    return _pip_config_urls()


def package_index_policy(indexes: Sequence[str]) -> EgressPolicy | None:
    """Return the egress allow-list of the package indexes (None: none configured, so no network at all).

    Each URL allows its host and port; pip's default index also allows the host its files come from.
    """
    allow: list[str] = []
    for url in indexes:
        parts = urlsplit(url)
        if not parts.hostname:
            continue
        port = parts.port or (443 if parts.scheme == "https" else 80)
        allow.append(f"{parts.hostname}:{port}")
        if parts.hostname == "pypi.org":
            allow.append(f"{_PYPI_FILES}:443")
    return EgressPolicy(tuple(dict.fromkeys(allow))) if allow else None


def network_denied(app_state: Any, principal: Any, repo: Any) -> bool:
    """Tell whether the creator's policies explicitly deny ``UseSandboxNetwork`` on the repository.

    That closes even the package indexes of image sandboxes (``deny UseSandboxNetwork()`` for a whole
    organization, ``deny UseSandboxNetwork(repository="x")`` for one repository); merely not being granted
    the action leaves them open.
    """
    from tilde.server.iam.policy import Resource

    auth = getattr(app_state, "auth", None)
    if auth is None or principal is None:
        return False
    access = auth.authorizer.access(principal.type, principal.id, repo.organization_id)
    if access.policies is None:
        return False
    return bool(access.policies.decide("UseSandboxNetwork", Resource(repository=repo.name)) == "deny")


def index_environment(indexes: Sequence[str]) -> dict[str, str]:
    """Return the variables that point pip inside the sandbox at the configured indexes."""
    pip = [url for url in indexes if "/npm" not in urlsplit(url).path]
    if not pip or pip == [DEFAULT_INDEX]:
        return {}
    env = {"PIP_INDEX_URL": pip[0]}
    if len(pip) > 1:
        env["PIP_EXTRA_INDEX_URL"] = " ".join(pip[1:])
    return env


_STORES: weakref.WeakKeyDictionary[Any, ImageStore] = weakref.WeakKeyDictionary()


def image_store(runtime: Any) -> ImageStore:
    """Return the server's image store (``<data-dir>/images``), made once per runtime from its config."""
    store = _STORES.get(runtime)
    if store is None:
        from tilde.server.images.settings import server_image_store

        store = _STORES[runtime] = server_image_store(runtime.config)
    return store


def registry_credentials(secrets: Mapping[str, str]) -> dict[str, tuple[str, str]]:
    """Return the registry credentials in a sandbox's secrets (`REGISTRY_AUTH_SECRET`), by registry host.

    Raises:
        ValueError: The secret is malformed (the message names the secret, never its value).

    """
    text = secrets.get(REGISTRY_AUTH_SECRET)
    if text is None:
        return {}
    from tilde.server.images.settings import parse_registry_credentials

    return parse_registry_credentials(text, f"secret {REGISTRY_AUTH_SECRET}")
