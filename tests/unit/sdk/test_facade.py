"""Behaviour of the ``tilde`` facade module: default client, shortcuts, lazy names, exceptions."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import respx

import tilde
import tilde.core.errors
import tilde.exceptions
from tilde.admin import AdminRepositoryMixin, Organizations
from tilde.compute import ComputeRepositoryMixin

UNREACHABLE = "http://127.0.0.1:9"

EXCEPTION_NAMES = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "CommandError",
    "ConfigurationError",
    "ConflictError",
    "ForbiddenError",
    "GoneError",
    "LockedError",
    "NotFoundError",
    "PreconditionFailedError",
    "SandboxError",
    "SerializationError",
    "ServerError",
    "TildeError",
    "TransportError",
]


def test_configure_closes_the_previous_default_client() -> None:
    tilde.configure(api_key="first", endpoint_url=UNREACHABLE)
    first = tilde._get_default_client()
    assert first._config.api_key == "first"

    tilde.configure(api_key="second", endpoint_url=UNREACHABLE)
    second = tilde._get_default_client()

    assert second is not first
    assert second._config.api_key == "second"
    assert first._http.is_closed
    assert not second._http.is_closed


def test_default_client_is_created_lazily_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILDE_API_KEY", "from-env")
    monkeypatch.setenv("TILDE_ENDPOINT_URL", UNREACHABLE)
    assert tilde._default_client is None

    client = tilde._get_default_client()

    assert isinstance(client, tilde.Client)
    assert client._config.api_key == "from-env"
    assert client._config.endpoint_url == UNREACHABLE
    assert tilde._get_default_client() is client


def test_repository_makes_no_request() -> None:
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    # Any request inside this block would fail: no route is mocked and unmocked calls are refused.
    with respx.mock(assert_all_mocked=True) as router:
        repo = tilde.repository("some-org/some-repo")
    assert router.calls.call_count == 0
    assert (repo.org, repo.name) == ("some-org", "some-repo")


def test_repository_is_the_composed_handle() -> None:
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    repo = tilde.repository("oo/rr")
    assert isinstance(repo, ComputeRepositoryMixin)
    assert isinstance(repo, AdminRepositoryMixin)
    assert isinstance(repo, tilde.data.Repository)
    assert type(repo) is tilde.Client.repository_class
    assert repr(repo) == "Repository(oo/rr)"


@pytest.mark.parametrize("bad", ["no-slash", "/repo", "org/", ""])
def test_repository_rejects_a_malformed_path(bad: str) -> None:
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    with pytest.raises(ValueError):
        tilde.repository(bad)


def test_organizations_is_a_live_module_property() -> None:
    assert "organizations" in dir(tilde)
    tilde.configure(api_key="key", endpoint_url=UNREACHABLE)
    with respx.mock(assert_all_mocked=True) as router:
        first = tilde.organizations
        second = tilde.organizations
    assert router.calls.call_count == 0
    assert isinstance(first, Organizations)
    assert first is not second
    assert first._client is tilde._get_default_client()

    # It follows the default client when configure() replaces it.
    tilde.configure(api_key="other", endpoint_url=UNREACHABLE)
    assert tilde.organizations._client is tilde._get_default_client()


def test_dir_lists_every_public_name() -> None:
    public = {name for name in dir(tilde) if not name.startswith("_")}
    # Sub-packages appear once imported; they are modules, not part of the facade's own surface.
    public = {name for name in public if not isinstance(getattr(tilde, name), types.ModuleType)}
    assert public == set(tilde.__all__) - {"__version__"}


@pytest.mark.parametrize("name", EXCEPTION_NAMES)
def test_exceptions_are_the_same_objects_everywhere(name: str) -> None:
    core = getattr(tilde.core.errors, name)
    assert getattr(tilde, name) is core
    assert getattr(tilde.exceptions, name) is core
    assert issubclass(core, tilde.TildeError)


def test_api_error_for_status_is_shared() -> None:
    assert tilde.exceptions.api_error_for_status is tilde.core.errors.api_error_for_status
    assert isinstance(tilde.exceptions.api_error_for_status(404), tilde.NotFoundError)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        _ = tilde.Nope  # type: ignore[attr-defined]


def test_client_has_organizations_and_the_composed_repository() -> None:
    with tilde.Client(api_key="key", endpoint_url=UNREACHABLE) as client:
        assert isinstance(client, tilde.data.Client)
        assert isinstance(client.organizations, Organizations)
        repo = client.repository("oo/rr")
        assert isinstance(repo, tilde.Client.repository_class)
        assert repo._client is client


def test_importing_a_leaf_does_not_load_the_other_layers() -> None:
    # The facade's __init__ runs for every tilde.* import; it must stay cheap and must not drag the SDK into
    # the server (or core into data, compute, admin).
    code = (
        "import sys, tilde.core\n"
        "names = ('tilde.data', 'tilde.compute', 'tilde.admin', 'tilde._composed', 'websockets')\n"
        "loaded = sorted(m for m in names if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


def test_version_is_the_distribution_version() -> None:
    from importlib.metadata import version

    assert tilde.__version__ == version("tilde-sdk")
