"""Tool profiles: how a step's `tool` name turns into a command line.

Built in: `shell` (each task is a shell command), `python` (each task is `module:function`) and
the `aider` profile. A project defines or overrides profiles in `[tool.stepledger.tools.NAME]` of
its `pyproject.toml` or `[tools.NAME]` of a `stepledger.toml`, without touching workstream files:

    [tools.aider]
    command = ["aider", "--yes", "--no-auto-commits", "--message={task}", "--file={file}"]
    per_task = false   # one invocation with every task joined into {task}

Placeholders: `{task}` (the task, or all tasks joined by newlines when per_task is false),
`{file}` (the argument holding it is repeated once per `files_scope` entry: `--file={file}`),
`{files}` (an argument that is exactly this becomes one argument per entry), `{step_id}`,
`{attempt}`. A file must never be read as an option (an entry `--test-cmd=...` given to Aider as
a bare argument runs a command): it is safe glued to the tool's per-file option (`--file={file}`)
or after a `--` argument. A profile that puts files anywhere else gets no entry starting with `-`
(a validation error). A placeholder inside a script given to `-c`/`-e` (`bash -c "tool {task}"`)
is refused: the task would become code; it goes to the script as an argument instead. A tool that
is none of these is looked up on PATH and called with the task as its argument.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..execution.tools import file_arguments_are_safe

BUILTIN_KINDS = ("shell", "python")


@dataclass(frozen=True)
class ToolProfile:
    """A named command template for an external program."""

    name: str
    command: tuple[str, ...]
    per_task: bool = False  # True: run the command once per task
    source: str = "built-in"

    @property
    def executable(self) -> str:
        """The program the profile runs."""
        return self.command[0]


BUILTIN_PROFILES = {
    # `--message=` and `--file=` glue each value to its option: neither a task nor a file that
    # starts with `-` can be read as another of Aider's options.
    "aider": ToolProfile(
        "aider", ("aider", "--yes", "--no-auto-commits", "--message={task}", "--file={file}")
    ),
}


class ProfileError(ValueError):
    """A tool profile in pyproject.toml or stepledger.toml is malformed; the message says where."""


def _profiles_from_table(table: object, source: str) -> dict[str, ToolProfile]:
    if not isinstance(table, dict):
        raise ProfileError(f"{source}: the tools table must map tool names to profiles")
    profiles: dict[str, ToolProfile] = {}
    for name, spec in table.items():
        command = spec.get("command") if isinstance(spec, dict) else None
        if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
            raise ProfileError(
                f"{source}: tools.{name}.command must be a non-empty list of strings, "
                'e.g. command = ["mytool", "--message", "{task}", "{files}"]'
            )
        script = _placeholder_in_script(command)
        if script is not None:
            raise ProfileError(
                f"{source}: tools.{name}.command puts a placeholder in the script after {script!r}, "
                "where a task or file becomes code to run; pass it as an argument of the script instead, "
                'e.g. command = ["bash", "-c", "mytool \\"$1\\"", "bash", "{task}"] (or use tool "shell")'
            )
        profiles[name] = ToolProfile(name, tuple(command), bool(spec.get("per_task", False)), source)
    return profiles


# The flags after which an interpreter takes code: -c, -e, -E (perl) and short clusters ending in
# them (-lc, -ec); the long forms (--eval, node; --command, -Command, PowerShell; --exec, --execute);
# cmd's /c. A flag run together with its script counts too: --eval='…{task}', and a short flag whose
# rest is a script (-c'tool {task}': it holds a space, or starts with the placeholder, -c{task}) —
# not a single-dash long option such as -config={file}.
_SCRIPT_FLAG = re.compile(r"-[A-Za-z]{0,2}[ceE]|--(?:eval|exec|execute|command)|-[Cc]ommand|/[cC]")
_SCRIPT_JOINED = re.compile(r"--(?:eval|exec|execute|command)=|-[A-Za-z]{0,2}[ceE](?=\{| |\S* )")
PLACEHOLDERS = ("{task}", "{file}", "{files}", "{step_id}", "{attempt}")


def _placeholder_in_script(command: list[str]) -> str | None:
    """The `-c`-like flag whose script holds a placeholder (None: no such script).

    `bash -c "mytool {task}"` would make a task (which may hold a dependency's output) shell code:
    the task must reach the script as an argument (`"$1"`), as data. Any program's `-c`/`-e` script
    is refused the same way (`python -c`, `perl -e`/`-E`, `node -e`/`--eval`, `sh -ec`, `pwsh
    -Command`, `cmd /c`), and so is a script run together with its flag (`sh -c'mytool {task}'`).
    """
    for flag, script in itertools.pairwise(command):
        if _SCRIPT_FLAG.fullmatch(flag) and any(p in script for p in PLACEHOLDERS):
            return flag
    for argument in command[1:]:
        joined = _SCRIPT_JOINED.match(argument)
        if joined and any(p in argument[joined.end() :] for p in PLACEHOLDERS):
            return joined.group(0).rstrip("=")
    return None


def _toml(path: Path) -> dict:
    import tomllib  # only when a project file is there to read: its import compiles many patterns

    return tomllib.loads(path.read_text())


def load_profiles(project_dir: str | Path) -> dict[str, ToolProfile]:
    """Built-in profiles overridden by the project's pyproject.toml, then by its stepledger.toml."""
    project = Path(project_dir)
    profiles = dict(BUILTIN_PROFILES)
    pyproject = project / "pyproject.toml"
    if pyproject.is_file():
        data = _toml(pyproject)
        table = data.get("tool", {}).get("stepledger", {}).get("tools")
        if table is not None:
            profiles.update(_profiles_from_table(table, str(pyproject)))
    own = project / "stepledger.toml"
    if own.is_file():
        table = _toml(own).get("tools")
        if table is not None:
            profiles.update(_profiles_from_table(table, str(own)))
    return profiles


def option_like_files(profile: ToolProfile | None, files_scope: Sequence[str]) -> list[tuple[int, str, str]]:
    """(index, message, hint) of each files_scope entry `profile` would pass as a possible option."""
    if profile is None or file_arguments_are_safe(profile.command):
        return []
    return [
        (
            i,
            f"files_scope entry {entry!r} starts with '-' and tool profile `{profile.name}` "
            f"({profile.source}) passes files where `{profile.executable}` could read it as an option",
            f"write it as './{entry}', or in the profile put the files after a \"--\" argument "
            '(or use the tool\'s per-file option, e.g. "--file={file}")',
        )
        for i, entry in enumerate(files_scope)
        if entry.startswith("-")
    ]


def tool_is_available(tool: str, profiles: dict[str, ToolProfile]) -> bool:
    """Whether `tool` can run here: built in, or its profile's program (or itself) is on PATH."""
    if tool in BUILTIN_KINDS:
        return True
    profile = profiles.get(tool)
    program = profile.executable if profile else tool
    import shutil  # here: the built-in tools (shell, python) need no look-up, and shutil imports much

    return shutil.which(program) is not None or Path(program).is_file()
