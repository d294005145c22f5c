"""What is sent to the pool for one attempt: of a step (the reactor) or of its compensation (the rollback)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..execution.spec import AttemptSpec
from ..workstream.model import Step, Workstream
from ..workstream.profiles import ToolProfile


@dataclass
class AttemptSpecs:
    """Builds the AttemptSpec of each attempt of one run's steps."""

    run_id: str
    workdir: str
    run_dir: Path
    workstream: Workstream
    profiles: dict[str, ToolProfile]
    _made_dirs: set[str] = field(default_factory=set)

    def spec(self, step: Step, attempt: int) -> AttemptSpec:
        """The spec of `attempt` of `step`: its tool, tasks, tests, folder, environment and timeout."""
        profile = self.profiles.get(step.tool)
        return AttemptSpec(
            run_id=self.run_id,
            step_id=step.id,
            attempt=attempt,
            tool=step.tool,
            tasks=step.tasks,
            acceptance_tests=step.acceptance_tests,
            workdir=self._folder(step),
            env=dict(step.env),
            timeout=step.timeout or self.workstream.execution.timeout_per_step,
            files_scope=step.files_scope,
            profile_command=profile.command if profile else None,
            profile_per_task=profile.per_task if profile else False,
            run_dir=str(self.run_dir),
        )

    def compensation(
        self, step: Step, attempt: int, action: str, env: dict[str, str], run_dir: Path
    ) -> AttemptSpec:
        """The spec of `attempt` of `step`'s compensation: its action, in the step's folder.

        The step's outputs and parameters arrive in `env`: they travel as variables, data and
        never command text.
        """
        comp = step.compensation
        assert comp is not None
        profile = self.profiles.get(comp.tool)
        return AttemptSpec(
            run_id=self.run_id,
            step_id=step.id,
            attempt=attempt,
            tool=comp.tool,
            tasks=(action,),
            acceptance_tests=(),
            workdir=self._folder(step),
            env={**step.env, **env, "STEPLEDGER_COMPENSATING": "1"},
            timeout=comp.timeout,
            profile_command=profile.command if profile else None,
            profile_per_task=profile.per_task if profile else False,
            run_dir=str(run_dir),
        )

    def _folder(self, step: Step) -> str:
        workdir = Path(self.workdir) / step.cwd if step.cwd else Path(self.workdir)
        if step.cwd and step.cwd not in self._made_dirs:
            # A step's cwd is created like `mkdir -p`, once per run, so a step can write into a
            # fresh output folder (the demo does) without a set-up step of its own.
            workdir.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(step.cwd)
        return str(workdir)
