"""What `--help` shows: readable placeholders (`FILE`, `RUN`, `N`) and an example for each command.

Typer writes an argument as `{file}` in the usage line and types as `<str>`, `<path>` or
`<int range> [x>=1]`; people read `stepledger run FILE` more easily. The placeholders and examples
are set here, on the click command Typer builds, so that every command module gets them alike.

Help is click's plain help, not Typer's rich one: rich's help imports took a third of `--help`'s
start-up (docs/performance.md). Every command is set to it here, and its summary in a group's list
is its help's whole first paragraph (click would cut it at the first sentence, or mid-way).
"""

from __future__ import annotations

from typing import Any

from typer._click.core import Command, Context, Parameter
from typer._click.types import ParamType
from typer.core import TyperArgument, TyperOption

# By parameter name; anything else gets its name in capitals.
PLACEHOLDERS = {
    "db": "URL",
    "max_workers": "N",
    "run_id": "RUN",
    "run": "RUN",
    "step_id": "STEP",
    "step": "STEP",
    "files": "FILE",
    "file": "FILE",
    "since": "WHEN",
    "until": "WHEN",
    "last": "SPAN",
    "reason": "TEXT",
    "limit": "N",
    "workstream": "WORKSTREAM",
    "at": "POSITION|TIME",
    "html": "FILE",
    "output": "FILE",
    "port": "PORT",
    "host": "HOST",
    "kill_at": "POINT",
    "stub_seconds": "SECONDS",
    "workdir": "DIR",
    "scratch": "DIR",
    "types": "TYPE",
}
# `events --since` takes a position, where the audit's takes a time.
BY_NAME_AND_TYPE = {("since", "int"): "POSITION", ("since", "int range"): "POSITION"}
BY_TYPE = {"int": "N", "int range": "N", "path": "PATH", "float": "NUMBER"}

# By command path (after `stepledger`): what a first-time reader types.
EXAMPLES = {
    "run": ["stepledger run ws.json", "stepledger run ws.json --max-workers 4 --detach",
            "stepledger run ws.json --json | jq .type"],
    "resume": [
        "stepledger resume            # the newest unfinished run",
        "stepledger resume run-2026",
        "stepledger resume run-2026 --submit   # a run on workers: back to the fleet, a worker resumes it",
    ],
    "status": ["stepledger status", "stepledger status run-20261203 --json"],
    "runs": ["stepledger runs --limit 10 --status failed", "stepledger runs --workstream ws-example-02"],
    "logs": ["stepledger logs latest --follow", "stepledger logs run-2026 step-01"],
    "cancel": ["stepledger cancel latest --reason 'wrong branch'"],
    "validate": ["stepledger validate ws.json other.yaml"],
    "plan": ["stepledger plan ws.json --max-workers 3"],
    "graph": ["stepledger graph ws.json -f mermaid"],
    "schema": ["stepledger schema > workstream.schema.json"],
    "events": ["stepledger events latest --json", "stepledger events --follow --type step.failed"],
    "replay": ["stepledger replay latest --verify", "stepledger replay run-2026 --at 120"],
    "retry": ["stepledger retry latest step-02 --reason 'flaky network'"],
    "skip": ["stepledger skip latest step-02 --reason 'not needed today'"],
    "mark-passed": ["stepledger mark-passed latest step-02 --reason 'fixed by hand'"],
    "version": ["stepledger version"],
    "db": ["stepledger db current"],
    "db upgrade": ["stepledger db upgrade"],
    "db current": ["stepledger db current --db postgresql+psycopg://postgres@127.0.0.1:5432/stepledger"],
    "db history": ["stepledger db history"],
    "db rebuild": ["stepledger db rebuild"],
    "audit": ["stepledger audit failures --last 7d"],
    "audit timeline": ["stepledger audit timeline latest --html run.html"],
    "audit failures": ["stepledger audit failures -w ws-example-02 --last 7d"],
    "audit durations": ["stepledger audit durations --since 2026-11-01"],
    "audit retries": ["stepledger audit retries --json"],
    "audit actions": ["stepledger audit actions --last 30d"],
    "audit why": ["stepledger audit why latest step-02"],
    "ui": ["stepledger ui", "stepledger ui --read-only --port 8080"],
    "chaos": ["stepledger chaos examples/chaos-parallel.json -n 3 --seed 7",
              "stepledger chaos ws.json --dry-run"],
    "worktrees": ["stepledger worktrees list"],
    "worktrees list": ["stepledger worktrees list latest"],
    "worktrees prune": ["stepledger worktrees prune"],
    "worker": ["stepledger worker --db postgresql+psycopg://postgres@127.0.0.1:5432/stepledger -c 8"],
    "fleet": ["stepledger fleet attempts latest"],
    "fleet attempts": ["stepledger fleet attempts latest --json"],
    "fleet log": ["stepledger fleet log latest build --attempt 2"],
    "submit": ["stepledger submit ws.json --queue gpu --db postgresql+psycopg://postgres@127.0.0.1:5432/stepledger"],
}  # fmt: skip


def polish(command: Command, path: str = "") -> None:
    """Give every parameter of `command` (and its subcommands) a readable placeholder and an example,
    plain help, and a summary that is its help's first paragraph."""
    command.rich_markup_mode = None  # type: ignore[attr-defined]  # read by Typer's format_help
    if command.help and not command.short_help:
        command.short_help = " ".join(command.help.split("\n\n", 1)[0].split())
    examples = EXAMPLES.get(path)
    if examples and not command.epilog:
        lines = "\n".join(f"  {e}" for e in examples)  # \b: click keeps these lines as they are
        command.epilog = f"Example{'s' if len(examples) > 1 else ''}:\n\n\b\n{lines}"
    for param in command.params:
        _placeholder(param)
    for name, sub in (getattr(command, "commands", None) or {}).items():
        polish(sub, f"{path} {name}".strip())


def _placeholder(param: Parameter) -> None:
    name = param.name or ""
    if isinstance(param, TyperOption):
        if param.is_flag or param.count or param.metavar:
            return
        kind = param.type.name
        param.metavar = (
            BY_NAME_AND_TYPE.get((name, kind)) or PLACEHOLDERS.get(name) or BY_TYPE.get(kind) or name.upper()
        )
        # A range is checked by the command (one line, exit 2); its `[x>=1]` only adds noise.
        param.show_default = False if param.show_default is None else param.show_default
        _hide_type(param)
        return
    if isinstance(param, TyperArgument):
        word = param.metavar or PLACEHOLDERS.get(name) or name.upper()
        param.metavar = word
        required, many = param.required, param.nargs != 1

        def make_metavar(ctx: Context | None = None, *, usage: bool = False, **_: Any) -> str:
            shown = word + ("..." if many else "")
            return f"[{shown}]" if usage and not required else shown

        param.make_metavar = make_metavar  # type: ignore[method-assign]
        _hide_type(param)


def _hide_type(param: Parameter) -> None:
    # The help table's type column (`<path>`, `<int range>`) says less than the placeholder does.
    kind = param.type
    shown = type(kind)
    param.type = _Quiet(kind, shown)


class _Quiet(ParamType):
    """A parameter type that converts as the one it wraps but shows no type name in help."""

    def __init__(self, inner: ParamType, kind: type) -> None:
        self.inner = inner
        self.name = ""
        self._kind = kind

    def convert(self, value: Any, param: Parameter | None, ctx: Context | None) -> Any:
        return self.inner.convert(value, param, ctx)

    def get_metavar(self, param: Parameter, ctx: Context | None = None) -> str | None:
        return ""

    def shell_complete(self, ctx: Context, param: Parameter, incomplete: str) -> Any:
        return self.inner.shell_complete(ctx, param, incomplete)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
