"""``tilde org`` and ``tilde repo`` against a real server."""

from __future__ import annotations

import json

from cli_helpers import Cli, unique_name


def test_org_create_and_list(cli: Cli) -> None:
    name = unique_name("org")
    assert (
        f"Created organization {name}" in cli.ok("org", "create", name, "--display-name", "Acme Corp").stdout
    )

    rows = json.loads(cli.ok("org", "list", "--json").stdout)
    mine = [row for row in rows if row["name"] == name]
    assert len(mine) == 1
    assert mine[0]["display_name"] == "Acme Corp"
    assert set(mine[0]) == {"id", "name", "display_name", "created_at"}
    assert f"{name}\tAcme Corp" in cli.ok("org", "list").stdout


def test_org_create_refuses_an_invalid_or_taken_name(cli: Cli, org_name: str) -> None:
    assert "HTTP 400" in cli.fails("org", "create", "Not Valid!")
    assert "HTTP 409" in cli.fails("org", "create", org_name)


def test_repo_create_list_delete(cli: Cli, org_name: str) -> None:
    cli.ok("repo", "create", f"{org_name}/alpha", "--description", "first one")
    cli.ok("repo", "create", f"{org_name}/beta")

    rows = json.loads(cli.ok("repo", "list", org_name, "--json").stdout)
    assert [row["name"] for row in rows] == ["alpha", "beta"]
    assert rows[0]["description"] == "first one"
    assert {"name", "id", "visibility", "created_at"} <= set(rows[0])
    assert f"{org_name}/alpha\tprivate\tfirst one" in cli.ok("repo", "list", org_name).stdout

    # Without --yes it asks; "n" keeps the repository.
    declined = cli("repo", "delete", f"{org_name}/beta", input="n\n")
    assert declined.exit_code == 1
    assert [r["name"] for r in json.loads(cli.ok("repo", "list", org_name, "--json").stdout)] == [
        "alpha",
        "beta",
    ]

    cli.ok("repo", "delete", f"{org_name}/beta", input="y\n")
    cli.ok("repo", "delete", f"{org_name}/alpha", "--yes")
    assert json.loads(cli.ok("repo", "list", org_name, "--json").stdout) == []


def test_repo_bad_input_is_one_line(cli: Cli, org_name: str) -> None:
    assert "not found (404)" in cli.fails("repo", "list", unique_name("no-such-org"))
    assert "not found (404)" in cli.fails("repo", "delete", f"{org_name}/missing", "--yes")
    assert "invalid repository name 'Bad_Name'" in cli.fails("repo", "create", f"{org_name}/Bad_Name")
    usage = cli("repo", "create", "no-slash")
    assert usage.exit_code == 2
    assert "expected ORG/REPO" in usage.stderr


def test_invalid_names_are_one_line_before_any_request(cli: Cli) -> None:
    assert "invalid repository name 'Bad_Name'" in cli.fails("ls", "tilde://acme/Bad_Name/")
    assert "invalid organization name 'Acme'" in cli.fails("log", "Acme/data")
    assert "invalid repository name 'x'" in cli.fails("cp", "tilde://acme/x/a", "tilde://acme/x/b")
