"""The filters every audit query takes: workstream, run, step and a time range."""

from __future__ import annotations

import datetime as dt
import re
import time
from dataclasses import dataclass
from typing import Any

from stepledger.engine.errors import UserInputError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}
_LAST = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


class BadAuditInput(UserInputError):
    """An audit option could not be understood (a date, a duration); the message shows the form."""


@dataclass(frozen=True)
class AuditFilter:
    """Which part of the log a question is about; None means no restriction."""

    workstream_id: str | None = None
    run_id: str | None = None
    step_id: str | None = None
    since: float | None = None  # seconds since the epoch, inclusive
    until: float | None = None  # exclusive

    def conditions(
        self,
        params: dict[str, Any],
        run: str = "run_id",
        step: str | None = "step_id",
        time: str | None = None,
        workstream: str | None = "workstream_id",
    ) -> list[str]:
        """SQL conditions restricting rows to this filter (their values are put in `params`).

        `run`, `step`, `time` and `workstream` are the SQL of those columns in the query; a step or
        time of None leaves that part of the filter out, and a workstream of None filters on the
        run instead, through the `runs` projection (for queries over `events`, which has no column
        of it: 1,000 runs are read faster than a join per event).
        """
        conditions: list[str] = []
        if self.workstream_id is not None:
            params["workstream_id"] = self.workstream_id
            conditions.append(
                f"{workstream} = :workstream_id"
                if workstream is not None
                else f"{run} IN (SELECT run_id FROM runs WHERE workstream_id = :workstream_id)"
            )
        if self.run_id is not None:
            params["run_id"] = self.run_id
            conditions.append(f"{run} = :run_id")
        if self.step_id is not None and step is not None:
            params["step_id"] = self.step_id
            conditions.append(f"{step} = :step_id")
        if time is not None:
            conditions += self.window(params, time)
        return conditions

    def window(self, params: dict[str, Any], time: str) -> list[str]:
        """SQL conditions keeping the times `time` in `since <= time < until`."""
        conditions = []
        if self.since is not None:
            params["since"] = self.since
            conditions.append(f"{time} >= :since")
        if self.until is not None:
            params["until"] = self.until
            conditions.append(f"{time} < :until")
        return conditions


def where(conditions: list[str]) -> str:
    """`WHERE a AND b ...`, or nothing."""
    return f"WHERE {' AND '.join(conditions)}" if conditions else ""


def parse_time(text: str, option: str = "--since") -> float:
    """Seconds since the epoch of `2026-11-01`, `2026-11-01 14:30` or an ISO 8601 time (local if no zone)."""
    try:
        moment = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise BadAuditInput(
            f"{option} {text!r} is not a date: use a form like 2026-11-01, 2026-11-01T14:30 "
            "or 2026-11-01T14:30:00+00:00"
        ) from None
    return moment.timestamp()  # a naive time is local, as the tables print it


def parse_last(text: str, now: float | None = None) -> float:
    """The start of the window `--last 7d` (units s, m, h, d, w) ends now, in seconds since the epoch."""
    match = _LAST.match(text)
    if match is None:
        raise BadAuditInput(
            f"--last {text!r} is not a duration: use a number and a unit, like 30m, 12h or 7d"
        )
    amount, unit = float(match.group(1)), match.group(2)
    return (time.time() if now is None else now) - amount * _UNITS[unit]


def make_filter(
    workstream_id: str | None = None,
    run_id: str | None = None,
    step_id: str | None = None,
    since: str | None = None,
    until: str | None = None,
    last: str | None = None,
) -> AuditFilter:
    """An `AuditFilter` from command-line strings; BadAuditInput names the option that is wrong."""
    if since and last:
        raise BadAuditInput("give --since or --last, not both")
    start = parse_time(since, "--since") if since else (parse_last(last) if last else None)
    end = parse_time(until, "--until") if until else None
    if start is not None and end is not None and end <= start:
        raise BadAuditInput("--until must be later than --since")
    return AuditFilter(workstream_id=workstream_id, run_id=run_id, step_id=step_id, since=start, until=end)
