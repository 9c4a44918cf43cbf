"""The policy language: parsing with exact error positions, compiled policies and their evaluation.

A policy is text with one statement per line::

    # comments run to the end of a line
    ListRepositories()
    GetObject(repository="ml-*", path="datasets/")
    deny DeleteObject(repository="prod")

`validate_policy` reports every line's first error with its 1-based line and column; `parse_policy` compiles
a valid text into a `CompiledPolicy`; a `PolicySet` combines the policies of one principal and answers
``decide(action, resource)`` in a dictionary lookup plus the few statements about that action. The full
language is documented in ``docs/guides/policies.md``.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from tilde.server.iam._syntax import MAX_POLICY_CHARS, MAX_STATEMENTS, Effect, PolicyError, parse_lines
from tilde.server.iam.actions import ACTIONS, match_actions

__all__ = [
    "ALLOW_ALL",
    "MAX_POLICY_CHARS",
    "MAX_STATEMENTS",
    "CompiledPolicy",
    "Effect",
    "PolicyError",
    "PolicySet",
    "PolicySyntaxError",
    "Resource",
    "Statement",
    "parse_policy",
    "validate_policy",
]


class PolicySyntaxError(ValueError):
    """A policy text that does not validate.

    Attributes:
        errors: Every error found, in line order (at least one).

    """

    def __init__(self, errors: list[PolicyError]) -> None:
        super().__init__(str(errors[0]) if len(errors) == 1 else f"{errors[0]} (and {len(errors) - 1} more)")
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Resource:
    """What a request acts on, as far as policies can restrict it.

    An attribute left ``None`` means the request does not concern such a resource; a statement restricting
    that argument then never matches.

    Attributes:
        repository: The repository's name.
        path: The object path (for ``ListObjects`` the listing prefix, ``""`` for the whole repository).
        agent: The agent's name.
        role: The role's name.

    """

    repository: str | None = None
    path: str | None = None
    agent: str | None = None
    role: str | None = None


_Check = Callable[[Resource], bool]


def _compile_check(name: str, value: str) -> _Check:
    if name == "path":

        def has_prefix(resource: Resource) -> bool:
            path = resource.path
            return path is not None and path.startswith(value)

        return has_prefix
    stem = value[:-1]
    if value.endswith("*") and not any(char in stem for char in "*?["):
        # "ml-*", the usual shape of a glob: a prefix test is several times cheaper than a regex.

        def has_stem(resource: Resource) -> bool:
            actual: str | None = getattr(resource, name)
            return actual is not None and actual.startswith(stem)

        return has_stem
    if "*" in value or "?" in value or "[" in value:
        match = re.compile(fnmatch.translate(value)).match

        def matches_glob(resource: Resource) -> bool:
            actual: str | None = getattr(resource, name)
            return actual is not None and match(actual) is not None

        return matches_glob

    def equals(resource: Resource) -> bool:
        # A glob without wildcards is an exact name; comparing beats running a regular expression.
        return bool(getattr(resource, name) == value)

    return equals


class Statement:
    """One compiled statement.

    Attributes:
        effect: ``"allow"`` or ``"deny"``.
        pattern: The action name or glob as written.
        arguments: The resource arguments as written, ``(name, value)`` pairs in source order.
        actions: The catalogue actions it applies to: the pattern's matches that take every argument.
        line: The line it was written on.

    """

    __slots__ = ("_checks", "actions", "arguments", "effect", "line", "pattern")

    def __init__(
        self, effect: Effect, pattern: str, arguments: tuple[tuple[str, str], ...], line: int
    ) -> None:
        self.effect: Effect = effect
        self.pattern = pattern
        self.arguments = arguments
        self.line = line
        names = {name for name, _ in arguments}
        self.actions = tuple(a for a in match_actions(pattern) if names.issubset(ACTIONS[a].resources))
        self._checks = tuple(_compile_check(name, value) for name, value in arguments)

    @property
    def unconditional(self) -> bool:
        """True when the statement has no resource arguments (it matches every resource)."""
        return not self._checks

    def matches(self, resource: Resource) -> bool:
        """Whether every resource argument of the statement matches the resource.

        Args:
            resource: The request's resource.

        Returns:
            True when the statement applies to the resource.

        """
        # A plain loop: this runs on every request and beats all() over a generator.
        for check in self._checks:  # noqa: SIM110
            if not check(resource):
                return False
        return True

    def __str__(self) -> str:
        args = ", ".join(f'{name}="{_escape(value)}"' for name, value in self.arguments)
        prefix = "deny " if self.effect == "deny" else ""
        return f"{prefix}{self.pattern}({args})"

    def __repr__(self) -> str:
        return f"Statement({str(self)!r}, line={self.line})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


class _Rules:
    """The statements about one action: denies first, and whether some allow needs no check at all."""

    __slots__ = ("allow_always", "allows", "denies")

    def __init__(self, statements: Iterable[Statement]) -> None:
        statements = list(statements)
        self.denies = tuple(s for s in statements if s.effect == "deny")
        self.allow_always = any(s.effect == "allow" and s.unconditional for s in statements)
        self.allows = () if self.allow_always else tuple(s for s in statements if s.effect == "allow")

    def decide(self, resource: Resource) -> Effect | None:
        for statement in self.denies:
            if statement.matches(resource):
                return "deny"
        if self.allow_always:
            return "allow"
        for statement in self.allows:
            if statement.matches(resource):
                return "allow"
        return None


def _index(statements: Iterable[Statement]) -> dict[str, _Rules]:
    by_action: dict[str, list[Statement]] = {}
    for statement in statements:
        for action in statement.actions:
            by_action.setdefault(action, []).append(statement)
    return {action: _Rules(group) for action, group in by_action.items()}


class CompiledPolicy:
    """A validated policy, ready to evaluate.

    Attributes:
        text: The source text.
        statements: Its statements in source order.

    """

    __slots__ = ("_rules", "statements", "text")

    def __init__(self, text: str, statements: tuple[Statement, ...]) -> None:
        self.text = text
        self.statements = statements
        self._rules = _index(statements)

    def decide(self, action: str, resource: Resource) -> Effect | None:
        """Decide one request by this policy alone.

        Args:
            action: A catalogue action name.
            resource: What the request acts on.

        Returns:
            ``"deny"`` when a deny statement matches, else ``"allow"`` when an allow statement matches, else
            ``None`` (the policy says nothing about the request).

        """
        rules = self._rules.get(action)
        return None if rules is None else rules.decide(resource)

    def __repr__(self) -> str:
        return f"CompiledPolicy({len(self.statements)} statements)"


class PolicySet:
    """The combined policies of one principal, indexed by action at construction.

    Within a set, deny beats allow and a request no statement matches is not allowed. A set made by
    `intersect` allows a request only when every operand allows it.

    Args:
        policies: The compiled policies to combine (none: a set that allows nothing).

    """

    __slots__ = ("_terms",)

    def __init__(self, policies: Iterable[CompiledPolicy] = ()) -> None:
        statements = [s for policy in policies for s in policy.statements]
        self._terms: tuple[Mapping[str, _Rules], ...] = (_index(statements),)

    @classmethod
    def _of_terms(cls, terms: tuple[Mapping[str, _Rules], ...]) -> PolicySet:
        combined = cls.__new__(cls)
        combined._terms = terms
        return combined

    def decide(self, action: str, resource: Resource) -> Effect | None:
        """Decide one request by the whole set.

        Args:
            action: A catalogue action name.
            resource: What the request acts on.

        Returns:
            ``"deny"`` when some statement (of any operand, for an intersection) denies it; ``"allow"`` when
            it is allowed (by every operand, for an intersection); otherwise ``None``.

        """
        terms = self._terms
        if len(terms) == 1:
            rules = terms[0].get(action)
            return None if rules is None else rules.decide(resource)
        verdict: Effect | None = "allow"
        for term in terms:
            rules = term.get(action)
            decided = None if rules is None else rules.decide(resource)
            if decided == "deny":
                return "deny"
            if decided is None:
                verdict = None  # keep looking: a later operand may still deny explicitly
        return verdict

    def allows(self, action: str, resource: Resource) -> bool:
        """Whether the request is allowed.

        Args:
            action: A catalogue action name.
            resource: What the request acts on.

        Returns:
            True only when `decide` answers ``"allow"``.

        """
        return self.decide(action, resource) == "allow"

    def intersect(self, other: PolicySet) -> PolicySet:
        """Combine with another set into the rights both grant (an agent's inline policy ∩ its creator's).

        The result allows a request only when both sets allow it, denies it when either denies it, and says
        nothing (``None``) otherwise.

        Args:
            other: The set to intersect with.

        Returns:
            A new set; neither operand changes.

        """
        return PolicySet._of_terms(self._terms + other._terms)

    def __repr__(self) -> str:
        return f"PolicySet({len(self._terms)} term{'s' if len(self._terms) != 1 else ''})"


def validate_policy(text: str) -> list[PolicyError]:
    """Check a policy text.

    Never raises for any string; over-long texts and too many statements are reported as errors.

    Args:
        text: The policy text.

    Returns:
        The first error of every line that has one, in line order; an empty list when the text is valid.

    """
    return parse_lines(text)[0]


def parse_policy(text: str) -> CompiledPolicy:
    """Compile a policy text.

    Args:
        text: The policy text.

    Returns:
        The compiled policy.

    Raises:
        PolicySyntaxError: The text does not validate; ``.errors`` lists the errors `validate_policy` reports.

    """
    errors, parsed = parse_lines(text)
    if errors:
        raise PolicySyntaxError(errors)
    return CompiledPolicy(text, tuple(Statement(*statement) for statement in parsed))


#: A policy allowing every action on every resource (``*()``).
ALLOW_ALL: CompiledPolicy = parse_policy("*()")
