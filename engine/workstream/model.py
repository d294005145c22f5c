"""The workstream model: what a loaded, validated and interpolated workstream file means.

`engine/workstream/` builds these from JSON/YAML files; the reactor, the planner and the CLI read
them. Everything here is immutable and already resolved (`${env.X}` substituted, defaults applied,
top-level `retry`/`circuit_breaker` blocks merged into each step). `workstream_to_dict()` /
`workstream_from_dict()` (engine/workstream) round-trip it exactly: the `run.started` event stores that
dict so resume and replay work after the file has changed — except a step's `env` values written with
`${env...}`, which workstream/env_values.py records as their templates (they may be secrets) and resolves
again when a run is resumed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

RetryStrategy = Literal["exponential", "linear", "fixed"]
FailureAction = Literal["log_and_continue", "fail_fast", "skip_step", "escalate"]
Isolation = Literal["none", "worktree", "workstream"]


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before the next attempt of a failed step."""

    enabled: bool = True
    strategy: RetryStrategy = "exponential"
    initial_delay: float = 1.0  # seconds
    max_delay: float = 60.0
    jitter: bool = False


@dataclass(frozen=True)
class BreakerPolicy:
    """When a failing step stops being retried (its circuit breaker opens)."""

    max_attempts: int = 1  # attempts in all; 1 means no retry
    max_error_repeats: int | None = None  # same error signature this many times in a row opens it
    cooldown_seconds: float = 0.0  # > 0: after opening, wait, then allow one trial (half-open)
    error_patterns: tuple[str, ...] = ()  # regexes; when set, only matching failures are retried
    per_step: bool = True


@dataclass(frozen=True)
class Compensation:
    """The action that undoes a completed step during a saga rollback."""

    action: str  # a tool invocation, e.g. a shell command
    tool: str = "shell"
    parameters: dict[str, Any] = field(default_factory=dict)
    timeout: float | None = None
    retries: int = 0


@dataclass(frozen=True)
class Step:
    """One step: run `tool` over `tasks`, then every acceptance test; passes only if all pass."""

    id: str
    tool: str
    tasks: tuple[str, ...] = ()
    description: str = ""
    depends_on: tuple[str, ...] = ()  # as written in the file
    requires: tuple[str, ...] = ()  # effective: depends_on plus every step of the phases depended on
    acceptance_tests: tuple[str, ...] = ()
    # The step's own timeout, else the execution's timeout_per_step; a string reads a dependency's
    # output (`${steps.ID.outputs.NAME}`) and is filled at dispatch (engine/run/attempt_specs.py).
    timeout: float | str | None = None
    env: dict[str, str] = field(default_factory=dict)  # merged over the inherited environment
    # Names in `env` whose value came from `${env...}`, with that template: the log records the
    # template, never the value (engine/workstream/env_values.py).
    env_templates: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None  # relative to the run's working directory
    files_scope: tuple[str, ...] = ()
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    circuit_breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    compensation: Compensation | None = None
    phase: str | None = None
    estimated_duration: float | None = None  # seconds, from the file; plan() uses it when no history
    metadata: dict[str, Any] = field(default_factory=dict)  # free, as written
    # A condition (engine/workstream/expressions.py) decided when the step's dependencies are done:
    # false skips it with reason `condition`; `on_skip` says whether its dependents are skipped too.
    when: str | None = None
    queue: str | None = None  # with --on-workers, the fleet queue that runs it (docs/workers.md)
    on_skip: Literal["run", "skip"] = "run"
    # The values of a matrix expansion (engine/workstream/matrix.py): `test[python=3.12]` has
    # {"python": "3.12"}; `when` reads them as matrix.KEY.
    matrix: dict[str, str] = field(default_factory=dict)
    # Dynamic fan-out (engine/workstream/for_each.py): `for_each` is the `${steps.ID.outputs.NAME}`
    # holding a JSON list; when the step's turn comes it becomes one step per item (at most
    # `max_fan_out`), recorded by `step.expanded`. An expansion has no `for_each` but its place in
    # the list and the item, filled as `${for_each.index}` and `${for_each.item}`.
    for_each: str | None = None
    max_fan_out: int = 1000  # limits.DEFAULT_FAN_OUT (the model imports nothing of the package)
    for_each_index: int | None = None
    for_each_item: Any = None


@dataclass(frozen=True)
class StepGroup:
    """A concurrency limit over a subset of steps."""

    id: str
    steps: tuple[str, ...]
    execute: Literal["parallel", "sequential"] = "parallel"
    max_workers: int | None = None  # None: no limit beyond the run's

    @property
    def limit(self) -> int | None:
        """How many of the group's steps may run at once (None: no group limit)."""
        return 1 if self.execute == "sequential" else self.max_workers


@dataclass(frozen=True)
class Execution:
    """How the run schedules its steps."""

    parallel: bool = True
    max_workers: int = 3
    timeout_per_step: float | None = None
    rate_limit_delay: float = 0.0  # minimum seconds between two step starts
    serialize_conflicting_files: bool = False  # run steps sharing files_scope one at a time
    # Where each step's attempt runs: the run's folder ("none"), a git worktree of its own
    # ("worktree") or one worktree for the whole run ("workstream"); docs/worktrees.md.
    isolation: Isolation = "none"
    merge_into: str | None = None  # the branch a passed run's integration branch is merged into
    # With isolation "worktree": a step that changed files outside its files_scope fails (the
    # violation is recorded either way).
    files_scope_strict: bool = False

    @property
    def worker_limit(self) -> int:
        """The effective pool size (`parallel: false` means one at a time)."""
        return self.max_workers if self.parallel else 1


@dataclass(frozen=True)
class Message:
    """An `error_handling.on_*` handler: what to do and what to say at that moment."""

    action: str | None = None
    message: str | None = None  # with ${step_id}, ${attempt_number}, ${max_attempts}, ...
    log_level: str = "info"
    notify: tuple[str, ...] = ()
    pause_duration: float | None = None
    collect_diagnostics: bool = False


@dataclass(frozen=True)
class ErrorHandling:
    """The `error_handling` block: reactions to failures, retries and breakers."""

    on_failure_action: FailureAction = "log_and_continue"
    handlers: dict[str, Message] = field(default_factory=dict)  # "on_failure", "on_retry", ...


@dataclass(frozen=True)
class Saga:
    """The `saga` block: roll back completed steps when a step fails for good."""

    enabled: bool = False
    rollback_order: Literal["reverse", "parallel"] = "reverse"
    on_compensation_failure: Literal["log_and_continue", "fail_fast"] = "log_and_continue"
    partial_rollback: bool = True
    timeout: float | None = None


@dataclass(frozen=True)
class Workstream:
    """A whole workstream: its steps in file order and how to run them."""

    id: str
    steps: tuple[Step, ...]
    name: str = ""
    description: str = ""
    execution: Execution = field(default_factory=Execution)
    step_groups: tuple[StepGroup, ...] = ()
    error_handling: ErrorHandling = field(default_factory=ErrorHandling)
    saga: Saga = field(default_factory=Saga)
    metadata: dict[str, Any] = field(default_factory=dict)
    phases: tuple[dict[str, Any], ...] = ()  # kept for display: id, name, steps, depends_on
    not_acted_on: tuple[str, ...] = ()  # JSON paths of accepted fields the engine ignores
    annotations: dict[str, Any] = field(default_factory=dict)  # those fields' values, by JSON path
    source_path: str = ""
    # The run's parameters, checked against the file's `parameters` (engine/workstream/parameters.py);
    # `${params.NAME}` was filled from them when the file was loaded, and resume resolves the step
    # env templates with them again.
    params: dict[str, Any] = field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        """The step with id `step_id` (KeyError if there is none)."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


def worker_limit(workstream: Workstream, max_workers: int | None = None) -> int:
    """How many steps of `workstream` may run at once, with `--max-workers` as an override."""
    if not workstream.execution.parallel:
        return 1
    return max_workers or workstream.execution.max_workers
