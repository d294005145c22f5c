"""Turning checked file data into the model: defaults merged, single-step and phase shapes unfolded."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, TypeGuard, get_args

from stepledger.engine.workstream.limits import DEFAULT_FAN_OUT, MAX_WORKERS
from stepledger.engine.workstream.model import (
    BreakerPolicy,
    Compensation,
    ErrorHandling,
    Execution,
    FailureAction,
    Message,
    RetryPolicy,
    Saga,
    Step,
    StepGroup,
    Workstream,
)

from .compound_kinds import NOT_ACTED_ON
from .durations import parse_duration
from .format_spec import SINGLE_STEP_ONLY
from .placeholders import FILLED, fill_known, unfilled
from .problems import Problem, did_you_mean, json_path
from .spec import Context


@dataclass(frozen=True)
class PhaseDraft:
    """A phase as written, with where it is in the file."""

    id: str
    path: str
    depends_on: tuple[str, ...]
    step_ids: tuple[str, ...]
    info: dict[str, Any]


@dataclass
class Draft:
    """The model before the graph rules run: steps have no `requires` yet."""

    workstream: Workstream
    step_paths: list[str] = field(default_factory=list)  # JSON path of each step, same order
    phases: list[PhaseDraft] = field(default_factory=list)


def _merged(default: dict[str, Any] | None, own: dict[str, Any] | None) -> dict[str, Any]:
    # A step's block overrides the top-level one field by field, so `retry: {max_delay: 5}` keeps
    # the workstream's strategy.
    return {**(default or {}), **(own or {})}


def _retry(block: dict[str, Any]) -> RetryPolicy:
    return RetryPolicy(**block)


def _breaker(block: dict[str, Any]) -> BreakerPolicy:
    block = dict(block)
    if "error_patterns" in block:
        block["error_patterns"] = tuple(block["error_patterns"])
    return BreakerPolicy(**block)


Policies = tuple[RetryPolicy, BreakerPolicy]


def _default_policies(top: dict[str, Any]) -> Policies:
    return _retry(top.get("retry") or {}), _breaker(top.get("circuit_breaker") or {})


def _policies(top: dict[str, Any], raw: dict[str, Any], default: Policies) -> Policies:
    """The step's policies; steps without their own blocks share the workstream's (immutable) ones."""
    retry, breaker = default
    if raw is not top and raw.get("retry") is not None:
        retry = _retry(_merged(top.get("retry"), raw["retry"]))
    if raw is not top and raw.get("circuit_breaker") is not None:
        breaker = _breaker(_merged(top.get("circuit_breaker"), raw["circuit_breaker"]))
    return retry, breaker


def _compensation(block: dict[str, Any] | None) -> Compensation | None:
    if not block or not block.get("enabled", True) or "action" not in block:
        return None
    known = {k: v for k, v in block.items() if k != "enabled"}
    return Compensation(**known)


def _estimate(raw: dict[str, Any], path: str, ctx: Context, strict: bool) -> float | None:
    if "estimated_duration" in raw:
        return float(raw["estimated_duration"])
    meta = raw.get("metadata") or {}
    if "estimated_duration" not in meta:
        return None
    try:
        return parse_duration(meta["estimated_duration"])
    except ValueError:
        if not strict:  # a single-step file's metadata is the workstream's: free text is fine there
            return None
        ctx.problems.append(
            Problem(
                f"cannot read a duration from {meta['estimated_duration']!r}",
                f"{path}.metadata.estimated_duration",
                ctx.file,
                raw.get("id"),
                'write seconds (90) or a text such as "90s", "3m", "3-6 minutes"',
            )
        )
        return None


def _step(
    raw: dict[str, Any], path: str, top: dict[str, Any], phase: str | None, default: Policies, ctx: Context
) -> Step:
    """One step; `top` is the workstream's data (its tool, env, cwd, timeout, retry... are defaults)."""
    single = raw is top
    step_id = raw.get("id", "")
    tool = raw.get("tool") or top.get("tool")
    if not tool:
        hint = 'add "tool": "shell" (or a top-level "tool" used by every step)'
        ctx.problems.append(Problem("the step has no tool", f"{path}.tool", ctx.file, step_id, hint))
    timeout = raw.get("timeout", top.get("timeout", top.get("execution", {}).get("timeout_per_step")))
    env = raw.get("env", {}) if single else {**top.get("env", {}), **raw.get("env", {})}
    # The log records these values as their templates (engine/workstream/env_values.py): find each one's.
    env_keys = {name: json_path(["env", name]) for name in env}
    env_keys = {n: f"{path}.{k}" if path and n in raw.get("env", {}) else k for n, k in env_keys.items()}
    env_templates = {name: ctx.templates[key] for name, key in env_keys.items() if key in ctx.templates}
    retry, breaker = _policies(top, raw, default)
    return Step(
        id=step_id,
        tool=tool or "",
        tasks=tuple(raw.get("tasks", ())),
        description=raw.get("description", ""),
        depends_on=tuple(raw.get("depends_on", ())),
        acceptance_tests=tuple(raw.get("acceptance_tests", ())),
        timeout=timeout,
        env=env,
        env_templates=env_templates,
        cwd=raw.get("cwd", top.get("cwd")),
        files_scope=tuple(raw.get("files_scope", ())),
        retry=retry,
        circuit_breaker=breaker,
        compensation=_compensation(raw.get("compensation")),
        phase=phase,
        estimated_duration=_estimate(raw, path, ctx, strict=not single),
        metadata=raw.get("metadata", {}),
        when=raw.get("when"),
        queue=raw.get("queue", top.get("queue")),
        on_skip=raw.get("on_skip", "run"),
        matrix=ctx.matrix_values.get(step_id, {}) if isinstance(step_id, str) else {},
        for_each=raw.get("for_each"),
        max_fan_out=raw.get("max_fan_out", DEFAULT_FAN_OUT),
    )


def _execution(block: dict[str, Any]) -> Execution:
    block = dict(block)
    if block.get("max_workers") == "auto":
        block["max_workers"] = min(os.cpu_count() or 1, MAX_WORKERS)
    return Execution(**{k: v for k, v in block.items() if k in Execution.__dataclass_fields__})


_ACTION_WORDS = (*get_args(FailureAction), "log")
# What each handler does with its `action` (on_failure's is checked by _error_handling): `log` is
# what every handler does; the rollback's handlers also escalate.
_ACTED_ACTIONS = {
    name: ("log", "escalate") for name in ("on_rollback_start", "on_rollback_complete", "on_rollback_failure")
}


def _handler(name: str, spec: dict[str, Any], workstream_id: str, ctx: Context) -> Message:
    """One handler, `${workstream_id}` filled in; its unfillable placeholders and unused notify said."""
    path = f"error_handling.{name}"
    text = spec.get("message")
    if text is not None:
        for unknown in unfilled(name, text):
            known = FILLED.get(name, ())
            hint = did_you_mean(unknown, known) or "the ones filled here: " + ", ".join(
                f"${{{k}}}" for k in known
            )
            message = f"placeholder `${{{unknown}}}` is not filled in {name} messages: it is written as `?`"
            ctx.problems.append(Problem(message, f"{path}.message", ctx.file, None, hint, "warning"))
        spec = {**spec, "message": fill_known(text, {"workstream_id": workstream_id})}
    notify = tuple(spec.get("notify", ()))
    action = spec.get("action")
    if isinstance(action, str) and action.casefold() in _ACTION_WORDS:  # `"ESCALATE"` is `escalate`
        action = action.casefold()
        spec = {**spec, "action": action}
    if action is not None and name != "on_failure" and action not in _ACTED_ACTIONS.get(name, ("log",)):
        hint = "stepledger writes the message; only on_failure's action and `escalate` change what happens"
        ctx.annotations[f"{path}.action"] = action
        ctx.problems.append(Problem(NOT_ACTED_ON, f"{path}.action", ctx.file, None, hint, "note"))
    escalates = action == "escalate" and (name == "on_failure" or name in _ACTED_ACTIONS)
    if notify and not escalates:
        hint = 'stepledger sends nothing; with "action": "escalate" the run\'s ESCALATION line names them'
        ctx.annotations[f"{path}.notify"] = list(notify)
        ctx.problems.append(Problem(NOT_ACTED_ON, f"{path}.notify", ctx.file, None, hint, "note"))
    return Message(**{**spec, "notify": notify})


def _is_failure_action(action: str) -> TypeGuard[FailureAction]:
    return action in get_args(FailureAction)


def _error_handling(block: dict[str, Any], workstream_id: str, ctx: Context) -> ErrorHandling:
    handlers = {name: _handler(name, spec, workstream_id, ctx) for name, spec in block.items()}
    action = handlers.get("on_failure", Message()).action
    on_failure: FailureAction = "log_and_continue"
    if action is not None and _is_failure_action(action):
        on_failure = action
    elif action is not None:
        allowed = get_args(FailureAction)
        hint = did_you_mean(action, allowed) or "use one of " + ", ".join(allowed)
        message = f"unknown on_failure action {action!r}"
        ctx.problems.append(Problem(message, "error_handling.on_failure.action", ctx.file, None, hint))
    return ErrorHandling(on_failure_action=on_failure, handlers=handlers)


def _saga(top: dict[str, Any]) -> Saga:
    block = top.get("saga")
    if block is None:
        return Saga()
    enabled = block.get("enabled", True) and block.get("rollback_on_failure", True)
    # `rollback_strategy: {on_compensation_failure, partial_rollback}` (the spelling) wins over
    # the same fields in the saga block; a plain-name rollback_strategy was kept as an annotation.
    strategy = {**block, **(top.get("rollback_strategy") or {})}
    return Saga(
        enabled=enabled,
        rollback_order=block.get("rollback_order", top.get("rollback_order", "reverse")),
        on_compensation_failure=strategy.get("on_compensation_failure", "log_and_continue"),
        partial_rollback=strategy.get("partial_rollback", True),
        timeout=block.get("timeout"),
    )


def build(top: dict[str, Any], ctx: Context, source_path: str) -> Draft:
    """Build the model from checked data; problems found on the way go to `ctx`."""
    steps: list[Step] = []
    paths: list[str] = []
    phases: list[PhaseDraft] = []
    single = "steps" not in top and "phases" not in top
    default = _default_policies(top)
    if single and "tool" not in top:
        hint = "add steps[] (or phases[]), or a top-level tool and tasks for a single-step workstream"
        ctx.problems.append(Problem("the workstream has no steps", "steps", ctx.file, None, hint))
    elif single:
        steps.append(_step(top, "", top, None, default, ctx))
        paths.append("")
    else:
        for name in SINGLE_STEP_ONLY:
            if name in top:
                hint = (
                    "move it into a step: top-level step fields only make sense without steps[] or phases[]"
                )
                ctx.problems.append(
                    Problem(f"top-level `{name}` is not used here", name, ctx.file, None, hint)
                )
        if "files_scope" in top:
            ctx.annotations["files_scope"] = top["files_scope"]
        for i, raw in enumerate(top.get("steps", [])):
            if raw is not None:
                steps.append(_step(raw, f"steps[{i}]", top, None, default, ctx))
                paths.append(f"steps[{i}]")
        for p, phase in enumerate(top.get("phases", [])):
            if phase is None:
                continue
            ids = []
            for i, raw in enumerate(phase.get("steps", [])):
                if raw is not None:
                    step_path = f"phases[{p}].steps[{i}]"
                    steps.append(_step(raw, step_path, top, phase.get("id"), default, ctx))
                    paths.append(step_path)
                    ids.append(raw.get("id", ""))
            info = {
                "id": phase.get("id", ""),
                "name": phase.get("name", ""),
                "description": phase.get("description", ""),
                "depends_on": list(phase.get("depends_on", [])),
                "steps": ids,
            }
            phases.append(PhaseDraft(info["id"], f"phases[{p}]", tuple(info["depends_on"]), tuple(ids), info))
    groups = tuple(
        StepGroup(g["id"], tuple(g["steps"]), g.get("execute", "parallel"), g.get("max_workers"))
        for g in top.get("step_groups", [])
        if "id" in g and "steps" in g
    )
    workstream = Workstream(
        id=top.get("id", ""),
        steps=tuple(steps),
        name=top.get("name", ""),
        description=top.get("description", ""),
        execution=_execution(top.get("execution", {})),
        step_groups=groups,
        error_handling=_error_handling(top.get("error_handling", {}), top.get("id", ""), ctx),
        saga=_saga(top),
        metadata=top.get("metadata", {}),
        phases=tuple(p.info for p in phases),
        not_acted_on=tuple(ctx.annotations),
        annotations=dict(ctx.annotations),
        source_path=source_path,
    )
    return Draft(workstream, paths, phases)
