"""The server's plugin manager: built-in generator, third-party generators and entry-point loading."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from tilde.server.iam import PolicyGenerationError, generate_policy, hookimpl, make_server_plugin_manager
from tilde.server.iam import plugins as plugins_module
from tilde.server.iam.plugins import BUILTIN_GENERATOR_NAME, ENTRY_POINT_GROUP, PluginLoadError

PLUGIN_SOURCE = """
from tilde.server.iam.hookspecs import hookimpl

@hookimpl
def tilde_server_generate_policy(prompt):
    return "# from {name}\\nGetObject(repository=\\"{name}\\")\\n"
"""


@pytest.fixture
def fake_entry_points(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., None]:
    """Install generator plugin modules under tmp_path and make them the only server entry points."""

    def install(*names: str, broken: str | None = None) -> None:
        points = []
        for name in names:
            module = f"fake_tilde_server_plugin_{name.replace('-', '_')}"
            source = "raise ImportError('missing dependency')\n" if name == broken else PLUGIN_SOURCE
            (tmp_path / f"{module}.py").write_text(source.replace("{name}", name))
            points.append(EntryPoint(name=name, value=module, group=ENTRY_POINT_GROUP))
        monkeypatch.syspath_prepend(str(tmp_path))

        def entry_points(*, group: str) -> list[EntryPoint]:
            assert group == "tilde_server.plugins"
            return points

        monkeypatch.setattr(plugins_module, "entry_points", entry_points)

    return install


class FixedGenerator:
    def __init__(self, answer: object) -> None:
        self.answer = answer
        self.prompts: list[str] = []

    @hookimpl
    def tilde_server_generate_policy(self, prompt: str) -> object:
        self.prompts.append(prompt)
        return self.answer


class FailingGenerator:
    @hookimpl
    def tilde_server_generate_policy(self, prompt: str) -> str | None:
        raise RuntimeError("upstream said: token sk-not-for-clients")


def test_builtin_generator_is_registered_through_the_hook() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False)
    assert manager.project_name == "tilde_server"
    assert manager.get_plugin(BUILTIN_GENERATOR_NAME) is not None
    implementations = manager.hook.tilde_server_generate_policy.get_hookimpls()
    assert [impl.plugin_name for impl in implementations] == [BUILTIN_GENERATOR_NAME]
    assert implementations[0].trylast


def test_each_call_builds_an_independent_manager() -> None:
    first = make_server_plugin_manager(load_entrypoints=False)
    second = make_server_plugin_manager(load_entrypoints=False, plugins=[FixedGenerator("ListGroups()\n")])
    assert generate_policy("admin", second) == "ListGroups()\n"
    assert "*()" in generate_policy("admin", first)


def test_third_party_generator_wins_over_the_builtin() -> None:
    plugin = FixedGenerator("# mine\nListRepositories()\n")
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[plugin])
    assert generate_policy("read-only access", manager) == "# mine\nListRepositories()\n"
    assert plugin.prompts == ["read-only access"]


def test_generator_returning_none_falls_through_to_the_builtin() -> None:
    plugin = FixedGenerator(None)
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[plugin])
    assert "*()" in generate_policy("admin", manager)
    assert plugin.prompts == ["admin"]


def test_invalid_text_from_a_plugin_is_a_502_naming_the_first_error() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[FixedGenerator("GetObjet()\n")])
    with pytest.raises(PolicyGenerationError) as caught:
        generate_policy("anything", manager)
    assert caught.value.status == 502
    assert "line 1, column 1: unknown action 'GetObjet'" in caught.value.message


def test_non_text_from_a_plugin_is_a_502() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[FixedGenerator(42)])
    with pytest.raises(PolicyGenerationError) as caught:
        generate_policy("anything", manager)
    assert caught.value.status == 502


def test_failing_plugin_is_a_502_without_its_message() -> None:
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[FailingGenerator()])
    with pytest.raises(PolicyGenerationError) as caught:
        generate_policy("admin", manager)
    assert caught.value.status == 502
    assert "RuntimeError" in caught.value.message
    assert "sk-not-for-clients" not in caught.value.message


def test_entry_point_plugins_load_and_win(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("alpha")
    manager = make_server_plugin_manager(environ={})
    assert manager.get_plugin("alpha") is not None
    assert generate_policy("admin", manager) == '# from alpha\nGetObject(repository="alpha")\n'


def test_entry_points_are_skipped_when_not_asked_for(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("alpha")
    manager = make_server_plugin_manager(load_entrypoints=False, environ={})
    assert manager.get_plugin("alpha") is None


@pytest.mark.parametrize(
    ("setting", "loaded"),
    [
        (None, {"alpha", "beta"}),
        ("beta", {"beta"}),
        (" alpha , beta ", {"alpha", "beta"}),
        ("", set()),
        ("gamma", set()),
    ],
)
def test_tilde_server_plugins_filters_entry_points(
    fake_entry_points: Callable[..., None], setting: str | None, loaded: set[str]
) -> None:
    fake_entry_points("alpha", "beta")
    environ = {} if setting is None else {"TILDE_SERVER_PLUGINS": setting}
    manager = make_server_plugin_manager(environ=environ)
    assert {name for name in ("alpha", "beta") if manager.get_plugin(name) is not None} == loaded
    assert manager.get_plugin(BUILTIN_GENERATOR_NAME) is not None  # built-ins always load


def test_filter_reads_the_process_environment_by_default(
    fake_entry_points: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_entry_points("alpha", "beta")
    monkeypatch.setenv("TILDE_SERVER_PLUGINS", "alpha")
    manager = make_server_plugin_manager()
    assert manager.get_plugin("alpha") is not None
    assert manager.get_plugin("beta") is None


def test_broken_plugin_raises_naming_it(fake_entry_points: Callable[..., None]) -> None:
    fake_entry_points("alpha", "broken", broken="broken")
    with pytest.raises(PluginLoadError, match=r"'broken'.*missing dependency"):
        make_server_plugin_manager(environ={})
    # Filtered out, it is never imported.
    manager = make_server_plugin_manager(environ={"TILDE_SERVER_PLUGINS": "alpha"})
    assert manager.get_plugin("alpha") is not None
