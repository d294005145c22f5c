"""Event ids: UUIDv7 (RFC 9562), ordered by creation time, in order within a write, and unique
across calls and processes (events/envelope.py `new_event_ids`).
"""

from __future__ import annotations

import multiprocessing
import time
import uuid

from stepledger.events import StepReady, StreamWrite
from stepledger.events.envelope import new_event_ids


def millis_of(event_id: str) -> int:
    """The unix_ts_ms field of a UUIDv7."""
    return uuid.UUID(event_id).int >> 80


def test_ids_are_canonical_uuid7_stamped_with_the_current_millisecond() -> None:
    before = time.time_ns() // 1_000_000
    ids = new_event_ids(50)
    after = time.time_ns() // 1_000_000
    assert len(ids) == 50
    for event_id in ids:
        parsed = uuid.UUID(event_id)
        assert str(parsed) == event_id  # lowercase, dashed: the form the log has always held
        assert parsed.version == 7 and parsed.variant == uuid.RFC_4122
        assert before <= millis_of(event_id) <= after
    assert new_event_ids(0) == ()


def test_the_ids_of_one_call_count_up_so_they_are_in_order() -> None:
    ids = new_event_ids(100)
    numbers = [uuid.UUID(i).int for i in ids]
    assert numbers == list(range(numbers[0], numbers[0] + 100))
    assert list(ids) == sorted(ids)  # as text too: the unique index grows at its right edge


def test_later_calls_sort_after_earlier_ones() -> None:
    first = new_event_ids(3)
    time.sleep(0.003)
    second = new_event_ids(3)
    assert max(first) < min(second)


def test_a_stream_write_gets_one_id_per_event() -> None:
    write = StreamWrite("r", "r/a", 0, [StepReady(), StepReady(), StepReady()])
    assert len(write.event_ids) == 3 and list(write.event_ids) == sorted(set(write.event_ids))


def _ids_in_a_process(calls: int) -> list[str]:
    return [i for _ in range(calls) for i in new_event_ids(10)]


def test_ids_are_unique_across_calls_and_processes() -> None:
    # Calls in one millisecond share its time field: only the random draw keeps them apart.
    here = _ids_in_a_process(20_000)
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        there = [i for ids in pool.map(_ids_in_a_process, [5_000, 5_000]) for i in ids]
    everything = here + there
    assert len(set(everything)) == len(everything) == 300_000
