"""The policies guide: every ``policy`` example validates, and the plugin example works as described."""

from __future__ import annotations

import re
import types
from pathlib import Path

import pytest

from tilde.server.iam import (
    ACTIONS,
    BUILTIN_POLICIES,
    generate_policy,
    make_server_plugin_manager,
    validate_policy,
)
from tilde.server.iam.generate import builtin_generate

GUIDE = Path(__file__).resolve().parents[3] / "docs" / "guides" / "policies.md"
_BLOCK = re.compile(r"^```(?P<lang>\S*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [m["body"] for m in _BLOCK.finditer(GUIDE.read_text(encoding="utf-8")) if m["lang"] == language]


def test_guide_has_policy_examples() -> None:
    assert len(blocks("policy")) >= 5


@pytest.mark.parametrize("index", range(len(blocks("policy"))))
def test_policy_examples_validate(index: int) -> None:
    assert validate_policy(blocks("policy")[index]) == []


def test_generated_example_is_what_the_generator_says() -> None:
    (example,) = [b for b in blocks("policy") if b.startswith("# generated from:")]
    prompt = example.splitlines()[0].removeprefix("# generated from: ")
    generated = builtin_generate(prompt)
    assert generated is not None
    # The guide shortens the output: each line it shows is there, in the same order.
    lines = generated.splitlines()
    positions = [lines.index(line) for line in example.splitlines()]
    assert positions == sorted(positions)


def _granted(name: str) -> set[str]:
    return set(re.findall(r"^(\w+)\(\)$", BUILTIN_POLICIES[name].policy_text, re.MULTILINE))


def test_builtin_table_lists_every_granted_action() -> None:
    rows = {
        line.split("`")[1]: set(re.findall(r"`(\w+)`", line))
        for line in GUIDE.read_text(encoding="utf-8").splitlines()
        if line.startswith("| `")
    }
    assert rows["ReadOnly"] - {"ReadOnly"} == _granted("ReadOnly")
    # ReadWrite's row names ReadOnly and then only what it adds.
    assert (rows["ReadWrite"] - {"ReadWrite", "ReadOnly"}) | _granted("ReadOnly") == _granted("ReadWrite")
    assert _granted("ReadWrite") <= set(ACTIONS)


def test_plugin_example_runs_as_described() -> None:
    (source,) = [b for b in blocks("python") if "tilde_server_generate_policy" in b]
    module = types.ModuleType("guide_team_policies")
    exec(compile(source, str(GUIDE), "exec"), module.__dict__)
    manager = make_server_plugin_manager(load_entrypoints=False, plugins=[module])
    assert generate_policy("policy for team analysts", manager) == module.TEAMS["analysts"]
    assert "*()" in generate_policy("admin", manager)  # other sentences reach the built-in generator


def test_actions_section_links_to_the_reference() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    section = text.split("\n## Actions\n", 1)[1]
    assert "(../reference/actions.md)" in section
