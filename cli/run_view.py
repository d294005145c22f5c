"""What `run` and `resume` print: plain lines, a live rich view on a terminal, or JSON lines."""

from __future__ import annotations

import sys
import threading
from typing import TYPE_CHECKING, Any, TextIO

from stepledger.engine.read.describe import describe, failure_words, format_duration, last_error_line, plural
from stepledger.engine.read.terminal_text import printable
from stepledger.events import AcceptanceTestsRecorded, RecordedEvent
from stepledger.events.state import RunState

from .output import echo_json, event_record

if TYPE_CHECKING:
    from stepledger.engine.api import PreparedRun, RunReport, Stepledger
    from stepledger.engine.read.measured import Forecast, MeasuredTimes

EXIT_BY_OUTCOME = {"passed": 0, "interrupted": 130}
DONE = ("passed", "skipped", "tripped", "blocked")  # a step in one of these moves the bar
ROLLED_BACK = ("rolled_back", "partially_rolled_back")
# The colour of a line on a terminal, by the mark it starts with.
MARK_STYLES = {"✓": "green", "✗": "red", "↻": "yellow", "⏸": "yellow", "⊘": "magenta", "↺": "cyan",
               "↷": "dim", "!": "yellow", "⟳": "bold"}  # fmt: skip


class PlainView:
    """Plain lines, one per event worth a line: for pipes, files and CI logs."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout
        self.waiting: dict[str, tuple[str, bool]] = {}  # step id -> (queue, served): see fleet_waiting
        self._lock = threading.Lock()  # lines come from the run's thread and the fleet's listener

    def line(self, text: str = "") -> None:
        """Print one line now (a step id's or an error's escape sequences shown, not acted on)."""
        with self._lock:
            self.out.write(printable(text) + "\n")
            self.out.flush()

    def fleet_waiting(self, waiting: dict[str, tuple[str, bool]]) -> None:
        """A run on workers: the steps whose attempt no worker has taken yet, step id -> (queue,
        whether a live worker serves it); called (from another thread) each time that changes.
        A line for each step that starts waiting on a queue no live worker serves."""
        before, self.waiting = self.waiting, dict(waiting)
        for sid, (queue, served) in waiting.items():
            if not served and before.get(sid) != (queue, served):
                self.line(f"  ⏸ {sid}: waiting for a worker on queue {queue} (no live worker serves it)")

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

    def expect(self, forecast: Forecast) -> None:
        """Plain lines show no estimate."""

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

    def expect(self, forecast: Forecast) -> None:
        """JSON lines carry events only."""

    def close(self) -> None:
        """Nothing to tear down."""


def activity(run: RunState, queued: dict[str, tuple[str, bool]] | None = None) -> str:
    """What the run is doing now: the steps running, those waiting out a retry back-off, and (a run
    on workers, `queued`: step id -> (queue, served)) those whose attempt no worker has taken yet:
    waiting for a worker when no live worker serves their queue, else queued."""
    queued = queued or {}
    running = [sid for sid, s in run.steps.items() if s.state == "running" and sid not in queued]
    retrying = [sid for sid, s in run.steps.items() if s.state == "retrying"]
    unserved = [f"{sid} ({queued[sid][0]})" for sid, s in run.steps.items()
                if s.state == "running" and sid in queued and not queued[sid][1]]  # fmt: skip
    taken_soon = [
        sid for sid, s in run.steps.items() if s.state == "running" and queued.get(sid, ("", False))[1]
    ]
    parts = []
    labels = (("running", running), ("waiting for a worker", unserved), ("queued", taken_soon),
              ("waiting to retry", retrying))  # fmt: skip
    for label, ids in labels:
        if ids:
            parts.append(f"{label}: {', '.join(ids[:3])}{'…' if len(ids) > 3 else ''}")
    return " · ".join(parts) or "steps"


class LiveView(PlainView):
    """A rich live view: the same lines in colour, above a progress bar of finished steps with what
    runs, what waits to retry, and (from earlier runs' durations) the time left."""

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
        self.expected_s: float | None = None
        self.progress = Progress(
            SpinnerColumn(), TextColumn("{task.description}", markup=False),  # step ids are no markup
            BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), _eta_column(self), console=self.console,
            transient=True,
        )  # fmt: skip
        self.task = self.progress.add_task("steps", total=total_steps)
        self.run: RunState | None = None
        self.progress.start()

    def line(self, text: str = "") -> None:
        """Print above the progress bar, coloured by the line's mark (✓ green, ✗ red, ↻ yellow...)."""
        from rich.text import Text

        shown = printable(text)
        # The style on the text, not on the print: a print's style would also paint the bar below.
        body = shown.lstrip()
        indent = shown[: len(shown) - len(body)]
        line = Text.assemble(indent, (body, MARK_STYLES.get(body[:1], "")))
        self.progress.console.print(line, highlight=False)

    def events(self, run: RunState, recorded: list[RecordedEvent]) -> None:
        """Print lines and move the bar."""
        self.run = run
        done = sum(1 for s in run.steps.values() if s.state in DONE)
        shown = printable(activity(run, self.waiting))
        if any(s.state == "expanded" for s in run.steps.values()):
            self.progress.update(self.task, total=len(step_states(run)))  # the steps for_each made too
        self.progress.update(self.task, completed=done, description=shown, refresh=True)
        super().events(run, recorded)

    def fleet_waiting(self, waiting: dict[str, tuple[str, bool]]) -> None:
        """Say it above the bar, and show on the bar which steps wait for a worker or are queued."""
        super().fleet_waiting(waiting)
        if self.run is not None:
            shown = printable(activity(self.run, self.waiting))
            self.progress.update(self.task, description=shown, refresh=True)

    def expect(self, forecast: Forecast) -> None:
        """Show the time left, counted down from the duration earlier runs measured."""
        self.expected_s = forecast.expected_s

    def close(self) -> None:
        """Stop the live display."""
        self.progress.stop()


def eta_text(expected_s: float | None, elapsed_s: float) -> str:
    """`ETA ~42s`, `longer than the usual 1m 10s`, or nothing when no earlier run was measured."""
    if expected_s is None:
        return ""
    if elapsed_s <= expected_s:
        return f"ETA ~{format_duration(expected_s - elapsed_s)}"
    return f"longer than the usual {format_duration(expected_s)}"


def _eta_column(view: LiveView) -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class EtaColumn(ProgressColumn):
        """The time left by earlier runs' durations (rich's own column guesses from the bar's speed)."""

        def render(self, task: Any) -> Text:
            return Text(eta_text(view.expected_s, task.elapsed or 0.0), style="cyan")

    return EtaColumn()


def step_states(run: RunState) -> list[str]:
    """The state of each step of the run, declared ones the log has not mentioned yet `pending`; a
    for_each step is counted as the steps it became (engine/run/expanding.py), not itself."""
    declared = [s["id"] for s in run.workstream.get("steps", []) if isinstance(s, dict) and "id" in s]
    ids = dict.fromkeys([*declared, *run.steps])
    states = [run.steps[sid].state if sid in run.steps else "pending" for sid in ids]
    return [s for s in states if s != "expanded"]


def counts_line(run: RunState) -> str:
    """`3 steps: 1 passed, 1 failed, 1 blocked, 0 skipped` (`failed`: the steps that failed for good)."""
    states = step_states(run)
    counts = {name: states.count(name) for name in ("passed", "tripped", "blocked", "skipped")}
    line = (f"{plural(len(states), 'step')}: {counts['passed']} passed, {counts['tripped']} failed, "
            f"{counts['blocked']} blocked, {counts['skipped']} skipped")  # fmt: skip
    unfinished = len(states) - sum(counts.values())
    return line + (f", {unfinished} not finished" if unfinished else "")


def print_summary(
    view: PlainView | JsonView | LiveView,
    run: RunState,
    acceptance_events: list[RecordedEvent],
    times: MeasuredTimes | None,
) -> None:
    """The end of the seed's expected output: acceptance tests, counts, total time and time saved."""
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
    if all(state in ("passed", "skipped", "expanded") for state in states.values()):
        view.line("✓ All steps complete")
    if acceptance and run.status not in ROLLED_BACK:  # a rollback undid what the tests checked
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
    if run.status != "passed":
        view.line(f"  {counts_line(run)}")
        for sid, step in run.steps.items():
            if step.state == "tripped":
                line = last_error_line(step.last_error)
                detail = f": {line}" if line else ""
                how = failure_words(step.last_reason, step.last_exit_code)
                view.line(f"  ✗ {sid}: failed ({how}) after {plural(step.attempt, 'attempt')}{detail}")
            elif step.state == "blocked":
                view.line(f"  ⊘ {sid}: blocked by {step.blocked_by}")
    else:  # time saved is a passed run's figure: a failed one saved nothing
        if times.sequential_s > 0:
            view.line(f"  (Sequential would have taken ~{format_duration(times.sequential_s)} - "
                      f"{times.saved_fraction:.0%} time saved)")  # fmt: skip
        view.line(f"  {counts_line(run)}")


RunView = PlainView | JsonView | LiveView


def view_for(json_output: bool, total_steps: int) -> RunView:
    if json_output:
        return JsonView()
    if sys.stdout.isatty():
        return LiveView(total_steps)
    return PlainView()


def print_preamble(view: RunView, prepared: PreparedRun, api: Stepledger | None = None) -> None:
    """The seed's opening lines; with `api`, the plan says whether steps will overlap and, from
    earlier runs' durations, how long the run should take (the live view counts it down)."""
    from stepledger.engine.read.measured import forecast

    workstream = prepared.workstream
    steps = len(workstream.steps)
    view.line(f"run {prepared.run_id}")
    view.line(f"✓ Loading workstream: {workstream.id}")
    view.line("✓ Validating schema")
    view.line("✓ Checking file scope conflicts")
    view.line(f"✓ Building dependency graph ({plural(steps, 'step')}, "
              f"{plural(prepared.dependencies, 'dependency', 'dependencies')})")  # fmt: skip
    view.line(f"✓ Initializing worker pool (max_workers={prepared.workers})")
    view.line()
    plan = api.plan(workstream, prepared.workers, history=isinstance(view, LiveView)) if api else None
    expected = forecast(plan) if plan is not None else None
    parallel = expected.parallel if expected is not None else prepared.workers > 1 and steps > 1
    if expected is not None:
        view.expect(expected)
    if steps == 1:
        view.line("⟳ Executing the step:")
    else:
        view.line(f"⟳ Executing steps {'in parallel' if parallel else 'one at a time'}:")


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
