"""`replay`: a run rebuilt from its log alone, as it was at any point; `--verify` checks the log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .common import DbOption, JsonOption
from .output import echo_json


def replay(
    run_id: Annotated[str, typer.Argument(help="The run to rebuild: an id, a unique prefix, or `latest`.")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="A log position (integer) or a time (2026-11-28T14:05:00): stop there."),
    ] = None,
    verify: Annotated[
        bool,
        typer.Option("--verify", help="Also check the log's invariants; exit 1 naming offending events."),
    ] = False,
    db: DbOption = None,
    json_output: JsonOption = False,
) -> None:
    """Rebuild a run from the log alone and show each step's state, attempt and durations."""
    from stepledger.engine.api import Stepledger

    with Stepledger(db) as api:
        # A damaged file cannot be vouched for: verify fails first, one line, exit 1.
        violations = api.verify(run_id) if verify else []
        report = api.replay(run_id, at)
    if json_output:
        if verify:
            report["violations"] = [v.__dict__ for v in violations]
        echo_json(report)
    else:
        _print(report)
        if verify:
            for violation in violations:
                typer.echo(f"✗ {violation.describe()}", err=True)
            if not violations:
                typer.echo(f"✓ log verified: {report['events']} events, every invariant holds")
    if violations:
        raise typer.Exit(1)


def _print(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    title = (
        f"{report['run_id']} · {report['status']} · position {report['position']} ({report['events']} events)"
    )
    table = Table(title=title)
    for column in ("step", "state", "attempt", "attempt time", "total time", "note"):
        table.add_column(column)
    for step in report["steps"]:
        note = f"blocked by {step['blocked_by']}" if step["blocked_by"] else step["last_reason"]
        current = step["attempt_duration_s"]
        table.add_row(step["step_id"], step["state"], str(step["attempt"]),
                      "" if current is None else f"{current:.3f}s", f"{step['total_duration_s']:.3f}s",
                      note)  # fmt: skip
    Console(width=120).print(table)


def register(app: typer.Typer) -> None:
    """Add the replay command to `app`."""
    app.command()(replay)
