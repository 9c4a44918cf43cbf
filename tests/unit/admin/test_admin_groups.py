"""Groups on the wire (CONTRACT 4.9, #66-#73): requests sent, answers read, reprs and quirks."""

from __future__ import annotations

from datetime import datetime, timezone

import respx
from admin_helpers import ORG, body_of, query_of

from tilde.admin import Attachment, EffectiveGroup, Group, GroupMember, GroupMembers, Groups, Organization

GROUPS = f"{ORG}/groups"
GID = "0b7e0000-0000-4000-8000-00000000c0de"

GROUP = {
    "id": GID,
    "organization_id": "org-1",
    "name": "engineers",
    "description": "Engineering team",
    "created_by_type": "user",
    "created_by": "u-1",
    "created_at": "2026-05-01T10:00:00Z",
}
DETAIL = {
    "group": GROUP,
    "members": [
        {
            "subject_type": "user",
            "subject_id": "u-2",
            "display_name": "Alice",
            "username": "alice",
            "added_at": "2026-05-02T10:00:00.123456789Z",
        },
        {"subject_type": "agent", "subject_id": "a-1", "display_name": None, "username": None},
    ],
    "attachments": [
        {
            "policy_id": "9011c100-0000-4000-8000-000000000001",
            "policy_name": "read-only",
            "is_builtin": True,
            "principal_type": "group",
            "principal_id": GID,
            "principal_name": "engineers",
            "attached_by_type": "user",
            "attached_by": "u-1",
            "attached_at": "2026-05-03T00:00:00+02:00",
        }
    ],
}


def test_org_groups_is_a_new_collection_each_time(org: Organization) -> None:
    assert isinstance(org.groups, Groups)
    assert org.groups is not org.groups
    assert repr(org.groups) == "Groups(org='acme')"


def test_list_is_paginated_and_sends_amount_and_after(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(GROUPS)
    route.side_effect = [
        respx.MockResponse(
            200,
            json={"results": [GROUP], "pagination": {"has_more": True, "next_offset": "engineers"}},
        ),
        respx.MockResponse(200, json={"results": [{**GROUP, "id": "g2", "name": "ops"}]}),
    ]
    groups = list(org.groups.list(page_size=1, after="a"))
    assert [g.name for g in groups] == ["engineers", "ops"]
    assert all(isinstance(g, Group) for g in groups)
    assert query_of(route.calls[0]) == {"amount": "1", "after": "a"}
    assert query_of(route.calls[1]) == {"amount": "1", "after": "engineers"}
    first = groups[0]
    assert (first.id, first.organization_id, first.description) == (GID, "org-1", "Engineering team")
    assert (first.created_by_type, first.created_by) == ("user", "u-1")
    assert first.created_at == datetime(2026, 5, 1, 10, tzinfo=timezone.utc)
    assert first.attachments == []  # list items carry no attachments
    assert repr(first) == "Group('engineers')"


def test_list_amount_caps_and_zero_sends_nothing(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(GROUPS).respond(json={"results": [GROUP, GROUP, GROUP]})
    assert len(list(org.groups.list(amount=2))) == 2
    assert list(org.groups.list(amount=0)) == []
    assert route.call_count == 1


def test_get_reads_the_wrapped_body_with_attachments(org: Organization, router: respx.MockRouter) -> None:
    router.get(f"{GROUPS}/{GID}").respond(json=DETAIL)
    group = org.groups.get(GID)
    assert (group.id, group.name) == (GID, "engineers")
    [attachment] = group.attachments
    assert attachment == Attachment(
        policy_id="9011c100-0000-4000-8000-000000000001",
        policy_name="read-only",
        is_builtin=True,
        principal_type="group",
        principal_id=GID,
        principal_name="engineers",
        attached_by_type="user",
        attached_by="u-1",
        attached_at=datetime(2026, 5, 2, 22, tzinfo=timezone.utc),
    )
    group.attachments.clear()  # a copy: the group keeps its own
    assert len(group.attachments) == 1


def test_create_sends_description_only_when_set(org: Organization, router: respx.MockRouter) -> None:
    route = router.post(GROUPS).respond(201, json=GROUP)
    created = org.groups.create("engineers", description="Engineering team")
    plain = org.groups.create("engineers")
    assert isinstance(created, Group)
    assert created.id == GID
    assert plain.name == "engineers"
    assert body_of(route.calls[0]) == {"name": "engineers", "description": "Engineering team"}
    assert body_of(route.calls[1]) == {"name": "engineers"}


def test_update_returns_a_new_group_and_sends_only_given_fields(
    org: Organization, router: respx.MockRouter
) -> None:
    route = router.put(f"{GROUPS}/{GID}").respond(json={**GROUP, "name": "engineering"})
    group = Group.from_dict(org._client, "acme", GROUP)
    updated = group.update(name="engineering")
    assert updated is not group
    assert (updated.name, group.name) == ("engineering", "engineers")
    assert body_of(route.calls[0]) == {"name": "engineering"}
    group.update(name="x", description="")
    assert body_of(route.calls[1]) == {"name": "x", "description": ""}


def test_delete_from_collection_and_entity(org: Organization, router: respx.MockRouter) -> None:
    route = router.delete(f"{GROUPS}/{GID}").respond(204)
    assert org.groups.delete(GID) is None
    Group.from_dict(org._client, "acme", GROUP).delete()
    assert route.call_count == 2


def test_members_list_re_reads_the_group(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(f"{GROUPS}/{GID}").respond(json=DETAIL)
    members = Group.from_dict(org._client, "acme", GROUP).members
    assert isinstance(members, GroupMembers)
    assert repr(members) == f"GroupMembers(group_id='{GID}')"
    listing = members.list()
    assert route.call_count == 0  # lazy
    alice, agent = list(listing)
    assert alice == GroupMember(
        subject_type="user",
        subject_id="u-2",
        display_name="Alice",
        username="alice",
        added_at=datetime(2026, 5, 2, 10, 0, 0, 123456, tzinfo=timezone.utc),
    )
    assert (agent.display_name, agent.username, agent.added_at) == ("", "", None)
    assert query_of(route.calls[0]) == {}  # no paging parameters: the group carries all its members
    assert [m.subject_id for m in members.list(amount=1)] == ["u-2"]


def test_members_create_posts_then_returns_the_re_read_member(
    org: Organization, router: respx.MockRouter
) -> None:
    post = router.post(f"{GROUPS}/{GID}/members").respond(201, json={"ignored": True})
    get = router.get(f"{GROUPS}/{GID}").respond(json=DETAIL)
    member = org.groups.get(GID).members.create(subject_type="user", subject_id="u-2")
    assert body_of(post.calls[0]) == {"subject_type": "user", "subject_id": "u-2"}
    assert member.username == "alice"
    assert get.call_count == 2  # the get above, then the re-read


def test_members_create_falls_back_to_a_bare_member(org: Organization, router: respx.MockRouter) -> None:
    router.post(f"{GROUPS}/{GID}/members").respond(201)
    router.get(f"{GROUPS}/{GID}").respond(json={"group": GROUP})  # no members key at all
    members = GroupMembers(org._client, "acme", GID)
    member = members.create(subject_type="role", subject_id="r-9")
    assert member == GroupMember(subject_type="role", subject_id="r-9")
    assert repr(member) == "GroupMember(subject_type='role', subject_id='r-9')"


def test_members_delete_sends_the_subject_in_the_query(org: Organization, router: respx.MockRouter) -> None:
    route = router.delete(f"{GROUPS}/{GID}/members").respond(204)
    GroupMembers(org._client, "acme", GID).delete(subject_type="group", subject_id="g-2")
    assert query_of(route.calls[0]) == {"subject_type": "group", "subject_id": "g-2"}
    assert route.calls[0].request.content == b""


def test_effective_groups_is_a_plain_list(org: Organization, router: respx.MockRouter) -> None:
    route = router.get(f"{ORG}/effective-groups").respond(
        json={
            "results": [
                {"group_id": "g1", "group_name": "eng", "description": "", "source": "direct"},
                {
                    "group_id": "g0",
                    "group_name": "all",
                    "description": "everyone",
                    "source": "group",
                    "source_name": "eng",
                },
                "not an object",
            ]
        }
    )
    by_position = org.groups.effective("user", "u-2")
    by_keyword = org.groups.effective(principal_type="user", principal_id="u-2")
    assert isinstance(by_position, list)
    assert (
        by_position
        == by_keyword
        == [
            EffectiveGroup(group_id="g1", group_name="eng", source="direct"),
            EffectiveGroup(
                group_id="g0", group_name="all", description="everyone", source="group", source_name="eng"
            ),
        ]
    )
    assert query_of(route.calls[0]) == {"principal_type": "user", "principal_id": "u-2"}
    assert repr(by_position[0]) == "EffectiveGroup(group_id='g1', group_name='eng', source='direct')"


def test_effective_groups_without_results_is_empty(org: Organization, router: respx.MockRouter) -> None:
    router.get(f"{ORG}/effective-groups").respond(json={})
    assert org.groups.effective("agent", "a-1") == []


def test_group_from_dict_tolerates_nulls_and_missing_fields(org: Organization) -> None:
    group = Group.from_dict(org._client, "acme", {"id": "g", "name": None, "created_at": "not a time"})
    assert (group.id, group.name, group.description, group.created_at) == ("g", "", "", None)
    assert Group(org._client, "acme").attachments == []
    assert GroupMember.from_dict({}) == GroupMember()
    assert repr(GroupMember()) == "GroupMember()"
    assert EffectiveGroup.from_dict({"source": None}) == EffectiveGroup()
