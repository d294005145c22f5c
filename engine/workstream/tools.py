"""Is every tool a workstream names available here? A warning in `validate`, an error before `run`."""

from __future__ import annotations

from pathlib import Path

from stepledger.engine.workstream.model import Workstream
from stepledger.engine.workstream.profiles import (
    BUILTIN_KINDS,
    load_profiles,
    option_like_files,
    tool_is_available,
)

from .problems import Problem, ToolsUnavailable


def step_paths(ws: Workstream) -> list[str]:
    """The JSON path of each step in the file (top-level steps first, then each phase's)."""
    if len(ws.steps) == 1 and not ws.phases and ws.steps[0].id == ws.id:
        return [""]  # a single-step file: the step is the file itself
    phase_index = {p["id"]: i for i, p in enumerate(ws.phases)}
    counters: dict[str | None, int] = {}
    out = []
    for step in ws.steps:
        k = counters.get(step.phase, 0)
        counters[step.phase] = k + 1
        out.append(f"steps[{k}]" if step.phase is None else f"phases[{phase_index[step.phase]}].steps[{k}]")
    return out


def tool_problems(ws: Workstream, project_dir: str | Path | None = None) -> list[Problem]:
    """One warning per step (or compensation) whose tool is not built in, not a profile and not on PATH;
    one error per files_scope entry a step's profile would pass where it could be read as an option."""
    profiles = load_profiles(project_dir if project_dir is not None else Path.cwd())
    problems: list[Problem] = []
    file = ws.source_path
    for step, path in zip(ws.steps, step_paths(ws), strict=True):
        prefix = f"{path}." if path else ""
        profile = None if step.tool in BUILTIN_KINDS else profiles.get(step.tool)
        for i, message, hint in option_like_files(profile, step.files_scope):  # an option is code
            problems.append(Problem(message, f"{prefix}files_scope[{i}]", file, step.id, hint, "error"))
        uses = [(f"{prefix}tool", step.tool)]
        if step.compensation is not None:
            uses.append((f"{prefix}compensation.tool", step.compensation.tool))
        for where, tool in uses:
            if not tool or tool_is_available(tool, profiles):
                continue
            profile = profiles.get(tool)
            program = profile.executable if profile else tool
            hint = (
                f"install `{program}` so it is on PATH, or define [tools.{tool}] in stepledger.toml "
                f"(built in: {', '.join(BUILTIN_KINDS)})"
            )
            problems.append(
                Problem(f"tool `{tool}` is not available here", where, file, step.id, hint, "warning")
            )
    return problems


def check_tools_or_raise(ws: Workstream, project_dir: str | Path | None = None) -> None:
    """Raise ToolsUnavailable (listing every missing tool) before a run starts anything."""
    problems = tool_problems(ws, project_dir)
    if problems:
        errors = [Problem(p.message, p.path, p.file, p.step_id, p.hint, "error") for p in problems]
        raise ToolsUnavailable(errors, ws.source_path)
