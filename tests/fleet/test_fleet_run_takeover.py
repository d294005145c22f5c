"""A run started with `stepledger run --on-workers` is taken over by the fleet when its process dies
(docs/workers.md), on the real PostgreSQL server, with real processes.

The `run` process stands for the user's machine (STEPLEDGER_HOSTNAME=driver, fleetkit.driver_env);
each worker is a machine of its own. Steps write `start`/`end STEP ATTEMPT HOST TIME` lines to a
side-effect file: the evidence that no passed step ran twice and that no two attempts of a step
overlapped. A deliberate stop (Ctrl-C, `--no-takeover`) is shown not taken over by a second run in
the same test whose process is killed and which the fleet does take over: the workers' watch has
looked at the first run meanwhile, which no test could otherwise wait for without sleeping.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import random
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fleetkit import (
    STEPLEDGER,
    Fleet,
    check_evidence,
    check_no_overlap,
    check_replay,
    cli,
    driver_env,
    driving_host,
    evidence_task,
    query,
    run_status,
    session_members,
    wait_for,
    workstream,
)

pytestmark = pytest.mark.postgres

HOSTS = ("m1", "m2")
_STARTED: list[subprocess.Popen[bytes]] = []  # the `run` processes of the test under way


@pytest.fixture(autouse=True)
def _no_run_left() -> Iterator[None]:
    """A test that failed half-way leaves no `run` process behind (stopped ones included)."""
    yield
    while _STARTED:
        proc = _STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _run(
    db: str, ws: Path, out: Path, *extra: str, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """`stepledger run WS --on-workers` from the driver machine, its output in the file `out`."""
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*STEPLEDGER, "run", str(ws), "--db", db, "--on-workers", *extra],
            cwd=ws.parent, stdout=sink, stderr=subprocess.STDOUT, env={**driver_env(), **(env or {})},
        )  # fmt: skip
    _STARTED.append(proc)
    return proc


def _run_ids(db: str) -> list[str]:
    return [str(r[0]) for r in query(db, "SELECT run_id FROM runs ORDER BY started_at")]


def _new_run(db: str, known: list[str]) -> str:
    """The id of the run recorded after those `known`, once it is recorded and its driver holds the lease."""
    run_id = wait_for(lambda: next((r for r in _run_ids(db) if r not in known), ""), "the run to be recorded")
    wait_for(lambda: driving_host(db, run_id) == "driver", "the run process to hold the run's lease")
    return str(run_id)


def _ended(db: str, run_id: str, timeout: float = 60.0) -> str:
    return str(wait_for(lambda: (s := run_status(db, run_id)) not in ("", "running") and s, "the run to end",
                        timeout))  # fmt: skip


def _events(db: str, run_id: str, kind: str, cwd: Path) -> list[dict]:
    done = cli(db, "events", run_id, "--type", kind, "--json", cwd=cwd)
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line)["payload"] for line in done.stdout.splitlines()]


def _most_at_once(side: Path) -> int:
    """The most attempts the evidence shows running at the same moment."""
    moments = []
    for line in side.read_text().splitlines():
        kind, _, _, _, when = line.split()
        moments.append((float(when), 1 if kind == "start" else -1))
    running = most = 0
    for _, change in sorted(moments, key=lambda m: (m[0], m[1])):  # an end before a start at a tie
        running += change
        most = max(most, running)
    return most


def _kill_the_run(fleet: Fleet, rng: random.Random, tmp_path: Path) -> None:
    """kill -9 of the `run` process at a random moment (after 0 to 4 attempts started): the fleet
    drives the run to its end, with the run's parameters and its --max-workers."""
    for host in HOSTS:
        fleet.start(host, concurrency=3, wait=False)
    fleet.serving(*HOSTS)
    side, seen = tmp_path / "side.log", tmp_path / "params.log"
    drv = tmp_path / "driver"
    drv.mkdir()
    ids = [f"s{i}" for i in range(6)]
    steps = []
    for n, sid in enumerate(ids):
        requires = sorted(rng.sample(ids[:n], min(n, rng.randint(0, 2))))
        task = f'echo "$STEPLEDGER_STEP_ID $WHO" >> {seen}; ' + evidence_task(
            side, round(rng.uniform(0.3, 1.2), 2)
        )
        steps.append({"id": sid, "tasks": [task], "depends_on": requires, "env": {"WHO": "${params.who}"}})
    ws = workstream(drv / "ws.json", steps, max_workers=4)
    data = json.loads(ws.read_text())
    data["parameters"] = {"who": {"type": "string"}}
    ws.write_text(json.dumps(data))
    proc = _run(fleet.db, ws, tmp_path / "run.out", "--max-workers", "2", "--param", "who=p-17")
    run_id = _new_run(fleet.db, [])
    starts = rng.randint(0, 4)
    wait_for(lambda: starts == 0 or (side.exists() and side.read_text().count("start") >= starts),
             f"{starts} attempt(s) to start")  # fmt: skip
    proc.kill()
    proc.wait()
    assert _ended(fleet.db, run_id) == "passed", (tmp_path / "run.out").read_text()
    [started] = _events(fleet.db, run_id, "run.started", drv)
    assert started["options"]["worker_driven"] is True and started["options"]["on_workers"] is True
    drivers = [e["host"] for e in _events(fleet.db, run_id, "run.resumed", drv)]
    assert drivers and set(drivers) <= set(HOSTS), drivers  # nobody typed `resume`
    check_evidence(side, ids)
    check_no_overlap(fleet.db, run_id)
    # What the new driver needed came from the log: the parameter, and --max-workers 2 (each
    # worker has 3 slots and the file says 4).
    assert sorted(seen.read_text().split()[1::2]) == ["p-17"] * len(seen.read_text().splitlines())
    assert _most_at_once(side) <= 2
    # The run's folder goes on in the work directory of the worker that took it over.
    assert (fleet.root / drivers[-1] / ".stepledger" / "runs" / run_id / "orchestrator.log").is_file()
    check_replay(fleet.db, run_id, drv)


@pytest.mark.parametrize("seed", range(3))
def test_kill_9_of_a_run_on_workers_the_fleet_takes_it_over(fleet: Fleet, tmp_path: Path, seed: int) -> None:
    _kill_the_run(fleet, random.Random(seed), tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 13))
def test_kill_9_of_a_run_on_workers_soak(fleet: Fleet, tmp_path: Path, seed: int) -> None:
    _kill_the_run(fleet, random.Random(seed), tmp_path)


def _gated(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A workstream x then y (x holds until the file `go` exists) in a driver folder of its own;
    (the workstream, the side-effect file, go)."""
    drv = tmp_path / name
    drv.mkdir()
    side, go = drv / "side.log", drv / "go"
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [evidence_task(side, 0, gate=go)]},
        {"id": "y", "tasks": [evidence_task(side, 0.1)], "depends_on": ["x"]},
    ])  # fmt: skip
    return ws, side, go


def _a_killed_run_is_taken_over(fleet: Fleet, tmp_path: Path) -> str:
    """The control: a second run whose process is killed is taken over by the fleet and passes.
    Its takeover needs a look of the workers' watch after its lease ran out."""
    known = _run_ids(fleet.db)
    ws, side, go = _gated(tmp_path, "control")
    proc = _run(fleet.db, ws, tmp_path / "control.out")
    run_id = _new_run(fleet.db, known)
    wait_for(Path(f"{side}.x.ready").exists, "the control's x to run")
    proc.kill()
    proc.wait()
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    assert [e["host"] for e in _events(fleet.db, run_id, "run.resumed", ws.parent)] == ["m1"]
    return run_id


def _signal_session(sid: int, sig: int) -> None:
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


@pytest.mark.parametrize("presses", [1, 3])
def test_ctrl_c_of_a_run_on_workers_is_not_taken_over(fleet: Fleet, tmp_path: Path, presses: int) -> None:
    """Once: the run drains and ends interrupted. Three times: the third leaves at once (Python's
    KeyboardInterrupt) while the second still waits for the workers to stop x; the run is recorded
    interrupted on the way out, not left running for the fleet."""
    fleet.start("m1", concurrency=2)
    ws, side, go = _gated(tmp_path, "driver")
    out = tmp_path / "run.out"
    # A stall timeout longer than the test: m1, frozen below, is not found dead by this run.
    proc = _run(fleet.db, ws, out, env={"STEPLEDGER_FLEET_STALL_TIMEOUT": "60"})
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: "Ctrl-C: starting no new step" in out.read_text(), "the run to drain")
    m1 = fleet.workers["m1"].pid
    if presses == 3:
        _signal_session(m1, signal.SIGSTOP)  # x's stop is not answered: the second press waits
        try:
            proc.send_signal(signal.SIGINT)
            wait_for(lambda: "stopping 1 running step now" in out.read_text(), "the second Ctrl-C")
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 130, out.read_text()
        finally:
            _signal_session(m1, signal.SIGCONT)
    go.touch()
    assert proc.wait(timeout=60) == 130, out.read_text()  # as a run on one machine exits
    assert run_status(fleet.db, run_id) == "interrupted"
    _a_killed_run_is_taken_over(fleet, tmp_path)
    assert run_status(fleet.db, run_id) == "interrupted"  # waits for a `resume`, nobody else
    assert _events(fleet.db, run_id, "run.resumed", ws.parent) == []
    started = [line.split()[:3] for line in side.read_text().splitlines() if line.startswith("start")]
    assert started == [["start", "x", "1"]], started  # y never started, nor x again
    shown = json.loads(cli(fleet.db, "status", run_id, "--json", cwd=ws.parent).stdout)
    assert shown["shown_status"] == "interrupted", shown
    check_replay(fleet.db, run_id, ws.parent)


def _logged(db: str, run_id: str) -> list[tuple[int, str, str, dict]]:
    """(position, type, stream, payload) of the run's events, in order."""
    sql = "SELECT position, type, stream, payload FROM events WHERE run_id = %s ORDER BY position"
    return [(int(p), str(t), str(s), dict(d)) for p, t, s, d in query(db, sql, run_id)]


@pytest.mark.parametrize(
    ("x_ends", "round_"),
    [(when, n) for when in ("before the takeover", "while the new driver waits") for n in range(2)],
)
def test_a_run_process_killed_while_it_drains_the_fleet_finishes_the_drain(
    fleet: Fleet, tmp_path: Path, x_ends: str, round_: int
) -> None:
    """Ctrl-C once, then kill -9 of the `run` process while x still runs: the drain is in the log,
    so the worker that takes the run over finishes it — x's outcome is recorded, neither y (after
    x) nor z (ready, no slot: --max-workers 1) starts — and the run ends interrupted, for a typed
    `resume` to complete. x ends before the takeover (its outcome waits in the attempt ledger) or
    while the new driver waits for it."""
    fleet.start("m1", concurrency=2)
    drv = tmp_path / "driver"
    drv.mkdir()
    side, go = drv / "side.log", drv / "go"
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [evidence_task(side, 0, gate=go)]},
        {"id": "y", "tasks": [evidence_task(side, 0.1)], "depends_on": ["x"]},
        {"id": "z", "tasks": [evidence_task(side, 0.1)]},
    ], max_workers=1)  # fmt: skip
    out = tmp_path / "run.out"
    proc = _run(fleet.db, ws, out)
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    proc.send_signal(signal.SIGINT)
    wait_for(lambda: any(t == "run.drain_requested" for _, t, _, _ in _logged(fleet.db, run_id)),
             "the drain to be recorded")  # fmt: skip
    proc.kill()
    proc.wait()
    killed_at = _logged(fleet.db, run_id)[-1][0]
    if x_ends == "while the new driver waits":
        wait_for(lambda: "still runs on m1" in fleet.output("m1"), "the new driver to wait for x")
    go.touch()
    assert _ended(fleet.db, run_id) == "interrupted", fleet.output("m1")[-3000:]

    events = _logged(fleet.db, run_id)
    after = [(t, s, d) for p, t, s, d in events if p > killed_at]
    assert not [s for t, s, _ in after if t == "step.started"], after  # nothing new started
    assert [s for t, s, _ in after if t == "step.passed"] == [f"{run_id}/x"], after  # x's outcome
    run_events = [(t, d) for _, t, s, d in events if s == run_id]
    asked = {"by": getpass.getuser(), "reason": "Ctrl-C"}
    assert [d for t, d in run_events if t == "run.drain_requested"] == [asked, asked]
    kinds = [t for t, _ in run_events]
    taken = kinds.index("run.resumed")  # the takeover's, which asks the drain again at once
    assert kinds[taken + 1] == "run.drain_requested" and run_events[taken][1]["host"] == "m1", kinds
    assert run_events[-1] == ("run.finished", {**run_events[-1][1], "outcome": "interrupted"})
    said = (fleet.root / "m1" / ".stepledger" / "runs" / run_id / "orchestrator.log").read_text()
    assert "the run's previous driver was draining it (Ctrl-C by" in said, said
    started = [line.split()[:3] for line in side.read_text().splitlines() if line.startswith("start")]
    assert started == [["start", "x", "1"]], started

    wait_for(lambda: driving_host(fleet.db, run_id) == "", "the worker's driver to give the lease back")
    resumed = cli(fleet.db, "resume", run_id, cwd=drv)  # typed: someone's decision to go on
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(fleet.db, run_id) == "passed"
    assert check_evidence(side, ["x", "y", "z"])["x"] == [(1, "m1")]  # x not run again
    assert [t for _, t, s, _ in _logged(fleet.db, run_id) if s == run_id].count("run.drain_requested") == 2
    check_no_overlap(fleet.db, run_id)
    check_replay(fleet.db, run_id, drv)


def test_no_takeover_a_killed_run_waits_for_resume(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1", concurrency=2)
    ws, side, go = _gated(tmp_path, "driver")
    proc = _run(fleet.db, ws, tmp_path / "run.out", "--no-takeover")
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    proc.kill()
    proc.wait()
    _a_killed_run_is_taken_over(fleet, tmp_path)
    assert run_status(fleet.db, run_id) == "running" and not driving_host(fleet.db, run_id)
    assert _events(fleet.db, run_id, "run.resumed", ws.parent) == []
    [started] = _events(fleet.db, run_id, "run.started", ws.parent)
    assert "worker_driven" not in started["options"]
    shown = json.loads(cli(fleet.db, "status", run_id, "--json", cwd=ws.parent).stdout)
    assert shown["shown_status"] == f"running (orchestrator gone — resume {run_id})", shown
    go.touch()
    resumed = cli(fleet.db, "resume", run_id, cwd=ws.parent)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert check_evidence(side, ["x", "y"])["x"] == [(1, "m1")]  # awaited, not run again
    check_replay(fleet.db, run_id, ws.parent)


def test_no_takeover_without_on_workers_is_one_line_exit_2(pg_url: str, tmp_path: Path) -> None:
    ws = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    done = subprocess.run([*STEPLEDGER, "run", str(ws), "--db", pg_url, "--no-takeover"], cwd=tmp_path,
                          capture_output=True, text=True, env=driver_env(), timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert "--no-takeover" in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert query(pg_url, "SELECT 1 FROM runs") == []


def test_run_queue_names_the_workers_that_take_the_run_over(fleet: Fleet, tmp_path: Path) -> None:
    """`run --on-workers --queue ctl`: if the run's process dies, a worker serving `ctl` drives it on
    (as a `submit --queue ctl` is driven); its steps still go to their own queues' workers."""
    fleet.start("m1", "--drive", "0")  # runs the steps (default queue), drives nothing
    fleet.start("c1", "--queue", "ctl")  # drives `ctl`'s runs, serves no step of this one
    ws, side, go = _gated(tmp_path, "driver")
    proc = _run(fleet.db, ws, tmp_path / "run.out", "--queue", "ctl")
    run_id = _new_run(fleet.db, [])
    [started] = _events(fleet.db, run_id, "run.started", ws.parent)
    assert started["options"]["drive_queue"] == "ctl"
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    proc.kill()
    proc.wait()
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    assert [e["host"] for e in _events(fleet.db, run_id, "run.resumed", ws.parent)] == ["c1"]
    assert check_evidence(side, ["x", "y"]) == {"x": [(1, "m1")], "y": [(1, "m1")]}
    check_replay(fleet.db, run_id, ws.parent)


@pytest.mark.parametrize(
    "extra",
    [("--queue", "ctl"), ("--on-workers", "--no-takeover", "--queue", "ctl"), ("--on-workers", "-q", " ")],
)
def test_run_queue_out_of_place_is_one_line_exit_2(
    pg_url: str, tmp_path: Path, extra: tuple[str, ...]
) -> None:
    ws = workstream(tmp_path / "ws.json", [{"id": "a", "tasks": ["true"]}])
    done = subprocess.run([*STEPLEDGER, "run", str(ws), "--db", pg_url, *extra], cwd=tmp_path,
                          capture_output=True, text=True, env=driver_env(), timeout=60)  # fmt: skip
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("error: --queue") and len(done.stderr.strip().splitlines()) == 1, (
        done.stderr
    )
    assert query(pg_url, "SELECT 1 FROM runs") == []


def test_a_run_process_that_loses_its_lease_stops_and_the_fleet_drives_on(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A `run` process frozen for longer than the lease (a laptop asleep) finds the run taken over
    when it wakes: it stops driving, says who does, and never writes to the run again."""
    fleet.start("m1", concurrency=2)
    ws, side, go = _gated(tmp_path, "driver")
    out = tmp_path / "run.out"
    proc = _run(fleet.db, ws, out)
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        wait_for(lambda: driving_host(fleet.db, run_id) == "m1", "a worker to take the run over")
        wait_for(lambda: "still runs on m1" in fleet.output("m1"), "the new driver to wait for x")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert proc.wait(timeout=60) == 1, out.read_text()
    said = out.read_text()
    assert f"stopped driving run {run_id}" in said and "a worker of the fleet drives it on" in said, said
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    # The lease is given back just after run.finished is recorded.
    wait_for(lambda: driving_host(fleet.db, run_id) == "", "the driver to give the lease back")
    # x, in flight when the old process froze, was left to the new driver, not stopped by the old
    # one on its way out: it ran once.
    assert check_evidence(side, ["x", "y"])["x"] == [(1, "m1")]
    check_no_overlap(fleet.db, run_id)
    # Once m1 took over, every attempt was started by m1's driver: the old process, awake again,
    # started none (its appends are refused once its lease may have run out by its own clock).
    done = cli(fleet.db, "events", run_id, "--json", cwd=ws.parent)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds.count("run.resumed") == 1, kinds
    after = events[kinds.index("run.resumed") + 1 :]
    starters = {e["payload"]["host"] for e in after if e["type"] == "step.started"}
    assert starters == {"m1"}, starters
    check_replay(fleet.db, run_id, ws.parent)


def test_a_resume_typed_while_nobody_drives_clears_a_pending_cancel(fleet: Fleet, tmp_path: Path) -> None:
    """A cancel asked while nobody drives the run waits for its next driver: a worker's takeover
    stops the run (test_fleet_submit.py), but a `resume` someone types is a decision to go on."""
    fleet.start("a1", "--drive", "0")  # runs the attempts, drives nothing: nobody takes the run over
    ws, side, go = _gated(tmp_path, "driver")
    proc = _run(fleet.db, ws, tmp_path / "run.out")
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    proc.kill()
    proc.wait()
    wait_for(lambda: not driving_host(fleet.db, run_id), "the dead process's lease to run out")
    shown = json.loads(cli(fleet.db, "status", run_id, "--json", cwd=ws.parent).stdout)
    assert shown["shown_status"] == "running (waiting for a worker to drive it)", shown
    cancelled = cli(fleet.db, "cancel", run_id, cwd=ws.parent)
    assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
    assert f"the worker that drives run {run_id} next stops it" in cancelled.stdout, cancelled.stdout
    go.touch()
    resumed = cli(fleet.db, "resume", run_id, cwd=ws.parent)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(fleet.db, run_id) == "passed"
    assert check_evidence(side, ["x", "y"])["x"] == [(1, "a1")]
    check_replay(fleet.db, run_id, ws.parent)


def test_a_worker_without_the_steps_env_variables_takes_the_run_over(fleet: Fleet, tmp_path: Path) -> None:
    """A step's `${env.NAME}` is resolved by the worker that runs each attempt, not by whoever
    drives the run: a driving worker lacking it takes the run over all the same, and every attempt,
    before the takeover and after, gets the value of the worker that runs it."""
    fleet.start("m1", "--queue", "ctl")  # drives the run, runs none of its steps; no TAKEOVER_VAR
    fleet.start("a1", "--drive", "0", env_extra={"TAKEOVER_VAR": "from-a1"})
    drv = tmp_path / "driver"
    drv.mkdir()
    side, ev, go = drv / "side.log", drv / "ev.log", drv / "go"
    env = {"V": "${env.TAKEOVER_VAR}"}
    ws = workstream(drv / "ws.json", [
        {"id": "x", "tasks": [f'echo "x $V" >> {side}; ' + evidence_task(ev, 0, gate=go)], "env": env},
        {"id": "y", "tasks": [f'echo "y $V" >> {side}'], "depends_on": ["x"], "env": env},
    ])  # fmt: skip
    proc = _run(fleet.db, ws, tmp_path / "run.out", "--queue", "ctl", env={"TAKEOVER_VAR": "from-run"})
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{ev}.x.ready").exists, "x to run")
    proc.kill()
    proc.wait()
    wait_for(lambda: driving_host(fleet.db, run_id) == "m1", "m1 to take the run over")
    go.touch()
    assert _ended(fleet.db, run_id) == "passed"
    assert [e["host"] for e in _events(fleet.db, run_id, "run.resumed", drv)] == ["m1"]
    assert side.read_text().splitlines() == ["x from-a1", "y from-a1"]
    check_replay(fleet.db, run_id, drv)


@pytest.mark.parametrize("started", ["with takeover", "--no-takeover"])
def test_resume_submit_hands_a_stopped_run_back_to_the_fleet(
    fleet: Fleet, tmp_path: Path, started: str
) -> None:
    """A run stopped on purpose (Ctrl-C) goes back to the fleet with `resume --submit`: a worker
    resumes it, what passed does not run again; refused while the run is driven, and once it passed."""
    fleet.start("m1", concurrency=2)
    ws, side, go = _gated(tmp_path, "driver")
    out = tmp_path / "run.out"
    proc = _run(fleet.db, ws, out, *(["--no-takeover"] if started == "--no-takeover" else []))
    run_id = _new_run(fleet.db, [])
    wait_for(Path(f"{side}.x.ready").exists, "x to run")
    busy = cli(fleet.db, "resume", run_id, "--submit", cwd=ws.parent)
    assert busy.returncode != 0 and "is being driven by the orchestrator" in busy.stderr, busy.stderr
    proc.send_signal(signal.SIGINT)  # once: x finishes, nothing new starts
    wait_for(lambda: "Ctrl-C: starting no new step" in out.read_text(), "the run to drain")
    go.touch()
    assert proc.wait(timeout=60) == 130, out.read_text()
    assert run_status(fleet.db, run_id) == "interrupted"
    assert _events(fleet.db, run_id, "run.resumed", ws.parent) == []  # the refused hand-back recorded nothing

    handed = cli(fleet.db, "resume", run_id, "--submit", "--json", cwd=ws.parent)
    assert handed.returncode == 0, handed.stdout + handed.stderr
    assert json.loads(handed.stdout) == {"run_id": run_id, "queue": "default", "enqueued": True}
    assert _ended(fleet.db, run_id) == "passed"
    resumed = _events(fleet.db, run_id, "run.resumed", ws.parent)
    assert [(e["host"], e["to_fleet"]) for e in resumed] == [("driver", True), ("m1", False)], resumed
    ran = [line.split()[:3] for line in side.read_text().splitlines() if line.startswith("start")]
    assert ran == [["start", "x", "1"], ["start", "y", "1"]], ran  # x not again; y once, on the fleet
    said = cli(fleet.db, "events", run_id, "--type", "run.resumed", cwd=ws.parent).stdout
    assert "to_fleet=true" in said, said
    check_replay(fleet.db, run_id, ws.parent)

    again = cli(fleet.db, "resume", run_id, "--submit", cwd=ws.parent)
    assert again.returncode == 2, again.stderr
    assert "has passed: there is nothing left to resume" in again.stderr
