"""Policies: ``org.policies``, the texts that grant principals their rights, and where they are attached.

A policy is a small text of action statements, one per line (see the policies guide for the language). It
grants nothing until it is attached to a principal: a user, a group, a role or an agent. `Policies.validate`
checks a text without storing it, `Policies.generate` drafts one from a sentence, and `Policies.effective`
reports which policies apply to a principal and why.

`ValidationError` here is a value type (one problem found in a policy text), not an exception.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any

from tilde.admin._collection import fetch, given, item_path, org_path, post, put, unwrap
from tilde.admin._wire import built, results
from tilde.core.names import check_uuid
from tilde.data._timestamps import parse_timestamp
from tilde.data.models import _CompactRepr, _optional_int, _text

if TYPE_CHECKING:
    import tilde.core
    from tilde.core.pagination import PaginatedIterator

__all__ = [
    "Attachment",
    "EffectivePolicy",
    "Policies",
    "Policy",
    "ValidationError",
    "ValidationResult",
]


@dataclass(slots=True, repr=False)
class Attachment(_CompactRepr):
    """A policy attached to a principal.

    Attributes:
        policy_id: The policy's id.
        policy_name: The policy's name.
        is_builtin: Whether the policy is one the server provides.
        principal_type: ``user``, ``group``, ``role`` or ``agent``.
        principal_id: The principal's id.
        principal_name: The principal's name, when the server reports it.
        attached_by_type: The type of the principal that made the attachment.
        attached_by: The id of the principal that made the attachment.
        attached_at: When the attachment was made.

    """

    policy_id: str = ""
    policy_name: str = ""
    is_builtin: bool = False
    principal_type: str = ""
    principal_id: str = ""
    principal_name: str = ""
    attached_by_type: str = ""
    attached_by: str = ""
    attached_at: datetime | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Attachment:
        """Build from an ``AttachmentRecord`` response object.

        Args:
            data: The decoded JSON object.

        Returns:
            The attachment.

        """
        return cls(
            policy_id=_text(data, "policy_id"),
            policy_name=_text(data, "policy_name"),
            is_builtin=bool(data.get("is_builtin")),
            principal_type=_text(data, "principal_type"),
            principal_id=_text(data, "principal_id"),
            principal_name=_text(data, "principal_name"),
            attached_by_type=_text(data, "attached_by_type"),
            attached_by=_text(data, "attached_by"),
            attached_at=parse_timestamp(data.get("attached_at")),
        )


@dataclass(slots=True, repr=False)
class EffectivePolicy(_CompactRepr):
    """A policy that applies to a principal, and how it comes to apply.

    Attributes:
        policy_id: The policy's id (empty for an agent's inline policy).
        policy_name: The policy's name.
        is_builtin: Whether the policy is one the server provides.
        source: ``direct`` (attached to the principal), ``group`` (through a group) or ``inline`` (an agent's
            own policy).
        source_name: The group it comes through, for ``group``.

    """

    policy_id: str = ""
    policy_name: str = ""
    is_builtin: bool = False
    source: str = ""
    source_name: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectivePolicy:
        """Build from an ``EffectivePolicy`` response object.

        Args:
            data: The decoded JSON object.

        Returns:
            The effective policy.

        """
        return cls(
            policy_id=_text(data, "policy_id"),
            policy_name=_text(data, "policy_name"),
            is_builtin=bool(data.get("is_builtin")),
            source=_text(data, "source"),
            source_name=_text(data, "source_name"),
        )


@dataclass(slots=True, repr=False)
class ValidationError(_CompactRepr):
    """One problem in a policy text (a value, not an exception).

    Attributes:
        line: The line of the offending token, from 1.
        column: Its column, from 1.
        message: What is wrong.

    """

    line: int = 0
    column: int = 0
    message: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationError:
        """Build from a ``{line, column, message}`` object.

        Args:
            data: The decoded JSON object.

        Returns:
            The validation error.

        """
        return cls(
            line=_optional_int(data, "line") or 0,
            column=_optional_int(data, "column") or 0,
            message=_text(data, "message"),
        )


@dataclass(slots=True, repr=False)
class ValidationResult(_CompactRepr):
    """The outcome of validating a policy text.

    Attributes:
        valid: Whether the text is a valid policy.
        errors: The problems found (empty when valid).

    """

    valid: bool = False
    errors: list[ValidationError] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ValidationResult:
        """Build from a ``{valid, errors}`` response object.

        Args:
            data: The decoded JSON object.

        Returns:
            The validation result.

        """
        return cls(
            valid=bool(data.get("valid")),
            errors=built(data.get("errors"), ValidationError.from_dict),
        )


class Policy:
    """A policy of an organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.
        id: The policy's id.
        name: Its name.
        description: Its description.
        policy_text: The statements (empty on list items, which are summaries).
        is_builtin: Whether the server provides it.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_at: When it was created.
        updated_at: When it last changed.
        attachment_count: How many principals it is attached to (list items only).
        attachments: Where it is attached (filled by `Policies.get`).

    Attributes:
        id: The policy's id.
        name: Its name.
        description: Its description.
        policy_text: The statements.
        is_builtin: Whether the server provides it.
        organization_id: The organization's id.
        created_by_type: The type of the principal that created it.
        created_by: The id of the principal that created it.
        created_at: When it was created.
        updated_at: When it last changed.
        attachment_count: How many principals it is attached to (list items only).

    """

    def __init__(
        self,
        client: tilde.core.Client,
        org: str,
        *,
        id: str = "",
        name: str = "",
        description: str = "",
        policy_text: str = "",
        is_builtin: bool = False,
        organization_id: str = "",
        created_by_type: str = "",
        created_by: str = "",
        created_at: datetime | None = None,
        updated_at: datetime | None = None,
        attachment_count: int = 0,
        attachments: builtins.list[Attachment] | None = None,
    ) -> None:
        self._client = client
        self._org = org
        self.id = id
        self.name = name
        self.description = description
        self.policy_text = policy_text
        self.is_builtin = is_builtin
        self.organization_id = organization_id
        self.created_by_type = created_by_type
        self.created_by = created_by
        self.created_at = created_at
        self.updated_at = updated_at
        self.attachment_count = attachment_count
        self._attachments = builtins.list(attachments or [])

    @classmethod
    def from_dict(cls, client: tilde.core.Client, org: str, data: Mapping[str, Any]) -> Policy:
        """Build from a ``Policy`` or ``PolicySummary`` object, or a ``{policy, attachments}`` body.

        Args:
            client: The client that fetched it.
            org: The organization's name.
            data: The decoded JSON object.

        Returns:
            The policy.

        """
        policy = unwrap(data, "policy")
        return cls(
            client,
            org,
            id=_text(policy, "id"),
            name=_text(policy, "name"),
            description=_text(policy, "description"),
            policy_text=_text(policy, "policy_text"),
            is_builtin=bool(policy.get("is_builtin")),
            organization_id=_text(policy, "organization_id"),
            created_by_type=_text(policy, "created_by_type"),
            created_by=_text(policy, "created_by"),
            created_at=parse_timestamp(policy.get("created_at")),
            updated_at=parse_timestamp(policy.get("updated_at")),
            attachment_count=_optional_int(policy, "attachment_count") or 0,
            attachments=built(data.get("attachments"), Attachment.from_dict),
        )

    @property
    def _path(self) -> str:
        return item_path(org_path(self._org, "policies"), self.id)

    @property
    def attachments(self) -> builtins.list[Attachment]:
        """Where the policy is attached (a copy; filled only on a policy from `Policies.get`)."""
        return builtins.list(self._attachments)

    def update(
        self, *, name: str | None = None, description: str | None = None, policy_text: str | None = None
    ) -> Policy:
        """Change some of the policy's fields; only the given ones are sent.

        Args:
            name: A new name.
            description: A new description.
            policy_text: New statements (replacing all of them).

        Returns:
            A new object with the updated policy (this one is left as it was).

        Raises:
            BadRequestError: ``policy_text`` is not a valid policy.

        """
        body = given(name=name, description=description, policy_text=policy_text)
        return put(self._client, self._path, body, partial(Policy.from_dict, self._client, self._org))

    def delete(self) -> None:
        """Delete the policy (it is detached from every principal)."""
        self._client._delete(self._path)

    def attach(self, *, principal_type: str, principal_id: str) -> None:
        """Attach the policy to a principal, granting it what the policy allows.

        Args:
            principal_type: ``user``, ``group``, ``role`` or ``agent``.
            principal_id: The principal's id.

        """
        body = {"principal_type": principal_type, "principal_id": principal_id}
        self._client._post_json(f"{self._path}/attachments", json=body)

    def detach(self, *, principal_type: str, principal_id: str) -> None:
        """Detach the policy from a principal.

        Args:
            principal_type: ``user``, ``group``, ``role`` or ``agent``.
            principal_id: The principal's id.

        """
        params = {"principal_type": principal_type, "principal_id": principal_id}
        self._client._delete(f"{self._path}/attachments", params=params)

    def __repr__(self) -> str:
        return f"Policy({self.name!r})"


class Policies:
    """The policies of one organization.

    Args:
        client: The client to send requests with.
        org: The organization's name.

    """

    def __init__(self, client: tilde.core.Client, org: str) -> None:
        self._client = client
        self._org = org

    @property
    def _path(self) -> str:
        return org_path(self._org, "policies")

    def _item(self, policy_id: str) -> str:
        return item_path(self._path, check_uuid(policy_id, "policy id"))

    def _build(self, data: Mapping[str, Any]) -> Policy:
        return Policy.from_dict(self._client, self._org, data)

    def list(
        self, *, after: str | None = None, amount: int | None = None, page_size: int | None = None
    ) -> PaginatedIterator[Policy]:
        """List the policies as summaries (``attachment_count`` set, ``policy_text`` empty).

        Args:
            after: Start after this cursor.
            amount: Yield at most this many policies.
            page_size: Policies per request.

        Returns:
            A lazy, single-pass iterator of `Policy`.

        """
        return self._client._paginate(
            self._path, self._build, amount=amount, page_size=page_size, after=after
        )

    def get(self, policy_id: str) -> Policy:
        """Fetch one policy with its text and attachments.

        Args:
            policy_id: The policy's id.

        Returns:
            The policy.

        Raises:
            NotFoundError: There is no such policy.

        """
        return fetch(self._client, self._item(policy_id), self._build)

    def create(self, name: str, policy_text: str, *, description: str = "") -> Policy:
        """Create a policy (attached to nobody yet).

        Args:
            name: Its name.
            policy_text: The statements.
            description: A description (sent only when not empty).

        Returns:
            The new policy.

        Raises:
            BadRequestError: ``policy_text`` is not a valid policy.
            ConflictError: The name is taken.

        """
        body = {"name": name, "policy_text": policy_text}
        if description:
            body["description"] = description
        return post(self._client, self._path, body, self._build)

    def delete(self, policy_id: str) -> None:
        """Delete a policy.

        Args:
            policy_id: The policy's id.

        """
        self._client._delete(self._item(policy_id))

    def validate(self, policy_text: str) -> ValidationResult:
        """Check a policy text without storing it.

        Args:
            policy_text: The statements.

        Returns:
            Whether the text is valid, and each problem with its line and column.

        """
        body = self._client._post_json(f"{self._path}:validate", json={"policy_text": policy_text})
        return ValidationResult.from_dict(body or {})

    def generate(self, prompt: str) -> str:
        """Draft a policy text from a sentence (the server's generator; review before use).

        Args:
            prompt: What the policy should allow, e.g. ``"read-only access to all repositories"``.

        Returns:
            The generated policy text.

        Raises:
            KeyError: The answer has no ``policy_text``.

        """
        body = self._client._post_json(f"{self._path}:generate", json={"prompt": prompt}) or {}
        return str(body["policy_text"])

    def attachments(self) -> builtins.list[Attachment]:
        """Every policy attachment in the organization (one request).

        Returns:
            The attachments.

        """
        body = self._client._get_json(org_path(self._org, "attachments"))
        return [Attachment.from_dict(item) for item in results(body)]

    def effective(
        self,
        *,
        principal_type: str | None = None,
        principal_id: str | None = None,
        user_id: str | None = None,
    ) -> builtins.list[EffectivePolicy]:
        """List the policies that apply to a principal, each with where it comes from.

        Args:
            principal_type: ``user``, ``group``, ``role`` or ``agent``.
            principal_id: The principal's id.
            user_id: A user's id (the same as ``principal_type="user"`` with ``principal_id``).

        Returns:
            The effective policies (for an agent: its inline policy).

        """
        params = given(principal_type=principal_type, principal_id=principal_id, user_id=user_id)
        body = self._client._get_json(org_path(self._org, "effective-policies"), params=params)
        return [EffectivePolicy.from_dict(item) for item in results(body)]

    def __repr__(self) -> str:
        return f"Policies(org={self._org!r})"
