"""Printing helpers shared by the commands: errors as one red line, JSON lines, tables."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from stepledger.engine.read.terminal_text import json_printable, printable

if TYPE_CHECKING:
    from stepledger.events import RecordedEvent


def plain_cells(*values: object) -> list[Any]:
    """Cells for a rich table: text shown as it is (no markup), escape sequences escaped."""
    from rich.text import Text

    return [Text(printable(str(value))) for value in values]


# The colour of a step's or a run's state wherever a table shows it (on a terminal only: rich
# drops styles when stdout is not one).
STATE_STYLES = {
    "passed": "green", "skipped": "dim", "running": "yellow", "ready": "cyan", "retrying": "yellow",
    "failed": "red", "tripped": "bold red", "blocked": "magenta", "cancelled": "red",
    "interrupted": "yellow", "rolled_back": "red", "partially_rolled_back": "bold red",
}  # fmt: skip


def state_cell(state: object) -> Any:
    """A table cell for a state, coloured by what it means (`passed` green, `failed` red, ...)."""
    from rich.text import Text

    text = printable(str(state))
    return Text(text, style=STATE_STYLES.get(text.split(" ")[0], ""))


def status_cells(step: dict[str, Any]) -> list[Any]:
    """The cells of one step's row in `status`: id, coloured state, attempt, duration, last error."""
    step_id, state, rest = (
        plain_cells(step["step_id"]),
        state_cell(step["state"]),
        plain_cells(step["attempt"], step["duration"], step["last_error"]),
    )
    return [*step_id, state, *rest]


def table_console() -> Any:
    """A rich console for a table: the terminal's width, COLUMNS if set, or (piped) as wide as the
    rows — not rich's 80 columns, which folded `runs` and `status` into unreadable cells."""
    import os

    from rich.console import Console

    unbounded = not sys.stdout.isatty() and not os.environ.get("COLUMNS", "").isdigit()
    return Console(width=100_000 if unbounded else None)


def known_error_types() -> tuple[type[BaseException], ...]:
    """The exception families that are the user's to fix, printed without a traceback."""
    from stepledger.engine.api import error_types

    return error_types()


def print_error(error: BaseException) -> int:
    """Print `error` as one red line on stderr and return the exit code it calls for."""
    code = getattr(error, "exit_code", 2)
    problems = [p for p in getattr(error, "problems", ()) if getattr(p, "severity", "error") == "error"]
    # An error listing several problems prints each as its own complete line.
    lines = [p.render() for p in problems] or [str(error) or type(error).__name__]
    prefix = "\x1b[31merror:\x1b[0m" if sys.stderr.isatty() else "error:"
    for line in lines:
        sys.stderr.write(f"{prefix} {printable(line)}\n")
    return int(code)


def csv_text(keys: list[str], rows: list[dict[str, Any]]) -> str:
    """A header line of `keys`, then one line per row (a key a row lacks is an empty cell).

    Tuples to csv.writer: DictWriter's per-row walk of the dict cost more than the writing. The
    caller writes the text at once: with PYTHONUNBUFFERED set (as CI and containers often have
    it) every row written to stdout was its own write to the pipe.
    """
    import csv
    import io
    import operator

    getter = operator.itemgetter(*keys)
    try:
        lines = [getter(row) for row in rows] if len(keys) > 1 else [[row[keys[0]]] for row in rows]
    except KeyError:  # rows with different keys: the missing ones are empty, as DictWriter writes them
        lines = [[row.get(key) for key in keys] for row in rows]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(keys)
    writer.writerows(lines)
    return text.getvalue()


def echo_json(obj: Any) -> None:
    """Write one JSON object as one line on stdout."""
    import json  # here: every command imports this module, few print JSON (`--help` starts faster)

    sys.stdout.write(json_printable(json.dumps(obj, default=str, ensure_ascii=False)) + "\n")


def iso_time(seconds: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds (`2026-11-28T14:02:11.123Z`)."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_record(event: RecordedEvent) -> dict[str, Any]:
    """The one JSON shape of an event, printed by `run --json`, `resume --json` and `events --json`."""
    return {
        "position": event.position,
        "recorded_at": iso_time(event.recorded_at),
        "run_id": event.run_id,
        "step": event.step_id,
        "stream": event.stream,
        "version": event.version,
        "type": event.type,
        "schema_version": event.schema_version,
        "event_id": event.event_id,
        "payload": event.payload,
    }
