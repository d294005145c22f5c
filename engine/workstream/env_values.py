"""What a run records of the environment: a step's `env` values as their `${env...}` templates.

A value written `${env.GITHUB_TOKEN}` is resolved when the file is loaded, and the step's process
gets the real value; but the event log, which `events --json`, audits and backups show to anyone who
may read the run, gets the template. `resume` of a run on one machine resolves the templates again
in its own environment (before it records anything), so a resumed run's steps see the environment
of the resuming process, as they do for every variable they inherit.

A run on a fleet of workers (docs/workers.md) sends each attempt's templated values as their
templates (`for_worker`), so that no value waits in the job queue: the worker that runs the attempt
resolves them in its own environment (`resolve_on_worker`).

Other fields (`cwd`, `timeout`, `execution`) are recorded resolved: their values are shown anyway
(folder names, messages, `plan`), so the file checks refuse secret-looking variables there
(engine/workstream/interpolation.py, `looks_secret`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import UserInputError
from .interpolation import InterpolationError, interpolate, parameters, variables


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


def resolved_workstream(data: dict[str, Any], env: Mapping[str, str], run_id: str) -> dict[str, Any]:
    """A recorded workstream with its env templates resolved in `env` and the run's recorded
    parameters (UserInputError if one cannot be, saying what to do, then resume again)."""
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
                name: _resolve(run_id, step.get("id", ""), name, t, env, params)
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
) -> str:
    try:
        value = interpolate(template, env, params)
    except InterpolationError as error:
        raise UserInputError(
            f"cannot resume {run_id}: step {step_id}'s env.{name} is {template!r}, and {error}; "
            f"{error.hint}, then resume again"
        ) from None
    return _env_text(value)


def _env_text(value: str | bool) -> str:
    if isinstance(value, bool):  # a comparison, as a step's env receives it when the file is loaded
        return "true" if value else "false"
    return value


def reads_environment(template: str) -> bool:
    """Whether `template` reads the environment or the run's parameters: else it holds only what the
    run fills in itself (step outputs, for_each's item, isolation's paths), as it is written."""
    return bool(variables(template) or parameters(template))


def for_worker(template: str, parts: Sequence[tuple[str, str]], params: Mapping[str, Any]) -> dict[str, Any]:
    """An env value written `template` as an attempt sent to a fleet worker carries it: `parts` is
    the template cut at its step output references, each (text, the output's value) as the driver
    filled it (step_outputs.Filler.cut), with the run's parameters the texts read. Plain data: it
    travels in the job's JSON arguments."""
    used = {name: params[name] for text, _ in parts for name in parameters(text) if name in params}
    return {"template": template, "parts": [[text, value] for text, value in parts], "params": used}


def resolve_on_worker(value: Mapping[str, Any], env: Mapping[str, str]) -> str:
    """A `for_worker` value resolved in `env`, as loading the file would have resolved it: each text
    interpolated, each output's value appended as it is, so an output holding `${env.SECRET}` stays
    that text (InterpolationError if a text cannot be resolved in `env`)."""
    params = value.get("params") or {}
    out: list[str] = []
    for text, filled in value["parts"]:
        out.append(_env_text(interpolate(text, env, params)) if text else "")
        out.append(filled)
    return "".join(out)
