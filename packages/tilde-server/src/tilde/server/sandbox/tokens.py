"""Short-lived ``tst-`` tokens handed to code inside a sandbox, scoped to its repository and session."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from tilde.server.auth import Principal, SandboxScope

__all__ = ["IssuedToken", "SandboxTokens"]

TOKEN_PREFIX = "tst-"


@dataclass(frozen=True)
class IssuedToken:
    """A token and what it stands for.

    Attributes:
        token: The bearer token.
        sandbox_id: The sandbox it was issued to.
        principal: The scoped principal it authenticates as.
        expires_at: Expiry, seconds since the epoch.

    """

    token: str
    sandbox_id: str
    principal: Principal
    expires_at: float

    def credentials_json(self, api_url: str | None = None) -> dict[str, Any]:
        """Return the credentials endpoint's body (CONTRACT §1.3)."""
        expires = datetime.fromtimestamp(self.expires_at, timezone.utc).isoformat().replace("+00:00", "Z")
        body: dict[str, Any] = {
            "access_token": self.token,
            "expires_at": expires,
            "principal_type": self.principal.type,
            "principal_id": self.principal.id,
            "principal_name": self.principal.name,
            "organization_id": self.principal.org_id,
        }
        if api_url:
            body["api_url"] = api_url
        return body


class SandboxTokens:
    """Issues and resolves sandbox tokens; `resolve` goes into ``app.state.token_resolvers``.

    Tokens die at their expiry or when their sandbox ends (`revoke_sandbox`), whichever comes first.

    Args:
        ttl_seconds: Lifetime of each token.

    """

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._tokens: dict[str, IssuedToken] = {}
        self._lock = threading.Lock()

    def issue(self, sandbox_id: str, principal: Any, repo_id: str) -> IssuedToken:
        """Mint a token for code running in a sandbox.

        Args:
            sandbox_id: The sandbox (and session) id.
            principal: The principal the sandbox acts as.
            repo_id: The sandbox's repository.

        Returns:
            The new token.

        """
        scoped = Principal(
            type=principal.type,
            id=principal.id,
            name=principal.name,
            org_id=getattr(principal, "org_id", None),
            scope=SandboxScope(repo_id=repo_id, session_id=sandbox_id),
        )
        issued = IssuedToken(
            TOKEN_PREFIX + secrets.token_urlsafe(32), sandbox_id, scoped, time.time() + self.ttl_seconds
        )
        now = time.time()
        with self._lock:
            for token in [t for t, item in self._tokens.items() if item.expires_at <= now]:
                del self._tokens[token]
            self._tokens[issued.token] = issued
        return issued

    def resolve(self, token: str) -> Principal | None:
        """Return the scoped principal of a live token, or None (the ``token_resolvers`` callable)."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        with self._lock:
            issued = self._tokens.get(token)
        if issued is None or issued.expires_at <= time.time():
            return None
        return replace(issued.principal)

    def revoke_sandbox(self, sandbox_id: str) -> None:
        """Invalidate every token of a sandbox."""
        with self._lock:
            for token in [t for t, item in self._tokens.items() if item.sandbox_id == sandbox_id]:
                del self._tokens[token]
