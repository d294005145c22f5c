"""A fleet attempt's `${env.NAME}` values, resolved in the environment of the worker that runs it.

The driver sends them as their templates (jobs.spec_payload), so no value from an environment
waits in the job queue, and each worker gives the attempts it runs its own values (set in its
service's environment: a systemd unit's `Environment=` or `EnvironmentFile=`). A worker whose
environment cannot resolve one runs nothing of the step: the attempt fails, its log and the run's
line saying which variable of which step that worker lacks and how to give it, never a value; the
step's retry policy applies as for any failure, and another worker may have the variable.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import replace

from ..execution.spec import AttemptSpec
from ..workstream.env_values import resolve_on_worker
from ..workstream.interpolation import InterpolationError, UnsetVariable

UNIT_SETTINGS = "a systemd unit's Environment= or EnvironmentFile="


def with_worker_env(spec: AttemptSpec, environ: Mapping[str, str], worker: str) -> tuple[AttemptSpec, str]:
    """`spec` with its env templates resolved in `environ` (the environment of the worker named
    `worker`), and ""; or, when one cannot be resolved, a spec that runs nothing of the step and
    fails saying why, and that why in one line."""
    if not spec.env_templates:
        return spec, ""
    resolved: dict[str, str] = {}
    for name, value in spec.env_templates.items():
        try:
            resolved[name] = resolve_on_worker(value, environ)
        except InterpolationError as error:
            said, last = _refusal(spec.step_id, name, str(value.get("template", "")), error, worker)
            command = f"echo {shlex.quote(said)} >&2; echo {shlex.quote(last)} >&2; exit 2"
            refused = replace(spec, tool="shell", tasks=(command,), acceptance_tests=(), profile_command=None,
                              profile_per_task=False, env_templates={})  # fmt: skip
            return refused, said
    return replace(spec, env={**spec.env, **resolved}, env_templates={}), ""


def _refusal(
    step_id: str, name: str, template: str, error: InterpolationError, worker: str
) -> tuple[str, str]:
    """Why the attempt runs nothing, in full; and in short, as the last line of its log, which the
    run's line quotes (after the step and the worker it ran on)."""
    said = (
        f"stepledger: worker {worker} ran nothing of step {step_id}: its env.{name} is {template!r},"
        f" and {error} in this worker's environment"
    )
    if isinstance(error, UnsetVariable):
        fix = f"set {error.name} in the environment of worker {worker} ({UNIT_SETTINGS})"
        said += f"; {fix} and start it again, or give a default: ${{env.{error.name}:-value}}"
        last = (  # short: the run's line cuts it at 160 characters
            f"stepledger: {error.name} is not set on this worker (env.{name} is {template!r}): set it"
            " in its environment, e.g. its systemd unit's Environment="
        )
        return said, last
    said += f"; {error.hint}"
    return said, f"stepledger: env.{name} is {template!r}, and {error} on this worker: {error.hint}"
