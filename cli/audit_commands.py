"""`audit`: questions about past runs, answered from the event log (timeline, failures, durations, ...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .output import echo_json

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="STEPLEDGER_DB", help="SQLAlchemy URL of the log (default: .stepledger/ledger.db)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line instead of a table.")]
CsvOption = Annotated[bool, typer.Option("--csv", help="CSV with a header line instead of a table.")]
WorkstreamOption = Annotated[str | None, typer.Option("--workstream", "-w", help="Only this workstream.")]
RunOption = Annotated[str | None, typer.Option("--run", "-r", help="Only this run.")]
StepOption = Annotated[str | None, typer.Option("--step", "-s", help="Only this step.")]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="From this time on: 2026-11-01 or 2026-11-01T14:30 (local).")
]
UntilOption = Annotated[str | None, typer.Option("--until", help="Before this time (same forms as --since).")]
LastOption = Annotated[str | None, typer.Option("--last", help="The last 30m, 12h, 7d or 2w.")]

audit_app = typer.Typer(
    no_args_is_help=True,
    help="Answer questions about past runs from the event log (tables; --json or --csv for scripts).",
)

# Columns of each answer: (key of the row, header, how to show it on a terminal).
Column = tuple[str, str, str]
COLUMNS: dict[str, list[Column]] = {
    "timeline": [("step_id", "step", "text"), ("attempt", "#", "text"), ("offset_s", "start", "offset"),
                 ("duration_s", "took", "duration"), ("outcome", "outcome", "outcome"), ("bar", "", "bar"),
                 ("host", "worker", "worker"), ("reason", "reason", "text")],
    "failures": [("workstream_id", "workstream", "text"), ("step_id", "step", "text"),
                 ("error_signature", "error signature", "clip"), ("count", "count", "text"),
                 ("runs", "runs", "text"), ("first_seen", "first seen", "time"),
                 ("last_seen", "last seen", "time"), ("output_excerpt", "last output", "excerpt")],
    "durations": [("workstream_id", "workstream", "text"), ("step_id", "step", "text"),
                  ("count", "passed", "text"), ("median_s", "median", "duration"),
                  ("p95_s", "p95", "duration"), ("max_s", "max", "duration"),
                  ("trend_text", "trend", "text")],
    "retries": [("run_id", "run", "text"), ("step_id", "step", "text"), ("attempts", "attempts", "text"),
                ("failures", "failed", "text"), ("last_failure", "last failure", "clip"),
                ("resolution", "resolution", "text")],
    "actions": [("at", "when", "time"), ("action", "action", "text"), ("actor", "by", "text"),
                ("run_id", "run", "text"), ("step_id", "step", "text"), ("reason", "reason", "text")],
    "why": [("at", "when", "time"), ("version", "v", "text"), ("type", "event", "text"),
            ("detail", "detail", "text")],
}  # fmt: skip
OUTCOME_STYLE = {"passed": "green", "failed": "red", "running": "yellow"}
BAR_WIDTH = 30
# A table is for reading: past a few hundred rows it only scrolls (and rich needs seconds to lay
# out tens of thousands). Scripts get every row with --json or --csv.
TABLE_LIMIT = 200
OLDEST_FIRST = {"retries", "actions"}  # capped, these show their newest rows


def _show(kind: str, value: Any, row: dict[str, Any]) -> str:
    """A cell as rich markup: only the outcome and the bar carry styles; log text is escaped."""
    import datetime as dt

    from rich.markup import escape

    from stepledger.engine.narration import format_duration

    if value is None and kind != "bar":
        return ""
    match kind:
        case "time":
            return dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S")
        case "duration":
            return format_duration(value)
        case "offset":
            return "+" + format_duration(value)
        case "outcome":
            return f"[{OUTCOME_STYLE.get(value, 'white')}]{value}[/]"
        case "worker":
            return escape(f"{value}:{row['pid']}" if row.get("pid") else str(value))
        case "clip":
            return escape(str(value)[:60])
        case "excerpt":
            lines = str(value).strip().splitlines()
            return escape(lines[-1][:80]) if lines else ""
        case "bar":
            return str(row.get("bar", ""))
    return escape(str(value))


def _add_bars(rows: list[dict[str, Any]]) -> None:
    """A text Gantt bar per attempt: where it sits on the run's time axis."""
    if not rows:
        return
    end = max((r["offset_s"] + (r["duration_s"] or 0.0)) for r in rows) or 1.0
    for r in rows:
        first = min(BAR_WIDTH - 1, int(r["offset_s"] / end * BAR_WIDTH))
        length = max(1, round((r["duration_s"] or 0.0) / end * BAR_WIDTH))
        style = OUTCOME_STYLE.get(r["outcome"], "white")
        r["bar"] = " " * first + f"[{style}]" + "█" * min(length, BAR_WIDTH - first) + "[/]"


def _print(
    name: str, rows: list[dict[str, Any]], json_output: bool, csv_output: bool, title: str = ""
) -> None:
    if json_output:
        for row in rows:
            echo_json(row)
        return
    if csv_output:
        import csv
        import sys

        keys = list(rows[0]) if rows else [key for key, _, _ in COLUMNS[name]]
        writer = csv.DictWriter(sys.stdout, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return
    import sys

    from rich.console import Console
    from rich.table import Table

    # Piped into a file or a pager, a table is still for people: let it be wide, not 80 columns.
    console = Console() if sys.stdout.isatty() else Console(width=200)
    if not rows:
        console.print("nothing in the log matches")
        return
    table = Table(title=title or None, title_justify="left")
    for _, header, kind in COLUMNS[name]:
        table.add_column(header, no_wrap=kind in ("time", "bar", "offset"), overflow="fold")
    shown = rows[-TABLE_LIMIT:] if name in OLDEST_FIRST else rows[:TABLE_LIMIT]
    for row in shown:
        table.add_row(*(_show(kind, row.get(key), row) for key, _, kind in COLUMNS[name]))
    console.print(table)
    if len(rows) > len(shown):
        which = "newest" if name in OLDEST_FIRST else "first"
        console.print(f"the {which} {len(shown)} of {len(rows):,} rows: narrow the question (--workstream, "
                      "--run, --step, --since, --last) or take them all with --json or --csv")  # fmt: skip


def _answer(db: str | None, question: Callable[[Any], Any]) -> Any:
    from stepledger.store.connect import open_store

    store = open_store(db)
    try:
        return question(store)
    finally:
        store.close()


def _filter(workstream: str | None, run: str | None, step: str | None, since: str | None,
            until: str | None, last: str | None) -> Any:  # fmt: skip
    from stepledger.engine.audit import make_filter

    return make_filter(workstream, run, step, since, until, last)


@audit_app.command()
def timeline(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    db: DbOption = None,
    step: StepOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    last: LastOption = None,
    html: Annotated[
        Path | None, typer.Option("--html", help="Also write a self-contained HTML page.")
    ] = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Every attempt of every step of RUN on one time axis: start, duration, outcome, worker."""
    from stepledger.engine import audit

    flt = _filter(None, run_id, step, since, until, last)

    def ask(store: Any) -> tuple[list[dict[str, Any]], str | None]:
        rows = audit.timeline(store, run_id, flt)
        return rows, (audit.timeline_html(store, run_id) if html else None)

    rows, page = _answer(db, ask)
    if html is not None and page is not None:
        html.write_text(page, encoding="utf-8")
    if not (json_output or csv_output):
        _add_bars(rows)
    _print("timeline", rows, json_output, csv_output, title=f"{run_id} · {len(rows)} attempts")
    if html is not None and not (json_output or csv_output):
        typer.echo(f"wrote {html}")


@audit_app.command()
def failures(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Failed attempts grouped by step and error signature: counts, first and last seen, output excerpt."""
    from stepledger.engine import audit

    flt = _filter(workstream, run, step, since, until, last)
    _print("failures", _answer(db, lambda s: audit.failures(s, flt)), json_output, csv_output)


@audit_app.command()
def durations(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Per step across runs (passed attempts): count, median, p95, max and trend."""
    from stepledger.engine import audit

    flt = _filter(workstream, run, step, since, until, last)
    _print("durations", _answer(db, lambda s: audit.durations(s, flt)), json_output, csv_output)


@audit_app.command()
def retries(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Steps that needed more than one attempt: how many, and what made them pass in the end."""
    from stepledger.engine import audit

    flt = _filter(workstream, run, step, since, until, last)
    _print("retries", _answer(db, lambda s: audit.retries(s, flt)), json_output, csv_output)


@audit_app.command()
def actions(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Every operator action (retry, skip, mark-passed, cancel): who, when, and the reason."""
    from stepledger.engine import audit

    flt = _filter(workstream, run, step, since, until, last)
    _print("actions", _answer(db, lambda s: audit.actions(s, flt)), json_output, csv_output)


@audit_app.command()
def why(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    step_id: Annotated[str, typer.Argument(help="The step.")],
    db: DbOption = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Why STEP of RUN is in its state: the events that put it there, and what a waiting step waits on."""
    from stepledger.engine import audit

    answer = _answer(db, lambda s: audit.why(s, run_id, step_id))
    if json_output:
        echo_json(answer)
        return
    if csv_output:
        _print("why", answer["events"], False, True)
        return
    typer.echo(f"{step_id} is {answer['state']}: {answer['reason']}")
    if answer["events"]:
        _print("why", answer["events"], False, False)
    else:
        typer.echo("(the log has no event of this step yet)")


def register(app: typer.Typer) -> None:
    """Add the `audit` command group to `app`."""
    app.add_typer(audit_app, name="audit")
