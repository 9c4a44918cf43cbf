"""`tilde.data.Client`: tilde-core's client plus repositories and the upload machinery."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, ClassVar, Generic, cast

import httpx
import pluggy

import tilde.core
from tilde.core.credentials import CredentialsProvider
from tilde.core.names import check_org, check_repository
from tilde.data.hookspecs import UploadStrategySpec
from tilde.data.plugins import collect_upload_strategies, make_plugin_manager
from tilde.data.repositories import Repositories, Repository, RepositoryT
from tilde.data.upload_strategies import (
    DEFAULT_MAX_PARTS_IN_FLIGHT,
    DEFAULT_PART_SIZE,
    DEFAULT_UPLOAD_THRESHOLD,
    UploadSettings,
    UploadStrategy,
    builtin_upload_strategies,
)

# Self appears in annotations only: typing_extensions (for Python 3.10) stays out of the import.
if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from typing import Self
    else:
        from typing_extensions import Self

__all__ = ["Client"]


class Client(tilde.core.Client, Generic[RepositoryT]):
    """A Tilde client with the data layer: ``repository("org/repo")``, sessions, objects and commits.

    Generic over the repository class its handles are built with (`repository_class`): ``Client()`` is a
    ``Client[Repository]``; ``tilde.Client`` is a ``tilde.data.Client[tilde.Repository]``, so type checkers
    know that its handles (from `repository`, `repositories` and organizations) have compute and admin
    features.

    Accepts every argument of `tilde.core.Client`, plus the upload settings. One plugin manager serves both
    layers: by default `tilde.data.plugins.make_plugin_manager` (auth providers and upload strategies).

    Args:
        endpoint_url: See `tilde.core.Client`.
        api_key: See `tilde.core.Client`.
        default_sandbox_image: See `tilde.core.Client`.
        credentials_provider: See `tilde.core.Client`.
        extra_user_agent: See `tilde.core.Client`.
        http_client: See `tilde.core.Client`.
        httpx_client: See `tilde.core.Client`.
        timeout: See `tilde.core.Client`.
        max_retries: See `tilde.core.Client`.
        plugin_manager: Where auth providers and upload strategies come from; one without the upload hooks
            gets them (and the built-in strategies) added on first upload.
        upload_threshold: Objects of known size below this many bytes are uploaded in one presigned PUT;
            larger ones and streams of unknown size use multipart (default 64 MiB).
        multipart_part_size: Bytes per multipart part (default 64 MiB).
        max_parts_in_flight: Parts uploaded concurrently, which also bounds the memory an upload holds to
            ``max_parts_in_flight * multipart_part_size`` (default 8).

    Example:
        >>> client = Client(endpoint_url="http://127.0.0.1:8080", api_key="tuk-…")  # doctest: +SKIP
        >>> with client.repository("acme/data").session() as session:  # doctest: +SKIP
        ...     session.objects.put("hello.txt", b"hi")
        ...     session.commit("say hi")

    """

    #: The class `repository` and `tilde.data.Repositories` build handles with (the facade overrides it). A
    #: subclass that sets it also names it as the type argument: ``class C(Client[MyRepository])``.
    repository_class: ClassVar[type[Repository]] = Repository

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        api_key: str | None = None,
        default_sandbox_image: str | None = None,
        credentials_provider: CredentialsProvider | None = None,
        extra_user_agent: str | None = None,
        http_client: httpx.Client | None = None,
        httpx_client: httpx.Client | None = None,
        timeout: float | httpx.Timeout | None = None,
        max_retries: int = 2,
        plugin_manager: pluggy.PluginManager | None = None,
        upload_threshold: int = DEFAULT_UPLOAD_THRESHOLD,
        multipart_part_size: int = DEFAULT_PART_SIZE,
        max_parts_in_flight: int = DEFAULT_MAX_PARTS_IN_FLIGHT,
    ) -> None:
        # Validate before the base class opens connections, so a bad setting leaks nothing.
        self._upload_settings = UploadSettings(
            threshold=upload_threshold, part_size=multipart_part_size, max_parts_in_flight=max_parts_in_flight
        )
        super().__init__(
            endpoint_url=endpoint_url,
            api_key=api_key,
            default_sandbox_image=default_sandbox_image,
            credentials_provider=credentials_provider,
            extra_user_agent=extra_user_agent,
            http_client=http_client,
            httpx_client=httpx_client,
            timeout=timeout,
            max_retries=max_retries,
            plugin_manager=plugin_manager if plugin_manager is not None else make_plugin_manager(),
        )
        #: Set after a server answers 501 to a multipart call; later uploads go straight to a single PUT.
        self._multipart_unsupported = False
        self._strategies: list[UploadStrategy] | None = None
        self._strategies_lock = threading.Lock()

    def __enter__(self) -> Self:
        # Typed here so that ``with tilde.Client() as client:`` keeps the subclass (and its repositories).
        return self

    @property
    def upload_settings(self) -> UploadSettings:
        """The settings the built-in upload strategies use (replace it to change them)."""
        return self._upload_settings

    @upload_settings.setter
    def upload_settings(self, settings: UploadSettings) -> None:
        self._upload_settings = settings

    def repository(self, repo_path: str) -> RepositoryT:
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
        check_org(org)
        check_repository(name)
        # A ClassVar cannot mention the type parameter; the class's type argument is its repository_class.
        return cast("RepositoryT", self.repository_class(self, org, name))

    def repositories(self, org: str) -> Repositories[RepositoryT]:
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
                manager = self._plugin_manager
                if not hasattr(manager.hook, "tilde_register_upload_strategies"):
                    manager.add_hookspecs(UploadStrategySpec)
                    manager.register(builtin_upload_strategies)
                self._strategies = collect_upload_strategies(manager)
            return list(self._strategies)
