from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import httpx
import pytest

from tilde.core import Client, ConfigurationError, StaticTokenProvider, hookimpl, make_plugin_manager
from tilde.core import plugins as plugins_module
from tilde.core.auth import AuthProvider, AuthSettings, collect_auth_providers, resolve_credentials
from tilde.core.credentials import CredentialsProvider

PLUGIN_SOURCE = """
from tilde.core.credentials import StaticTokenProvider
from tilde.core.hookspecs import hookimpl

class Provider:
    name = "{name}"

    def credentials_for(self, settings):
        return StaticTokenProvider("{token}")

@hookimpl
def tilde_register_auth_providers(register):
    register(Provider())
"""


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Install plugin modules under tmp_path and make them the only ``tilde_sdk.plugins`` entry points."""

    def install(*specs: tuple[str, str]) -> None:
        points = []
        for name, token in specs:
            module = f"fake_tilde_plugin_{name.replace('-', '_')}"
            (tmp_path / f"{module}.py").write_text(PLUGIN_SOURCE.format(name=name, token=token))
            points.append(EntryPoint(name=name, value=module, group=plugins_module.ENTRY_POINT_GROUP))
        monkeypatch.syspath_prepend(str(tmp_path))

        def entry_points(*, group: str) -> list[EntryPoint]:
            assert group == "tilde_sdk.plugins"
            return points

        monkeypatch.setattr(plugins_module, "entry_points", entry_points)

    return install


def names(manager_providers: list[AuthProvider]) -> list[str]:
    return [provider.name for provider in manager_providers]


def settings(**kwargs: object) -> AuthSettings:
    values: dict[str, object] = {
        "api_key": None,
        "environ": {},
        "config_file": {},
        "endpoint_url": "http://e",
    }
    values.update(kwargs)
    return AuthSettings(**values)  # type: ignore[arg-type]


def test_builtin_sources_in_resolution_order() -> None:
    manager = make_plugin_manager(load_entry_points=False)
    assert names(collect_auth_providers(manager)) == ["argument", "environment", "config-file", "sandbox"]
    assert manager.project_name == "tilde"


def test_each_builtin_declines_without_its_setting() -> None:
    manager = make_plugin_manager(load_entry_points=False)
    assert resolve_credentials(manager, settings()) is None
    resolved = resolve_credentials(manager, settings(config_file={"api_key": "tuk-f"}))
    assert resolved is not None
    assert resolved.source == "config-file"
    assert resolved.provider.get_token() == "tuk-f"


def test_factory_makes_independent_managers() -> None:
    first = make_plugin_manager(load_entry_points=False)
    second = make_plugin_manager(load_entry_points=False)
    assert first is not second
    first.register(object(), name="only-in-first")
    assert second.get_plugin("only-in-first") is None


class ExtraProvider:
    def __init__(self, name: str, token: str | None) -> None:
        self.name = name
        self.token = token

    def credentials_for(self, settings: AuthSettings) -> CredentialsProvider | None:
        return StaticTokenProvider(self.token) if self.token else None


class ExtraPlugin:
    def __init__(self, provider: ExtraProvider) -> None:
        self.provider = provider

    @hookimpl
    def tilde_register_auth_providers(self, register: Callable[[AuthProvider], None]) -> None:
        register(self.provider)


def test_third_party_providers_sit_between_static_keys_and_sandbox() -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[ExtraPlugin(ExtraProvider("extra", "t"))])
    assert names(collect_auth_providers(manager)) == [
        "argument",
        "environment",
        "config-file",
        "extra",
        "sandbox",
    ]


def test_client_uses_a_given_plugin_manager(monkeypatch: pytest.MonkeyPatch) -> None:
    manager = make_plugin_manager(
        load_entry_points=False, plugins=[ExtraPlugin(ExtraProvider("vault", "tok-vault"))]
    )
    monkeypatch.setenv("TILDE_SANDBOX_CREDENTIALS_URI", "http://169.254.170.2/v1/credentials")
    seen: list[httpx.Request] = []
    http = httpx.Client(
        transport=httpx.MockTransport(lambda r: seen.append(r) or httpx.Response(200, json={}))
    )
    with Client(plugin_manager=manager, http_client=http) as client:
        client._get_json("/x")
        assert client._plugin_manager is manager
        assert client._credentials_source == "vault"
    assert seen[0].headers["Authorization"] == "Bearer tok-vault"
    # A deliberate key still wins over the plugin.
    with Client(plugin_manager=manager, api_key="tuk-arg", http_client=http) as client:
        assert client._auth_headers()["Authorization"] == "Bearer tuk-arg"
    http.close()


def test_a_declining_plugin_falls_through() -> None:
    manager = make_plugin_manager(load_entry_points=False, plugins=[ExtraPlugin(ExtraProvider("off", None))])
    with Client(plugin_manager=manager) as client:
        assert client._credentials_provider is None


def test_entry_point_plugins_load(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(("alpha", "tok-alpha"), ("beta", "tok-beta"))
    manager = make_plugin_manager()
    assert manager.get_plugin("alpha") is not None
    assert manager.get_plugin("beta") is not None
    # pluggy calls later-registered plugins first
    assert names(collect_auth_providers(manager))[3:5] == ["beta", "alpha"]
    with Client() as client:
        assert client._auth_headers()["Authorization"] == "Bearer tok-beta"


@pytest.mark.parametrize(
    ("value", "loaded"),
    [
        ("alpha", ["alpha"]),
        ("beta, alpha", ["alpha", "beta"]),
        ("", []),
        (" , ", []),
        ("gamma", []),
    ],
)
def test_tilde_plugins_restricts_loading(
    fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch, value: str, loaded: list[str]
) -> None:
    fake_entry_points(("alpha", "tok-alpha"), ("beta", "tok-beta"))
    monkeypatch.setenv("TILDE_PLUGINS", value)
    manager = make_plugin_manager()
    assert sorted(n for n in ("alpha", "beta") if manager.get_plugin(n) is not None) == loaded


def test_tilde_plugins_from_an_explicit_environ(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(("alpha", "tok-alpha"))
    assert make_plugin_manager(environ={"TILDE_PLUGINS": ""}).get_plugin("alpha") is None
    assert make_plugin_manager(environ={}).get_plugin("alpha") is not None
    assert make_plugin_manager(load_entry_points=False).get_plugin("alpha") is None


def test_broken_plugin_is_a_configuration_error(
    fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = EntryPoint(name="broken", value="no_such_module_for_tilde_tests", group="tilde_sdk.plugins")
    monkeypatch.setattr(plugins_module, "entry_points", lambda *, group: [broken])
    with pytest.raises(ConfigurationError, match="broken"):
        make_plugin_manager()
    monkeypatch.setenv("TILDE_PLUGINS", "")
    make_plugin_manager()  # excluded plugins are never imported


def test_loading_twice_does_not_duplicate(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points(("alpha", "tok-alpha"))
    manager = make_plugin_manager()
    assert plugins_module.load_entry_point_plugins(manager) == []
