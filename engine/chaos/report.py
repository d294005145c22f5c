"""The report of a chaos run: each iteration's tally and findings, the totals, one JSON object.

The JSON form is stable: its keys (`REPORT_KEYS`, `ITERATION_KEYS`, `VIOLATION_KEYS`) are fixed
and documented (docs/chaos.md), lists are in iteration order, kill points in the catalogue's order,
and `format` changes if a key ever changes meaning. Times are seconds, rounded to milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checks import Expected, Finding
from .driver import IterationOutcome
from .plan import ChaosPlan, IterationPlan
from .points import KILL_POINTS

FORMAT = 1
REPORT_KEYS = (
    "format",
    "workstream",
    "workdir",
    "scratch",
    "kept",
    "seed",
    "kill_points",
    "shell_stub",
    "uninterrupted",
    "totals",
    "iterations",
    "violations",
)
ITERATION_KEYS = (
    "index",
    "kill_point",
    "plan",
    "run_id",
    "kills",
    "kill_points_hit",
    "resumes",
    "seconds",
    "recovery_seconds",
    "violations",
    "replay",
)
VIOLATION_KEYS = ("iteration", "seed", "kill_point", "rule", "step", "message", "replay")


@dataclass
class IterationResult:
    """One iteration: its plan, what happened, and what broke."""

    plan: IterationPlan
    outcome: IterationOutcome
    findings: list[Finding]
    replay: str
    expected_seconds: float = 0.0  # the uninterrupted run's

    @property
    def recovery_seconds(self) -> float:
        """Time this iteration took beyond the uninterrupted run (restarts, recovery, waiting)."""
        return max(0.0, self.outcome.seconds - self.expected_seconds)


@dataclass
class ChaosReport:
    """A whole chaos run."""

    plan: ChaosPlan
    expected: Expected
    results: list[IterationResult] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)  # scratch folders left on disk

    @property
    def violations(self) -> int:
        return sum(len(r.findings) for r in self.results)

    def points_hit(self) -> dict[str, int]:
        """Kill point -> SIGKILLs that landed there, in the catalogue's order."""
        counts = {p.name: 0 for p in KILL_POINTS}
        for result in self.results:
            for point in result.outcome.points_hit:
                counts[point] = counts.get(point, 0) + 1
        return {name: n for name, n in counts.items() if n}

    def totals(self) -> dict[str, Any]:
        """The table's last line: iterations, kills, points hit, resumes, time lost, violations."""
        return {
            "iterations": len(self.results),
            "kills": sum(r.outcome.kills for r in self.results),
            "kill_points_hit": self.points_hit(),
            "resumes": sum(r.outcome.resumes for r in self.results),
            "recovery_seconds": round(sum(r.recovery_seconds for r in self.results), 3),
            "violations": self.violations,
        }

    def violation_rows(self) -> list[dict[str, Any]]:
        """Each finding with the seed, the kill point and the command replaying its iteration."""
        return [
            {
                "iteration": r.plan.index,
                "seed": self.plan.seed,
                "kill_point": r.plan.point,
                "rule": f.rule,
                "step": f.step,
                "message": f.message,
                "replay": r.replay,
            }
            for r in self.results
            for f in r.findings
        ]

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON object (keys: REPORT_KEYS)."""
        return {
            "format": FORMAT,
            "workstream": str(self.plan.file),
            "workdir": str(self.plan.workdir),
            "scratch": str(self.plan.scratch),
            "kept": [str(p) for p in self.kept],
            "seed": self.plan.seed,
            "kill_points": list(self.plan.points),
            "shell_stub": self.plan.shell_stub,
            "uninterrupted": {
                "status": self.expected.status,
                "seconds": round(self.expected.seconds, 3),
                "steps": dict(sorted(self.expected.states.items())),
            },
            "totals": self.totals(),
            "iterations": [_iteration_json(r) for r in self.results],
            "violations": self.violation_rows(),
        }


def _iteration_json(result: IterationResult) -> dict[str, Any]:
    plan = result.plan
    return {
        "index": plan.index,
        "kill_point": plan.point,
        "plan": {
            "run": plan.first.describe(),
            "resume": plan.resume_kill.describe() if plan.resume_kill else None,
        },
        "run_id": result.outcome.run_id,
        "kills": result.outcome.kills,
        "kill_points_hit": result.outcome.points_hit,
        "resumes": result.outcome.resumes,
        "seconds": round(result.outcome.seconds, 3),
        "recovery_seconds": round(result.recovery_seconds, 3),
        "violations": len(result.findings),
        "replay": result.replay,
    }
