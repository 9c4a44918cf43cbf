"""The facade's surface beyond its shortcuts: ``tilde.Repository``, the lazily loaded compatibility modules
(``tilde.models``, ``tilde.exceptions``, ``tilde.client``, ``tilde.resources.*``), and every path to a
repository handle building the client's repository class."""

from __future__ import annotations

import importlib
import subprocess
import sys
import time

import pytest

import tilde
import tilde.admin
import tilde.compute
import tilde.data
from tilde._composed import Repository as ComposedRepository

UNREACHABLE = "http://127.0.0.1:9"

RESOURCES = {
    "agents": ["Agent", "Agents"],
    "api_keys": ["APIKey", "APIKeys"],
    "commits": ["Commit", "Commits"],
    "connectors": ["Connector", "Connectors", "RepositoryConnectors"],
    "groups": ["EffectiveGroup", "Group", "GroupMember", "GroupMembers", "Groups"],
    "imports": ["ImportJob", "Imports"],
    "members": ["Member", "Members"],
    "objects": ["ReadOnlyObjects", "SessionObjects"],
    "organizations": ["Organization", "Organizations"],
    "policies": [
        "Attachment",
        "EffectivePolicy",
        "Policies",
        "Policy",
        "ValidationError",
        "ValidationResult",
    ],
    "repositories": ["Repositories", "Repository"],
    "roles": ["Role", "Roles"],
    "sandbox_triggers": [
        "SandboxTrigger",
        "SandboxTriggerCondition",
        "SandboxTriggerConfig",
        "SandboxTriggerRun",
        "SandboxTriggerRuns",
        "SandboxTriggers",
    ],
    "sandboxes": ["LogStream", "Sandbox", "SandboxStatus", "Sandboxes"],
    "secrets": ["Secret", "Secrets"],
    "sessions": ["Session"],
    "shell": ["OutputStream", "RunResult", "Shell"],
}


def test_repository_is_exported_for_annotations() -> None:
    assert "Repository" in tilde.__all__
    assert tilde.Repository is ComposedRepository
    assert tilde.Repository is tilde.models.Repository
    assert isinstance(tilde.repository("oo/rr"), tilde.Repository)


def test_entity_names_other_than_repository_stay_off_the_top_level() -> None:
    # The published surface keeps entities in tilde.models; Repository is the one the issue asks for.
    for name in ("Organization", "Session", "Commit", "Agent", "Sandbox"):
        assert not hasattr(tilde, name)


def test_compatibility_modules_are_attributes_after_a_bare_import_and_stay_lazy() -> None:
    code = (
        "import sys, tilde\n"
        "heavy = [m for m in ('tilde.data', 'tilde.compute', 'tilde.admin', 'httpx') if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "assert tilde.exceptions.NotFoundError is tilde.NotFoundError\n"
        "assert tilde.models.Repository is tilde.Repository\n"
        "assert tilde.client.Client is tilde.Client\n"
        "assert tilde.resources.__name__ == 'tilde.resources'\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.parametrize(("module_name", "names"), sorted(RESOURCES.items()))
def test_resources_modules_re_export_the_same_classes(module_name: str, names: list[str]) -> None:
    module = importlib.import_module(f"tilde.resources.{module_name}")
    for name in names:
        assert getattr(module, name) is getattr(tilde.models, name), name
    assert set(names) <= set(module.__all__)


def test_resources_keep_the_names_tests_of_earlier_releases_reach_for() -> None:
    from tilde.resources import objects, sessions, shell

    assert sessions.time is time  # patching sessions.time.sleep patches time.sleep, which commit() calls
    frames = [
        shell._FRAME_LAUNCH,
        shell._FRAME_STDIN,
        shell._FRAME_STDIN_CLOSE,
        shell._FRAME_STDOUT,
        shell._FRAME_STDERR,
        shell._FRAME_EXIT,
    ]
    assert frames == [0, 1, 2, 3, 4, 5]
    assert objects.SINGLE_UPLOAD_LIMIT == objects.MULTIPART_PART_SIZE == 64 * 1024 * 1024
    assert objects.ObjectReader is tilde.data.ObjectReader
    assert not hasattr(shell, "ws_connect")  # documented as not supported: patching it would change nothing


@pytest.mark.parametrize(
    ("client_class", "repository_class"),
    [
        (tilde.Client, tilde.Repository),
        (tilde.admin.Client, tilde.admin.Repository),
        (tilde.compute.Client, tilde.compute.Repository),
        (tilde.data.Client, tilde.data.Repository),
    ],
)
def test_every_path_to_a_handle_builds_the_clients_repository_class(
    client_class: type[tilde.data.Client], repository_class: type[tilde.data.Repository]
) -> None:
    with client_class(endpoint_url=UNREACHABLE, api_key="k") as client:
        assert type(client.repository("acme/data")) is repository_class
        assert type(client.repositories("acme").get("data")) is repository_class
        built = client.repositories("acme")._repository_class.from_dict(
            client, "acme", {"name": "d", "id": "1"}
        )
        assert type(built) is repository_class
        if isinstance(client, tilde.admin.AdminClientMixin):
            organization = tilde.admin.Organization(client, name="acme")
            assert type(organization.repositories.get("data")) is repository_class


def test_with_enters_as_the_subclass() -> None:
    with tilde.Client(endpoint_url=UNREACHABLE, api_key="k") as client:
        assert type(client) is tilde.Client
