"""The policy language's lexer and parser: one line at a time, errors at exact positions.

Kept apart from `tilde.server.iam.policy` (compilation and evaluation), which is the public face; nothing here
is imported from elsewhere.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, NamedTuple

from tilde.server.iam.actions import ACTIONS, RESOURCE_ARGS, match_actions

__all__ = ["MAX_POLICY_CHARS", "MAX_STATEMENTS", "Effect", "ParsedStatement", "PolicyError", "parse_lines"]

#: The longest policy text accepted, in characters.
MAX_POLICY_CHARS = 100_000
#: The most statements one policy may hold.
MAX_STATEMENTS = 1_000

Effect = Literal["allow", "deny"]

# Blanks between tokens; "\r" so that CRLF line endings are harmless.
_BLANKS = " \t\r\f\v"
_WORD_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_*?")
_EFFECTS: tuple[Effect, ...] = ("allow", "deny")


@dataclass(frozen=True)
class PolicyError:
    """One error in a policy text.

    Attributes:
        line: 1-based line of the offending token.
        column: 1-based column (in characters) of the offending token, or of where a missing one was expected.
        message: What is wrong, with a suggestion where one is possible.

    """

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


class _LineError(Exception):
    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index  # 0-based character index in the line
        self.message = message


def _suggest(word: str, choices: Iterable[str]) -> str:
    options = list(choices)
    folded = {choice.lower(): choice for choice in options}
    best = folded.get(word.lower())
    if best is None:
        # An abbreviation ("repo") is the likeliest slip; difflib alone misses short prefixes.
        starting = [choice for choice in options if choice.lower().startswith(word.lower())]
        best = starting[0] if len(starting) == 1 else None
    if best is None:
        close = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
        best = close[0] if close else None
    return f"; did you mean {best!r}?" if best is not None else ""


class _LineParser:
    """Recursive descent over one line; raises `_LineError` at the first problem."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.pos = 0
        self.last_end = 0  # just after the last token read: where a missing token is reported at line end

    def blanks(self) -> None:
        line, pos = self.line, self.pos
        while pos < len(line) and line[pos] in _BLANKS:
            pos += 1
        self.pos = pos

    def at_end(self) -> bool:
        return self.pos >= len(self.line) or self.line[self.pos] == "#"

    def peek(self) -> str:
        return self.line[self.pos] if self.pos < len(self.line) else ""

    def expected(self, what: str) -> _LineError:
        index = self.pos if self.pos < len(self.line) else self.last_end
        found = self.peek()
        found_text = f", found {found!r}" if found else ""
        return _LineError(index, f"expected {what}{found_text}")

    def word(self) -> tuple[int, str]:
        start = pos = self.pos
        line = self.line
        while pos < len(line) and line[pos] in _WORD_CHARS:
            pos += 1
        self.pos = self.last_end = pos
        return start, line[start:pos]

    def string(self) -> tuple[int, str]:
        start, line = self.pos, self.line
        pos = start + 1
        chars: list[str] = []
        while pos < len(line):
            char = line[pos]
            if char == '"':
                self.pos = self.last_end = pos + 1
                return start, "".join(chars)
            if char == "\\":
                following = line[pos + 1 : pos + 2]
                if following not in ('"', "\\"):
                    raise _LineError(pos, 'unsupported escape in string; only \\" and \\\\ are allowed')
                chars.append(following)
                pos += 2
                continue
            if ord(char) < 0x20 or ord(char) == 0x7F:
                raise _LineError(pos, "control character in string")
            chars.append(char)
            pos += 1
        raise _LineError(start, "unterminated string: missing the closing '\"'")

    def statement(self) -> tuple[Effect, str, tuple[tuple[str, str], ...]] | None:
        self.blanks()
        if self.at_end():
            return None
        if self.peek() not in _WORD_CHARS:
            raise self.expected("an action name")
        start, first = self.word()
        self.blanks()
        effect: Effect = "allow"
        pattern, pattern_start = first, start
        if first in _EFFECTS:
            effect = "deny" if first == "deny" else "allow"
            if self.at_end() or self.peek() not in _WORD_CHARS:
                raise self.expected(f"an action name after {first!r}")
            pattern_start, pattern = self.word()
            self.blanks()
        elif first.lower() in _EFFECTS and self.peek() in _WORD_CHARS:
            raise _LineError(start, f"write the effect in lower case: {first.lower()!r}")
        actions = self._actions(pattern_start, pattern)
        if self.peek() != "(":
            raise self.expected(f"'(' after {pattern!r}")
        self.pos += 1
        self.last_end = self.pos
        arguments = self._arguments(pattern, actions)
        self.blanks()
        if not self.at_end():
            raise _LineError(self.pos, "unexpected text after the statement; write one statement per line")
        return effect, pattern, arguments

    def _actions(self, start: int, pattern: str) -> tuple[str, ...]:
        actions = match_actions(pattern)
        if actions:
            return actions
        if "*" in pattern or "?" in pattern:
            raise _LineError(start, f"the pattern {pattern!r} matches no action")
        raise _LineError(start, f"unknown action {pattern!r}{_suggest(pattern, ACTIONS)}")

    def _arguments(self, pattern: str, actions: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        arguments: list[tuple[str, str]] = []
        seen: set[str] = set()
        self.blanks()
        if self.peek() == ")":
            self.pos += 1
            self.last_end = self.pos
            return ()
        while True:
            self.blanks()
            if not self.peek() or self.peek() not in _WORD_CHARS:
                raise self.expected("an argument name" if arguments else "an argument name or ')'")
            start, name = self.word()
            self._check_argument(start, name, seen, pattern, actions)
            seen.add(name)
            self.blanks()
            if self.peek() != "=":
                raise self.expected(f"'=' after {name!r}")
            self.pos += 1
            self.last_end = self.pos
            self.blanks()
            if self.peek() != '"':
                if self.peek() == "'":
                    raise _LineError(self.pos, "strings use double quotes")
                raise self.expected(f"a double-quoted string after '{name}='")
            value_start, value = self.string()
            _check_value(value_start, name, value)
            arguments.append((name, value))
            self.blanks()
            if self.peek() == ")":
                self.pos += 1
                self.last_end = self.pos
                return tuple(arguments)
            if self.peek() != ",":
                raise self.expected("',' or ')'")
            self.pos += 1
            self.last_end = self.pos

    @staticmethod
    def _check_argument(
        start: int, name: str, seen: set[str], pattern: str, actions: tuple[str, ...]
    ) -> None:
        if name not in RESOURCE_ARGS:
            known = ", ".join(RESOURCE_ARGS)
            raise _LineError(
                start, f"unknown argument {name!r}{_suggest(name, RESOURCE_ARGS)} (arguments: {known})"
            )
        if name in seen:
            raise _LineError(start, f"duplicate argument {name!r}")
        if not any(name in ACTIONS[action].resources for action in actions):
            if len(actions) == 1:
                takes = ACTIONS[actions[0]].resources
                which = f"takes {', '.join(takes)}" if takes else "takes no arguments"
                raise _LineError(start, f"{pattern} does not take {name!r} ({pattern} {which})")
            raise _LineError(start, f"none of the actions matching {pattern!r} takes {name!r}")


def _check_value(start: int, name: str, value: str) -> None:
    if not value:
        raise _LineError(start, f"empty value for {name!r}")
    if name == "path":
        if value.startswith("/"):
            raise _LineError(start, "path is a prefix of object paths, which never start with '/'")
        if "*" in value:
            raise _LineError(
                start, "path is a literal prefix, not a glob: 'data/' already covers everything under data/"
            )


class ParsedStatement(NamedTuple):
    """One syntactically valid statement.

    Attributes:
        effect: ``"allow"`` or ``"deny"``.
        pattern: The action name or glob.
        arguments: ``(name, value)`` pairs in source order.
        line: 1-based line number.

    """

    effect: Effect
    pattern: str
    arguments: tuple[tuple[str, str], ...]
    line: int


def parse_lines(text: str) -> tuple[list[PolicyError], list[ParsedStatement]]:
    """Parse a whole policy text.

    Args:
        text: The policy text (any string).

    Returns:
        The first error of every line that has one, and the statements of the lines without errors.

    """
    if len(text) > MAX_POLICY_CHARS:
        message = f"policy text is {len(text)} characters long; the limit is {MAX_POLICY_CHARS}"
        return [PolicyError(1, 1, message)], []
    errors: list[PolicyError] = []
    statements: list[ParsedStatement] = []
    count = 0
    for number, line in enumerate(text.split("\n"), start=1):
        parser = _LineParser(line)
        parser.blanks()
        if parser.at_end():
            continue
        count += 1
        if count > MAX_STATEMENTS:
            message = f"too many statements; the limit is {MAX_STATEMENTS}"
            errors.append(PolicyError(number, parser.pos + 1, message))
            break
        try:
            parsed = parser.statement()
        except _LineError as exc:
            errors.append(PolicyError(number, exc.index + 1, exc.message))
            continue
        if parsed is not None:
            statements.append(ParsedStatement(*parsed, number))
    return errors, statements
