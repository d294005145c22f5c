"""What is sent to the pool for one attempt: of a step (the reactor) or of its compensation (the rollback)."""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stepledger.events.state import RunState

from ..execution.spec import AttemptSpec
from ..workstream.env_values import for_worker, reads_environment
from ..workstream.limits import MAX_SECONDS
from ..workstream.model import Step, Workstream
from ..workstream.profiles import ToolProfile
from ..workstream.step_outputs import Filler


@dataclass
class AttemptSpecs:
    """Builds the AttemptSpec of each attempt of one run's steps."""

    run_id: str
    workdir: str
    run_dir: Path
    workstream: Workstream
    profiles: dict[str, ToolProfile]
    _made_dirs: set[str] = field(default_factory=set)

    def spec(self, step: Step, attempt: int, run: RunState | None = None) -> AttemptSpec:
        """The spec of `attempt` of `step`: its tool, tasks, tests, folder, environment and timeout.

        `${steps.ID.outputs.NAME}` in them is filled from the outputs `run` recorded
        (engine/workstream/step_outputs.py): as variables in shell commands, as data elsewhere.
        An env value written with `${env...}` is also sent as its template, for a fleet worker
        to resolve (`env_templates`), its references filled here all the same.
        """
        item = None if step.for_each_index is None else (step.for_each_index, step.for_each_item)
        fill = Filler(lambda sid: run.step(sid).outputs if run is not None else {}, for_each=item)
        tasks = tuple(fill.task(step.tool, task) for task in step.tasks)
        tests = tuple(fill.shell(test) for test in step.acceptance_tests)
        env = {name: fill.data(value) for name, value in step.env.items()}
        # After the tasks and tests: the variables they read replace a step's own of the same name.
        templates = self._for_worker(step.env_templates, fill.cut, fill.env) if step.env_templates else {}
        refusal = ""
        if step.cwd and fill.reads(step.cwd):
            filled = fill.data(step.cwd)
            refusal = _escaping_cwd(filled, self.workdir)
            step = replace(step, cwd=None if refusal else filled)
        tool, timeout = step.tool, step.timeout
        if isinstance(timeout, str):
            timeout, said = _filled_timeout(fill.data(timeout))
            refusal = refusal or said
        if refusal:  # the attempt fails, its log saying why; nothing of the step runs
            tool, tasks, tests = "shell", (refusal,), ()
        profile = self.profiles.get(tool)
        return AttemptSpec(
            run_id=self.run_id,
            step_id=step.id,
            attempt=attempt,
            tool=tool,
            tasks=tasks,
            acceptance_tests=tests,
            workdir=self._folder(step),
            env={**env, **fill.env},
            timeout=timeout or self.workstream.execution.timeout_per_step,
            files_scope=step.files_scope,
            profile_command=profile.command if profile else None,
            profile_per_task=profile.per_task if profile else False,
            run_dir=str(self.run_dir),
            env_templates=templates,
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
        own = {**env, "STEPLEDGER_COMPENSATING": "1"}
        # As the step's env reaches the compensation: its references unfilled.
        templates = self._for_worker(step.env_templates, lambda text: [(text, "")], own)
        return AttemptSpec(
            run_id=self.run_id,
            step_id=step.id,
            attempt=attempt,
            tool=comp.tool,
            tasks=(action,),
            acceptance_tests=(),
            workdir=self._folder(step),
            env={**step.env, **own},
            timeout=comp.timeout,
            profile_command=profile.command if profile else None,
            profile_per_task=profile.per_task if profile else False,
            run_dir=str(run_dir),
            env_templates=templates,
        )

    def _for_worker(
        self, templates: dict[str, str], cut: Callable[[str], list[tuple[str, str]]], replaced: dict[str, str]
    ) -> dict[str, dict[str, Any]]:
        """Each template of `templates` (name -> template) that reads the environment or the
        parameters, as a fleet worker resolves it, cut at its references by `cut`; not those whose
        names are in `replaced`: the run's own variables, which take their place."""
        params = self.workstream.params
        return {
            name: for_worker(t, cut(t), params)
            for name, t in templates.items()
            if name not in replaced and reads_environment(t)
        }

    def _folder(self, step: Step) -> str:
        workdir = Path(self.workdir) / step.cwd if step.cwd else Path(self.workdir)
        if step.cwd and step.cwd not in self._made_dirs:
            # A step's cwd is created like `mkdir -p`, once per run, so a step can write into a
            # fresh output folder (the demo does) without a set-up step of its own.
            workdir.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(step.cwd)
        return str(workdir)


def _escaping_cwd(cwd: str, workdir: str) -> str:
    """ "" when `cwd` (filled from a step output) stays inside `workdir`, else a failing shell command.

    An output is data another step wrote: it may name a folder below the run's, never make the
    step run (and stepledger create folders) elsewhere, as `/` or `../..` would.
    """
    top = os.path.normpath(workdir)
    where = os.path.normpath(os.path.join(top, cwd))
    if where == top or where.startswith(top + os.sep):
        return ""
    said = f"stepledger: the step's cwd {cwd!r} (from a step output) leaves the run's folder"
    return f"echo {shlex.quote(said)} >&2; exit 2"


def _filled_timeout(text: str) -> tuple[float | None, str]:
    """A timeout read from an output: (seconds, "") or (None, a shell command failing and saying why)."""
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if 0 < seconds <= MAX_SECONDS:
        return seconds, ""
    said = f"stepledger: the step's timeout {text!r} (from a step output) is not a number of seconds"
    return None, f"echo {shlex.quote(said)} >&2; exit 2"
