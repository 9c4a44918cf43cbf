"""Remote locations written as URLs: ``tilde://ORG/REPO[@REF]/PATH``, and repositories as ``ORG/REPO``.

The one parser the command line, the fsspec filesystem and MCP resources share, so a location means the same
thing everywhere. It imports nothing but the standard library.

- ``tilde://acme/data`` — the whole repository at its latest commit (``path == ""``).
- ``tilde://acme/data/images/`` — everything under ``images/`` (the trailing ``/`` is kept: it says "prefix").
- ``tilde://acme/data@3f2a…/images/cat.png`` — one object as of a commit.

Paths are taken verbatim (no percent-decoding): object paths may contain ``%`` and spaces, and the HTTP
layer encodes them on the wire.

Example:
    >>> from tilde.data.urls import parse_url
    >>> url = parse_url("tilde://acme/data@abc123/images/cat.png")
    >>> (url.org, url.repo, url.ref, url.path)
    ('acme', 'data', 'abc123', 'images/cat.png')
    >>> str(url.child("dog.png"))
    'tilde://acme/data@abc123/images/cat.png/dog.png'

"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCHEME", "TildeURL", "is_tilde_url", "parse_repo_path", "parse_url"]

#: The URL scheme of remote locations.
SCHEME = "tilde"
_PREFIX = SCHEME + "://"


@dataclass(frozen=True)
class TildeURL:
    """A parsed remote location.

    Attributes:
        org: The organization's name.
        repo: The repository's name.
        path: The object path or prefix inside the repository (``""`` for the whole repository); never starts
            with ``/``.
        ref: The commit (or ref) to read, or ``None`` for the latest commit.

    """

    org: str
    repo: str
    path: str = ""
    ref: str | None = None

    @property
    def repo_path(self) -> str:
        """The repository as ``"ORG/REPO"`` (what ``Client.repository`` takes)."""
        return f"{self.org}/{self.repo}"

    @property
    def is_prefix(self) -> bool:
        """Whether the location names a prefix: the whole repository, or a path ending in ``/``."""
        return self.path == "" or self.path.endswith("/")

    @property
    def name(self) -> str:
        """The last component of the path (``""`` for the repository root or a prefix)."""
        return self.path.rsplit("/", 1)[-1]

    def child(self, relative: str) -> TildeURL:
        """Return the location of ``relative`` under this one.

        Args:
            relative: A path relative to this location (a ``/`` is inserted when needed).

        Returns:
            The joined location, at the same ref.

        """
        base = self.path if self.is_prefix else self.path + "/"
        return TildeURL(self.org, self.repo, base + relative.lstrip("/"), self.ref)

    def __str__(self) -> str:
        ref = f"@{self.ref}" if self.ref else ""
        path = f"/{self.path}" if self.path else ""
        return f"{_PREFIX}{self.org}/{self.repo}{ref}{path}"


def is_tilde_url(text: str) -> bool:
    """Tell whether ``text`` is written as a remote location (starts with ``tilde://``).

    Args:
        text: Any string, e.g. a command-line argument.

    Returns:
        True for ``tilde://…`` (whether or not the rest is valid).

    """
    return text.startswith(_PREFIX)


def _check_name(kind: str, value: str, text: str) -> None:
    if not value:
        raise ValueError(f"{text!r}: the {kind} name is missing")
    if any(ch.isspace() for ch in value) or "@" in value:
        raise ValueError(f"{text!r}: invalid {kind} name {value!r}")


def parse_url(text: str) -> TildeURL:
    """Parse ``tilde://ORG/REPO[@REF][/PATH]``.

    Args:
        text: The URL.

    Returns:
        The parsed location.

    Raises:
        ValueError: ``text`` is not a ``tilde://`` URL, or its organization, repository or ref is missing or
            malformed; the message quotes ``text``.

    """
    if not is_tilde_url(text):
        raise ValueError(f"{text!r} is not a tilde:// URL (expected tilde://ORG/REPO[@REF]/PATH)")
    rest = text[len(_PREFIX) :]
    org, _, rest = rest.partition("/")
    repo_ref, _, path = rest.partition("/")
    repo, at, ref = repo_ref.partition("@")
    _check_name("organization", org, text)
    _check_name("repository", repo, text)
    if at and (not ref or any(ch.isspace() or ch == "@" for ch in ref)):
        raise ValueError(f"{text!r}: invalid ref after '@'")
    if path.startswith("/"):
        raise ValueError(f"{text!r}: the object path must not start with '/'")
    return TildeURL(org, repo, path, ref or None)


def parse_repo_path(text: str) -> tuple[str, str]:
    """Parse a repository written ``ORG/REPO`` (a ``tilde://ORG/REPO`` URL without a path is accepted too).

    Args:
        text: The repository.

    Returns:
        ``(org, repo)``.

    Raises:
        ValueError: ``text`` is not of the form ``ORG/REPO``.

    """
    if is_tilde_url(text):
        url = parse_url(text)
        if url.path or url.ref:
            raise ValueError(f"{text!r}: expected a repository (ORG/REPO), not a path in one")
        return url.org, url.repo
    org, sep, repo = text.partition("/")
    if not sep or "/" in repo:
        raise ValueError(f"{text!r} is not a repository: expected ORG/REPO")
    _check_name("organization", org, text)
    _check_name("repository", repo, text)
    return org, repo
