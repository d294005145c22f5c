"""What the reactor's collaborators may see and change of the run it drives.

Failure verdicts (failures.py), failure diagnostics (diagnostics.py), the recovery of orphaned
attempts (orphans.py) and the saga's rollback (saga/rollback.py) each act on the run a reactor drives.
They depend on this interface, not on the Reactor class, so the reactor imports them and none of
them imports it back. `Reactor` is the one implementation.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from stepledger.events import Event, FailureReason
    from stepledger.events.state import RunState

    from ..execution.dispatcher import Dispatcher
    from ..workstream.model import Step, Workstream
    from ..workstream.profiles import ToolProfile
    from .attempt_specs import AttemptSpecs
    from .ledger import RunLedger
    from .lifecycle import StepLifecycle
    from .reporting import Reporter

WAKE = "wake"  # put on the result queue to make the reactor read the log and its flags again


@dataclass
class ReactorOptions:
    """Knobs of one reactor (the workstream's own settings come from the workstream)."""

    lease_seconds: float = 5.0


class RunContext(Protocol):
    """The run a reactor drives, as its collaborators see it."""

    ws: Workstream
    steps: dict[str, Step]
    dependents: dict[str, list[str]]
    life: dict[str, StepLifecycle]
    timers: list[tuple[float, str]]
    run_dir: Path
    profiles: dict[str, ToolProfile]
    reporter: Reporter
    options: ReactorOptions
    ledger: RunLedger
    pool: Dispatcher
    specs: AttemptSpecs
    results: queue.SimpleQueue[Any]
    host: str
    recovered: set[tuple[str, int]]  # attempts that outlived their reactor
    halted_by: str | None  # the step whose failure stopped the run (fail_fast)
    stop_requested: bool

    @property
    def run(self) -> RunState:
        """The run as the log says, plus this tick's decisions."""

    @property
    def stopping(self) -> bool:
        """Whether no new attempt may start."""

    def fire(self, sid: str, trigger: str, event: Event) -> None:
        """Make a step's transition and record its event."""

    def release_dependents(self, sid: str) -> None:
        """`sid` is done: its dependents may become ready."""

    def kill_running(self, reason: FailureReason) -> None:
        """Kill every running attempt; their results come back failed with `reason`."""
