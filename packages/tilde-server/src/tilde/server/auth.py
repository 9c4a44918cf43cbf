"""Authentication of every ``/api/v1`` request, principals, and the authorization seam.

A request carries ``Authorization: Bearer <token>``. Stored API keys are looked up by their SHA-256 hash
(prefixes: ``tuk-`` user/admin, ``tak-`` agent, ``trk-`` role); tokens no stored key matches are offered
to the callables in ``app.state.token_resolvers`` (each ``(token) -> Principal | None``), which is how the
sandbox runtime recognises its short-lived ``tst-`` tokens. The caller ends up in ``request.state.principal``.

`Authenticator.authorize` is the single place deciding whether a principal may perform an action: the hard
limits first (user-only actions, what agents never do, sandbox scopes), then organization membership, then
the principal's effective policies (`tilde.server.iam.evaluate.Authorizer`; owners and the admin may do
everything).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from tilde.server._db import DatabaseUnavailable
from tilde.server.errors import ApiError, error_response
from tilde.server.iam.evaluate import Authorizer
from tilde.server.iam.policy import Resource
from tilde.server.registry import OrgRecord, Registry, RepoRecord
from tilde.server.registry_principals import KeyRecord, mint_token

__all__ = [
    "AGENT_KEY_PREFIX",
    "ROLE_KEY_PREFIX",
    "USER_KEY_PREFIX",
    "AuthMiddleware",
    "Authenticator",
    "Principal",
    "SandboxScope",
    "TokenResolver",
    "new_token",
]

USER_KEY_PREFIX = "tuk-"
AGENT_KEY_PREFIX = "tak-"
ROLE_KEY_PREFIX = "trk-"

#: Actions only a human (user principal) may perform, whatever the policies say.
USER_ONLY_ACTIONS = frozenset({"ApproveSession", "CreateOrganization", "DeleteOrganization"})
#: Actions agents never perform, whatever their policies say: no minting keys or agents, no changing
#: inline policies, policies, groups or attachments (an agent cannot raise its own rights).
NOT_FOR_AGENTS = frozenset(
    {
        "CreateAPIKey",
        "CreateAgent",
        "UpdateAgent",
        "CreatePolicy",
        "UpdatePolicy",
        "DeletePolicy",
        "AttachPolicy",
        "DetachPolicy",
        "CreateGroup",
        "UpdateGroup",
        "DeleteGroup",
        "AddGroupMember",
        "RemoveGroupMember",
    }
)
#: Actions a sandbox-scoped token may perform at all (its own repository and session only); its run-as
#: principal's policies still decide each of them.
SCOPED_ACTIONS = frozenset(
    {
        "GetRepository",
        "ListObjects",
        "GetObject",
        "PutObject",
        "DeleteObject",
        "CommitSession",
        "ListCommits",
        "GetCommit",
    }
)
#: What any member of an organization may do without a policy: see the organization.
MEMBER_ACTIONS = frozenset({"ListOrganizations", "GetOrganization"})


@dataclass(frozen=True)
class SandboxScope:
    """Restricts a token to one repository and one session (sandbox tokens).

    Attributes:
        repo_id: The only repository the token may touch.
        session_id: The only session the token may read or write.

    """

    repo_id: str
    session_id: str


@dataclass(frozen=True)
class Principal:
    """Who is calling.

    Attributes:
        type: ``"user"``, ``"agent"`` or ``"role"``.
        id: The principal's id.
        name: User name, agent name or role name.
        org_id: The organization an agent or role belongs to (None for users).
        scope: Set for sandbox tokens: the repository and session the token is limited to.

    """

    type: str
    id: str
    name: str
    org_id: str | None = None
    scope: SandboxScope | None = None


TokenResolver = Callable[[str], "Principal | None"]


def new_token(principal_type: str) -> str:
    """Return a fresh API key with the prefix for ``principal_type`` (``user``, ``agent`` or ``role``)."""
    prefix = {"user": USER_KEY_PREFIX, "agent": AGENT_KEY_PREFIX, "role": ROLE_KEY_PREFIX}[principal_type]
    return mint_token(prefix)


class Authenticator:
    """Turns tokens into principals and decides what they may do (``app.state.auth``).

    Args:
        registry: Where keys, users, agents and roles live.
        token_resolvers: Extra resolvers consulted for tokens no stored key matches (shared, mutable list:
            ``app.state.token_resolvers``).

    """

    #: Don't rewrite ``last_used_at`` on every request; once a minute per key is plenty.
    TOUCH_INTERVAL = 60.0
    #: Seconds a verified stored key is remembered (revoking a key or deleting its principal forgets it
    #: at once, through the registry's IAM generation).
    VERIFIED_TTL = 30.0
    #: At most this many verified keys are remembered (only valid keys get in, so this bounds memory).
    VERIFIED_MAX = 4096

    def __init__(self, registry: Registry, token_resolvers: list[TokenResolver]) -> None:
        self.registry = registry
        self.token_resolvers = token_resolvers
        self.authorizer = Authorizer(registry)
        self._touched: dict[str, float] = {}
        # Keyed by a keyed hash of the token, so the clear token is never kept; the process-random key
        # makes the entries useless to anyone reading memory later.
        self._hash_key = os.urandom(32)
        self._verified: dict[bytes, tuple[Principal, str, float]] = {}
        self._verified_generation = -1
        self._verified_lock = threading.Lock()

    def _token_digest(self, token: str) -> bytes:
        return hashlib.blake2b(token.encode(), digest_size=32, key=self._hash_key).digest()

    def _remembered(self, digest: bytes, generation: int, now: float) -> tuple[Principal, str] | None:
        with self._verified_lock:
            if generation != self._verified_generation:
                self._verified.clear()
                self._verified_generation = generation
                return None
            found = self._verified.get(digest)
        if found is None or found[2] < now:
            return None
        return found[0], found[1]

    def _remember(
        self, digest: bytes, generation: int, principal: Principal, key_id: str, now: float
    ) -> None:
        with self._verified_lock:
            # A revocation while the key was being verified leaves it out: the next request checks again.
            if generation != self._verified_generation or generation != self.registry.iam_generation:
                return
            if len(self._verified) >= self.VERIFIED_MAX:
                self._verified.clear()
            self._verified[digest] = (principal, key_id, now + self.VERIFIED_TTL)

    def forget_verified(self) -> None:
        """Forget every remembered key (the next request of each verifies its token against the store)."""
        with self._verified_lock:
            self._verified.clear()

    def _touch_due(self, key_id: str, now: float) -> bool:
        return now - self._touched.get(key_id, -1e9) > self.TOUCH_INTERVAL

    def _touch(self, key: KeyRecord, now: float) -> None:
        self._touched[key.id] = now
        self.registry.touch_key(key)

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal owning ``token``, or None when nobody does.

        Stored keys are verified against their salted hashes once, then remembered for `VERIFIED_TTL`
        seconds under a keyed hash of the token; revoking a key or deleting its principal bumps the
        registry's IAM generation, which forgets every remembered key.
        """
        now = time.monotonic()
        # PostgreSQL: one read of the cluster's IAM generation, so changes made through another replica
        # hold for this request (SQLite: the in-memory counter, as before).
        generation = self.registry.refresh_iam_generation()
        digest = self._token_digest(token)
        remembered = self._remembered(digest, generation, now)
        if remembered is not None:
            known, key_id = remembered
            if self._touch_due(key_id, now):
                stored = self.registry.lookup_token(token)
                if stored is None:  # revoked behind the cache's back (another process): verify afresh
                    self.forget_verified()
                    return self.authenticate(token)
                self._touch(stored, now)
            return known
        key = self.registry.lookup_token(token)
        if key is not None:
            principal = self._principal_for(key.principal_type, key.principal_id)
            if principal is not None:
                if self._touch_due(key.id, now):
                    self._touch(key, now)
                self._remember(digest, generation, principal, key.id, now)
            return principal
        for resolve in list(self.token_resolvers):
            found = resolve(token)
            if found is not None:
                return found
        return None

    def _principal_for(self, principal_type: str, principal_id: str) -> Principal | None:
        if principal_type == "user":
            user = self.registry.get_user(principal_id)
            return Principal("user", user.id, user.username) if user else None
        if principal_type == "agent":
            agent = self.registry.get_agent_by_id(principal_id)
            return Principal("agent", agent.id, agent.name, agent.organization_id) if agent else None
        if principal_type == "role":
            role = self.registry.get_role_by_id(principal_id)
            return Principal("role", role.id, role.name, role.organization_id) if role else None
        return None

    def can_access_org(self, principal: Principal, org: OrgRecord) -> bool:
        """Tell whether the principal belongs to the organization."""
        if principal.type != "user" and principal.org_id != org.id:
            return False
        return self.authorizer.access(principal.type, principal.id, org.id).member

    def authorize(
        self,
        principal: Principal,
        action: str,
        org: OrgRecord | None = None,
        repo: RepoRecord | None = None,
        **resource: str | None,
    ) -> None:
        """Raise a 403 `ApiError` naming ``action`` unless ``principal`` may perform it.

        Args:
            principal: The caller.
            action: A catalogue action (`tilde.server.iam.actions.ACTIONS`), e.g. ``"GetObject"``.
            org: The organization acted on, if any (the repository's organization when ``repo`` is given).
            repo: The repository acted on, if any; fills the ``repository`` resource argument.
            **resource: Further resource arguments: ``path``, ``agent``, ``role`` (or ``repository``).

        """
        if principal.scope is not None and (
            repo is None or repo.id != principal.scope.repo_id or action not in SCOPED_ACTIONS
        ):
            raise ApiError(
                403,
                "forbidden",
                f"this sandbox token is limited to its repository and session: {action} refused",
            )
        if action in USER_ONLY_ACTIONS and principal.type != "user":
            raise ApiError(403, "forbidden", f"{action} may only be performed by a user")
        if action in NOT_FOR_AGENTS and principal.type == "agent":
            raise ApiError(403, "forbidden", f"agents may not perform {action}")
        org_id = org.id if org is not None else repo.organization_id if repo is not None else None
        if org_id is None:
            # Organization-less actions: listing one's organizations and (users) creating one.
            return
        outsider = f"no access to organization {_org_label(org)} ({action} refused)"
        if principal.type != "user" and principal.org_id != org_id:
            raise ApiError(403, "forbidden", outsider)
        access = self.authorizer.access(principal.type, principal.id, org_id)
        if not access.member:
            raise ApiError(403, "forbidden", outsider)
        if access.policies is None or action in MEMBER_ACTIONS:
            return
        if repo is not None and resource.get("repository") is None:
            resource["repository"] = repo.name
        target = Resource(**resource)
        if not access.policies.allows(action, target):
            raise ApiError(
                403,
                "forbidden",
                f"{principal.type} {principal.name!r} is not allowed to {action} on {_describe(target, org)}",
            )

    @staticmethod
    def check_session(principal: Principal, session_id: str) -> None:
        """Raise 403 when a sandbox-scoped principal names a session other than its own."""
        if principal.scope is not None and principal.scope.session_id != session_id:
            raise ApiError(403, "forbidden", "this token is limited to its sandbox's session")


class AuthMiddleware:
    """Require a valid bearer token on every ``/api/v1`` request (HTTP and websocket).

    The principal lands in ``scope["state"]["principal"]`` (``request.state.principal``). Failures answer 401
    with the JSON error body; websocket handshakes are refused (HTTP 403) before accepting.

    Args:
        app: The wrapped ASGI application.
        prefix: The path prefix that needs authentication.

    """

    def __init__(self, app: ASGIApp, prefix: str = "/api/v1") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Authenticate, then call the wrapped app."""
        path: str = scope.get("path", "")
        if scope["type"] not in ("http", "websocket") or not (
            path == self.prefix or path.startswith(self.prefix + "/")
        ):
            await self.app(scope, receive, send)
            return
        auth: Authenticator = scope["app"].state.auth
        token = _bearer_token(scope)
        try:
            principal = auth.authenticate(token) if token else None
        except DatabaseUnavailable as error:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013})
                return
            unavailable = error_response(scope, 503, "database_unavailable", str(error), {"Retry-After": "1"})
            await unavailable(scope, receive, send)
            return
        if principal is None:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            message = "invalid API key" if token else "missing bearer token (Authorization: Bearer <key>)"
            response = error_response(scope, 401, "unauthorized", message, {"WWW-Authenticate": "Bearer"})
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def _org_label(org: OrgRecord | None) -> str:
    return repr(org.name) if org is not None else "of this repository"


def _describe(resource: Resource, org: OrgRecord | None) -> str:
    """Name what a request acts on, for a denial message (``repository "r", path "a/"``)."""
    parts = [
        f'{name} "{value}"'
        for name in ("repository", "path", "agent", "role")
        if (value := getattr(resource, name)) is not None
    ]
    if parts:
        return ", ".join(parts)
    return f'organization "{org.name}"' if org is not None else "this organization"


def _bearer_token(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            header: str = bytes(value).decode("latin-1")
            scheme, _, token = header.partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None
