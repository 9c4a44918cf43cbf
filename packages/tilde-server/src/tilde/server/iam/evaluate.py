"""Policy evaluation: each principal's effective rights in an organization, cached until IAM data changes.

A principal's rights in an organization (`Access`) are computed once and kept until the registry's IAM
generation moves (any change to memberships, groups, policies, attachments, agents or roles bumps it), so a
request costs one dictionary lookup and the policy set's decision. Who gets what:

- the server's admin user and an organization's owners: everything (``policies is None``);
- a member user, a role: the policies attached to it directly and through its groups (nested too);
- an agent: the same plus its inline policy, intersected with its creator's rights (an owner creator leaves
  the agent's own policies as they are), so an agent never exceeds whoever made it;
- anyone else: nothing (``member`` is False).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from functools import lru_cache

from tilde.server.iam.policy import CompiledPolicy, PolicySet, PolicySyntaxError, parse_policy
from tilde.server.iam.store import EffectiveGroupRecord
from tilde.server.registry import Registry

__all__ = ["Access", "Authorizer", "EffectivePolicyEntry"]

logger = logging.getLogger("tilde.server.iam")

#: How many (principal, organization) entries the cache keeps before starting over.
MAX_CACHE_ENTRIES = 50_000


@dataclass(frozen=True)
class Access:
    """A principal's standing in one organization.

    Attributes:
        member: Whether the principal belongs to the organization at all.
        owner: Whether it may do everything (organization owner or the server's admin).
        policies: The effective policy set; None when unrestricted (owners).

    """

    member: bool
    owner: bool
    policies: PolicySet | None


@dataclass(frozen=True)
class EffectivePolicyEntry:
    """One policy in force for a principal; fields are the contract's EffectivePolicy, one for one."""

    policy_id: str
    policy_name: str
    is_builtin: bool
    source: str
    source_name: str


_NOBODY = Access(member=False, owner=False, policies=PolicySet())
_OWNER = Access(member=True, owner=True, policies=None)


@lru_cache(maxsize=4096)
def _compiled(text: str) -> CompiledPolicy | None:
    """Compile a stored policy text once (texts are validated on the way in; a bad one grants nothing)."""
    try:
        return parse_policy(text)
    except PolicySyntaxError:
        logger.warning("a stored policy does not validate any more; it grants nothing")
        return None


class Authorizer:
    """Computes and caches effective rights (``app.state.auth.authorizer``).

    Args:
        registry: Where principals, groups, policies and attachments live.

    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._cache: dict[tuple[str, str, str], Access] = {}
        self._generation = -1
        self._lock = threading.Lock()

    def access(self, principal_type: str, principal_id: str, org_id: str) -> Access:
        """Return a principal's standing in an organization (cached until the next IAM change).

        Args:
            principal_type: ``user``, ``agent`` or ``role``.
            principal_id: The principal's id.
            org_id: The organization's id.

        """
        generation = self.registry.iam_generation
        key = (principal_type, principal_id, org_id)
        with self._lock:
            if generation != self._generation:
                self._cache.clear()
                self._generation = generation
            found = self._cache.get(key)
        if found is not None:
            return found
        computed = self._compute(principal_type, principal_id, org_id, depth=0)
        with self._lock:
            # A change while computing leaves the entry out: the next call computes it afresh.
            if self.registry.iam_generation == generation == self._generation:
                if len(self._cache) >= MAX_CACHE_ENTRIES:
                    self._cache.clear()
                self._cache[key] = computed
        return computed

    def _compute(self, principal_type: str, principal_id: str, org_id: str, depth: int) -> Access:
        registry = self.registry
        if principal_type == "user":
            if principal_id == registry.admin.id or registry.is_owner(org_id, principal_id):
                return _OWNER
            if not registry.is_member(org_id, principal_id):
                return _NOBODY
            return Access(True, False, PolicySet(self._attached(principal_type, principal_id, org_id)))
        if principal_type == "role":
            role = registry.get_role_by_id(principal_id)
            if role is None or role.organization_id != org_id:
                return _NOBODY
            return Access(True, False, PolicySet(self._attached(principal_type, principal_id, org_id)))
        if principal_type == "agent":
            agent = registry.get_agent_by_id(principal_id)
            if agent is None or agent.organization_id != org_id:
                return _NOBODY
            own = self._attached(principal_type, principal_id, org_id)
            inline = _compiled(agent.inline_policy) if agent.inline_policy.strip() else None
            policies = PolicySet([*own, inline] if inline is not None else own)
            # Agents never create agents, so the chain is at most user/role → agent; the bound is a guard.
            creator = (
                self._compute(agent.created_by_type, agent.created_by, org_id, depth + 1)
                if depth < 4 and agent.created_by_type in ("user", "role")
                else _NOBODY
            )
            if not creator.member:
                return Access(True, False, PolicySet())
            if creator.policies is None:
                return Access(True, False, policies)
            return Access(True, False, policies.intersect(creator.policies))
        return _NOBODY

    def _attached(self, principal_type: str, principal_id: str, org_id: str) -> list[CompiledPolicy]:
        subjects = [(principal_type, principal_id)]
        subjects += [("group", g.group_id) for g in self.registry.effective_groups(org_id, *subjects[0])]
        compiled = (_compiled(p.policy_text) for p in self.registry.attached_policy_texts(org_id, subjects))
        return [policy for policy in compiled if policy is not None]

    # -- reports for the effective-* routes ------------------------------------------------------------

    def effective_groups(
        self, org_id: str, principal_type: str, principal_id: str
    ) -> list[EffectiveGroupRecord]:
        """Every group the principal belongs to in the organization, with where the membership comes from."""
        return self.registry.effective_groups(org_id, principal_type, principal_id)

    def effective_policies(
        self, org_id: str, principal_type: str, principal_id: str
    ) -> list[EffectivePolicyEntry]:
        """Every policy in force for the principal: attached directly, through a group, or inline (agents).

        An agent's rights are further capped by its creator's; that cap is not listed here.
        """
        registry = self.registry
        entries: list[EffectivePolicyEntry] = []
        seen: set[str] = set()
        for policy in registry.attached_policy_texts(org_id, [(principal_type, principal_id)]):
            seen.add(policy.id)
            entries.append(EffectivePolicyEntry(policy.id, policy.name, policy.is_builtin, "direct", ""))
        for group in registry.effective_groups(org_id, principal_type, principal_id):
            for policy in registry.attached_policy_texts(org_id, [("group", group.group_id)]):
                if policy.id not in seen:
                    seen.add(policy.id)
                    entries.append(
                        EffectivePolicyEntry(
                            policy.id, policy.name, policy.is_builtin, "group", group.group_name
                        )
                    )
        if principal_type == "agent":
            agent = registry.get_agent_by_id(principal_id)
            if agent is not None and agent.organization_id == org_id and agent.inline_policy.strip():
                entries.append(
                    EffectivePolicyEntry("", f"{agent.name} (inline)", False, "inline", agent.name)
                )
        return entries
