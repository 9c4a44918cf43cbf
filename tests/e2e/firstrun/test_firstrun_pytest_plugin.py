"""The pytest plugin shipped with tilde-server: the testing guide's example runs as a user's test suite."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "testing.md"


def _example() -> str:
    """The guide's example test module (the first Python block after "## Example")."""
    text = GUIDE.read_text(encoding="utf-8").split("## Example", 1)[1]
    found = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert found is not None
    return found.group(1)


def test_the_plugin_is_registered_as_a_pytest11_entry_point() -> None:
    entry_points = {e.name: e.value for e in importlib.metadata.entry_points(group="pytest11")}
    assert entry_points.get("tilde") == "tilde.server.pytest_plugin"


def test_the_guides_example_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=_example())
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=3)


def test_each_test_gets_its_own_server_and_the_fixtures_are_listed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_isolation="""
        import pytest

        @pytest.mark.parametrize("n", [1, 2])
        def test_fresh(tilde_server, tilde_repo_factory, n):
            assert list(tilde_server.client.organizations.list()) == []
            repo = tilde_repo_factory("same-name")
            assert repo.name == "same-name"
            assert (tilde_server.data_dir / "admin_key").exists()
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    listed = pytester.runpytest_subprocess("--fixtures", "-p", "no:cacheprovider")
    listed.stdout.fnmatch_lines(["*tilde_server*", "*tilde_client*", "*tilde_repo_factory*"])
