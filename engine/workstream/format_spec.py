"""The workstream file format: every field, its type, its meaning, and whether the engine acts on it.

This one description checks files (spec.py) and generates `schema.json` (schema.py); docs/workstreams.md
follows it. `acted=False` marks fields that are accepted and kept but do not change behaviour yet:
`validate` notes each one (except the `kept` annotations) and `validate --verbose` lists them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from stepledger.engine.workstream.limits import (
    DEFAULT_FAN_OUT,
    MAX_COUNT,
    MAX_FAN_OUT,
    MAX_SECONDS,
    MAX_WORKERS,
)

from .compound_kinds import NOT_ACTED_ON, Field, Interp, ListOf, MapOf, Nullable, Obj, ScalarOr
from .parameters import PARAMETERS
from .problems import PathPart, json_path
from .spec import INVALID, AnyJson, Bool, Context, Duration, Kind, Num, Regex, Str

STR = Str()
ID = Str(non_empty=True)
STRS = ListOf(Str())
IDS = ListOf(ID)
BOOL = Bool()
# Seconds and counts are bounded (workstream/limits.py): a huge timeout overflows the clock it is added to.
POSITIVE = Num(minimum=0, exclusive=True, maximum=MAX_SECONDS)
NON_NEGATIVE = Num(minimum=0, maximum=MAX_SECONDS)
COUNT = Num(minimum=1, integer=True, maximum=MAX_COUNT)
WORKERS = Num(minimum=1, integer=True, maximum=MAX_WORKERS)
FREE = AnyJson()
FREE_OBJECT = AnyJson(object_only=True)
UNKNOWN_FIELDS = ("warn", "error")  # the workstream's `unknown_fields` switch

# Fields kept as annotations wherever a workstream, phase or step may carry them (DESIGN.md).
ANNOTATIONS = {
    name: Field(FREE, doc, acted=False, kept=True)
    for name, doc in {
        "doc_id": "documentation id",
        "openspec_change": "OpenSpec change id",
        "ccpm_issue": "CCPM issue number",
        "gate": "quality gate number",
        "files_create": "files the work is expected to create",
    }.items()
}

RETRY = Obj(
    {
        "enabled": Field(BOOL, "false: never retry (one attempt)"),
        "strategy": Field(Str(choices=("exponential", "linear", "fixed")), "how the delay grows"),
        "initial_delay": Field(NON_NEGATIVE, "seconds before the first retry"),
        "max_delay": Field(NON_NEGATIVE, "cap on the delay, seconds"),
        "jitter": Field(BOOL, "randomise each delay (±50%)"),
    },
    doc="Backoff between attempts of a failed step.",
)

BREAKER = Obj(
    {
        "max_attempts": Field(COUNT, "attempts in all; 1 means no retry"),
        "max_error_repeats": Field(Nullable(COUNT), "same error signature this many times in a row opens it"),
        "cooldown_seconds": Field(NON_NEGATIVE, "after opening, wait this long and allow one trial"),
        "error_patterns": Field(ListOf(Regex()), "regexes; when set, only matching failures are retried"),
        "per_step": Field(BOOL, "one breaker per step (the only mode today)"),
        "escalation_strategy": Field(
            STR,
            "how to escalate when the breaker opens",
            acted=False,
            instead="the delay between attempts is `retry`'s; cooldown_seconds pauses an open breaker",
        ),
    },
    doc="When a failing step stops being retried.",
)

COMPENSATION = Obj(
    {
        "enabled": Field(BOOL, "false: the step has no compensation"),
        "action": Field(ID, "what undoes the step: a command for `tool`", required=True),
        "tool": Field(ID, "tool that runs the action (default shell)"),
        "parameters": Field(FREE_OBJECT, "values for the action; ${step_output.NAME} is filled at run time"),
        "timeout": Field(POSITIVE, "seconds"),
        "retries": Field(
            Num(minimum=0, integer=True, maximum=MAX_COUNT), "extra attempts when the compensation fails"
        ),
    },
    doc="Undoes a completed step during a saga rollback.",
)

_STEP_BODY = {
    "tool": Field(ID, "shell, python, a tool profile name, or a program on PATH"),
    "tasks": Field(STRS, "what the tool is asked to do, in order"),
    "depends_on": Field(IDS, "ids of steps that must pass first"),
    "acceptance_tests": Field(STRS, "shell commands that must all exit 0 for the step to pass"),
    "timeout": Field(Interp(POSITIVE, deferred=True), "seconds; overrides execution.timeout_per_step"),
    "env": Field(
        # Only the step's process receives these resolved: secret-named variables are allowed here.
        MapOf(Interp(Str(scalars=True), secrets=True, deferred=True)),
        "environment variables added for the step",
    ),
    "cwd": Field(Interp(STR, deferred=True), "working directory, relative to the run's"),
    "files_scope": Field(STRS, "files the step may touch; no two concurrent steps may share one"),
    "queue": Field(ID, "with --on-workers: the queue whose workers run the step (default `default`)"),
    "compensation": Field(
        ScalarOr(COMPENSATION, "action"), "undo action for saga rollback (or the action alone)"
    ),
    "estimated_duration": Field(Duration(), "expected duration, used by `plan` when no run has measured it"),
    "when": Field(STR, "a condition (params, env, matrix, dependency outputs); false skips the step"),
    "on_skip": Field(
        Str(choices=("run", "skip")), "when the step is skipped: its dependents run (default) or are skipped"
    ),
}

STEP = Obj(
    {
        "id": Field(ID, "unique step id", required=True),
        "description": Field(STR, "what the step does"),
        **_STEP_BODY,
        "circuit_breaker": Field(BREAKER, "overrides the top-level circuit_breaker, field by field"),
        "retry": Field(RETRY, "overrides the top-level retry, field by field"),
        "matrix": Field(
            MapOf(ListOf(FREE)),
            "{KEY: [values]}: one step per combination, id ID[KEY=value,...]; ${matrix.KEY} in its fields",
        ),
        "for_each": Field(
            ID,
            "${steps.ID.outputs.NAME} holding a JSON list: one step per item at run time, id ID[0],"
            " ID[1], ...; ${for_each.item} in its fields",
        ),
        "max_fan_out": Field(
            Num(minimum=1, integer=True, maximum=MAX_FAN_OUT),
            f"for_each: a longer list fails the step (default {DEFAULT_FAN_OUT:,})",
        ),
        "metadata": Field(
            FREE_OBJECT, "free data; metadata.estimated_duration is read like estimated_duration"
        ),
        **ANNOTATIONS,
    },
    doc="One step: the tool runs the tasks, then every acceptance test must pass.",
    is_step=True,
)

_FROM_THE_LOG = "the event log is the checkpoint: `stepledger resume RUN` goes on from it"

RESUME_STRATEGY = Obj(
    {
        "on_failure": Field(STR, "retry_phase, skip_phase or restart_from_checkpoint"),
        "max_phase_retries": Field(COUNT, "times the phase may be retried"),
        "checkpoint_interval": Field(NON_NEGATIVE, "seconds between checkpoints"),
    },
    doc="How a phase resumes after a failure.",
)

PHASE = Obj(
    {
        "id": Field(ID, "unique phase id", required=True),
        "name": Field(STR, "display name"),
        "description": Field(STR, "what the phase does"),
        "depends_on": Field(IDS, "ids of phases whose every step must pass first"),
        "steps": Field(ListOf(STEP, positions=True), "the phase's steps"),
        "checkpoint": Field(
            FREE,
            "checkpoint settings",
            acted=False,
            instead=_FROM_THE_LOG,
        ),
        "resume_strategy": Field(
            ScalarOr(RESUME_STRATEGY, "on_failure"),
            "how to resume the phase (a word, or an object)",
            acted=False,
            instead="a failed step is retried by its circuit_breaker and retry; " + _FROM_THE_LOG,
        ),
        **ANNOTATIONS,
    },
    doc="An ordered group of steps.",
)

EXECUTION = Obj(
    {
        "parallel": Field(Interp(BOOL), "false: one step at a time"),
        "max_workers": Field(
            Interp(Num(minimum=1, integer=True, words=("auto",), maximum=MAX_WORKERS)),
            f'"auto" = CPU count (at most {MAX_WORKERS})',
        ),
        "timeout_per_step": Field(Interp(POSITIVE), "seconds; the step's process group is killed"),
        "rate_limit_delay": Field(Interp(NON_NEGATIVE), "minimum seconds between two step starts"),
        "serialize_conflicting_files": Field(
            Interp(BOOL), "run concurrent steps that share files_scope one at a time instead of failing"
        ),
        "adaptive_scaling": Field(
            FREE, "adjust workers to load", acted=False, instead="max_workers sets the pool's size"
        ),
        "isolation": Field(
            Interp(Str(choices=("none", "worktree", "workstream"))),
            "none: steps share the run's folder; worktree: a git worktree per step; workstream: one "
            "for the run (docs/worktrees.md)",
        ),
        "merge_into": Field(Interp(STR), "a passed run's integration branch is merged into this branch"),
        "files_scope_strict": Field(
            Interp(BOOL), 'isolation "worktree": a step that changed files outside its files_scope fails'
        ),
    },
    doc="How the run schedules its steps. Values may use ${env.NAME}, ${env.NAME:-default}, ${env.X == 'v'}.",
)

STEP_GROUP = Obj(
    {
        "id": Field(ID, "unique group id", required=True),
        "steps": Field(IDS, "ids of the steps in the group", required=True),
        "execute": Field(Str(choices=("parallel", "sequential")), "sequential: one of them at a time"),
        "max_workers": Field(WORKERS, "at most this many of them at once"),
    },
    doc="A concurrency limit over a subset of steps.",
)

_MESSAGE_FIELDS = {
    "action": (STR, "what to do (on_failure: log_and_continue, fail_fast, skip_step, escalate)"),
    "message": (STR, "text with ${step_id}, ${attempt_number}, ${max_attempts}, ... placeholders"),
    "log_level": (Str(choices=("debug", "info", "warning", "error", "critical")), "log level"),
    "notify": (STRS, "who to tell (named in the ESCALATION line when the action is escalate)"),
    "pause_duration": (NON_NEGATIVE, "seconds to pause"),
    "collect_diagnostics": (BOOL, "gather diagnostics"),
}
_NOT_ACTED_INSTEAD = {
    "notify": "stepledger sends nothing",
    "pause_duration": "circuit_breaker.cooldown_seconds is the pause of an open breaker",
    "collect_diagnostics": "on_failure and on_rollback_failure collect diagnostics",
}


def _handler(*acted: str) -> Obj:
    """An `error_handling.on_*` block: the fields this handler acts on, the others read and noted."""
    fields = {
        name: Field(kind, doc, acted=name in acted, instead=_NOT_ACTED_INSTEAD.get(name, ""))
        for name, (kind, doc) in _MESSAGE_FIELDS.items()
    }
    return Obj(fields, doc="A reaction to an event of the run.")


# `action` is read everywhere; building.py notes the actions a handler does not act on.
_SAID = ("message", "log_level", "action")
_ROLLBACK_SAID = (*_SAID, "notify")
HANDLERS = {
    "on_failure": _handler(*_SAID, "notify", "collect_diagnostics"),
    "on_retry": _handler(*_SAID),
    "on_recovery": _handler(*_SAID),
    "on_circuit_open": _handler(*_SAID, "pause_duration"),
    "on_rollback_start": _handler(*_ROLLBACK_SAID),
    "on_rollback_complete": _handler(*_ROLLBACK_SAID),
    "on_rollback_failure": _handler(*_ROLLBACK_SAID, "collect_diagnostics"),
}
HANDLER_NAMES = (*HANDLERS, "on_step_failure")
ERROR_HANDLING = Obj(
    {
        **{name: Field(obj) for name, obj in HANDLERS.items()},
        "on_step_failure": Field(
            _handler(*_MESSAGE_FIELDS),
            "a reaction to a step's failure",
            acted=False,
            instead="on_failure reacts to a step that fails for good; then the saga (if any) rolls back",
        ),
    },
    doc="Reactions to failures.",
)

SAGA = Obj(
    {
        "enabled": Field(BOOL, "roll back completed steps when a step fails for good"),
        "rollback_on_failure": Field(BOOL, "false: do not roll back (same as enabled: false)"),
        "timeout": Field(POSITIVE, "seconds for the whole rollback"),
        "rollback_order": Field(Str(choices=("reverse", "parallel")), "order of compensations"),
        "on_compensation_failure": Field(Str(choices=("log_and_continue", "fail_fast")), "when one fails"),
        "partial_rollback": Field(BOOL, "accept a rollback where some compensations failed"),
        "strategy": Field(
            STR,
            "orchestration or choreography",
            acted=False,
            instead="stepledger's rollback is orchestrated: it runs the compensations itself",
        ),
    },
    doc="Saga: compensations of completed steps run when a step fails for good.",
)

ROLLBACK_STRATEGY = Obj(
    {
        "on_compensation_failure": Field(Str(choices=("log_and_continue", "fail_fast")), "when one fails"),
        "partial_rollback": Field(BOOL, "accept a rollback where some compensations failed"),
    },
    doc="How a saga rollback treats a failed compensation (overrides the saga block's own fields).",
)


@dataclass(frozen=True)
class NameOrObj(Kind):
    """A free-text name (kept as an annotation, as the seed's `"best_effort"`) or an object acted on."""

    obj: Obj

    def check(self, value: Any, path: list[PathPart], ctx: Context) -> Any:
        if isinstance(value, str):
            ctx.annotations[json_path(path)] = value
            hint = "write an object with on_compensation_failure and partial_rollback to set them"
            ctx.warn(path, f"{NOT_ACTED_ON} (the name {value!r})", hint, note=True)
            return INVALID  # dropped from the checked data without a problem: the name is only kept
        return self.obj.check(value, path, ctx)

    def schema(self) -> dict[str, Any]:
        return {"anyOf": [{"type": "string"}, self.obj.schema()]}


WORKSTREAM = Obj(
    {
        "$schema": Field(STR, "the JSON Schema this file follows (for editors)", acted=False, kept=True),
        "unknown_fields": Field(
            Str(choices=UNKNOWN_FIELDS),
            "`warn` (the default): unknown fields are warned about and ignored; `error`: they are errors",
        ),
        "id": Field(ID, "workstream id", required=True),
        "name": Field(STR, "display name"),
        "description": Field(STR, "what the workstream does"),
        "metadata": Field(FREE_OBJECT, "free data (owner, tags, ...)"),
        "parameters": Field(PARAMETERS, "run parameters: {name: {type, default, description, choices}}"),
        "steps": Field(ListOf(STEP, positions=True), "the steps (file order is the start order)"),
        "phases": Field(ListOf(PHASE, positions=True), "ordered groups of steps"),
        "execution": Field(EXECUTION),
        "circuit_breaker": Field(BREAKER, "default for every step"),
        "retry": Field(RETRY, "default for every step"),
        "step_groups": Field(ListOf(STEP_GROUP)),
        "error_handling": Field(ERROR_HANDLING),
        "saga": Field(SAGA),
        "rollback_order": Field(Str(choices=("reverse", "parallel")), "saga compensation order"),
        "rollback_strategy": Field(
            NameOrObj(ROLLBACK_STRATEGY),
            "a name (kept, not acted on) or {on_compensation_failure, partial_rollback}",
        ),
        "state_transitions": Field(
            FREE,
            "documented state machine",
            acted=False,
            instead="each step's states are stepledger's own (docs/failures.md)",
        ),
        "resume": Field(FREE, "resume settings", acted=False, instead=_FROM_THE_LOG),
        # Without steps[] or phases[] these make the file's single step; with them, tool, env, cwd and
        # timeout are defaults for every step, and files_scope describes the whole workstream.
        **_STEP_BODY,
        **ANNOTATIONS,
    },
    doc="A stepledger workstream: steps, their dependencies, and how to check and run them.",
    extra_schema={"anyOf": [{"required": ["steps"]}, {"required": ["phases"]}, {"required": ["tool"]}]},
)

SINGLE_STEP_ONLY = (
    "tasks", "depends_on", "acceptance_tests", "compensation", "estimated_duration", "when", "on_skip",
)  # fmt: skip
