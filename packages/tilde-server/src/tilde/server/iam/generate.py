"""Turning a sentence into policy text: the hook's caller and the built-in, phrase-based generator.

`generate_policy` asks the plugin manager's ``tilde_server_generate_policy`` hook and validates the answer.
The built-in implementation (registered ``trylast``, so installed plugins are asked first) is local and
deterministic: it recognises the documented phrases below and never touches a network.

Phrases (case-insensitive, whole words):

- read-only, read, view, list, browse, download, see → the read actions (`builtin.READ_ACTIONS`);
- write, upload, modify, edit, change, put → object writes, sessions and reverts, plus the read actions;
- delete, remove → object deletion (plus sessions);
- run, execute, exec, sandbox(es), compute → the sandbox actions;
- approve → approving sessions; import → starting and reading imports;
- admin, administrator, full access, full control, all actions → every action (``*``); so does "everything"
  when no other verb is given;
- manage/administer followed by a list of members, groups, policies, agents, roles, (API) keys, secrets,
  connectors, imports, triggers, repositories → every action of those families;
- "as agent NAME" / "as role NAME" → ``RunAs(agent=...)`` / ``RunAs(role=...)``;
- "repository NAME", "repo NAME", "repositories matching GLOB" → ``repository="..."`` on every action that
  takes a repository (several names give one statement per name);
- "under PREFIX/", "in folder PREFIX", "prefix PREFIX" → ``path="..."`` on the object actions;
- everything after "except", "but not", "excluding", "without", "not", "never", "cannot", "no", or a whole
  sentence starting with "deny", becomes deny statements (only the named actions, never their helpers).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from tilde.server.iam._syntax import Effect
from tilde.server.iam.actions import ACTIONS
from tilde.server.iam.builtin import READ_ACTIONS
from tilde.server.iam.hookspecs import hookimpl
from tilde.server.iam.policy import validate_policy

__all__ = [
    "EXAMPLE_PROMPTS",
    "MAX_PROMPT_CHARS",
    "PolicyGenerationError",
    "builtin_generate",
    "generate_policy",
    "tilde_server_generate_policy",
]

#: The longest prompt accepted, in characters.
MAX_PROMPT_CHARS = 4_000

#: Prompts the built-in generator understands; error messages quote them.
EXAMPLE_PROMPTS: tuple[str, ...] = (
    "read-only access to all repositories",
    "write access to repository ml-data except delete",
    "read objects under datasets/ in repositories matching ml-*",
    "run sandboxes as agent nightly-etl",
    "manage members, groups and policies",
)

_log = logging.getLogger("tilde.server.iam")


class PolicyGenerationError(ValueError):
    """A prompt no generator could turn into a valid policy.

    Args:
        message: What went wrong; safe to show to the caller.
        status: The HTTP status a route should answer with: 400 for the caller's prompt (too long, blank, no
            phrase recognised), 502 for a generator plugin that failed or produced invalid text.

    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class _HookCaller(Protocol):
    def tilde_server_generate_policy(self, *, prompt: str) -> str | None: ...


class _PluginManager(Protocol):
    @property
    def hook(self) -> _HookCaller: ...


def generate_policy(prompt: str, plugin_manager: _PluginManager) -> str:
    """Turn a sentence into valid policy text through the ``tilde_server_generate_policy`` hook.

    Args:
        prompt: The caller's sentence (at most `MAX_PROMPT_CHARS` characters).
        plugin_manager: The server's plugin manager (`tilde.server.iam.plugins.make_server_plugin_manager`).

    Returns:
        Policy text that passes `tilde.server.iam.policy.validate_policy`.

    Raises:
        PolicyGenerationError: The prompt is blank or too long, no generator recognised it (``status`` 400),
            or a generator plugin failed or answered invalid text (``status`` 502).

    """
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PolicyGenerationError(
            f"prompt is {len(prompt)} characters long; the limit is {MAX_PROMPT_CHARS}"
        )
    if not prompt.strip():
        raise PolicyGenerationError("prompt is empty")
    try:
        text = plugin_manager.hook.tilde_server_generate_policy(prompt=prompt)
    except Exception as exc:
        # The plugin's own message may carry internals; the caller gets the class name, the log the trace.
        _log.warning("policy generator plugin failed", exc_info=True)
        raise PolicyGenerationError(
            f"the policy generator failed ({type(exc).__name__})", status=502
        ) from exc
    if text is None:
        examples = "; ".join(f'"{example}"' for example in EXAMPLE_PROMPTS)
        raise PolicyGenerationError(f"no known phrase in the prompt; try for example: {examples}")
    if not isinstance(text, str):
        raise PolicyGenerationError("the policy generator returned something other than text", status=502)
    errors = validate_policy(text)
    if errors:
        raise PolicyGenerationError(
            f"the policy generator produced invalid policy text: {errors[0]}", status=502
        )
    return text


@hookimpl(trylast=True)
def tilde_server_generate_policy(prompt: str) -> str | None:
    """Answer with the built-in, phrase-based generator (see `builtin_generate`).

    Args:
        prompt: The caller's sentence.

    Returns:
        The policy text, or ``None`` when no documented phrase occurs in the prompt.

    """
    return builtin_generate(prompt)


# --- the built-in generator ------------------------------------------------------------------------------

_SESSIONS = ("CreateSession", "CommitSession", "RollbackSession")
_SANDBOXES = ("CreateSandbox", "ListSandboxes", "GetSandbox", "ExecSandbox", "FinishSandbox", "CancelSandbox")
# Actions without a repository argument that a repository-scoped grant still needs to be usable.
_ORIENTATION = ("ListOrganizations", "GetOrganization", "ListRepositories")


@dataclass(frozen=True)
class _Capability:
    """Actions a phrase names, and the helpers an allow also needs (a deny names only the actions)."""

    actions: tuple[str, ...]
    helpers: tuple[str, ...] = ()


def _words(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


_VERBS: tuple[tuple[re.Pattern[str], _Capability], ...] = (
    (_words("read", "reads", "reading", "readonly", "view", "viewing", "list", "listing", "browse",
            "download", "downloading", "see"),
     _Capability(READ_ACTIONS)),
    (_words("write", "writes", "writing", "upload", "uploads", "uploading", "modify", "modifying", "edit",
            "editing", "change", "changing", "put"),
     _Capability(("PutObject", "DeleteObject", "RevertCommit"), (*READ_ACTIONS, *_SESSIONS))),
    (_words("delete", "deletes", "deleting", "deletion", "remove", "removing"),
     _Capability(("DeleteObject",), _SESSIONS)),
    (_words("run", "runs", "running", "execute", "executing", "exec", "sandbox", "sandboxes", "compute"),
     _Capability(_SANDBOXES)),
    (_words("approve", "approves", "approving", "approval", "approvals"), _Capability(("ApproveSession",))),
    (_words("import", "imports", "importing"), _Capability(("CreateImport", "GetImport"))),
)  # fmt: skip

_ADMIN = _words("admin", "administrator", "full access", "full control", "all actions", "any action")
_EVERYTHING = _words("everything")

_FAMILIES: dict[str, tuple[str, ...]] = {
    "member": ("Members",),
    "group": ("Groups",),
    "polic": ("Policies",),
    "agent": ("Agents",),
    "role": ("Roles",),
    "key": ("API keys",),
    "secret": ("Secrets",),
    "connector": ("Connectors",),
    "import": ("Imports",),
    "trigger": ("Triggers",),
    "repo": ("Repositories",),
    "sandbox": ("Sandboxes",),
}
_NOUN = (
    r"(?:the\s+|all\s+|its\s+|their\s+)?(?:api\s+)?"
    r"(member|group|polic|agent|role|key|secret|connector|import|trigger|repo|sandbox)[a-z]*"
)
_MANAGE = re.compile(
    r"\b(?:manage|manages|managing|administer|administers|administering)\s+(" + _NOUN
    + r"(?:\s*(?:,|\band\b|\bor\b|&)\s*" + _NOUN + r")*)",
    re.IGNORECASE,
)  # fmt: skip
_NOUN_RE = re.compile(_NOUN, re.IGNORECASE)

_NEGATION = _words(
    "except", "but not", "excluding", "without", "not", "never", "cannot", "can't", "no", "deny", "denied"
)  # fmt: skip

_QUOTED = r"\"([^\"]+)\"|'([^']+)'|`([^`]+)`"
_BARE_NAME = r"([A-Za-z0-9*?][A-Za-z0-9*?_.\-]*)"
_REPOSITORY = re.compile(
    r"\b(?:repository|repositories|repos?)\s+(?:(named|called|matching|like)\s+)?(?:" + _QUOTED + "|"
    + _BARE_NAME + ")",
    re.IGNORECASE,
)  # fmt: skip
_RUN_AS = re.compile(
    r"\bas\s+(?:an?\s+|the\s+)?(agent|role)s?\s+(?:(named|called|matching|like)\s+)?(?:" + _QUOTED + "|"
    + _BARE_NAME + ")",
    re.IGNORECASE,
)  # fmt: skip
_PATH = re.compile(
    r"\b(under|below|within|in\s+(?:the\s+)?(?:folder|directory)|prefix|prefixed\s+with)\s+(?:" + _QUOTED
    + r"|([^\s,;\"'`]+))",
    re.IGNORECASE,
)  # fmt: skip

# Words that follow "repository"/"under" in ordinary sentences and are never meant as names.
_NOT_NAMES = frozenset({
    "a", "all", "an", "and", "any", "are", "as", "but", "by", "called", "every", "except", "excluding", "for",
    "from", "in", "is", "it", "its", "like", "matching", "my", "named", "of", "on", "only", "or", "our",
    "that", "the", "their", "them", "these", "this", "those", "to", "under", "which", "with", "without",
    "read", "write", "delete", "run", "access", "everything",
})  # fmt: skip


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass
class _Scope:
    repositories: list[str] = field(default_factory=list)
    path: str | None = None
    run_as: list[tuple[int, str, str]] = field(default_factory=list)  # (position, "agent"|"role", name)
    masked: str = ""  # the prompt with every name blanked out, so names never read as phrases


def _name(match: re.Match[str], first_group: int) -> tuple[str | None, bool]:
    """Return the matched name (quoted or bare) and whether it was quoted."""
    for group in range(first_group, first_group + 3):
        if match.group(group):
            return match.group(group), True
    return match.group(first_group + 3), False


def _accept(match: re.Match[str], first_group: int, explicit: bool) -> str | None:
    """Return the name a match captured, unless it is an ordinary word rather than a name."""
    name, quoted = _name(match, first_group)
    if name is None or _CONTROL.search(name):
        return None
    if quoted:
        return name
    name = name.rstrip(".")
    return name if name and (explicit or name.lower() not in _NOT_NAMES) else None


def _scope(prompt: str) -> _Scope:
    scope = _Scope()
    masked = list(prompt)

    def blank(match: re.Match[str]) -> None:
        masked[match.start() : match.end()] = " " * (match.end() - match.start())

    for match in _REPOSITORY.finditer(prompt):
        name = _accept(match, 2, bool(match.group(1)))
        if name is not None:
            blank(match)
            if name not in scope.repositories:
                scope.repositories.append(name)
    for match in _RUN_AS.finditer(prompt):
        name = _accept(match, 3, bool(match.group(2)))
        if name is not None:
            blank(match)
            scope.run_as.append((match.start(), match.group(1).lower(), name))
    for match in _PATH.finditer(prompt):
        raw, quoted = _name(match, 2)
        if raw is None or _CONTROL.search(raw) or (not quoted and raw.lower() in _NOT_NAMES):
            continue
        blank(match)
        # A path argument is a literal prefix: "data/*.csv" can only be granted as "data/".
        path = (raw if quoted else raw.rstrip(".,;:!?)")).lstrip("/").split("*", 1)[0]
        if scope.path is not None or not path:
            continue
        if not match.group(1).lower().startswith("prefix") and not path.endswith("/"):
            path += "/"  # "under data" means the folder data/, not data-old/
        scope.path = path
    scope.masked = "".join(masked)
    return scope


def _capabilities(part: str) -> tuple[list[_Capability], bool]:
    """Return the capabilities a part of the prompt names, and whether it asks for every action."""
    found = [capability for pattern, capability in _VERBS if pattern.search(part)]
    for match in _MANAGE.finditer(part):
        for noun in _NOUN_RE.finditer(match.group(1)):
            families = _FAMILIES[noun.group(1).lower()]
            found.append(_Capability(tuple(a.name for a in ACTIONS.values() if a.group in families)))
    everything = bool(_ADMIN.search(part)) or (not found and bool(_EVERYTHING.search(part)))
    return found, everything


def _split_at(text: str) -> int:
    """Return where the denied part of the prompt starts: its first negation, or its end."""
    match = _NEGATION.search(text)
    return len(text) if match is None else match.start()


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _statements(effect: Effect, actions: Iterable[str], scope: _Scope) -> list[str]:
    prefix = "deny " if effect == "deny" else ""
    lines: list[str] = []
    for action in actions:
        takes = ACTIONS[action].resources if action != "*" else ("repository", "path")
        path = [("path", scope.path)] if scope.path is not None and "path" in takes else []
        repositories = scope.repositories if "repository" in takes and scope.repositories else [None]
        for repository in repositories:
            arguments = ([("repository", repository)] if repository is not None else []) + path
            rendered = ", ".join(f"{name}={_quote(value)}" for name, value in arguments)
            lines.append(f"{prefix}{action}({rendered})")
    return lines


def _ordered(actions: set[str]) -> list[str]:
    return [name for name in ACTIONS if name in actions]


def builtin_generate(prompt: str) -> str | None:
    """Generate policy text from the documented phrases (see the module's documentation).

    Deterministic and local: the same prompt always gives the same text.

    Args:
        prompt: The caller's sentence.

    Returns:
        Policy text (a ``# generated from:`` comment, the allow statements in catalogue order, then the deny
        statements), or ``None`` when the prompt contains no known phrase.

    """
    scope = _scope(prompt)
    split = _split_at(scope.masked)
    allow_caps, allow_all = _capabilities(scope.masked[:split])
    deny_caps, deny_all = _capabilities(scope.masked[split:])
    denied = {action for capability in deny_caps for action in capability.actions}
    allowed = {action for capability in allow_caps for action in (*capability.actions, *capability.helpers)}
    allowed -= denied
    lines: list[str] = []
    if allow_all:
        lines += _statements("allow", ["*"], scope)
        if scope.repositories or scope.path:
            # "*" restricted to a repository leaves out the organization-wide reads needed to find it.
            lines += _statements("allow", _ordered(set(_ORIENTATION) - denied), scope)
    else:
        lines += _statements("allow", _ordered(allowed), scope)
    run_as = [(kind, name) for position, kind, name in scope.run_as if position < split]
    lines += [f"RunAs({kind}={_quote(name)})" for kind, name in run_as if "RunAs" not in denied]
    lines += _statements("deny", ["*"] if deny_all else _ordered(denied), scope)
    run_as_denied = [(kind, name) for position, kind, name in scope.run_as if position >= split]
    lines += [f"deny RunAs({kind}={_quote(name)})" for kind, name in run_as_denied]
    if not lines:
        return None
    summary = " ".join(prompt.split())
    if len(summary) > 120:
        summary = summary[:117] + "..."
    return "\n".join([f"# generated from: {summary}", *lines]) + "\n"
