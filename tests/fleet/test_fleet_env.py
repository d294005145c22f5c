"""A step's `${env.NAME}` values on a fleet (docs/workers.md): resolved by the worker that runs each
attempt, in its own environment; the job waiting for a worker and the event log hold the template,
never a value. Real `stepledger worker` processes on the real PostgreSQL server.

The machines' environments are this process's plus what a test gives them (fleetkit): TOKEN,
SECRET and PUBLIC are taken out of it, so only the machine a test gives one to has it.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from fleetkit import Fleet, attempt_rows, cli, driver, query, run_status, wait_for, workstream

from stepledger.engine.fleet.settings import TASK_NAME

pytestmark = pytest.mark.postgres

WAITING_JOBS = (
    f"SELECT args::text FROM procrastinate_jobs WHERE task_name = '{TASK_NAME}' AND status = 'todo'"
)


@pytest.fixture(autouse=True)
def _variables_only_where_given(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TOKEN", "SECRET", "PUBLIC"):
        monkeypatch.delenv(name, raising=False)


def _run_id(db: str) -> str:
    return str(wait_for(lambda: query(db, "SELECT run_id FROM runs"), "the run to be recorded")[0][0])


def _finished(proc: subprocess.Popen[str]) -> str:
    """The output of a `run --on-workers` that passed."""
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    return out


def _events(db: str, run_id: str, cwd: Path) -> str:
    shown = cli(db, "events", run_id, "--json", cwd=cwd)
    assert shown.returncode == 0, shown.stdout + shown.stderr
    return shown.stdout


def _token_step(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The driving machine's folder, and a workstream of one step `a` that writes its $TOKEN, a
    `${env.TOKEN}` value, to the file returned second."""
    drv = tmp_path / "driver"
    drv.mkdir()
    got = tmp_path / "got.txt"
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [f'printf %s "$TOKEN" > {got}'], "env": {"TOKEN": "${env.TOKEN}"}},
    ])  # fmt: skip
    return drv, got, ws


@pytest.mark.parametrize("started", ["run --on-workers, the driver with a value of its own", "submit"])
def test_a_step_gets_the_value_of_the_worker_that_runs_it(fleet: Fleet, tmp_path: Path, started: str) -> None:
    """The job waiting for a worker holds the template and no value (checked before any worker can
    take it); the step sees the value of the worker that runs it, whatever the driving process has
    (another value, or none: a driving worker started without it); the log holds no value."""
    drv, got, ws = _token_step(tmp_path)
    proc = None
    if started == "submit":
        fleet.start("d1", "--queue", "ctl")  # drives the run, runs none of its steps; no TOKEN
        submitted = cli(fleet.db, "submit", str(ws), "--queue", "ctl", cwd=drv)  # no TOKEN either
        assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    else:
        proc = driver(fleet.db, ws, drv, env={"TOKEN": "value-of-driver"})
    [(args,)] = wait_for(lambda: query(fleet.db, WAITING_JOBS), "a's job to wait for a worker")
    assert '"${env.TOKEN}"' in args and "value-of" not in args
    fleet.start("m1", env_extra={"TOKEN": "value-of-worker"})
    run_id = _run_id(fleet.db)
    out = _finished(proc) if proc is not None else ""
    wait_for(lambda: run_status(fleet.db, run_id) == "passed", "the run to pass")
    assert got.read_text() == "value-of-worker"
    events = _events(fleet.db, run_id, drv)
    assert '"TOKEN": "${env.TOKEN}"' in events
    for text in (events, out, fleet.output("m1")):
        assert "value-of" not in text


def test_a_worker_lacking_the_variable_runs_nothing_of_the_step_and_another_runs_the_retry(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The attempt fails before any of the step runs, its log, the worker's output and the run's
    line saying which variable this worker lacks for which env value and where to set it; the
    step's retry policy applies, and a worker that has the variable runs the retry."""
    m1 = fleet.start("m1")  # without TOKEN
    drv = tmp_path / "driver"
    drv.mkdir()
    side, got = tmp_path / "side", tmp_path / "got.txt"
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [f'touch {side}; printf %s "$AUTH" > {got}'], "env": {"AUTH": "${env.TOKEN}"},
         "retry": {"strategy": "fixed", "initial_delay": 2}, "circuit_breaker": {"max_attempts": 2}},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv)
    run_id = _run_id(fleet.db)
    wait_for(
        lambda: [r for r in attempt_rows(fleet.db, run_id) if r[3] == "done"], "a's first attempt to end"
    )
    # Stopped before the retry is due (in 2 s), so that m1 cannot take it.
    fleet.workers["m1"].send_signal(signal.SIGTERM)
    assert fleet.workers["m1"].wait(timeout=60) == 0, fleet.output("m1")
    [first] = attempt_rows(fleet.db, run_id)
    assert first[:4] == ("a", 1, "m1", "done") and first[4] is not None and not first[4]["passed"]
    assert not side.exists()  # nothing of the step ran
    worker = f"m1:{fleet.workers['m1'].pid}"  # the worker's name: its host and pid
    said = (
        f"stepledger: worker {worker} ran nothing of step a: its env.AUTH is '${{env.TOKEN}}', and"
        " environment variable TOKEN is not set and ${env.TOKEN} has no default in this worker's"
        f" environment; set TOKEN in the environment of worker {worker} (a systemd unit's Environment="
        " or EnvironmentFile=)"
    )
    assert said in fleet.output("m1")  # the worker's own output
    log = (m1 / ".stepledger" / "runs" / run_id / "a.1.log").read_text()
    assert said in log  # the attempt's log

    fleet.start("m2", env_extra={"TOKEN": "value-of-m2"})
    out = _finished(proc)
    # The run's line: the step, the worker, the env name, the template, the fix; never a value.
    [line] = [line for line in out.splitlines() if "[a] Failed" in line]
    assert line.endswith(
        f"on m1 (worker {worker}) (exit 2): stepledger: TOKEN is not set on this worker (env.AUTH is"
        " '${env.TOKEN}'): set it in its environment, e.g. its systemd unit's Environment="
    )
    assert got.read_text() == "value-of-m2"
    assert [(r[0], r[1], r[2], (r[4] or {}).get("passed")) for r in attempt_rows(fleet.db, run_id)] == [
        ("a", 1, "m1", False),
        ("a", 2, "m2", True),
    ]
    assert "value-of-m2" not in out + _events(fleet.db, run_id, drv)


def test_a_step_output_holding_an_env_template_never_becomes_the_worker_s_value(
    fleet: Fleet, tmp_path: Path
) -> None:
    """`${env...}` is resolved before the step outputs are filled in, and an output is never read as
    a template: a step that outputs the text `${env.SECRET}` cannot make a worker put its SECRET into
    another step's environment, alone or beside a template of the worker's."""
    fleet.start("m1", env_extra={"SECRET": "the-worker-s-secret", "PUBLIC": "pub"})
    drv = tmp_path / "driver"
    drv.mkdir()
    got = tmp_path / "got.txt"
    ws = workstream(drv / "ws.json", [
        # Writes {"v": "${env.SECRET}"} (the task holds no placeholder itself).
        {"id": "a", "tasks": ["printf '{\"v\": \"$%s\"}' '{env.SECRET}' > \"$STEPLEDGER_OUTPUTS\""]},
        {"id": "b", "depends_on": ["a"], "tasks": [f'printf "%s|%s" "$X" "$Y" > {got}'],
         "env": {"X": "${env.PUBLIC}-${steps.a.outputs.v}", "Y": "${steps.a.outputs.v}"}},
    ])  # fmt: skip
    out = _finished(driver(fleet.db, ws, drv))
    assert got.read_text() == "pub-${env.SECRET}|${env.SECRET}"
    assert "the-worker-s-secret" not in out + _events(fleet.db, _run_id(fleet.db), drv)


def test_a_fleet_run_resumed_with_the_current_file_needs_no_value_where_it_is_resumed(
    fleet: Fleet, tmp_path: Path
) -> None:
    """`resume --use-current-file` loads the file again where it is typed: for a run on the fleet,
    as for `run --on-workers`, that machine need not have the steps' variables; the worker's
    value reaches the step."""
    drv, got, ws = _token_step(tmp_path)
    proc = driver(fleet.db, ws, drv, "--no-takeover")  # no TOKEN here, and no worker yet
    wait_for(lambda: query(fleet.db, WAITING_JOBS), "a's job to wait for a worker")
    proc.terminate()  # SIGTERM stops the run at once: the waiting job is withdrawn
    proc.communicate(timeout=60)
    run_id = _run_id(fleet.db)
    assert run_status(fleet.db, run_id) == "interrupted"
    fleet.start("m1", env_extra={"TOKEN": "value-of-worker"})
    resumed = cli(fleet.db, "resume", run_id, "--use-current-file", cwd=drv)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert run_status(fleet.db, run_id) == "passed"
    assert got.read_text() == "value-of-worker"


def test_worktree_path_is_the_folder_of_the_worker_running_the_attempt(fleet: Fleet, tmp_path: Path) -> None:
    """`${worktree_path}` (a run without isolation: its folder) names the folder the attempt runs
    in, the worker's, not the driving machine's: in a task, in an env value, and in an env value
    that also reads the environment (filled after the worker resolved it)."""
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [{
        "id": "a",
        "tasks": ['printf "%s|%s|%s" "${worktree_path}" "$WT" "$BOTH" > where.txt'],
        "env": {"WT": "${worktree_path}/out", "BOTH": "${env.PUBLIC}@${worktree_path}"},
    }])  # fmt: skip
    proc = driver(fleet.db, ws, drv)
    m1 = fleet.start("m1", env_extra={"PUBLIC": "seen"})
    _finished(proc)
    task, env_value, both = (m1 / "where.txt").read_text().split("|")
    assert (task, env_value, both) == (str(m1), f"{m1}/out", f"seen@{m1}")
    assert not (drv / "where.txt").exists()
