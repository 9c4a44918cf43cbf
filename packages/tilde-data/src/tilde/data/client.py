"""`tilde.data.Client`: tilde-core's client plus repositories and the upload machinery."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pluggy

import tilde.core
from tilde.data.plugins import collect_upload_strategies, make_plugin_manager
from tilde.data.repositories import Repositories, Repository
from tilde.data.upload_strategies import (
    DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    DEFAULT_UPLOAD_THRESHOLD,
    UploadSettings,
    UploadStrategy,
)

__all__ = ["Client"]


class Client(tilde.core.Client):
    """A Tilde client with the data layer: ``repository("org/repo")``, sessions, objects and commits.

    Accepts every argument of `tilde.core.Client`, plus the upload settings below.

    Args:
        *args: Passed to `tilde.core.Client`.
        upload_threshold: Objects of known size below this many bytes are uploaded in one presigned PUT;
            larger ones and streams of unknown size use multipart (default 64 MiB).
        multipart_part_size: Bytes per multipart part (default 64 MiB).
        max_parts_in_flight: Parts uploaded concurrently, which also bounds the memory an upload holds to
            ``max_parts_in_flight * multipart_part_size`` (default 8).
        upload_plugin_manager: A plugin manager to take upload strategies from, instead of a fresh one from
            `tilde.data.plugins.make_plugin_manager`.
        **kwargs: Passed to `tilde.core.Client`.

    Example:
        >>> client = Client(endpoint_url="http://127.0.0.1:8080", api_key="tuk-…")  # doctest: +SKIP
        >>> with client.repository("acme/data").session() as session:  # doctest: +SKIP
        ...     session.objects.put("hello.txt", b"hi")
        ...     session.commit("say hi")

    """

    #: The class `repository` and `tilde.data.Repositories` build handles with (the facade overrides it).
    repository_class: ClassVar[type[Repository]] = Repository

    def __init__(
        self,
        *args: Any,
        upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD,
        multipart_part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT,
        upload_plugin_manager: pluggy.PluginManager | None = None,
        **kwargs: Any,
    ) -> None:
        self._upload_settings = UploadSettings(
            threshold=upload_threshold, part_size=multipart_part_size, max_parts_in_flight=max_parts_in_flight
        )
        super().__init__(*args, **kwargs)
        #: Set after a server answers 501 to a multipart call; later uploads go straight to a single PUT.
        self._multipart_unsupported = False
        self._upload_plugin_manager = upload_plugin_manager
        self._strategies: list[UploadStrategy] | None = None
        self._strategies_lock = threading.Lock()

    @property
    def upload_settings(self) -> UploadSettings:
        """The settings the built-in upload strategies use (replace it to change them)."""
        return self._upload_settings

    @upload_settings.setter
    def upload_settings(self, settings: UploadSettings) -> None:
        self._upload_settings = settings

    def repository(self, repo_path: str) -> Repository:
        """Return a lazy handle on ``"org/repo"`` (no request).

        Args:
            repo_path: Organization and repository name separated by ``/``.

        Returns:
            A `repository_class` instance.

        Raises:
            ValueError: ``repo_path`` is not ``"org/repo"``.

        """
        org, _, name = repo_path.partition("/")
        if not org or not name or "/" in name:
            raise ValueError(f"expected a repository path 'org/repo', got {repo_path!r}")
        return self.repository_class(self, org, name)

    def repositories(self, org: str) -> Repositories:
        """Return the repositories collection of one organization.

        Args:
            org: Organization name.

        Returns:
            The collection.

        """
        return Repositories(self, org)

    def _upload_strategies(self) -> list[UploadStrategy]:
        """Return the upload strategies in precedence order, gathered from the plugins once per client."""
        with self._strategies_lock:
            if self._strategies is None:
                manager = self._upload_plugin_manager or make_plugin_manager()
                self._strategies = collect_upload_strategies(manager)
            return list(self._strategies)
