"""Making plugin managers.

There is no global plugin manager: every client builds its own (or is handed one), so tests and applications
can run differently configured clients side by side.

Third-party plugins are distributions that declare an entry point in the ``tilde_sdk.plugins`` group, e.g.::

    [project.entry-points."tilde_sdk.plugins"]
    my-auth = "my_package.tilde_plugin"

``TILDE_PLUGINS`` restricts which of them load: a comma-separated list of entry-point names, or an empty
string for none. When it is unset, all of them load.
"""

from __future__ import annotations

import logging
import os
import types
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from tilde.core import hookspecs
from tilde.core.auth import SandboxCredentialsPlugin, StaticKeysPlugin
from tilde.core.errors import ConfigurationError

__all__ = ["ENTRY_POINT_GROUP", "ENV_PLUGINS", "load_entry_point_plugins", "make_plugin_manager"]

ENTRY_POINT_GROUP = "tilde_sdk.plugins"
ENV_PLUGINS = "TILDE_PLUGINS"

_log = logging.getLogger("tilde.plugins")


def entry_points(*, group: str) -> Iterable[Any]:
    """`importlib.metadata.entry_points`, imported on the first call (the first client), not with the SDK."""
    from importlib import metadata

    return metadata.entry_points(group=group)


def _allowed_names(environ: Mapping[str, str]) -> set[str] | None:
    raw = environ.get(ENV_PLUGINS)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_entry_point_plugins(
    plugin_manager: pluggy.PluginManager, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Register the plugins installed under the ``tilde_sdk.plugins`` entry-point group.

    Args:
        plugin_manager: The manager to register them with.
        environ: The environment holding ``TILDE_PLUGINS`` (defaults to `os.environ`).

    Returns:
        The names of the plugins registered by this call.

    Raises:
        ConfigurationError: An allowed plugin failed to import.

    """
    allowed = _allowed_names(os.environ if environ is None else environ)
    loaded: list[str] = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if allowed is not None and name not in allowed:
            _log.debug("plugin %r skipped: not listed in %s", name, ENV_PLUGINS)
            continue
        if plugin_manager.get_plugin(name) is not None or plugin_manager.is_blocked(name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise ConfigurationError(f"plugin {name!r} ({entry_point.value}) failed to load: {exc}") from exc
        plugin_manager.register(plugin, name=name)
        loaded.append(name)
        _log.debug("plugin %r loaded from %s", name, entry_point.value)
    return loaded


def make_plugin_manager(
    *,
    load_entry_points: bool = True,
    environ: Mapping[str, str] | None = None,
    extra_hookspecs: Iterable[types.ModuleType | type] = (),
    plugins: Iterable[object] = (),
) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the built-in plugins and, optionally, the installed ones.

    Args:
        load_entry_points: Also load third-party plugins from the ``tilde_sdk.plugins`` entry points.
        environ: The environment holding ``TILDE_PLUGINS`` (defaults to `os.environ`).
        extra_hookspecs: More hookspec modules or classes (other distributions add their own surfaces).
        plugins: More plugin objects to register before the entry-point ones.

    Returns:
        The plugin manager, project name ``"tilde"``.

    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    for spec in extra_hookspecs:
        manager.add_hookspecs(spec)
    manager.register(StaticKeysPlugin(), name="tilde.core.auth.static-keys")
    manager.register(SandboxCredentialsPlugin(), name="tilde.core.auth.sandbox")
    for plugin in plugins:
        manager.register(plugin)
    if load_entry_points:
        load_entry_point_plugins(manager, environ)
    return manager
