"""kill -9 at the moments a fault point cannot name: during acceptance tests, while a retry waits,
a step's worker mid-step, during resume itself; and cancel, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from crashkit import STEPLEDGER, CrashRun, Spec, count, wait_for

from stepledger.events import RunCancelRequested, StreamWrite, run_stream

FIRST_LONG = '$([ "$STEPLEDGER_ATTEMPT" = 1 ] && echo 30 || echo 0.1)'  # only the first attempt is long


def test_kill_during_acceptance_tests_records_the_surviving_attempt(
    tmp_path: Path, crash_url: str, tally: dict[str, int]
) -> None:
    marker = tmp_path / "acc.marker"
    # The acceptance test announces itself, then keeps working past the orchestrator's death.
    check = (
        f'touch {marker}.$STEPLEDGER_ATTEMPT && sleep 1 && grep -q "^acc end $STEPLEDGER_ATTEMPT " side.log'
    )
    specs = [Spec("a"), Spec("acc", ("a",), 0.1, {"acceptance_tests": [check]}), Spec("z", ("acc",))]
    run = CrashRun(tmp_path, crash_url, specs)
    proc = run.start(["run", str(run.ws_path)])
    wait_for(lambda: Path(f"{marker}.1").exists(), 60, "the acceptance test to start")
    proc.send_signal(signal.SIGKILL)
    assert run.finish(proc) == -9
    run.run_id = run.find_run_id()
    run.resume_to_end()
    run.check()
    [passed] = run.events("step.passed", "acc")
    assert passed.payload["attempt"] == 1 and passed.payload["recovered"]  # waited for, not re-run
    count(tally, run)


def test_kill_while_a_retry_waits(tmp_path: Path, crash_url: str, tally: dict[str, int]) -> None:
    flaky = Spec("flaky", ("a",), 0.05, {"retry": {"strategy": "fixed", "initial_delay": 1.0},
                                         "circuit_breaker": {"max_attempts": 3}},
                 before_end='[ "$STEPLEDGER_ATTEMPT" -ge 2 ] || exit 1; ')  # fmt: skip
    run = CrashRun(tmp_path, crash_url, [Spec("a"), flaky, Spec("z", ("flaky",))])
    proc = run.start(["run", str(run.ws_path)])
    scheduled = run.wait_for_event("step.retry_scheduled", "flaky")
    proc.send_signal(signal.SIGKILL)
    assert run.finish(proc) == -9
    run.resume_to_end()
    run.check()
    second = run.side_lines()["flaky"][2]["start"][0]
    assert second >= scheduled.payload["not_before"] - 0.05  # the back-off survived the crash
    count(tally, run)


def test_kill_a_steps_worker_mid_step(tmp_path: Path, crash_url: str, tally: dict[str, int]) -> None:
    run = CrashRun(tmp_path, crash_url, [Spec("a"), Spec("slow", ("a",), 1.5), Spec("z", ("slow",))])
    proc = run.start(["run", str(run.ws_path)])
    wait_for(lambda: "slow" in run.side_lines(), 60, "the slow step to start")
    started = run.wait_for_event("step.started", "slow")
    os.kill(started.payload["pid"], signal.SIGKILL)  # the pool worker running the attempt
    assert run.finish(proc) == 0, run.output()
    run.check(reactor_only=False)
    reasons = [e.payload["reason"] for e in run.events("step.failed", "slow")]
    assert reasons == ["lost_worker"]
    assert run.side_lines()["slow"][1]["end"] == []  # its process group died with it
    count(tally, run)


def test_kill_during_resume_itself_again_and_again(
    tmp_path: Path, crash_url: str, tally: dict[str, int]
) -> None:
    run = CrashRun(tmp_path, crash_url, [Spec("a", (), 0.6), Spec("b", (), 0.6), Spec("c", ("a", "b"))])
    assert run.run(kill_at="after_dispatch:1") == -9
    # Each resume finds a and b still running (their workers outlived us) and dies recovering them.
    resumes = run.resume_to_end(plans=["in_resume:1", "in_resume:1", "after_append:1"])
    assert resumes >= 2
    run.check()
    count(tally, run)


def test_cancel_kills_running_steps_and_resume_finishes_the_run(
    tmp_path: Path, crash_url: str, tally: dict[str, int]
) -> None:
    run = CrashRun(tmp_path, crash_url, [Spec("a"), Spec("long", ("a",), FIRST_LONG), Spec("z", ("long",))])
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.started", "long")
    cancel = subprocess.run([*STEPLEDGER, "cancel", run.run_id, "--reason", "test"], cwd=tmp_path,
                            env=run.env(None), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert cancel.returncode == 0, cancel.stderr
    assert run.finish(proc) == 1, run.output()
    state = run.state()
    assert state.status == "cancelled" and state.steps["long"].last_reason == "cancelled"
    assert "z" not in state.steps or state.steps["z"].state == "pending"
    run.resume_to_end()
    count(tally, run)
    run.check(reactor_only=False)


@pytest.mark.parametrize("lease", ["1.5"])
def test_a_cancel_recorded_without_a_signal_is_seen_by_the_heartbeat(
    tmp_path: Path, crash_url: str, lease: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As from another host: the request is only in the log; the reactor's heartbeat must notice it.
    monkeypatch.setattr("crashkit.LEASE_SECONDS", lease)
    run = CrashRun(tmp_path, crash_url, [Spec("long", (), 30)])
    proc = run.start(["run", str(run.ws_path)])
    run.wait_for_event("step.started", "long")
    run.store_call(lambda s: s.append([StreamWrite(run.run_id, run_stream(run.run_id),
                                                   s.stream_version(run_stream(run.run_id)),
                                                   [RunCancelRequested(by="elsewhere")])]))  # fmt: skip
    assert run.finish(proc) == 1, run.output()
    assert run.state().status == "cancelled"
