"""``tilde.models``: exactly the upstream surface's 58 model names, each a distribution's own class."""

from __future__ import annotations

import tilde
import tilde.admin
import tilde.compute
import tilde.core
import tilde.data
import tilde.models

# The 58 names upstream's tilde.models exports.
UPSTREAM_MODEL_NAMES = {
    "APIKey", "APIKeys", "Agent", "Agents", "Attachment", "Commit", "CommitResult", "Commits", "Connector",
    "Connectors", "CopyObjectResult", "EffectiveGroup", "EffectivePolicy", "Entry", "EntryRecord", "Group",
    "GroupMember", "GroupMembers", "Groups", "ImportJob", "Imports", "ListingEntry", "LogStream", "Member",
    "Members", "ObjectMetadata", "Organization", "Organizations", "OutputStream", "Policies", "Policy",
    "PutObjectResult", "ReadOnlyObjects", "Repositories", "Repository", "RepositoryConnectors", "Role",
    "Roles", "RunResult", "Sandbox", "SandboxCredentials", "SandboxCredentialsProvider", "SandboxStatus",
    "SandboxTrigger", "SandboxTriggerCondition", "SandboxTriggerConfig", "SandboxTriggerRun",
    "SandboxTriggerRuns", "SandboxTriggers", "Sandboxes", "Secret", "Secrets", "Session", "SessionObjects",
    "Shell", "SourceMetadata", "ValidationError", "ValidationResult",
}  # fmt: skip

ADMIN_IAM_NAMES = {
    "APIKey", "APIKeys", "Agent", "Agents", "Attachment", "EffectiveGroup", "EffectivePolicy", "Group",
    "GroupMember", "GroupMembers", "Groups", "Policies", "Policy", "Role", "Roles", "ValidationError",
    "ValidationResult",
}  # fmt: skip


def test_upstream_list_has_58_names() -> None:
    assert len(UPSTREAM_MODEL_NAMES) == 58
    assert ADMIN_IAM_NAMES <= UPSTREAM_MODEL_NAMES


def test_models_exports_exactly_the_upstream_names() -> None:
    assert set(tilde.models.__all__) == UPSTREAM_MODEL_NAMES
    assert len(tilde.models.__all__) == 58
    assert list(tilde.models.__all__) == sorted(tilde.models.__all__)
    for name in UPSTREAM_MODEL_NAMES:
        assert hasattr(tilde.models, name), name


def test_admin_iam_models_come_from_tilde_admin() -> None:
    for name in ADMIN_IAM_NAMES:
        assert getattr(tilde.models, name) is getattr(tilde.admin, name), name


def test_validation_error_is_a_value_not_an_exception() -> None:
    from tilde.models import ValidationError

    assert not issubclass(ValidationError, BaseException)
    assert not issubclass(ValidationError, tilde.core.errors.TildeError)
    error = ValidationError(line=2, column=5, message="unknown action")
    assert error == ValidationError(2, 5, "unknown action")


def test_models_are_the_distributions_own_classes() -> None:
    for name in tilde.models.__all__:
        value = getattr(tilde.models, name)
        if name == "Repository":
            assert value is tilde.Client.repository_class
            continue
        owners = [
            m for m in (tilde.core, tilde.data, tilde.compute, tilde.admin) if getattr(m, name, None) is value
        ]
        assert owners, f"tilde.models.{name} is not a re-export"


def test_models_keeps_helpers_out() -> None:
    for name in ("ObjectReader", "PaginatedIterator", "Client"):
        assert not hasattr(tilde.models, name)
