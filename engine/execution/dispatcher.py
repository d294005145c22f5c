"""The dispatcher interface: what a reactor needs of whatever runs its attempts.

`WorkerPool` (pool.py) is the local implementation: worker processes on this machine. A second
kind (workers on other machines) implements the same methods and is handed to the reactor by its
session; the reactor never needs to know which it has. Results of submitted attempts arrive on
`results`, a queue the reactor blocks on.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Collection, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .spec import AttemptSpec

if TYPE_CHECKING:
    from stepledger.events.types import FailureReason


class WorkerSlot(Protocol):
    """A worker picked to run one attempt: recorded in step.started before the attempt is sent."""

    @property
    def pid(self) -> int: ...

    @property
    def pgid(self) -> int: ...


class Dispatcher(Protocol):
    """Runs attempts and reports their results on `results`."""

    results: queue.SimpleQueue[Any]

    def start(self) -> None:
        """Get ready to run attempts (idempotent)."""

    def shutdown(self, kill_running: bool = False, reason: FailureReason = "interrupted") -> None:
        """Stop: kill running attempts (their `reason` results arrive first) or wait for them."""

    def idle_worker(self, exclude: Collection[int] = ()) -> WorkerSlot | None:
        """A free worker whose pid is not in `exclude`, or None when all are busy."""

    def enqueue_along(
        self, dispatch: Sequence[tuple[Any, AttemptSpec]], adjust: Callable[[AttemptSpec], AttemptSpec]
    ) -> Callable[[Any], None] | None:
        """Work to run in the transaction that records the step.started of `dispatch` (the store's
        `append(along=…)`), so that the attempts are handed over if and only if their start is
        recorded; None when there is none (a local pool sends each attempt in `submit`). The specs
        are sent as `adjust` makes them; `submit` follows for each once the transaction committed."""

    def submit(self, worker: Any, spec: AttemptSpec) -> None:
        """Send `spec` to a worker `idle_worker` returned; its result arrives on `results`."""

    def abandon(self) -> None:
        """The run's lease was lost: another orchestrator drives it now. Attempts it can settle
        without this process (a fleet's, in the attempt ledger) are left to it, not stopped by the
        `shutdown` that follows; a local pool's attempts die with it and are stopped as ever."""

    def cancel(self, run_id: str, step_id: str, attempt: int, reason: FailureReason = "cancelled") -> None:
        """Stop the attempt; its result arrives failed with `reason`."""
