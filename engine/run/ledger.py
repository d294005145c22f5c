"""The reactor's view of the log: the folded run plus the events it is about to append.

Every event is folded in the moment it is decided, with the stream version the store will give
it; `flush` appends the batch in one transaction. If another writer appended first, the store
raises ConcurrencyError, the batch is dropped and the run is re-folded from the log — the
prediction was wrong, the log is right.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from stepledger.events import Event, RecordedEvent, StreamWrite, run_stream, step_stream, to_stored
from stepledger.events.state import RunState, apply, fold
from stepledger.events.types import StepExpanded
from stepledger.store.errors import ConcurrencyError
from stepledger.store.port import EventLog


class RunLedger:
    """A run's folded state, its unflushed events, and the position up to which the log was read."""

    def __init__(self, store: EventLog, run: RunState) -> None:
        self.store = store
        self.run = run
        self.batch: list[tuple[str, Event]] = []  # (stream, event) in decision order
        self.seen_position = run.last_position  # every event of this run at or below it is folded

    def record(self, step_id: str | None, event: Event) -> None:
        """Fold `event` into the run now and queue it for the next flush."""
        run_id = self.run.run_id
        if step_id is None:
            stream, version = run_stream(run_id), self.run.version
        else:
            stream, version = step_stream(run_id, step_id), self.run.step(step_id).version
        type_name, schema_version, payload = to_stored(event)
        apply(
            self.run,
            RecordedEvent(
                0, "", run_id, stream, version + 1, type_name, schema_version, payload, time.time()
            ),
        )
        self.batch.append((stream, event))

    def flush(self, along: Callable[[Any], None] | None = None) -> list[RecordedEvent] | None:
        """Append the batch atomically, with `along` in its transaction (the store's `append`);
        None if another writer got there first (state re-folded, `along`'s work rolled back)."""
        if not self.batch:
            return []
        grouped: dict[str, list[Event]] = {}
        for stream, event in self.batch:
            grouped.setdefault(stream, []).append(event)
        writes = [
            StreamWrite(self.run.run_id, stream, self._version(stream) - len(events), events)
            for stream, events in grouped.items()
        ]
        try:
            recorded = self.store.append(writes, along)
        except ConcurrencyError:
            self.reload()
            return None
        self.batch.clear()
        return self._catch_up(recorded) + recorded

    def reload(self) -> None:
        """Drop the unflushed batch and re-fold the run from the log."""
        self.batch.clear()
        self.run = fold(self.run.run_id, self.store.read_run(self.run.run_id))
        self.seen_position = self.run.last_position

    def absorb(self) -> list[RecordedEvent]:
        """Fold in events others appended to this run since it was last read (a cancel, an operator)."""
        external = list(self.store.read_run(self.run.run_id, after_position=self.seen_position))
        for event in external:
            apply(self.run, event)
        if external:
            self.seen_position = external[-1].position
        return external

    def expansions(self) -> list[RecordedEvent]:
        """The run's committed `step.expanded` events, in the order they were recorded."""
        return list(self.store.find_events(run_id=self.run.run_id, types=[StepExpanded.type_name]))

    def _version(self, stream: str) -> int:
        _, _, step_id = stream.partition("/")
        return self.run.steps[step_id].version if step_id else self.run.version

    def _catch_up(self, recorded: list[RecordedEvent]) -> list[RecordedEvent]:
        """Fold in events of this run that others committed between our last read and this append."""
        external: list[RecordedEvent] = []
        if recorded and recorded[0].position != self.seen_position + 1:
            # Positions are global, so a gap is usually another run's events; read to be sure.
            mine = {r.event_id for r in recorded}
            for event in self.store.read_run(self.run.run_id, after_position=self.seen_position):
                if event.event_id not in mine and event.position < recorded[0].position:
                    apply(self.run, event)
                    external.append(event)
        if recorded:
            self.seen_position = recorded[-1].position
            self.run.last_position = self.seen_position
        return external
