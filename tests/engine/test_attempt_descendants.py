"""Every process an attempt starts ends with it, even one that left the attempt's process groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from exec_support import RESULT_TIMEOUT, await_exit, make_spec, run_one, started_pool

from stepledger.engine.execution.recovery import wait_for_attempt

# Each leaves a daemon behind and writes its pid: setsid in the background (a new session, so a
# new group), and a double fork (its parent subshell exits at once, so init would adopt it).
DAEMONS = {
    "setsid": "setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' & "
    "while [ ! -s daemon.pid ]; do sleep 0.01; done",
    "double-fork": "(setsid sh -c 'echo $$ > daemon.pid; exec sleep 1000' &); "
    "while [ ! -s daemon.pid ]; do sleep 0.01; done",
}


@pytest.mark.parametrize("how", DAEMONS)
def test_a_detached_daemon_dies_when_its_attempt_passes(tmp_path: Path, how: str) -> None:
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=(DAEMONS[how],)))
        assert result.passed, result.output_excerpt
        daemon = int((tmp_path / "daemon.pid").read_text())
        assert await_exit(daemon)
        # Nothing of the attempt holds its lock once the worker lets go: no stray for a resume to await.
        assert wait_for_attempt(str(tmp_path / "run"), "s", 1, timeout=RESULT_TIMEOUT)


def test_a_detached_daemon_dies_when_its_attempt_times_out(tmp_path: Path) -> None:
    task = DAEMONS["setsid"] + "; sleep 1000"
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tasks=(task,), timeout=0.5))
        assert result.reason == "timeout"
        assert await_exit(int((tmp_path / "daemon.pid").read_text()))


def test_a_python_step_s_detached_children_die_with_it(tmp_path: Path) -> None:
    (tmp_path / "sl_daemon_mod.py").write_text(
        "import subprocess\n"
        "def start():\n"
        "    p = subprocess.Popen(['sleep', '1000'], start_new_session=True)\n"
        "    return {'pid': p.pid}\n"
    )
    with started_pool(1) as (pool, results):
        result = run_one(pool, results, make_spec(tmp_path, tool="python", tasks=("sl_daemon_mod:start",)))
        assert result.passed, result.output_excerpt
        assert await_exit(result.outputs["pid"])
