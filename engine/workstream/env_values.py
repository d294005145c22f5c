"""What a run records of the environment: a step's `env` values as their `${env...}` templates.

A value written `${env.GITHUB_TOKEN}` is resolved when the file is loaded, and the step's process
gets the real value; but the event log, which `events --json`, audits and backups show to anyone who
may read the run, gets the template. `resume` resolves the templates again in its own environment
(before it records anything), so a resumed run's steps see the environment of the resuming process,
as they do for every variable they inherit.

Other fields (`cwd`, `timeout`, `execution`) are recorded resolved: their values are shown anyway
(folder names, messages, `plan`), so the file checks refuse secret-looking variables there
(engine/workstream/interpolation.py, `looks_secret`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import UserInputError
from .interpolation import InterpolationError, interpolate


def recorded_workstream(data: dict[str, Any]) -> dict[str, Any]:
    """`workstream_to_dict()` output as the log keeps it: templated env values replaced by their templates."""
    steps = data.get("steps") or []
    if not any(step.get("env_templates") for step in steps):
        return data
    out = dict(data)
    out["steps"] = [
        {**step, "env": {**step["env"], **step["env_templates"]}} if step.get("env_templates") else step
        for step in steps
    ]
    return out


def resolved_workstream(
    data: dict[str, Any], env: Mapping[str, str], run_id: str, *, on_worker: bool = False
) -> dict[str, Any]:
    """A recorded workstream with its env templates resolved in `env` and the run's recorded
    parameters (UserInputError if one cannot be, saying what to do: resume again, or, for a worker
    of the fleet about to drive the run, give a worker what it lacks)."""
    params = data.get("params") or {}
    steps = data.get("steps") or []
    if not any(isinstance(step, dict) and step.get("env_templates") for step in steps):
        return data  # nothing templated, or a run recorded before templates were kept
    out = dict(data)
    out["steps"] = []
    for step in steps:
        templates = step.get("env_templates") if isinstance(step, dict) else None
        if templates:
            values = {
                name: _resolve(run_id, step.get("id", ""), name, t, env, params, on_worker)
                for name, t in templates.items()
            }
            step = {**step, "env": {**(step.get("env") or {}), **values}}
        out["steps"].append(step)
    return out


def _resolve(
    run_id: str,
    step_id: str,
    name: str,
    template: str,
    env: Mapping[str, str],
    params: Mapping[str, Any],
    on_worker: bool,
) -> str:
    try:
        value = interpolate(template, env, params)
    except InterpolationError as error:
        if on_worker:
            raise UserInputError(
                f"this worker cannot drive {run_id}: step {step_id}'s env.{name} is {template!r}, and"
                f" {error} in this worker's environment; the run waits for a worker whose environment"
                f" has it ({error.hint})"
            ) from None
        raise UserInputError(
            f"cannot resume {run_id}: step {step_id}'s env.{name} is {template!r}, and {error}; "
            f"{error.hint}, then resume again"
        ) from None
    if isinstance(value, bool):  # a comparison, as a step's env receives it when the file is loaded
        return "true" if value else "false"
    return value
