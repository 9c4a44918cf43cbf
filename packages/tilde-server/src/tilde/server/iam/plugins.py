"""Making the server's plugin manager.

There is no global plugin manager: each application builds its own with `make_server_plugin_manager`, so
tests and several servers in one process can run differently configured plugin sets side by side.

Third-party plugins are distributions declaring an entry point in the ``tilde_server.plugins`` group, e.g.::

    [project.entry-points."tilde_server.plugins"]
    my-generator = "my_package.tilde_server_plugin"

``TILDE_SERVER_PLUGINS`` restricts which of them load: a comma-separated list of entry-point names, or an
empty string for none. When it is unset, all of them load. The built-in plugins always load.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from importlib.metadata import entry_points

import pluggy

from tilde.server.iam import generate, hookspecs

__all__ = [
    "BUILTIN_GENERATOR_NAME",
    "ENTRY_POINT_GROUP",
    "ENV_PLUGINS",
    "PluginLoadError",
    "load_entry_point_plugins",
    "make_server_plugin_manager",
]

ENTRY_POINT_GROUP = "tilde_server.plugins"
ENV_PLUGINS = "TILDE_SERVER_PLUGINS"
#: The name the built-in policy generator is registered under.
BUILTIN_GENERATOR_NAME = "tilde-server.generate-policy"

_log = logging.getLogger("tilde.server.plugins")


class PluginLoadError(RuntimeError):
    """An allowed server plugin failed to import."""


def _allowed_names(environ: Mapping[str, str]) -> set[str] | None:
    raw = environ.get(ENV_PLUGINS)
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_entry_point_plugins(
    plugin_manager: pluggy.PluginManager, environ: Mapping[str, str] | None = None
) -> list[str]:
    """Register the plugins installed under the ``tilde_server.plugins`` entry-point group.

    Args:
        plugin_manager: The manager to register them with.
        environ: The environment holding ``TILDE_SERVER_PLUGINS`` (defaults to `os.environ`).

    Returns:
        The names of the plugins registered by this call.

    Raises:
        PluginLoadError: An allowed plugin failed to import.

    """
    allowed = _allowed_names(os.environ if environ is None else environ)
    loaded: list[str] = []
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        name = entry_point.name
        if allowed is not None and name not in allowed:
            _log.debug("server plugin %r skipped: not listed in %s", name, ENV_PLUGINS)
            continue
        if plugin_manager.get_plugin(name) is not None or plugin_manager.is_blocked(name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginLoadError(
                f"server plugin {name!r} ({entry_point.value}) failed to load: {exc}"
            ) from exc
        plugin_manager.register(plugin, name=name)
        loaded.append(name)
        _log.info("server plugin %r loaded from %s", name, entry_point.value)
    return loaded


def make_server_plugin_manager(
    *,
    load_entrypoints: bool = True,
    environ: Mapping[str, str] | None = None,
    plugins: Iterable[object] = (),
) -> pluggy.PluginManager:
    """Build a fresh plugin manager with the built-in plugins and, optionally, the installed ones.

    Args:
        load_entrypoints: Also load third-party plugins from the ``tilde_server.plugins`` entry points.
        environ: The environment holding ``TILDE_SERVER_PLUGINS`` (defaults to `os.environ`).
        plugins: More plugin objects to register after the built-ins and before the entry-point ones.

    Returns:
        The plugin manager, project name ``"tilde_server"``.

    Raises:
        PluginLoadError: An allowed entry-point plugin failed to import.

    """
    manager = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    manager.add_hookspecs(hookspecs)
    manager.register(generate, name=BUILTIN_GENERATOR_NAME)
    for plugin in plugins:
        manager.register(plugin)
    if load_entrypoints:
        load_entry_point_plugins(manager, environ)
    return manager
