"""Run leases: the rule that only one live reactor drives a run, on one host or many.

A reactor takes the run's lease before it appends anything, and a heartbeat thread renews it every
third of its time to live. The reactor appends only through `LeasedStore`, which refuses to write
once the lease may have run out by this host's clock (the last successful renewal plus the time to
live): a reactor cut off from the database, or overtaken by another, stops writing before anyone
else may take the lease over. The lease is also how long a database outage (a server restart, a
dropped connection) is ridden out: `LeasedStore` asks again while the lease holds (store/outages.py),
then gives up. Clocks of the hosts sharing a log are assumed to agree to well within a lease (NTP).
The heartbeat also looks at the run's own stream, so a cancel recorded from another host wakes the
reactor without a signal.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from stepledger.events import RecordedEvent, StreamWrite, run_stream
from stepledger.store.errors import DatabaseUnavailable, StoreError
from stepledger.store.outages import FIRST_PAUSE, PatientStore
from stepledger.store.port import EventStore

from ..errors import StepledgerError
from ..paths import hostname

LEASE_ENV = "STEPLEDGER_LEASE_SECONDS"
DEFAULT_LEASE_SECONDS = 5.0


class LeaseLost(StepledgerError):
    """This orchestrator lost the run's lease (another took the run over, or the database was out of
    reach for longer than the lease); it stopped driving. `stepledger resume RUN` continues the run."""

    exit_code = 1


def lease_seconds() -> float:
    """The lease's time to live: `STEPLEDGER_LEASE_SECONDS`, else 5 seconds."""
    raw = os.environ.get(LEASE_ENV, "")
    try:
        value = float(raw) if raw else DEFAULT_LEASE_SECONDS
    except ValueError:
        value = DEFAULT_LEASE_SECONDS
    return value if value > 0 else DEFAULT_LEASE_SECONDS


def new_owner() -> str:
    """A token naming this reactor process uniquely (a pid alone is reused)."""
    return f"{hostname()}:{os.getpid()}:{os.urandom(4).hex()}"  # secrets.token_hex(4), without its imports


class RunLease:
    """One reactor's hold on one run's lease; `valid_until` is when it may have expired at the latest."""

    def __init__(
        self, store: EventStore, run_id: str, owner: str | None = None, ttl: float | None = None
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner or new_owner()
        self.ttl = ttl or lease_seconds()
        self.valid_until = 0.0
        self.lost_reason = ""
        self.reachable = True  # the last renewal reached the database

    def acquire(self) -> bool:
        """Take the lease if it is free, expired or ours."""
        asked_at = time.time()
        taken = self.store.acquire_lease(self.run_id, self.owner, self.ttl, host=hostname(), pid=os.getpid())
        if taken:
            self.valid_until = asked_at + self.ttl
        return taken

    def renew(self) -> bool:
        """Extend the lease; False (and `lost_reason` set) once it is lost for good."""
        if self.lost_reason:
            return False
        asked_at = time.time()
        try:
            renewed = self.store.renew_lease(self.run_id, self.owner, self.ttl)
        except StoreError as error:
            self.reachable = False
            if time.time() < self.valid_until:
                return True  # keep trying: the lease still holds while the database is away
            self.lapse(error)
            return False
        self.reachable = True
        if not renewed:
            self.lost_reason = "another orchestrator took the run over"
            return False
        self.valid_until = asked_at + self.ttl
        return True

    def lapse(self, error: Exception) -> None:
        """Record that the lease ran out while the database was out of reach."""
        if not self.lost_reason:
            self.lost_reason = f"the database was out of reach for longer than the lease ({error})"

    def check(self) -> None:
        """Raise LeaseLost unless the lease surely still holds."""
        if not self.lost_reason and time.time() >= self.valid_until:
            self.lost_reason = "the lease ran out before it could be renewed"
        if self.lost_reason:
            raise LeaseLost(
                f"stopped driving run {self.run_id}: {self.lost_reason}; "
                f"`stepledger resume {self.run_id}` continues it"
            )

    def release(self) -> None:
        """Give the lease up (best effort: an unreachable database lets it expire instead)."""
        with suppress(StoreError):
            self.store.release_lease(self.run_id, self.owner)


class LeasedStore(PatientStore):
    """The store as the reactor sees it: every append first proves the lease still holds, and a
    database out of reach is asked again (appends and the reactor's reads) while the lease holds.
    """

    waiting_for = "retrying while the run's lease holds"

    def __init__(
        self, store: EventStore, lease: RunLease, on_outage: Callable[[str], None] | None = None
    ) -> None:
        super().__init__(store, lease.ttl, on_outage)
        self._lease = lease

    def append(
        self, writes: Sequence[StreamWrite], along: Callable[[Any], None] | None = None
    ) -> list[RecordedEvent]:
        """Append, unless the lease may have been lost (then raise LeaseLost and write nothing).

        A retry sends the same StreamWrites, so the same event ids: if the first try did commit
        and only its answer was lost, the store returns those events instead of writing them twice.
        """
        writes = list(writes)
        return self.patiently(lambda: self._store.append(writes, along))

    def before_try(self, failure: DatabaseUnavailable | None) -> None:
        if failure is not None and time.time() >= self._lease.valid_until:
            self._lease.lapse(failure)  # the reason the lease ran out, for the message
        self._lease.check()

    def deadline(self, first_failure: float) -> float:
        return self._lease.valid_until  # the heartbeat moves it on as soon as a renewal gets through

    def give_up(self, error: DatabaseUnavailable) -> None:
        self._lease.lapse(error)
        self._lease.check()  # raises LeaseLost


@contextmanager
def heartbeat(
    lease: RunLease,
    on_lost: Callable[[], None],
    on_run_changed: Callable[[], None],
    seen_position: Callable[[], int] | None = None,
) -> Iterator[None]:
    """Renew `lease` every third of its life while the block runs; call back on loss or run changes.

    With `seen_position` (the reactor's "read up to here"), any event of the run past it — a
    cancel, or an operator's retry/skip on a step's stream, recorded from another host — wakes
    the reactor; without it, only changes to the run's own stream do.
    """
    stop = threading.Event()
    stream = run_stream(lease.run_id)

    def beat() -> None:
        seen = _version(lease.store, stream)
        # After a failed renewal, ask again soon: the lease must be renewed before it runs out,
        # and a database that came back should not have to wait a third of the lease for us.
        while not stop.wait(lease.ttl / 3 if lease.reachable else min(lease.ttl / 3, FIRST_PAUSE * 2)):
            if not lease.renew():
                on_lost()
                return
            version = _version(lease.store, stream)
            if version is not None and seen is not None and version != seen:
                on_run_changed()  # e.g. a cancel recorded from another host
            elif seen_position is not None and _has_events_after(lease, seen_position()):
                on_run_changed()
            seen = version if version is not None else seen

    thread = threading.Thread(target=beat, name=f"lease-{lease.run_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=lease.ttl)


def _has_events_after(lease: RunLease, position: int) -> bool:
    try:
        return next(iter(lease.store.read_run(lease.run_id, after_position=position)), None) is not None
    except StoreError:
        return False


def _version(store: EventStore, stream: str) -> int | None:
    try:
        return store.stream_version(stream)
    except StoreError:
        return None
