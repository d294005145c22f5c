"""`stepledger run FILE --detach`: the run in a process of its own, which no terminal can stop.

The workstream is loaded and checked here first, so bad input is one line and exit 2 with nothing
recorded, as without `--detach`. The run itself is `stepledger run FILE --run-id RUN` in a new
session (no controlling terminal: closing this one sends it no SIGHUP), its output appended to
`.stepledger/runs/RUN/detached.log`. This returns once the run is recorded in the log, so that
`status`, `logs --follow` and `cancel` find it at once.

Parameters reach the run by a file in its folder (readable by its user only, removed once the run
is recorded, which holds them from then on), not by its command line, which `ps` shows anyone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import StepledgerError
from ..paths import make_run_dir, run_dir_of

OUTPUT_NAME = "detached.log"
PARAMS_NAME = "params.json"  # the parameters, until the run has recorded them
START_PATIENCE_S = 120.0  # how long the run may take to be recorded (a cold start on a busy machine)
POLL_S = 0.05


class DetachedRunFailed(StepledgerError):
    """The background run ended before it was recorded; its output file says why."""


def start_detached(
    file: Path,
    max_workers: int | None,
    *,
    workdir: str | Path,
    db: str | None,
    recorded: Callable[[str], bool],
    params: dict[str, Any] | None = None,
    merge_into: str | None = None,
    on_workers: bool = False,
    takeover: bool = True,
    drive_queue: str | None = None,
) -> tuple[str, int, Path]:
    """Start the run in the background; return its id, pid and output file once `recorded(run_id)`.

    Checked here as `run` checks it in the foreground (api.prepare_run), so that bad input is one
    line and exit 2 from this command, not a background run that ends at once."""
    from ..workstream import check_tools_or_raise, load_workstream
    from ..worktrees.isolation import check_isolation
    from .prerun import check_max_workers, check_run_inputs
    from .runs import new_run_id

    check_max_workers(max_workers)
    workstream = load_workstream(file, params=params)
    workdir = Path(workdir).resolve()
    check_tools_or_raise(workstream, workdir)
    check_run_inputs(workstream, workdir, max_workers)
    run_id = new_run_id()
    if on_workers:
        from ..fleet.workstream import check_fleet_run

        check_fleet_run(workstream, merge_into)
    check_isolation(workstream, workdir, run_id, merge_into)
    run_dir = make_run_dir(run_dir_of(workdir, run_id))
    output = run_dir / OUTPUT_NAME
    command = [sys.executable, "-m", "stepledger", "run", str(Path(file).resolve()), "--run-id", run_id]
    if max_workers is not None:
        command += ["--max-workers", str(max_workers)]
    if merge_into is not None:
        command += ["--merge-into", merge_into]
    if on_workers:
        command += ["--on-workers"] if takeover else ["--on-workers", "--no-takeover"]
        if drive_queue is not None:
            # One word: a name that begins with "-" cannot be read as another option.
            command.append(f"--queue={drive_queue}")
    params_file = run_dir / PARAMS_NAME
    if params:
        descriptor = os.open(params_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(descriptor, "w") as f:
            json.dump(params, f)
        command += ["--params-file", str(params_file)]
    env = dict(os.environ)
    if db:
        # The URL goes by the environment, not the command line: its password stays out of `ps`.
        env["STEPLEDGER_DB"] = db
    try:
        fd = os.open(output, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            process = subprocess.Popen(
                command, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                start_new_session=True,
            )  # fmt: skip
        finally:
            os.close(fd)
        _await_recorded(recorded, run_id, process, output)
    finally:
        # Read by the run, which has recorded them (or ended, or never started).
        params_file.unlink(missing_ok=True)
    return run_id, process.pid, output


def _await_recorded(
    recorded: Callable[[str], bool], run_id: str, process: subprocess.Popen[bytes], output: Path
) -> None:
    """Return once `run_id` is in the log; raise if its process ended first (bad input, no database)."""
    deadline = time.monotonic() + START_PATIENCE_S
    while time.monotonic() < deadline:
        if recorded(run_id):
            return
        code = process.poll()
        if code is not None:
            if recorded(run_id):
                return
            raise DetachedRunFailed(
                f"the background run ended (exit {code}) before it started: {_last_line(output)}"
            )
        time.sleep(POLL_S)  # the log has no notification a fresh process could wait on before it exists
    raise DetachedRunFailed(
        f"run {run_id} was not recorded within {START_PATIENCE_S:.0f}s; its output: {output}"
    )


def _last_line(output: Path) -> str:
    try:
        lines = [line for line in output.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        lines = []
    return lines[-1] if lines else f"see {output}"
