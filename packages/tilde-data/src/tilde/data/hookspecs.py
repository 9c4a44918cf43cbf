"""Hook specifications for upload-strategy plugins.

A plugin is any object (usually a module) with functions marked by `hookimpl`. Third-party plugins are found
through the ``tilde_sdk.plugins`` entry-point group; ``TILDE_PLUGINS`` (comma-separated entry-point names, or
empty for none) limits which of them load. The built-in strategies are registered through this same hook.

Example:
    A plugin module registering one strategy::

        from tilde.data.hookspecs import hookimpl

        @hookimpl
        def tilde_register_upload_strategies(register):
            register(MyStrategy())

"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from tilde.core.hookspecs import PROJECT_NAME, hookimpl, hookspec

if TYPE_CHECKING:
    from tilde.data.batch_uploads import BatchUploadStrategy
    from tilde.data.upload_strategies import UploadStrategy

__all__ = ["PROJECT_NAME", "BatchUploadStrategySpec", "UploadStrategySpec", "hookimpl", "hookspec"]

# The markers are tilde-core's (project name "tilde"), so one plugin can implement hooks of several layers.


class UploadStrategySpec:
    """The upload-strategy hooks."""

    @hookspec
    def tilde_register_upload_strategies(self, register: Callable[[UploadStrategy], None]) -> None:
        """Offer upload strategies to the data layer.

        Called once per `tilde.data.Client`, the first time it uploads an object, on every registered plugin
        (not ``firstresult``; return values are ignored). Call ``register`` once per strategy.

        Each upload goes to the first strategy, by descending ``priority``, whose ``accepts(upload)`` returns
        true; among equal priorities, strategies from plugins registered later (third-party plugins load after
        the built-ins) come first. A strategy that finds it cannot finish (for example the server does not
        support multipart uploads) raises `tilde.data.upload_strategies.StrategyDeclined`, and the upload
        moves on to the next accepting strategy with the source rewound.

        Args:
            register: Adds a strategy (an object satisfying `tilde.data.upload_strategies.UploadStrategy`).

        """


class BatchUploadStrategySpec:
    """The batch-upload hooks (many small files in one request; see `tilde.data.batch_uploads`)."""

    @hookspec
    def tilde_register_batch_upload_strategies(self, register: Callable[[BatchUploadStrategy], None]) -> None:
        """Offer batch upload strategies to folder uploads.

        Called once per client, the first time it uploads a folder, on every registered plugin (not
        ``firstresult``; return values are ignored). Call ``register`` once per strategy.

        Each batch of small files goes to the first strategy, by descending ``priority``, whose
        ``accepts_batch(batch)`` returns true; among equal priorities, strategies from plugins registered
        later come first. A strategy that raises `tilde.data.upload_strategies.StrategyDeclined` leaves the
        batch's files to the per-object strategies, one by one.

        Args:
            register: Adds a strategy (an object satisfying `tilde.data.batch_uploads.BatchUploadStrategy`).

        """
