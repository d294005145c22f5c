"""The README and docs/ say what the command does: every `stepledger` command line written there
names commands and options that exist, and the event types listed are the registered ones."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stepledger.events import all_event_classes

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
COMMAND_LINE = re.compile(r"^\s*(?:\$ )?(?:\.venv/bin/)?stepledger (?P<rest>.+)$")
OPTION = re.compile(r"(?<![\w-])(--?[A-Za-z][\w-]*)")


def code_lines(path: Path) -> list[tuple[int, str]]:
    """Lines of fenced or indented code blocks (where commands are written to be typed)."""
    found, fenced = [], False
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip().startswith("```"):
            fenced = not fenced
            continue
        if fenced or line.startswith("    "):
            found.append((number, line))
    return found


def command_tree() -> dict[tuple[str, ...], set[str]]:
    """Every command path of the installed command line and the options it takes."""
    from typer.main import get_command

    from stepledger.cli.app import build_app

    tree: dict[tuple[str, ...], set[str]] = {}

    def walk(command: Any, path: tuple[str, ...]) -> None:
        tree[path] = {opt for p in command.params for opt in (*p.opts, *p.secondary_opts)} | {"--help", "-h"}
        for name, sub in (getattr(command, "commands", None) or {}).items():
            walk(sub, (*path, name))

    walk(get_command(build_app()), ())
    return tree


TREE = command_tree()


def command_words(rest: str) -> list[tuple[str, ...]]:
    """The command paths a documented line names (`retry|skip RUN`, `db upgrade | current` name two)."""
    words = rest.split()
    paths: list[tuple[str, ...]] = [()]
    for word in words:
        grown = [(*p, w) for p in paths for w in re.split(r"\s*\|\s*", word) if (*p, w) in TREE]
        if not grown:
            break
        paths = grown
    return paths


def test_every_documented_command_and_option_exists() -> None:
    wrong, checked = [], 0
    for path in DOCS:
        for number, line in code_lines(path):
            match = COMMAND_LINE.match(line)
            if match is None:
                continue
            rest = match.group("rest").split("  #", 1)[0]
            rest = re.sub(r"\s*\|\s*(?=[a-z])", "|", rest)  # `upgrade | current` is one word
            checked += 1
            paths = command_words(rest)
            if paths == [()] and not rest.startswith("-"):
                wrong.append(f"{path.name}:{number}: no such command: {line.strip()}")
                continue
            for option in OPTION.findall(rest):
                if not any(option in TREE[p] for p in paths):
                    names = " or ".join(" ".join(p) for p in paths)
                    wrong.append(f"{path.name}:{number}: `stepledger {names}` has no {option}")
    assert checked > 40  # the walk found the documented commands
    assert not wrong, "\n".join(wrong)


def test_the_listed_event_types_are_the_registered_ones() -> None:
    text = (ROOT / "docs" / "event-log.md").read_text()
    table = text.split("### Event types", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([a-z_.]+)` \|", table, re.MULTILINE))
    assert listed == {cls.type_name for cls in all_event_classes()}


def test_the_readme_says_retries_are_off_by_default() -> None:
    # What the default is, is held by tests/cli/test_run_cli.py (a failing step: "after 1 attempt").
    readme = " ".join((ROOT / "README.md").read_text().split())
    workstream_section = readme.split("## Workstream files", 1)[1].split("## ", 1)[0]
    assert "Retries are off by default" in workstream_section
    assert "`circuit_breaker.max_attempts` is 1" in workstream_section
