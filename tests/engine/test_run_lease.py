"""RunLease and LeasedStore: a reactor writes only while its lease surely holds."""

from __future__ import annotations

import time

import pytest

from stepledger.engine.session.leases import LeasedStore, LeaseLost, RunLease
from stepledger.events import RunCancelRequested, StreamWrite, run_stream
from stepledger.store.errors import DatabaseUnavailable
from stepledger.store.memory import InMemoryEventStore


def write(store: InMemoryEventStore) -> list[StreamWrite]:
    return [StreamWrite("r1", run_stream("r1"), store.stream_version("r1"), [RunCancelRequested(by="t")])]


def test_appends_go_through_while_the_lease_holds_and_stop_when_another_takes_it() -> None:
    store = InMemoryEventStore()
    lease = RunLease(store, "r1", owner="me", ttl=30)
    assert lease.acquire()
    leased = LeasedStore(store, lease)
    leased.append(write(store))
    store.release_lease("r1", "me")
    assert store.acquire_lease("r1", "thief", 30)
    assert not lease.renew()
    with pytest.raises(LeaseLost, match="another orchestrator took the run over"):
        leased.append(write(store))
    assert store.stream_version("r1") == 1  # nothing written after the loss


class FlakyStore(InMemoryEventStore):
    """A store whose database goes away on demand (only lease renewals notice here)."""

    down = False

    def renew_lease(self, run_id: str, owner: str, ttl: float) -> bool:
        if self.down:
            raise DatabaseUnavailable("cannot use the database: connection refused")
        return super().renew_lease(run_id, owner, ttl)


def test_a_database_outage_shorter_than_the_lease_is_ridden_out_a_longer_one_is_not() -> None:
    store = FlakyStore()
    lease = RunLease(store, "r1", owner="me", ttl=0.2)
    assert lease.acquire()
    store.down = True
    assert lease.renew()  # still inside the lease: keep going, try again later
    time.sleep(0.25)  # outlive the lease: the expiry itself is what is under test
    assert not lease.renew()
    with pytest.raises(LeaseLost, match="out of reach"):
        LeasedStore(store, lease).append(write(store))
