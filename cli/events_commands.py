"""`stepledger events`: the raw log, filtered, as a table, JSON lines or CSV, optionally followed."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepledger.engine.read.terminal_text import printable

from .common import DbOption
from .output import plain_cells

if TYPE_CHECKING:
    from stepledger.events import RecordedEvent

CSV_COLUMNS = (
    "position",
    "recorded_at",
    "run_id",
    "step",
    "stream",
    "version",
    "type",
    "schema_version",
    "event_id",
    "payload",
)
_SUMMARY_SKIP = {"workstream"}  # too big for a table cell: see --json
_SUMMARY_WIDTH = 90


def iso(seconds: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def as_record(event: RecordedEvent) -> dict[str, Any]:
    """The JSON-lines form of an event (the same fields as the CSV columns)."""
    return {
        "position": event.position,
        "recorded_at": iso(event.recorded_at),
        "run_id": event.run_id,
        "step": event.step_id,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "event_id": event.event_id,
        "payload": event.payload,
    }


def summary(payload: dict[str, Any]) -> str:
    """A short `key=value` line of a payload for the table."""
    parts = []
    for key, value in payload.items():
        if key in _SUMMARY_SKIP or value in ("", None, {}, []):
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"), default=str)
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= _SUMMARY_WIDTH else line[: _SUMMARY_WIDTH - 1] + "…"


class _Printer:
    """Writes events in one format; the table form streams rows once following starts."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._csv = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)

    def print(self, events: Iterable[RecordedEvent], streaming: bool) -> int:
        count = 0
        if self.fmt == "table" and not streaming:
            return self._table(events)  # a table needs every row first; following prints lines
        for event in events:
            count += 1
            if self.fmt == "json":
                sys.stdout.write(json.dumps(as_record(event), ensure_ascii=False, default=str) + "\n")
            elif self._csv is not None:
                record = as_record(event)
                record["payload"] = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
                self._csv.writerow([record[c] if record[c] is not None else "" for c in CSV_COLUMNS])
            else:
                step = event.step_id or "-"
                line = (
                    f"{event.position:>7}  {iso(event.recorded_at)}  {event.run_id}  {step}  "
                    f"v{event.version}  {event.type}  {summary(event.payload)}"
                )
                sys.stdout.write(printable(line) + "\n")
        sys.stdout.flush()
        return count

    def _table(self, events: Iterable[RecordedEvent]) -> int:
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None, header_style="bold", pad_edge=False)
        for column, justify in (("pos", "right"), ("recorded (UTC)", "left"), ("run", "left")):
            table.add_column(column, justify=justify, no_wrap=True)  # type: ignore[arg-type]
        table.add_column("step", no_wrap=True)
        table.add_column("v", justify="right")
        table.add_column("type", no_wrap=True)
        # Never narrower than this on a narrow terminal (the other columns do not wrap); piped with
        # no COLUMNS set, the lines are as long as they need to be, as `--follow` prints them.
        table.add_column("details", overflow="fold", min_width=24)
        count = 0
        for e in events:
            count += 1
            table.add_row(
                *plain_cells(
                    e.position,
                    iso(e.recorded_at)[:-1].replace("T", " "),
                    e.run_id,
                    e.step_id or "-",
                    e.version,
                    e.type,
                    summary(e.payload),
                )
            )
        if count:
            unbounded = not sys.stdout.isatty() and "COLUMNS" not in os.environ
            Console(width=100_000 if unbounded else None).print(table)
        return count


def register(app: typer.Typer) -> None:
    """Add `events` to `app`."""

    @app.command("events")
    def events_command(
        run: Annotated[str | None, typer.Argument(help="Only this run's events.")] = None,
        step: Annotated[str | None, typer.Option("--step", help="Only this step's events.")] = None,
        types: Annotated[
            list[str] | None, typer.Option("--type", help="Only events of this type (repeatable).")
        ] = None,
        since: Annotated[int, typer.Option("--since", help="Only events after this position.", min=0)] = 0,
        json_output: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
        csv_output: Annotated[bool, typer.Option("--csv", help="CSV with a header row.")] = False,
        follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new events.")] = False,
        db: DbOption = None,
    ) -> None:
        """Print the raw event log: a table on a terminal, JSON lines or CSV for scripts."""
        from stepledger.engine.api import Stepledger

        if json_output and csv_output:
            raise typer.BadParameter("choose one of --json and --csv")
        fmt = "json" if json_output else "csv" if csv_output else "table"
        printer = _Printer(fmt)
        try:
            with Stepledger(db) as api:
                head = api.head() if follow else 0  # before the scan: nothing falls in between
                last = since
                for batch in _batches(api.events(run, step, types, since, must_exist=not follow)):
                    printer.print(batch, streaming=False)
                    last = batch[-1].position
                if not follow:
                    return
                # A tail outlives a database restart: it waits (saying so on stderr) and carries on.
                for wanted in api.follow(max(last, head), run, step, types, on_outage=_to_stderr):
                    printer.print(wanted, streaming=True)
        except KeyboardInterrupt:
            return
        except BrokenPipeError:  # `stepledger events | head`: the reader left, so do we
            sys.stderr.close()
            return


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def _batches(events: Iterable[Any], size: int = 5_000) -> Iterator[list[Any]]:
    # The table is printed in one piece per batch; a very long log is printed in several tables.
    batch: list[Any] = []
    for event in events:
        batch.append(event)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
