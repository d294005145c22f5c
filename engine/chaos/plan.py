"""The plan of a chaos run: which iteration is killed where, decided by the seed alone.

Iteration i draws from its own generator, seeded by (seed, i), and aims at kill point
`points[i % len(points)]`. So `--seed S --iteration I --kill-at POINT` plans exactly iteration I
again, whatever the other iterations were: that is each violation's replay command.
Random instants are fractions of the uninterrupted run's duration, so the plan needs no run.
"""

from __future__ import annotations

import random
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from stepledger.engine.errors import UserInputError
from stepledger.engine.workstream.model import Workstream

from .points import BY_NAME, KILL_POINTS, SLOW_WORKER_DELAY, KillPoint, passes

MAX_ITERATIONS = 10_000
RESUME_KILL_CHANCE = 0.4  # share of iterations whose first resume is killed too
MAX_PASS = 3  # a fault point fires at one of its first passes


class ChaosInputError(UserInputError):
    """A chaos option or workstream that cannot be planned; the message says how to fix it."""


@dataclass(frozen=True)
class Kill:
    """One planned SIGKILL of one `stepledger` process."""

    point: str  # a name of points.KILL_POINTS
    kill_at: str = ""  # STEPLEDGER_KILL_AT for the process, e.g. "after_append:2"
    at_fraction: float | None = None  # random instants: a share of the uninterrupted run's time
    claim_delay: float = 0.0  # STEPLEDGER_FAULT_CLAIM_DELAY for the process's workers

    def describe(self) -> str:
        """The kill in words, e.g. `after_append:2` or `at 37% of the uninterrupted run`."""
        if self.at_fraction is not None:
            return f"at {self.at_fraction:.0%} of the uninterrupted run"
        if self.kill_at:
            slow = f", workers claim after {self.claim_delay:g}s" if self.claim_delay else ""
            return f"{self.kill_at}{slow}"
        return {
            "acceptance": "when an acceptance test starts",
            "retry_wait": "when a retry is scheduled",
        }.get(self.point, self.point)


@dataclass(frozen=True)
class IterationPlan:
    """One iteration: the point it aims at, the kill of its `run`, and of its first resume (if any)."""

    index: int
    point: str
    first: Kill
    resume_kill: Kill | None = None


@dataclass(frozen=True)
class ChaosPlan:
    """Everything a chaos run will do, and where."""

    file: Path  # absolute
    workdir: Path  # absolute: the folder copied for each iteration
    scratch: Path  # absolute: where the copies go
    seed: int
    points: tuple[str, ...]
    unreachable: dict[str, str]  # default points left out, and why
    iterations: tuple[IterationPlan, ...]
    db: str | None = None  # the log the runs record in (None: a private SQLite file per iteration)
    db_shown: str | None = None  # the same, password masked
    keep: bool = False
    shell_stub: bool = False
    stub_seconds: float | None = None  # the --stub-seconds setting, if given
    stub_durations: dict[str, float] = field(default_factory=dict)  # step -> stub seconds

    def replay_command(self, iteration: IterationPlan) -> str:
        """The command that runs exactly `iteration` again (after its own uninterrupted run)."""
        words = [
            "stepledger",
            "chaos",
            str(self.file),
            "--workdir",
            str(self.workdir),
            "--seed",
            str(self.seed),
            "--iteration",
            str(iteration.index),
            "--kill-at",
            iteration.point,
        ]
        if self.shell_stub:
            words.append("--shell-stub")
            if self.stub_seconds is not None:
                words += ["--stub-seconds", f"{self.stub_seconds:g}"]
        if self.db_shown and self.db_shown != self.db:
            # The URL's password is masked, and a masked URL cannot log in: the command reads the
            # log's URL from STEPLEDGER_DB instead, as every command does without --db.
            return shlex.join(words) + "  # with STEPLEDGER_DB set to the log's URL"
        if self.db_shown:
            words += ["--db", self.db_shown]
        return shlex.join(words)


def choose_points(given: list[str], unreachable_why: dict[str, str]) -> tuple[str, ...]:
    """The points to aim at: those given (each must exist and be reachable), or every reachable one."""
    for name in given:
        if name not in BY_NAME:
            known = ", ".join(p.name for p in KILL_POINTS)
            raise ChaosInputError(f"--kill-at {name}: no such kill point; choose from {known}")
        if name in unreachable_why:
            raise ChaosInputError(
                f"--kill-at {name}: this workstream never gets there ({unreachable_why[name]})"
            )
    if given:
        return tuple(dict.fromkeys(given))
    return tuple(p.name for p in KILL_POINTS if p.name not in unreachable_why)


def plan_iteration(seed: int, index: int, point: KillPoint, passes: int) -> IterationPlan:
    """Iteration `index` of the plan seeded `seed`, aimed at `point` (passed `passes` times a run)."""
    rng = random.Random(f"stepledger-chaos/{seed}/{index}")
    nth = rng.randint(1, max(1, min(MAX_PASS, passes)))
    fraction = round(rng.uniform(0.05, 0.8), 2)  # of a run that may go faster this time
    if point.name == "random":
        first = Kill(point.name, at_fraction=fraction)
    elif point.name == "slow_workers":
        first = Kill(point.name, kill_at=f"after_dispatch:{nth}", claim_delay=SLOW_WORKER_DELAY)
    elif point.name == "in_resume":
        # The run dies with attempts in flight, so that the resume has orphans to recover.
        first = Kill(point.name, kill_at="after_dispatch:1")
    elif point.how == "fault":
        first = Kill(point.name, kill_at=f"{point.fault}:{nth}")
    else:
        first = Kill(point.name)
    resume_kill = None
    if point.name == "in_resume":
        resume_kill = Kill("in_resume", kill_at="in_resume:1")
    elif rng.random() < RESUME_KILL_CHANCE:
        # A second death, in the resume: at a random instant or right after it appends or dispatches.
        choice = rng.choice(["after_append", "after_dispatch", "random"])
        resume_kill = (
            Kill("random", at_fraction=fraction / 2)
            if choice == "random"
            else Kill(choice, kill_at=f"{choice}:1")
        )
    return IterationPlan(index, point.name, first, resume_kill)


def plan_iterations(
    seed: int, points: tuple[str, ...], count: int, only: int | None, workstream: Workstream
) -> tuple[IterationPlan, ...]:
    """The iterations of `workstream`: `count` of them, or only iteration `only`."""
    if not 1 <= count <= MAX_ITERATIONS:
        raise ChaosInputError(f"--iterations {count}: give a number from 1 to {MAX_ITERATIONS}")
    if only is not None and only < 0:
        raise ChaosInputError(f"--iteration {only}: iterations are numbered from 0")
    indexes = [only] if only is not None else range(count)
    chosen = [BY_NAME[points[i % len(points)]] for i in indexes]
    return tuple(
        plan_iteration(seed, i, p, passes(p, workstream)) for i, p in zip(indexes, chosen, strict=True)
    )
