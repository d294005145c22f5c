"""Each attempt of a run on workers shows the host and worker that ran it in `audit timeline` (table,
JSON, HTML with a line per host) and in its outcome event (the run's lines, `events`, plain SQL) —
not the driving machine, which step.started names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fleetkit import Fleet, cli, driver, query, wait_for, workstream

pytestmark = pytest.mark.postgres


def test_audit_and_the_timeline_show_the_host_of_each_attempt(fleet: Fleet, tmp_path: Path) -> None:
    fleet.start("m1")
    fleet.start("m2")
    shared = tmp_path / "shared"
    shared.mkdir()
    # a and b wait for each other: with one slot per worker they can only pass on two machines.
    both = f"[ -e {shared}/a ] && [ -e {shared}/b ]"
    wait = f"for i in $(seq 1200); do {both} && break; sleep 0.05; done"
    barrier = f"touch {shared}/$STEPLEDGER_STEP_ID; {wait}; {both}"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "a", "tasks": [barrier]},
        {"id": "b", "tasks": [barrier]},
        {"id": "c", "tasks": ["true"], "depends_on": ["a", "b"]},
    ])  # fmt: skip
    proc = driver(fleet.db, ws, drv)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    run_id = str(query(fleet.db, "SELECT run_id FROM runs")[0][0])
    ledger = {
        step: (host, worker)
        for step, host, worker in query(
            fleet.db, "SELECT step_id, host, worker FROM stepledger_fleet_attempts WHERE run_id = %s", run_id
        )
    }
    assert {ledger["a"][0], ledger["b"][0]} == {"m1", "m2"}

    # The log itself says where each attempt ran: its outcome event carries the worker's machine and
    # name (step.started names the driving machine), so plain SQL on `events` and the run's own lines
    # answer it too.
    outcomes = query(
        fleet.db,
        "SELECT split_part(stream, '/', 2), payload->>'worker_host', payload->>'worker' FROM events"
        " WHERE run_id = %s AND type = 'step.passed'",
        run_id,
    )
    assert {step: (host, worker) for step, host, worker in outcomes} == ledger
    for step, (host, worker) in ledger.items():
        assert f"✓ [{step}] Complete (" in out and f" on {host} (worker {worker}))" in out, out
    said = cli(fleet.db, "events", run_id, "--step", "a", "--type", "step.passed", "--json", cwd=drv)
    payload = json.loads(said.stdout)["payload"]
    assert (payload["worker_host"], payload["worker"]) == ledger["a"]

    timeline = cli(fleet.db, "audit", "timeline", run_id, "--json", cwd=drv)
    assert timeline.returncode == 0, timeline.stderr
    rows = {r["step_id"]: r for r in map(json.loads, timeline.stdout.splitlines())}
    assert {sid: (r["host"], r["worker"]) for sid, r in rows.items()} == ledger
    assert all(r["worker"].startswith(r["host"] + ":") for r in rows.values())
    table = cli(fleet.db, "audit", "timeline", run_id, cwd=drv)
    # Its worker column names each attempt's worker (host:pid of the worker process).
    assert ledger["a"][1] in table.stdout and ledger["b"][1] in table.stdout, table.stdout
    assert "driver" not in table.stdout

    # The query docs/workers.md gives: the audit's attempts view joined with the attempt ledger.
    sql = ("SELECT a.step_id, a.attempt, a.outcome, f.host, f.worker FROM attempts a"
           " LEFT JOIN stepledger_fleet_attempts f ON f.run_id = a.run_id AND f.step_id = a.step_id"
           " AND f.attempt = a.attempt WHERE a.run_id = %s ORDER BY a.started_at")  # fmt: skip
    joined = query(fleet.db, sql, run_id)
    assert {step: (host, worker) for step, _, _, host, worker in joined} == ledger

    page = tmp_path / "timeline.html"
    html = cli(fleet.db, "audit", "timeline", run_id, "--html", str(page), cwd=drv)
    assert html.returncode == 0, html.stderr
    text = page.read_text()
    assert "Attempts per host (2 hosts)" in text
    per_host = text.split("Attempts per host", 1)[1]
    for host in ("m1", "m2"):  # a line labelled with each host, and each attempt's worker named
        assert f'text-anchor="end">{host}</text>' in per_host
        assert f"on {host} (worker {host}:" in text
    assert "on driver" not in text


def test_audit_why_names_the_worker_running_an_attempt_or_says_none_took_it_yet(
    fleet: Fleet, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    drv = tmp_path / "driver"
    drv.mkdir()
    ws = workstream(drv / "ws.json", [
        {"id": "slow", "tasks": [f"while [ ! -e {gate} ]; do sleep 0.05; done"]},
        {"id": "gpu", "tasks": ["true"], "queue": "gpu"},  # no worker serves its queue
    ])  # fmt: skip
    fleet.start("m1")
    proc = driver(fleet.db, ws, drv)
    try:
        claims = "SELECT run_id, host, worker FROM stepledger_fleet_attempts WHERE step_id = 'slow'"
        taken = wait_for(lambda: query(fleet.db, claims), "a worker to take the slow step")
        run_id, host, worker = taken[0]
        why = json.loads(cli(fleet.db, "audit", "why", run_id, "slow", "--json", cwd=drv).stdout)
        assert why["state"] == "running"
        assert why["reason"].startswith(f"attempt 1 running on {host} (worker {worker}) since "), why
        assert host == "m1" and "driver" not in why["reason"]
        waiting = json.loads(cli(fleet.db, "audit", "why", run_id, "gpu", "--json", cwd=drv).stdout)
        assert waiting["reason"].startswith("attempt 1 waits for a worker to take it (queued since "), waiting
    finally:
        gate.touch()
        proc.kill()
        proc.communicate(timeout=60)
