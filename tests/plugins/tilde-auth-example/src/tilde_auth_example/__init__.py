"""A third-party auth provider: the token lives in a file named by ``TILDE_EXAMPLE_TOKEN_FILE``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tilde.core.auth import AuthProvider, AuthSettings
from tilde.core.credentials import CredentialsProvider
from tilde.core.hookspecs import hookimpl

ENV_TOKEN_FILE = "TILDE_EXAMPLE_TOKEN_FILE"


class TokenFile:
    """Reads the token from the file on every request, so rotating the file rotates the token."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def get_token(self) -> str:
        """Return the file's first line."""
        return self.path.read_text(encoding="utf-8").strip()


class TokenFileProvider:
    """Accepts when ``TILDE_EXAMPLE_TOKEN_FILE`` names an existing file."""

    name = "example-token-file"

    def credentials_for(self, settings: AuthSettings) -> CredentialsProvider | None:
        """Return a reader for the file, or None to let the next provider try."""
        value = settings.environ.get(ENV_TOKEN_FILE)
        if not value or not Path(value).is_file():
            return None
        return TokenFile(Path(value))


@hookimpl
def tilde_register_auth_providers(register: Callable[[AuthProvider], None]) -> None:
    """Offer the token-file provider."""
    register(TokenFileProvider())
