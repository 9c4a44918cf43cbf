"""Policies on the wire (CONTRACT 4.9, #74-#84): requests sent, answers read, reprs and quirks."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
import respx
from admin_helpers import ORG, body_of, query_of

import tilde.core
from tilde.admin import (
    Attachment,
    EffectivePolicy,
    Organization,
    Policies,
    Policy,
    ValidationError,
    ValidationResult,
)

POLICIES = f"{ORG}/policies"
PID = "9011c100-0000-4000-8000-000000000001"
TEXT = 'ListRepositories()\nGetObject(repository="data")\n'

POLICY = {
    "id": PID,
    "organization_id": "org-1",
    "name": "read-only",
    "description": "Read-only access",
    "policy_text": TEXT,
    "is_builtin": False,
    "created_by_type": "user",
    "created_by": "u-1",
    "created_at": "2026-05-01T10:00:00Z",
    "updated_at": "2026-05-01T11:00:00Z",
}
SUMMARY = {
    "id": PID,
    "organization_id": "org-1",
    "name": "read-only",
    "description": "",
    "is_builtin": True,
    "created_at": "2026-05-01T10:00:00Z",
    "updated_at": None,
    "attachment_count": 3,
}
ATTACHMENT = {
    "policy_id": PID,
    "policy_name": "read-only",
    "is_builtin": False,
    "principal_type": "agent",
    "principal_id": "a-1",
    "principal_name": "bot",
    "attached_by_type": "user",
    "attached_by": "u-1",
    "attached_at": "2026-05-02T10:00:00Z",
}


def test_org_policies_is_a_new_collection_each_time(org: Organization) -> None:
    assert isinstance(org.policies, Policies)
    assert org.policies is not org.policies
    assert repr(org.policies) == "Policies(org='acme')"


def test_list_yields_summaries(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(POLICIES).respond(json={"results": [SUMMARY], "pagination": {"has_more": False}})
    [policy] = org.policies.list(page_size=50)
    assert isinstance(policy, Policy)
    assert (policy.attachment_count, policy.policy_text, policy.is_builtin) == (3, "", True)
    assert policy.updated_at is None
    assert query_of(route.calls[0]) == {"amount": "50"}
    assert repr(policy) == "Policy('read-only')"


def test_get_reads_policy_and_attachments(org: Organization, router: respx.MockRouter) -> None:
    router.get(f"{POLICIES}/{PID}").respond(json={"policy": POLICY, "attachments": [ATTACHMENT]})
    policy = org.policies.get(PID)
    assert (policy.id, policy.name, policy.policy_text) == (PID, "read-only", TEXT)
    assert (policy.organization_id, policy.created_by_type, policy.created_by) == ("org-1", "user", "u-1")
    assert policy.created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert policy.updated_at == datetime(2026, 5, 1, 11, tzinfo=timezone.utc)
    assert policy.attachment_count == 0
    assert policy.attachments == [Attachment.from_dict(ATTACHMENT)]
    assert policy.attachments[0].principal_name == "bot"
    policy.attachments.append(Attachment())  # a copy
    assert len(policy.attachments) == 1


def test_create_sends_name_text_and_description_only_when_set(
    org: Organization, router: respx.MockRouter
) -> None:
    route = router.post(POLICIES).respond(201, json=POLICY)
    policy = org.policies.create(name="read-only", policy_text=TEXT, description="Read-only access")
    org.policies.create("read-only", TEXT)
    assert policy.policy_text == TEXT
    assert body_of(route.calls[0]) == {
        "name": "read-only",
        "policy_text": TEXT,
        "description": "Read-only access",
    }
    assert body_of(route.calls[1]) == {"name": "read-only", "policy_text": TEXT}


def test_update_returns_a_new_policy(org: Organization, router: respx.MockRouter) -> None:
    route = router.put(f"{POLICIES}/{PID}").respond(json={**POLICY, "policy_text": "GetObject()\n"})
    policy = Policy.from_dict(org._client, "acme", POLICY)
    updated = policy.update(policy_text="GetObject()\n")
    assert updated is not policy
    assert isinstance(updated, Policy)
    assert (updated.policy_text, policy.policy_text) == ("GetObject()\n", TEXT)
    assert body_of(route.calls[0]) == {"policy_text": "GetObject()\n"}
    policy.update(name="n", description="d", policy_text="")
    assert body_of(route.calls[1]) == {"name": "n", "description": "d", "policy_text": ""}


def test_delete_from_collection_and_entity(org: Organization, router: respx.MockRouter) -> None:
    route = router.delete(f"{POLICIES}/{PID}").respond(204)
    org.policies.delete(PID)
    Policy(org._client, "acme", id=PID).delete()
    assert route.call_count == 2


def test_attach_and_detach(org: Organization, router: respx.MockRouter) -> None:
    attach = router.post(f"{POLICIES}/{PID}/attachments").respond(201)
    detach = router.delete(f"{POLICIES}/{PID}/attachments").respond(204)
    policy = Policy(org._client, "acme", id=PID, name="read-only")
    assert policy.attach(principal_type="group", principal_id="g-1") is None
    assert policy.detach(principal_type="group", principal_id="g-1") is None
    assert body_of(attach.calls[0]) == {"principal_type": "group", "principal_id": "g-1"}
    assert query_of(detach.calls[0]) == {"principal_type": "group", "principal_id": "g-1"}
    assert detach.calls[0].request.content == b""


def test_validate_reads_each_error(org: Organization, router: respx.MockRouter) -> None:
    route = router.post(f"{POLICIES}:validate").respond(
        json={
            "valid": False,
            "errors": [
                {"line": 2, "column": 1, "message": "unknown action 'GetObjekt'"},
                {"line": None, "message": "no statements"},
            ],
        }
    )
    result = org.policies.validate("ListRepositories()\nGetObjekt()\n")
    assert result == ValidationResult(
        valid=False,
        errors=[
            ValidationError(line=2, column=1, message="unknown action 'GetObjekt'"),
            ValidationError(message="no statements"),
        ],
    )
    assert body_of(route.calls[0]) == {"policy_text": "ListRepositories()\nGetObjekt()\n"}
    assert route.calls[0].request.url.path == "/api/v1/organizations/acme/policies:validate"


def test_validate_valid_text(org: Organization, router: respx.MockRouter) -> None:
    router.post(f"{POLICIES}:validate").respond(json={"valid": True, "errors": []})
    result = org.policies.validate("GetObject()")
    assert result.valid
    assert result.errors == []
    assert repr(result) == "ValidationResult(valid=True)"


def test_validation_reprs_show_only_what_is_set() -> None:
    assert repr(ValidationResult()) == "ValidationResult()"
    assert repr(ValidationError(line=3, column=7)) == "ValidationError(line=3, column=7)"
    assert ValidationError.from_dict({"line": "4", "column": "x"}) == ValidationError(line=4)


def test_generate_returns_the_text(org: Organization, router: respx.MockRouter) -> None:
    route = router.post(f"{POLICIES}:generate").respond(json={"policy_text": "GetObject()\n"})
    assert org.policies.generate("read-only access") == "GetObject()\n"
    assert body_of(route.calls[0]) == {"prompt": "read-only access"}


def test_generate_without_policy_text_is_a_key_error(org: Organization, router: respx.MockRouter) -> None:
    router.post(f"{POLICIES}:generate").respond(json={})
    with pytest.raises(KeyError):
        org.policies.generate("anything")


def test_attachments_is_a_method_returning_a_list(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(f"{ORG}/attachments").respond(json={"results": [ATTACHMENT, {}]})
    attachments = org.policies.attachments()
    assert isinstance(attachments, list)
    assert attachments == [Attachment.from_dict(ATTACHMENT), Attachment()]
    assert query_of(route.calls[0]) == {}


@pytest.mark.parametrize(
    ("kwargs", "query"),
    [
        (
            {"principal_type": "user", "principal_id": "u-1"},
            {"principal_type": "user", "principal_id": "u-1"},
        ),
        ({"user_id": "u-1"}, {"user_id": "u-1"}),
        ({}, {}),
    ],
)
def test_effective_sends_only_given_filters(
    org: Organization, router: respx.MockRouter, kwargs: dict[str, str], query: dict[str, str]
) -> None:
    route = router.get(f"{ORG}/effective-policies").respond(
        json={
            "results": [
                {"policy_id": PID, "policy_name": "read-only", "is_builtin": False, "source": "direct"},
                {"policy_id": "", "policy_name": "inline", "source": "inline", "source_name": None},
            ]
        }
    )
    effective = org.policies.effective(**kwargs)
    assert effective == [
        EffectivePolicy(policy_id=PID, policy_name="read-only", source="direct"),
        EffectivePolicy(policy_name="inline", source="inline"),
    ]
    assert query_of(route.calls[0]) == query


def test_effective_is_keyword_only(org: Organization) -> None:
    with pytest.raises(TypeError):
        org.policies.effective("user", "u-1")  # type: ignore[misc]


def test_validation_error_is_not_an_exception() -> None:
    assert not issubclass(ValidationError, BaseException)
    assert not issubclass(ValidationError, tilde.core.TildeError)


def test_policy_from_dict_tolerates_nulls(org: Organization) -> None:
    policy = Policy.from_dict(
        org._client, "acme", {"id": PID, "name": None, "is_builtin": None, "attachment_count": None}
    )
    assert (policy.name, policy.is_builtin, policy.attachment_count, policy.attachments) == ("", False, 0, [])
    assert Attachment.from_dict({"attached_at": None}) == Attachment()
    assert repr(Attachment(policy_name="x")) == "Attachment(policy_name='x')"
