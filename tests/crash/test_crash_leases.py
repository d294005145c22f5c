"""Only one live reactor drives a run: a second one is refused, an expired lease is taken over, and a
reactor that loses its lease stops driving."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from crashkit import STEPLEDGER, CrashRun, Spec, count, wait_for

from stepledger.store.port import EventStore

FIRST_LONG = '$([ "$STEPLEDGER_ATTEMPT" = 1 ] && echo 30 || echo 0.1)'  # only the first attempt is long


def test_resume_is_refused_while_a_live_reactor_drives_the_run(tmp_path: Path, sqlite_url: str) -> None:
    run = CrashRun(tmp_path, sqlite_url, [Spec("a", (), 2.0)])
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.started", "a")
    assert run.resume() == 2
    assert "is being driven by the orchestrator" in run.output() and "lease renewed until" in run.output()
    assert run.finish(proc) == 0
    run.check()


def test_an_expired_lease_held_elsewhere_lets_resume_proceed(
    tmp_path: Path, sqlite_url: str, tally: dict[str, int]
) -> None:
    run = CrashRun(tmp_path, sqlite_url, [Spec("a", (), 0.3), Spec("b", ("a",))])
    assert run.run(kill_at="after_dispatch:1") == -9

    def hand_over(store: EventStore) -> float:
        # As if a reactor on another host (whose pid 1 looks alive) held the lease, then died.
        held = store.lease_holder(run.run_id)
        assert held is not None
        store.release_lease(run.run_id, held.owner)
        assert store.acquire_lease(run.run_id, "elsewhere:1:x", 6, host="elsewhere", pid=1)
        taken = store.lease_holder(run.run_id)
        assert taken is not None
        return float(taken.expires_at)

    expires_at = run.store_call(hand_over)
    assert run.resume() == 2, run.output()
    assert "pid 1 on host elsewhere" in run.output()
    wait_for(lambda: time.time() > expires_at, 10, "the lease to expire")
    run.resume_to_end()
    run.check()
    count(tally, run)


def test_a_reactor_that_loses_its_lease_stops_driving(
    tmp_path: Path, sqlite_url: str, tally: dict[str, int]
) -> None:
    run = CrashRun(tmp_path, sqlite_url, [Spec("a"), Spec("long", ("a",), FIRST_LONG)])
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.started", "long")

    def steal(store: EventStore) -> None:
        held = store.lease_holder(run.run_id)
        assert held is not None
        store.release_lease(run.run_id, held.owner)
        assert store.acquire_lease(run.run_id, "thief", 60, host="elsewhere", pid=1)

    run.store_call(steal)
    assert run.finish(proc) == 1, run.output()
    assert "another orchestrator took the run over" in run.output()
    assert run.state().status == "running"  # it recorded nothing after losing the lease
    run.store_call(lambda s: s.release_lease(run.run_id, "thief"))
    run.resume_to_end()
    run.check(reactor_only=False)  # the stopped reactor killed its attempt: it started, never ended
    count(tally, run)


def test_cancel_of_a_run_whose_reactor_died_ends_it_at_once(
    tmp_path: Path, sqlite_url: str, tally: dict[str, int]
) -> None:
    run = CrashRun(tmp_path, sqlite_url, [Spec("a", (), 0.3), Spec("b", ("a",))])
    assert run.run(kill_at="after_dispatch:1") == -9
    # Its lease has not run out yet, but its holder is a dead pid on this host: nobody will stop it.
    cancel = subprocess.run([*STEPLEDGER, "cancel", run.run_id], cwd=tmp_path, env=run.env(None),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cancel.returncode == 0 and "no orchestrator was driving it" in cancel.stdout, cancel.stderr
    assert run.state().status == "cancelled"
    run.resume_to_end()
    run.check()
    count(tally, run)
