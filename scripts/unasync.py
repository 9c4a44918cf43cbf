"""Generate the sync client (``client.py``) from the async one (``async_client.py``) in tilde-core.

The async client is the only hand-written copy. Its sync twin is produced by renaming (``async def`` becomes
``def``, ``await`` disappears, ``AsyncClient`` becomes ``Client``, ``tilde.core._async_support`` becomes
``tilde.core._sync_support``, ...) plus a few wording changes in docstrings; the import block is then
re-sorted the way ruff's isort rules sort it. Where the two clients genuinely differ, the difference lives in
``_async_support.py`` / ``_sync_support.py`` under the same names, so the output needs no hand edits.

Usage:
    python scripts/unasync.py            # rewrite client.py
    python scripts/unasync.py --check    # exit 1 when client.py is not what this script would write
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "packages" / "tilde-core" / "src" / "tilde" / "core"
SOURCE = PACKAGE / "async_client.py"
TARGET = PACKAGE / "client.py"

HEADER = "# Generated from async_client.py by scripts/unasync.py \N{EM DASH} do not edit.\n"

# Wording with no name-level mapping (regular expressions), replaced first; each must match the source exactly
# once, so that a reworded docstring fails loudly instead of leaking async wording into the sync client.
WORDING: list[tuple[str, str]] = [
    (
        r"The asynchronous client: a thin awaiting driver",
        "The synchronous client: a thin blocking driver",
    ),
    (
        r"A connection to a Tilde server, for asyncio or trio code\.",
        "A connection to a Tilde server (blocking).",
    ),
    # The class docstring's paragraph about coroutines and token providers, up to its blank line.
    (r"    Every member that sends a request is a coroutine;[^\n]*\n(    [^\n]+\n)*\n", ""),
]

# Token-level renames, applied in order to the whole text (code, comments and docstrings alike).
RENAMES: list[tuple[str, str]] = [
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\b__aiter__\b", "__iter__"),
    (r"\b__anext__\b", "__next__"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\basynccontextmanager\b", "contextmanager"),
    (r"\bAsyncClient\b", "Client"),
    (r"\bAsyncPaginatedIterator\b", "PaginatedIterator"),
    (r"\bAsyncIterator\b", "Iterator"),
    (r"\bAsyncIterable\b", "Iterable"),
    (r"\bwrap_async_stream\b", "wrap_sync_stream"),
    (r"\b_async_support\b", "_sync_support"),
    (r"\banyio\.sleep\b", "time.sleep"),
]


def _member_key(name: str) -> tuple[int, str, str]:
    """Sort key of one imported name, as ruff's isort orders them (constants, classes, then the rest)."""
    bare = name.split(" as ")[0].strip()
    if bare.isupper() and len(bare) > 1:
        kind = 0
    elif bare[:1].isupper():
        kind = 1
    else:
        kind = 2
    return (kind, bare.lower(), bare)


def _statement_key(statement: list[str]) -> tuple[int, str]:
    """Sort key of one import statement: ``import x`` before ``from x import y``, then by module."""
    words = statement[0].split()
    return (0 if words[0] == "import" else 1, words[1].lower())


def _sort_names(statement: list[str]) -> list[str]:
    """Sort the names one ``from x import ...`` statement imports, keeping its layout."""
    first = statement[0]
    if not first.startswith("from "):
        return statement
    if len(statement) == 1:
        head, _, names = first.partition(" import ")
        ordered = sorted((name.strip() for name in names.split(",")), key=_member_key)
        return [f"{head} import {', '.join(ordered)}"]
    # Parenthesised: one name per line between "from x import (" and ")".
    inner = sorted(statement[1:-1], key=lambda line: _member_key(line.strip().rstrip(",")))
    return [first, *inner, statement[-1]]


def sort_imports(text: str) -> str:
    """Re-sort the module's top-level import block (each blank-line-separated group on its own)."""
    lines = text.split("\n")
    out: list[str] = []
    group: list[list[str]] = []

    def flush() -> None:
        for statement in sorted((_sort_names(s) for s in group), key=_statement_key):
            out.extend(statement)
        group.clear()

    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith(("import ", "from ")) and not line.startswith("from __future__"):
            statement = [line]
            if line.endswith("("):
                while not lines[index].startswith(")"):
                    index += 1
                    statement.append(lines[index])
            group.append(statement)
        else:
            flush()
            out.append(line)
        index += 1
    flush()
    return "\n".join(out)


def unasync(source: str) -> str:
    """Return the sync client's text for the async client's text.

    Raises:
        ValueError: A wording rule no longer matches the source exactly once.

    """
    text = source
    for pattern, replacement in WORDING:
        text, count = re.subn(pattern, replacement, text)
        if count != 1:
            raise ValueError(f"wording rule matched {count} times (expected once): {pattern!r}")
    for pattern, replacement in RENAMES:
        text = re.sub(pattern, replacement, text)
    return HEADER + sort_imports(text)


def main(argv: list[str] | None = None) -> int:
    """Write ``client.py``, or with ``--check`` report whether it is up to date.

    Returns:
        The exit status: 0, or 1 when ``--check`` finds ``client.py`` stale.

    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="fail if client.py is stale; write nothing")
    args = parser.parse_args(argv)
    expected = unasync(SOURCE.read_text(encoding="utf-8"))
    current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else None
    if args.check:
        if current != expected:
            print(
                f"{TARGET.name} is stale: regenerate it from {SOURCE.name} with `python scripts/unasync.py`",
                file=sys.stderr,
            )
            return 1
        print(f"{TARGET.name} is up to date")
        return 0
    if current != expected:
        TARGET.write_text(expected, encoding="utf-8")
        print(f"wrote {TARGET.name}")
    else:
        print(f"{TARGET.name} already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
