"""The event store port: the few operations every adapter (memory, SQL) offers, with one meaning."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence

from stepledger.events import RecordedEvent, StreamWrite


class EventStore(ABC):
    """An append-only event log, partitioned into streams with contiguous versions.

    Every adapter passes the same contract suite (tests/store/test_contract.py):
    - `append` is atomic across all its writes: all are recorded or none;
    - a write whose stream is not at its expected version raises ConcurrencyError and writes nothing;
    - event ids are unique: re-appending a write whose events are already recorded returns the
      recorded events instead of recording them twice (a retry after a lost connection);
    - positions strictly increase in commit order, so a reader tailing by position misses nothing;
    - nothing is ever updated or deleted.
    """

    @abstractmethod
    def append(self, writes: Sequence[StreamWrite]) -> list[RecordedEvent]:
        """Record every write in one transaction and return the recorded events in order."""

    @abstractmethod
    def read_stream(self, stream: str, after_version: int = 0) -> list[RecordedEvent]:
        """The events of one stream with a version above `after_version`, in version order."""

    @abstractmethod
    def read_run(self, run_id: str, after_position: int = 0) -> Iterator[RecordedEvent]:
        """Every event of a run (its own stream and its steps'), in position order."""

    @abstractmethod
    def read_all(self, after_position: int = 0, limit: int | None = None) -> Iterator[RecordedEvent]:
        """Every event of the log after `after_position`, in position order."""

    @abstractmethod
    def stream_version(self, stream: str) -> int:
        """The version of a stream's last event, 0 if the stream is empty."""

    @abstractmethod
    def run_ids(self) -> list[str]:
        """Every run id in the log, oldest first."""

    def close(self) -> None:  # noqa: B027 - optional for adapters that hold nothing
        """Release connections; the store must not be used afterwards."""
