"""Riding out a database that is briefly out of reach: a server restart, a connection it cut.

A long run should not die because PostgreSQL restarted for a second. `PatientStore` asks the
store again, with growing pauses, while the database answers "unavailable"; every other error
(a conflict, a bad statement) is raised at once. Reads are safe to ask again as they are. An
append is too, given the same StreamWrites: their event ids are fixed, so if the first try did
commit and only its answer was lost, the store returns those events rather than writing them twice
— but only the reactor appends, and only while its lease holds (`leases.LeasedStore`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import wraps
from typing import Any, TypeVar

from stepledger.store.errors import DatabaseUnavailable
from stepledger.store.port import EventStore

# While the database is out of reach, the store is asked again after these pauses (doubling):
# a restarted PostgreSQL takes connections again within a second or two.
FIRST_PAUSE, LONGEST_PAUSE = 0.05, 0.5
# The store's reads, asked again as they are.
RETRIED_READS = frozenset({
    "read_run", "read_stream", "read_all", "find_events", "stream_version", "run_state",
    "lease_holder", "wait_for_events",
})  # fmt: skip
T = TypeVar("T")


class PatientStore:
    """The store, its reads asked again for up to `patience` seconds while the database is away.

    `on_outage` hears one line when the database goes away and one when it is back.
    """

    def __init__(
        self, store: EventStore, patience: float, on_outage: Callable[[str], None] | None = None
    ) -> None:
        self._store = store
        self._patience = patience
        self._on_outage = on_outage
        self._out_since: float | None = None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not the store's (and `_store` itself, before __init__ set it)
            raise AttributeError(name)
        attribute = getattr(self._store, name)
        if name not in RETRIED_READS:
            return attribute

        @wraps(attribute)
        def read(*args: Any, **kwargs: Any) -> Any:
            # Materialised inside the retry: a lazy result would fail later, outside it.
            return self.patiently(lambda: _materialised(attribute(*args, **kwargs)))

        return read

    def patiently(self, call: Callable[[], T]) -> T:
        """`call()`, asked again while the database is out of reach, until `deadline` passes."""
        pause = FIRST_PAUSE
        first_failure: float | None = None
        failure: DatabaseUnavailable | None = None
        while True:
            self.before_try(failure)
            try:
                result = call()
            except DatabaseUnavailable as error:
                failure = error
                now = time.time()
                first_failure = first_failure or now
                deadline = self.deadline(first_failure)
                if now >= deadline:
                    self.give_up(error)
                if self._out_since is None:
                    self._out_since = now
                    self._tell(f"the database is out of reach ({error}); {self.waiting_for}")
                time.sleep(max(0.0, min(pause, deadline - now)))
                pause = min(pause * 2, LONGEST_PAUSE)
                continue
            if self._out_since is not None:
                self._tell(f"the database is back after {time.time() - self._out_since:.1f}s")
                self._out_since = None
            return result

    # --- what a subclass may change ---------------------------------------------------------

    waiting_for = "retrying for a few seconds"

    def before_try(self, failure: DatabaseUnavailable | None) -> None:
        """Called before every try, with the previous try's error (the leased store checks its lease)."""

    def deadline(self, first_failure: float) -> float:
        """When to stop asking, given when this call first failed."""
        return first_failure + self._patience

    def give_up(self, error: DatabaseUnavailable) -> None:
        """Raise the error that ends the waiting."""
        raise error

    def _tell(self, line: str) -> None:
        if self._on_outage is not None:
            self._on_outage(line)


def _materialised(result: Any) -> Any:
    return list(result) if isinstance(result, Iterator) else result
