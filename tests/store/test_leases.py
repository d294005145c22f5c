"""The run-lease contract, on every adapter: one owner at a time, expiry frees it, renewal fences."""

from __future__ import annotations

import threading
import time

from stepledger.store.port import EventStore


def test_a_free_lease_is_taken_and_a_held_one_refused(store: EventStore) -> None:
    assert store.lease_holder("r1") is None
    assert store.acquire_lease("r1", "a", 30, host="h1", pid=11)
    assert store.acquire_lease("r1", "a", 30, host="h1", pid=11)  # already ours
    assert not store.acquire_lease("r1", "b", 30, host="h2", pid=22)
    held = store.lease_holder("r1")
    assert held is not None and (held.owner, held.host, held.pid) == ("a", "h1", 11)
    assert held.expires_at > time.time() + 20
    assert store.acquire_lease("r2", "b", 30)  # leases are per run


def test_an_expired_lease_is_taken_over_and_the_old_owner_cannot_renew(store: EventStore) -> None:
    assert store.acquire_lease("r1", "a", 0.05)
    time.sleep(0.1)  # let the lease run out: expiry is the behaviour under test
    assert store.acquire_lease("r1", "b", 30)
    assert not store.renew_lease("r1", "a", 30)
    assert store.renew_lease("r1", "b", 30)
    held = store.lease_holder("r1")
    assert held is not None and held.owner == "b"


def test_release_frees_the_lease_only_for_its_owner(store: EventStore) -> None:
    assert store.acquire_lease("r1", "a", 30)
    store.release_lease("r1", "b")
    assert not store.acquire_lease("r1", "b", 30)
    store.release_lease("r1", "a")
    assert store.lease_holder("r1") is None
    assert not store.renew_lease("r1", "a", 30)
    assert store.acquire_lease("r1", "b", 30)


def test_racing_takers_of_an_expired_lease_exactly_one_wins(store: EventStore) -> None:
    assert store.acquire_lease("r1", "old", 0.01)
    time.sleep(0.05)
    barrier = threading.Barrier(6)
    wins: list[str] = []

    def take(owner: str) -> None:
        barrier.wait()
        if store.acquire_lease("r1", owner, 30):
            wins.append(owner)

    threads = [threading.Thread(target=take, args=(f"t{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    held = store.lease_holder("r1")
    assert held is not None and held.owner == wins[0]
