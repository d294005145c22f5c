"""`audit`: questions about past runs, answered from the event log (timeline, failures, durations, ...)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .common import DbOption
from .output import csv_text, echo_json

if TYPE_CHECKING:
    from .text_table import Cell

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
                 ("failure", "failure", "text"), ("error", "error", "text"), ("count", "count", "text"),
                 ("runs", "runs", "text"), ("first_seen", "first seen", "time"),
                 ("last_seen", "last seen", "time"), ("last_output", "last output", "text")],
    "durations": [("workstream_id", "workstream", "text"), ("step_id", "step", "text"),
                  ("count", "passed", "text"), ("median_s", "median", "duration"),
                  ("p95_s", "p95", "duration"), ("max_s", "max", "duration"),
                  ("trend_text", "trend", "text")],
    "retries": [("run_id", "run", "text"), ("step_id", "step", "text"), ("attempts", "attempts", "text"),
                ("failures", "failed", "text"), ("last_failure", "last failure", "text"),
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


def _show(kind: str, value: Any, row: dict[str, Any]) -> Cell:
    """A cell as it reads on a terminal: only the outcome and the bar carry colours."""
    import datetime as dt

    from stepledger.engine.read.describe import format_duration

    from .text_table import Cell

    if value is None and kind != "bar":
        return Cell("")
    match kind:
        case "time":
            return Cell(dt.datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M:%S"))
        case "duration":
            return Cell(format_duration(value))
        case "offset":
            return Cell("+" + format_duration(value))
        case "outcome":
            return Cell(str(value), OUTCOME_STYLE.get(value, "white"))
        case "worker":
            if row.get("worker"):  # a run on workers: the worker that ran it (host:pid of the worker)
                return Cell(str(row["worker"]))
            return Cell(f"{value}:{row['pid']}" if row.get("pid") else str(value))
        case "bar":
            return Cell(row.get("bar", ""), OUTCOME_STYLE.get(row.get("outcome", ""), "white"))
    return Cell(str(value))


def _add_bars(rows: list[dict[str, Any]]) -> None:
    """A text Gantt bar per attempt: where it sits on the run's time axis."""
    if not rows:
        return
    end = max((r["offset_s"] + (r["duration_s"] or 0.0)) for r in rows) or 1.0
    for r in rows:
        first = min(BAR_WIDTH - 1, int(r["offset_s"] / end * BAR_WIDTH))
        length = max(1, round((r["duration_s"] or 0.0) / end * BAR_WIDTH))
        r["bar"] = " " * first + "█" * min(length, BAR_WIDTH - first)


def _print(
    name: str,
    rows: list[dict[str, Any]],
    json_output: bool,
    csv_output: bool,
    title: str = "",
    total: int | None = None,
) -> None:
    """Print `rows` as a table (at most TABLE_LIMIT of them), JSON lines or CSV; `total` is how many
    rows the answer has when `rows` are only the newest of them (a table's)."""
    if json_output:
        _write_json_lines(rows)
        return
    if csv_output:
        _write_csv(name, rows)
        return
    import sys

    from .text_table import print_table

    if not rows:
        sys.stdout.write("nothing in the log matches\n")
        return
    columns = COLUMNS[name]
    shown = rows[-TABLE_LIMIT:] if name in OLDEST_FIRST else rows[:TABLE_LIMIT]
    cells = [[_show(kind, row.get(key), row) for key, _, kind in columns] for row in shown]
    no_wrap = [kind in ("time", "bar", "offset") for _, _, kind in columns]
    print_table([header for _, header, _ in columns], cells, no_wrap, title=title)
    total = len(rows) if total is None else total
    if total > len(shown):
        which = "newest" if name in OLDEST_FIRST else "first"
        sys.stdout.write(
            f"the {which} {len(shown)} of {total:,} rows: narrow the question (--workstream, --run, "
            "--step, --since, --last) or take them all with --json or --csv\n"
        )


def _write_json_lines(rows: list[dict[str, Any]]) -> None:
    """One JSON object per row and line, written at once.

    orjson: the standard encoder made a big `retries` slow to print, row by row. Its text is
    compact (no space after `:` and `,`); anything it
    cannot encode (a 65-bit integer) goes through the standard encoder, as `echo_json` writes it.
    """
    import sys

    import orjson

    def line(row: dict[str, Any]) -> bytes:
        try:
            return orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE)
        except TypeError:
            return json.dumps(row, default=str, ensure_ascii=False).encode() + b"\n"

    try:  # one C call per row, the newline appended by orjson; a row it refuses takes `line`
        data = b"".join([orjson.dumps(row, default=str, option=orjson.OPT_APPEND_NEWLINE) for row in rows])
    except TypeError:
        data = b"".join([line(row) for row in rows])
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stdout (a test's, a redirection to StringIO)
        sys.stdout.write(data.decode())
        return
    sys.stdout.flush()  # what was written as text goes first
    buffer.write(data)


def _write_csv(name: str, rows: list[dict[str, Any]]) -> None:
    """A header line (the first row's keys, or the view's columns when there is no row), then the rows."""
    import sys

    keys = list(rows[0]) if rows else [key for key, _, _ in COLUMNS[name]]
    sys.stdout.write(csv_text(keys, rows))


def _answer(db: str | None, question: str, *args: Any) -> Any:
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        return api.audit(question, *args)


def _filter(workstream: str | None, run: str | None, step: str | None, since: str | None,
            until: str | None, last: str | None) -> Any:  # fmt: skip
    from stepledger.engine.api import Stepledger

    return Stepledger.audit_filter(workstream, run, step, since, until, last)


@audit_app.command()
def timeline(
    run_id: Annotated[
        str, typer.Argument(help="The run: its id, a unique prefix or `latest`.", metavar="RUN")
    ] = "latest",
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
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        run_id = api.resolve_run(run_id)
        flt = _filter(None, run_id, step, since, until, last)
        rows = api.audit("timeline", run_id, flt)
        page = api.audit("timeline_html", run_id) if html else None
    if html is not None and page is not None:
        html.write_text(page, encoding="utf-8")
    if not (json_output or csv_output):
        _add_bars(rows)
    from stepledger.engine.read.describe import plural

    title = f"{run_id} · {plural(len(rows), 'attempt')}"
    _print("timeline", rows, json_output, csv_output, title=title)
    if html is not None and not (json_output or csv_output):
        typer.echo(f"wrote {html}")


@audit_app.command()
def failures(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Failed attempts grouped by step and error signature: counts, first and last seen, output excerpt."""
    flt = _filter(workstream, run, step, since, until, last)
    _print("failures", _answer(db, "failures", flt), json_output, csv_output)


@audit_app.command()
def durations(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Per step across runs (passed attempts): count, median, p95, max and trend."""
    flt = _filter(workstream, run, step, since, until, last)
    _print("durations", _answer(db, "durations", flt), json_output, csv_output)


@audit_app.command()
def retries(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Steps that needed more than one attempt: how many, and what made them pass in the end."""
    flt = _filter(workstream, run, step, since, until, last)
    # A table shows the newest TABLE_LIMIT rows: only those are built (a big log has tens of thousands).
    newest = None if json_output or csv_output else TABLE_LIMIT
    rows, total = _answer(db, "newest_retries", flt, newest)
    _print("retries", rows, json_output, csv_output, total=total)


@audit_app.command()
def actions(
    db: DbOption = None, workstream: WorkstreamOption = None, run: RunOption = None, step: StepOption = None,
    since: SinceOption = None, until: UntilOption = None, last: LastOption = None,
    json_output: JsonOption = False, csv_output: CsvOption = False,
) -> None:  # fmt: skip
    """Every operator action (retry, skip, mark-passed, cancel, drain): who, when, and the reason."""
    flt = _filter(workstream, run, step, since, until, last)
    _print("actions", _answer(db, "actions", flt), json_output, csv_output)


@audit_app.command()
def why(
    run_id: Annotated[str, typer.Argument(help="The run.")],
    step_id: Annotated[str, typer.Argument(help="The step.")],
    db: DbOption = None,
    json_output: JsonOption = False,
    csv_output: CsvOption = False,
) -> None:
    """Why STEP of RUN is in its state: the events that put it there, and what a waiting step waits on."""
    answer = _answer(db, "why", run_id, step_id)
    if json_output:
        echo_json(answer)
        return
    if csv_output:  # the payload as JSON text, as `events --csv` writes it, not a Python dict
        rows = [{**e, "payload": json.dumps(e["payload"], ensure_ascii=False)} for e in answer["events"]]
        _print("why", rows, False, True)
        return
    typer.echo(f"{step_id} is {answer['state']}: {answer['reason']}")
    if answer["events"]:
        _print("why", answer["events"], False, False)
    else:
        typer.echo("(the log has no event of this step yet)")


def register(app: typer.Typer) -> None:
    """Add the `audit` command group to `app`."""
    app.add_typer(audit_app, name="audit")
