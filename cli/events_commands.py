"""`stepledger events`: the raw log, filtered, as a table, JSON lines or CSV, optionally followed."""

from __future__ import annotations

import csv
import json
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepledger.engine.read.terminal_text import printable

from .common import DbOption
from .output import event_record, iso_time
from .streams import output_gone

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
    return iso_time(seconds)


def as_record(event: RecordedEvent) -> dict[str, Any]:
    """The JSON-lines form of an event (the same fields as the CSV columns, and as `run --json`)."""
    return event_record(event)


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
    """Writes events in one format. The table's rows are lines of fixed columns, the same before
    and after `--follow` starts: the widths come from the first events printed (or defaults)."""

    def __init__(self, fmt: str) -> None:
        self.fmt = fmt
        self._csv = csv.writer(sys.stdout, lineterminator="\n") if fmt == "csv" else None
        if self._csv is not None:
            self._csv.writerow(CSV_COLUMNS)
        self._widths: dict[str, int] | None = None
        self._screen = _screen_width()

    def print(self, events: Iterable[RecordedEvent], streaming: bool) -> int:
        count = 0
        events = list(events)
        if self.fmt == "table" and self._widths is None and events:
            self._start_table(events)
        for event in events:
            count += 1
            if self.fmt == "json":
                sys.stdout.write(json.dumps(as_record(event), ensure_ascii=False, default=str) + "\n")
            elif self._csv is not None:
                record = as_record(event)
                record["payload"] = json.dumps(event.payload, ensure_ascii=False, separators=(",", ":"))
                self._csv.writerow([record[c] if record[c] is not None else "" for c in CSV_COLUMNS])
            else:
                if self._widths is None:
                    self._start_table([])
                sys.stdout.write(self._row(event) + "\n")
        sys.stdout.flush()
        return count

    def _start_table(self, events: list[RecordedEvent]) -> None:
        """Fix the columns' widths and print the header line."""
        self._widths = {
            "run": max([len(printable(e.run_id)) for e in events] + [24]),
            "step": max([len(printable(e.step_id or "-")) for e in events] + [4]),
            "type": max([len(e.type) for e in events] + [20]),
        }
        header = self._line("pos", "recorded (UTC)", "run", "step", "v", "type", "details")
        bold = sys.stdout.isatty()
        sys.stdout.write((f"\x1b[1m{header}\x1b[0m" if bold else header) + "\n")

    def _line(self, pos: str, at: str, run: str, step: str, v: str, kind: str, details: str) -> str:
        w = self._widths or {}
        columns = f"{pos:>7}  {at:<23}  {run:<{w['run']}}  {step:<{w['step']}}  {v:>3}  {kind:<{w['type']}}"
        line = f"{columns}  {details}".rstrip()
        width = self._screen
        return line if width is None or len(line) <= width else line[: width - 1] + "…"

    def _row(self, e: RecordedEvent) -> str:
        at = iso(e.recorded_at)[:-1].replace("T", " ")
        return self._line(str(e.position), at, printable(e.run_id), printable(e.step_id or "-"),
                          str(e.version), printable(e.type), printable(summary(e.payload)))  # fmt: skip


def _screen_width() -> int | None:
    """The terminal's width, COLUMNS when set, or None (piped: lines as long as they are)."""
    if sys.stdout.isatty():
        import shutil

        return shutil.get_terminal_size().columns
    columns = os.environ.get("COLUMNS", "")
    return int(columns) if columns.isdigit() and int(columns) > 0 else None


def register(app: typer.Typer) -> None:
    """Add `events` to `app`."""

    @app.command("events")
    def events_command(
        run: Annotated[
            str | None, typer.Argument(help="Only this run's events (an id, a unique prefix, or `latest`).")
        ] = None,
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
                if run is not None:  # a prefix or `latest`; followed, possibly a run still to come
                    run = api.resolve_run(run, missing_ok=follow)
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
                    if output_gone():  # `stepledger events --follow | head`: the reader left
                        return
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
