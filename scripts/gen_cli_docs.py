"""Write docs/guides/cli.md from the ``tilde`` commands themselves, so the page never drifts from ``--help``.

    python scripts/gen_cli_docs.py           # rewrite the page
    python scripts/gen_cli_docs.py --check   # exit 1 when the page is stale (a test runs this)

Only built-in commands are documented (plugins are not loaded).
"""

from __future__ import annotations

import argparse
import inspect
import sys
from pathlib import Path

import click

PAGE = Path(__file__).resolve().parent.parent / "docs" / "guides" / "cli.md"

INTRO = """\
# Command line

`tilde` works with repositories, objects, history and sandboxes from the shell (`python -m tilde` is the
same program). This page is generated from the commands' own help by `scripts/gen_cli_docs.py`; run
`tilde COMMAND --help` for the same text.

- Remote locations are URLs: `tilde://ORG/REPO/PATH`, or at a commit `tilde://ORG/REPO@COMMIT/PATH`.
  A path ending in `/` (or the repository alone) names a prefix. Repositories alone are `ORG/REPO`.
- Credentials come from `TILDE_API_KEY` / `TILDE_ENDPOINT_URL`, or from `~/.tilde/config.yaml`, which
  `tilde auth login` writes after checking the key against the server.
- Every listing takes `--json`: a JSON array of objects whose fields are named as in the SDK's models.
- Data goes to stdout, messages to stderr. Errors are one line on stderr with exit status 1 (2 for usage
  errors); `tilde --debug COMMAND …` shows the traceback instead.
- `tilde cp` draws a progress bar on stderr only when stderr is a terminal (never with `--quiet`).
- Plugins add commands through the `tilde_register_commands` hook (see the plugins guide).
"""


def _help_text(command: click.Command) -> str:
    text = inspect.cleandoc(command.help or "")
    lines: list[str] = []
    block = False
    opened = False
    for line in text.splitlines():
        if line.strip() == "\b":
            # click's "keep these lines as written" marker: a code block here (its heading line stays text).
            block, opened = True, False
            continue
        if block and not opened:
            opened = True
            if line.strip().endswith(":"):
                lines += [f"**{line.strip()}**", "", "```"]
                continue
            lines.append("```")
        if block and not line.strip():
            lines.append("```")
            block = False
        lines.append(line.strip() if block else line)
    if block:
        lines.append("```")
    return "\n".join(lines).strip()


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    rows = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None or not isinstance(param, click.Option) or "--help" in param.opts:
            continue
        names, text = record
        escaped = text.replace("|", "\\|")
        rows.append(f"| `{names}` | {escaped} |")
    if not rows:
        return []
    return ["| option | meaning |", "|---|---|", *rows, ""]


def _section(command: click.Command, path: list[str], parent: click.Context | None) -> list[str]:
    name = " ".join(path)
    ctx = click.Context(command, info_name=path[-1], parent=parent)
    out = [f"## `{name}`" if len(path) > 1 else "## `tilde`", ""]
    usage = " ".join(command.collect_usage_pieces(ctx))
    out += ["```", f"{name} {usage}".rstrip(), "```", ""]
    out += [_help_text(command), ""]
    out += _options(command, ctx)
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                out += _section(sub, [*path, sub_name], ctx)
    return out


def render() -> str:
    """Return the page for the commands as they are now."""
    from tilde.cli import main

    # Built-ins only: skip the plugin loading TildeGroup does on lookup.
    group = click.Group(name="tilde", commands=dict(main.commands), params=main.params, help=main.help)
    lines = [INTRO, *_section(group, ["tilde"], None)]
    text = "\n".join(lines).rstrip() + "\n"
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


def main(argv: list[str] | None = None) -> int:
    """Write the page, or with ``--check`` report whether it is current."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the page is stale instead of writing")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = PAGE.read_text(encoding="utf-8") if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE} is stale: run python scripts/gen_cli_docs.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text, encoding="utf-8")
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
