"""What the reactor asks the pool to run (AttemptSpec) and what comes back (AttemptResult).

Both are plain data: they cross process boundaries as dicts (pickled over the worker pipe, JSON in
the result file), never as live objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason

FAILURE_REASONS = ("exit_code", "timeout", "acceptance", "cancelled", "interrupted", "error", "lost_worker")


@dataclass(frozen=True)
class AttemptSpec:
    """One attempt of one step: the tool, its tasks, the acceptance tests and where to run them."""

    run_id: str
    step_id: str
    attempt: int
    tool: str  # "shell" | "python" | a profile name | a program on PATH
    tasks: tuple[str, ...]
    acceptance_tests: tuple[str, ...]
    workdir: str
    env: dict[str, str]
    timeout: float | None
    files_scope: tuple[str, ...] = ()
    profile_command: tuple[str, ...] | None = None
    profile_per_task: bool = False
    run_dir: str = ""
    # The env values written with `${env...}`, for a fleet worker to resolve in its own environment
    # (docs/workers.md): name -> engine/workstream/env_values.py `for_worker`. A fleet job carries
    # these instead of those names' values in `env` (engine/fleet/jobs.py); a run's own pool uses
    # `env`, where the driver resolved them.
    env_templates: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """The spec as a plain dict (what is sent to a worker)."""
        # vars() instead of dataclasses.asdict: no deep copy, this is on the hot path.
        return dict(vars(self))


@dataclass(frozen=True)
class AttemptResult:
    """The outcome of one attempt, as the worker (or the pool, for a lost worker) recorded it."""

    run_id: str
    step_id: str
    attempt: int
    passed: bool
    reason: FailureReason | None
    exit_code: int | None
    error_signature: str
    output_excerpt: str
    started_at: float
    finished_at: float
    acceptance: list[dict] = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    worker_pid: int = 0
    # An attempt a fleet worker ran (docs/workers.md): that worker's machine and name, from the
    # attempt ledger; empty for an attempt of the run's own pool, which step.started names.
    worker_host: str = ""
    worker: str = ""

    @property
    def key(self) -> tuple[str, str, int]:
        """(run_id, step_id, attempt): what identifies the attempt."""
        return (self.run_id, self.step_id, self.attempt)

    @property
    def duration(self) -> float:
        """Seconds from the attempt's start to its end."""
        return self.finished_at - self.started_at

    def to_dict(self) -> dict:
        """The result as a plain JSON-able dict."""
        return dict(vars(self))

    def to_json(self) -> str:
        """The result as JSON text (the content of `<step>.<attempt>.result.json`)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> AttemptResult:
        """Build a result from a dict, ignoring keys this version does not know."""
        known = _RESULT_FIELDS
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> AttemptResult:
        """Parse the content of a result file."""
        return cls.from_dict(json.loads(text))


_RESULT_FIELDS = frozenset(f.name for f in fields(AttemptResult))


def result_to_dict(result: AttemptResult) -> dict:
    """AttemptResult → plain dict (for the result file or an event payload)."""
    return result.to_dict()


def result_from_dict(data: dict) -> AttemptResult:
    """Plain dict → AttemptResult."""
    return AttemptResult.from_dict(data)
