"""The plugin manager factory for the data layer: tilde-core's factory plus the upload-strategy hooks.

Nothing is created at import time: each `tilde.data.Client` (and each test) gets its own manager.
"""

from __future__ import annotations

from collections.abc import Mapping

import pluggy

from tilde.core import plugins as core_plugins
from tilde.data import hookspecs
from tilde.data.upload_strategies import UploadStrategy, builtin_upload_strategies

__all__ = ["ENTRY_POINT_GROUP", "ENV_PLUGINS", "collect_upload_strategies", "make_plugin_manager"]

#: The entry-point group third-party plugins are published under (shared with tilde-core).
ENTRY_POINT_GROUP = core_plugins.ENTRY_POINT_GROUP

#: Comma-separated entry-point names allowed to load; set but empty loads none; unset loads all.
ENV_PLUGINS = core_plugins.ENV_PLUGINS


def make_plugin_manager(
    *, load_entry_points: bool = True, environ: Mapping[str, str] | None = None
) -> pluggy.PluginManager:
    """Build a plugin manager for uploads.

    It has tilde-core's hooks, the upload-strategy hooks, the built-in strategies and (optionally) the
    installed third-party plugins.

    Args:
        load_entry_points: Also load third-party plugins from the ``tilde_sdk.plugins`` entry-point group,
            restricted by ``TILDE_PLUGINS``.
        environ: The environment holding ``TILDE_PLUGINS`` (defaults to ``os.environ``).

    Returns:
        A fresh ``pluggy.PluginManager``.

    Raises:
        ConfigurationError: An allowed entry point failed to import.

    """
    # Imported here, not at the top: the batch machinery is no part of ``import tilde.data``'s cost.
    from tilde.data.batch_uploads import builtin_batch_upload_strategies

    return core_plugins.make_plugin_manager(
        load_entry_points=load_entry_points,
        environ=environ,
        extra_hookspecs=[hookspecs.UploadStrategySpec, hookspecs.BatchUploadStrategySpec],
        plugins=[builtin_upload_strategies, builtin_batch_upload_strategies],
    )


def collect_upload_strategies(manager: pluggy.PluginManager) -> list[UploadStrategy]:
    """Ask every plugin for its strategies and order them by precedence (see the hookspec).

    Args:
        manager: A manager from `make_plugin_manager`.

    Returns:
        The strategies, highest precedence first.

    """
    found: list[UploadStrategy] = []
    manager.hook.tilde_register_upload_strategies(register=found.append)
    # pluggy calls the most recently registered plugin first; a stable sort keeps that order among equals.
    return sorted(found, key=lambda strategy: -int(getattr(strategy, "priority", 0)))
