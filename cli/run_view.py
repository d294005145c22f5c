"""What `run` and `resume` print: plain lines, a live rich view on a terminal, or JSON lines."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from stepledger.engine.read.describe import describe, format_duration, last_error_line
from stepledger.engine.read.terminal_text import printable
from stepledger.events import AcceptanceTestsRecorded, RecordedEvent
from stepledger.events.state import RunState

from .output import echo_json, event_record

if TYPE_CHECKING:
    from stepledger.engine.api import PreparedRun, RunReport, Stepledger
    from stepledger.engine.read.measured import MeasuredTimes

EXIT_BY_OUTCOME = {"passed": 0, "interrupted": 130}


class PlainView:
    """Plain lines, one per event worth a line: for pipes, files and CI logs."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def line(self, text: str = "") -> None:
        """Print one line now (a step id's or an error's escape sequences shown, not acted on)."""
        self.out.write(printable(text) + "\n")
        self.out.flush()

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Print a line for each step event (run events are summarised at the end)."""
        for event in recorded:
            if event.type == AcceptanceTestsRecorded.type_name:
                continue
            if event.step_id is None and not event.type.startswith(("rollback.", "compensation.")):
                continue  # the run's own start and end are the preamble and the summary
            text = describe(event, run)
            if text:
                self.line(f"  {text}")

    def note(self, text: str) -> None:
        """Print a remark."""
        self.line(f"  ! {text}")

    def close(self) -> None:
        """Nothing to tear down."""


class JsonView:
    """One JSON object per event on stdout, nothing else."""

    def line(self, text: str = "") -> None:
        """Human lines are not printed in JSON mode."""

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Print each event as JSON."""
        for event in recorded:
            echo_json(event_record(event))
        sys.stdout.flush()

    def note(self, text: str) -> None:
        """Notes go to stderr so stdout stays pure JSON lines."""
        sys.stderr.write(f"note: {printable(text)}\n")

    def close(self) -> None:
        """Nothing to tear down."""


class LiveView(PlainView):
    """A rich live view: the same lines, above a progress bar of finished steps."""

    def __init__(self, total_steps: int) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        super().__init__()
        self.console = Console()
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False),  # step ids are no markup
            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=self.console, transient=True,
        )  # fmt: skip
        self.task = self.progress.add_task("steps", total=total_steps)
        self.progress.start()

    def line(self, text: str = "") -> None:
        """Print above the progress bar."""
        self.progress.console.print(printable(text), highlight=False, markup=False)

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Print lines and move the bar."""
        super().events(run, recorded)
        done = sum(1 for s in run.steps.values() if s.state in ("passed", "skipped", "tripped", "blocked"))
        running = [sid for sid, s in run.steps.items() if s.state == "running"]
        label = f"running: {', '.join(running[:3])}{'…' if len(running) > 3 else ''}" if running else "steps"
        self.progress.update(self.task, completed=done, description=printable(label))

    def close(self) -> None:
        """Stop the live display."""
        self.progress.stop()


def print_summary(
    view: PlainView | JsonView | LiveView,
    run: RunState,
    acceptance_events: list[RecordedEvent],
    times: MeasuredTimes | None,
) -> None:
    """The end of the seed's expected output: acceptance tests, total time, and the time saved."""
    from stepledger.engine.read.measured import MeasuredTimes

    states = {sid: s.state for sid, s in run.steps.items()}
    times = times or MeasuredTimes(0.0, 0.0)
    events = acceptance_events
    recorded = {
        e.step_id: e.payload["results"] for e in events if e.type == AcceptanceTestsRecorded.type_name
    }
    # In the workstream's order (as the seed lists them), not the order the steps finished in.
    acceptance = {sid: recorded[sid] for sid in run.steps if sid in recorded}
    view.line()
    if all(state in ("passed", "skipped") for state in states.values()):
        view.line("✓ All steps complete")
    if acceptance:
        passed_steps = sum(1 for results in acceptance.values() if all(r["passed"] for r in results))
        view.line(f"{'✓' if passed_steps == len(acceptance) else '✗'} Running acceptance tests "
                  f"({passed_steps}/{len(acceptance)})")  # fmt: skip
        for sid, results in acceptance.items():
            ok = all(r["passed"] for r in results)
            view.line(f"  → {sid}: {'PASS' if ok else 'FAIL'}")
    elapsed = format_duration(times.elapsed_s)
    if run.status == "passed":
        view.line(f"✓ Workstream complete in {elapsed}")
    else:
        view.line(f"✗ Workstream {run.status.replace('_', ' ')} after {elapsed}")
        for sid, step in run.steps.items():
            if step.state == "tripped":
                line = last_error_line(step.last_error)
                detail = f": {line}" if line else ""
                view.line(f"  ✗ {sid}: failed ({step.last_reason}) after {step.attempt} attempt(s){detail}")
            elif step.state == "blocked":
                view.line(f"  ⊘ {sid}: blocked by {step.blocked_by}")
    if times.sequential_s > 0:
        view.line(f"  (Sequential would have taken ~{format_duration(times.sequential_s)} - "
                  f"{times.saved_fraction:.0%} time saved)")  # fmt: skip


RunView = PlainView | JsonView | LiveView


def view_for(json_output: bool, total_steps: int) -> RunView:
    if json_output:
        return JsonView()
    if sys.stdout.isatty():
        return LiveView(total_steps)
    return PlainView()


def print_preamble(view: RunView, prepared: PreparedRun) -> None:
    workstream = prepared.workstream
    view.line(f"run {prepared.run_id}")
    view.line(f"✓ Loading workstream: {workstream.id}")
    view.line("✓ Validating schema")
    view.line("✓ Checking file scope conflicts")
    view.line(
        f"✓ Building dependency graph ({len(workstream.steps)} steps, {prepared.dependencies} dependencies)"
    )
    view.line(f"✓ Initializing worker pool (max_workers={prepared.workers})")
    view.line()
    mode = "in parallel" if prepared.workers > 1 else "one at a time"
    view.line(f"⟳ Executing steps {mode}:")


def print_end(view: RunView, report: RunReport) -> None:
    print_summary(view, report.run, report.acceptance, report.times)
    if report.run.status == "interrupted":
        view.line(f"  Stopped. Continue with: stepledger resume {report.run_id}")
    elif report.run.status != "passed":
        view.line(
            f"  Inspect with: stepledger status {report.run_id}   (logs: stepledger logs {report.run_id})"
        )


def resume_with_view(
    api: Stepledger,
    run_id: str,
    json_output: bool,
    use_current_file: bool = False,
    max_workers: int | None = None,
) -> str:
    """Resume `run_id` printing what `resume` prints; return the run's outcome."""
    plan = api.plan_resume(run_id)
    view = view_for(json_output, plan.steps)
    try:
        view.line(f"run {run_id} (resuming)")
        if plan.file_changed and not use_current_file:
            view.line(f"! {plan.run.source_path} changed since the run started; resuming with the recorded "
                      "workstream (use --use-current-file to take the file as it is now)")  # fmt: skip
        report = api.resume(run_id, plan=plan, use_current_file=use_current_file, max_workers=max_workers,
                            reporter=view)  # fmt: skip
        print_end(view, report)
    finally:
        view.close()
    return report.outcome
