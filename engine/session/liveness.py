"""Whether a run has a live orchestrator: its lease, and the process that recorded itself as driver.

Kept apart from runs.py so that `status` and `runs` can say "orchestrator gone" without importing
the reactor.
"""

from __future__ import annotations

import time

from stepledger.events import RunResumed, RunStarted, run_stream
from stepledger.store.port import EventStore, Lease

from ..paths import hostname


def live_lease(store: EventStore, run_id: str) -> Lease | None:
    """The run's lease if a live orchestrator may hold it (unexpired, and not held by a dead pid here)."""
    held = store.lease_holder(run_id)
    if held is None or held.expires_at <= time.time():
        return None
    if held.host == hostname() and not is_stepledger(held.pid):
        return None  # its holder died on this host (kill -9, a crash) before the lease ran out
    return held


def reactor_process(store: EventStore, run_id: str) -> int | None:
    """The pid of the live orchestrator driving `run_id` on this host, if there is one."""
    owner = None
    for event in store.read_stream(run_stream(run_id)):
        if event.type in (RunStarted.type_name, RunResumed.type_name):
            owner = (event.payload.get("host"), event.payload.get("pid"))
    if owner is None or owner[0] != hostname() or not owner[1]:
        return None
    pid = int(owner[1])
    return pid if is_stepledger(pid) else None


def is_stepledger(pid: int) -> bool:
    """Whether `pid` is a live stepledger process on this host."""
    import itertools
    import os

    if pid == os.getpid():
        return True
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
    except OSError:
        return False  # no such process: the orchestrator is gone
    # A recycled pid belongs to some other program; only a stepledger process can be the driver:
    # the `stepledger` program (run directly or by its interpreter) or `python -m stepledger...`.
    # A mere mention (`tail -f .stepledger/runs/...`) is not one.
    args = cmdline.split(b"\0")
    if any(os.path.basename(arg) == b"stepledger" for arg in args[:2]):
        return True
    return any(a == b"-m" and b.split(b".")[0] == b"stepledger" for a, b in itertools.pairwise(args))


def orchestrator_gone(store: EventStore, run_id: str) -> bool:
    """Whether a run the log says is running has nobody driving it (its reactor died: kill -9, a crash).

    On this host the lease holder's process is asked directly: a live orchestrator that a busy
    machine kept from renewing its lease in time is not gone (it finds out itself, and stops, if
    another took the lease). Elsewhere an unexpired lease is all there is to go by.
    """
    held = store.lease_holder(run_id)
    if held is not None and held.host == hostname():
        return not is_stepledger(held.pid)
    return live_lease(store, run_id) is None
