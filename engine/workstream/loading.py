"""Loading a workstream file: read, check every field, build the model, apply the graph rules."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from stepledger.engine.workstream.model import Workstream

from .building import build
from .format_spec import WORKSTREAM
from .matrix import expand as expand_matrices
from .parameters import resolve as resolve_params
from .problems import Problem, WorkstreamInvalid
from .reading import read_document
from .rules import apply_rules
from .spec import INVALID, Context
from .tools import tool_problems


def _strict(data: dict[str, Any], strict: bool) -> bool:
    """Whether unknown fields are errors: asked for by the caller or by the file's `unknown_fields`."""
    switch = data.get("unknown_fields")
    return strict or (isinstance(switch, str) and switch.casefold() == "error")


def workstream_from_data(
    data: Any,
    file: str = "",
    env: Mapping[str, str] | None = None,
    strict: bool = False,
    params: Mapping[str, Any] | None = None,
    env_on_workers: bool = False,
) -> tuple[Workstream | None, list[Problem]]:
    """Check and build already-parsed data; returns the model (None if unusable) and every problem.

    Unknown fields are warnings (ignored), or errors when `strict` or the file says
    `"unknown_fields": "error"`. `params` are the run's parameter values as given (`--param`):
    checked against the file's `parameters` first, so `${params.NAME}` reads checked values.
    `env_on_workers`: for a run on workers, whose steps' env values each worker resolves in its own
    environment: a variable they read may be unset in `env` (its value is kept as its template).
    """
    ctx = Context(env=os.environ if env is None else env, file=file, env_on_workers=env_on_workers)
    if not isinstance(data, dict):
        ctx.problem([], "the file must hold one object (a mapping of field names to values)")
        return None, ctx.problems
    ctx.strict = _strict(data, strict)
    ctx.params = resolve_params(data.get("parameters"), params or {}, ctx)
    expansion = expand_matrices(data, ctx)
    checked = WORKSTREAM.check(expansion.data, [], ctx)
    if checked is INVALID:
        expansion.restore_paths(ctx)
        return None, ctx.problems
    draft = build(checked, ctx, file)
    workstream = replace(apply_rules(draft, ctx), params=dict(ctx.params))
    expansion.restore_paths(ctx)
    return workstream, ctx.problems


def validate_problems(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    project_dir: str | Path | None = None,
    check_tools: bool = True,
    strict: bool = False,
    params: Mapping[str, Any] | None = None,
    env_on_workers: bool = False,
) -> tuple[Workstream | None, list[Problem]]:
    """Every problem of the file at `path`: errors, warnings (missing tools, unknown fields) and notes."""
    try:
        data = read_document(path)
    except WorkstreamInvalid as error:
        return None, list(error.problems)
    workstream, problems = workstream_from_data(data, str(path), env, strict, params, env_on_workers)
    errors = [p for p in problems if p.severity == "error"]
    if workstream is not None and check_tools and not errors:
        problems.extend(tool_problems(workstream, project_dir))
    return workstream, problems


def load_with_warnings(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    strict: bool = False,
    params: Mapping[str, Any] | None = None,
    env_on_workers: bool = False,
) -> tuple[Workstream, list[Problem]]:
    """The workstream at `path` and what is said about it (warnings, notes); WorkstreamInvalid on errors.
    `env_on_workers`: see `workstream_from_data`."""
    workstream, problems = validate_problems(
        path, env, check_tools=False, strict=strict, params=params, env_on_workers=env_on_workers
    )
    errors = [p for p in problems if p.severity == "error"]
    if errors or workstream is None:
        raise WorkstreamInvalid(errors, str(path))
    return workstream, problems


def load_workstream(
    path: str | Path, env: Mapping[str, str] | None = None, params: Mapping[str, Any] | None = None
) -> Workstream:
    """Load, check and resolve the workstream at `path`; WorkstreamInvalid lists every problem."""
    return load_with_warnings(path, env, params=params)[0]
