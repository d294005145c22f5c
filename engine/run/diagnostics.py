"""Diagnostics of a step that failed for good (`error_handling.on_failure.collect_diagnostics: true`).

Kept under `<run dir>/diagnostics/<step>/`, so they outlive later attempts and `logs` rotation:

    attempt-<N>.log           the output of each failed attempt (tool and acceptance tests)
    attempt-<N>.result.json   how it ended (reason, exit code, error signature, times)
    environment.json          python, host, user, working directory, PATH, the step's env *names*
    timings.json              each attempt's start, end and duration, and the step's totals
    summary.txt               the same in a few readable lines

A failed saga compensation gets the same files in `<run dir>/diagnostics/<step>/compensation/`.
Values of the step's environment are never written: they may hold secrets. The files are the
owner's alone (0600, folders 0700), and a log longer than LOG_HEAD_BYTES + LOG_TAIL_BYTES is copied
as its head and its tail with a line saying how much was cut between them: the diagnostics of a
step that printed gigabytes stay small, and the start and the end are where a failure shows.
"""

from __future__ import annotations

import getpass
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stepledger.events.state import RunState

from ..execution import files
from ..execution.recovery import wait_for_attempt
from ..paths import compensation_dir, hostname
from ..workstream.model import Step

RESULT_FILE_WAIT_S = 10.0  # at most, for an attempt's worker to finish writing its result file
LOG_HEAD_BYTES = LOG_TAIL_BYTES = 512 * 1024  # of each attempt's log, at most
_CHUNK = 1 << 16

if TYPE_CHECKING:
    from .context import RunContext


def diagnostics_dir(run_dir: str | Path, step_id: str) -> Path:
    """The folder that holds the diagnostics of one step of a run."""
    return Path(run_dir) / "diagnostics" / files.safe_name(step_id)


def collect_diagnostics(run_dir: str | Path, run_state: RunState, step_id: str, step: Step) -> Path:
    """Gather the failed attempts' output, an environment summary and timings; return the folder."""
    state = run_state.step(step_id)
    totals = {
        "state": state.state,
        "attempts_started": state.attempt,
        "counted_failures": state.counted_failures,
        "first_started_at": state.first_started_at,
        "total_duration_s": round(state.total_duration_s, 3),
        "timeout_s": step.timeout,
        "last_reason": state.last_reason,
        "last_exit_code": state.last_exit_code,
    }
    dest = diagnostics_dir(run_dir, step_id)
    return _gather(dest, Path(run_dir), run_state, step, state.attempt, totals)


def collect_if_asked(reactor: RunContext, step_id: str) -> Path | None:
    """Collect `step_id`'s diagnostics if `on_failure.collect_diagnostics` asks (call when it trips)."""
    handler = reactor.ws.error_handling.handlers.get("on_failure")
    if handler is None or not handler.collect_diagnostics:
        return None
    folder = collect_diagnostics(reactor.run_dir, reactor.run, step_id, reactor.ws.step(step_id))
    reactor.reporter.note(f"[{step_id}] diagnostics kept in {folder}")
    return folder


def collect_compensation_diagnostics(
    run_dir: str | Path, run_state: RunState, step: Step, attempts: int
) -> Path:
    """The same for a step's failed compensation (`on_rollback_failure.collect_diagnostics`)."""

    comp = step.compensation
    totals = {
        "state": "compensation failed",
        "attempts_started": attempts,
        "action": comp.action if comp else "",
        "timeout_s": comp.timeout if comp else None,
    }
    dest = diagnostics_dir(run_dir, step.id) / "compensation"
    return _gather(dest, compensation_dir(run_dir), run_state, step, attempts, totals)


def _gather(
    dest: Path, attempt_dir: Path, run: RunState, step: Step, attempts: int, totals: dict[str, Any]
) -> Path:
    _private_folders(dest)
    timed = []
    for attempt in range(1, attempts + 1):
        # The worker reports an attempt's result before it writes the result file, and holds the
        # attempt's lock until the file is complete: the last attempt's file may be a moment away.
        wait_for_attempt(str(attempt_dir), step.id, attempt, timeout=RESULT_FILE_WAIT_S)
        result = _read_json(files.result_path(str(attempt_dir), step.id, attempt))
        if result.get("passed"):
            continue  # only failures are diagnosed (a step retried by an operator may have passed once)
        log = Path(files.log_path(str(attempt_dir), step.id, attempt))
        if log.is_file():
            copy_bounded(log, dest / f"attempt-{attempt}.log")
        if result:
            _write(dest / f"attempt-{attempt}.result.json", json.dumps(result, indent=2, sort_keys=True))
        timed.append(_timing(attempt, result))
    workdir = Path(run.workdir) / step.cwd if step.cwd else Path(run.workdir)
    environment = _environment(workdir, step)
    timings = {"step_id": step.id, "attempts": timed, **totals, "collected_at": time.time()}
    _write(dest / "environment.json", json.dumps(environment, indent=2, sort_keys=True))
    _write(dest / "timings.json", json.dumps(timings, indent=2, sort_keys=True))
    _write(dest / "summary.txt", _summary(run, step, timings, environment))
    return dest


def _private_folders(folder: Path) -> None:
    """Create `folder` and each missing parent, readable by the owner only (whatever the umask)."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)


def _open_private(path: Path) -> Any:
    # O_CREAT with 0600: the file is never readable by others, not even between creation and chmod.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # a file already there keeps its mode otherwise
    return os.fdopen(fd, "wb")


def _write(path: Path, text: str) -> None:
    with _open_private(path) as f:
        f.write(text.encode("utf-8"))


def copy_bounded(source: Path, dest: Path, head: int = LOG_HEAD_BYTES, tail: int = LOG_TAIL_BYTES) -> None:
    """Copy `source` to `dest` (0600), keeping at most its first `head` and last `tail` bytes."""
    with source.open("rb") as src, _open_private(dest) as out:
        size = os.fstat(src.fileno()).st_size
        if size <= head + tail:
            shutil.copyfileobj(src, out, _CHUNK)
            return
        _copy_part(src, out, head)
        cut = size - head - tail
        out.write(
            f"\n[... {cut} bytes cut by stepledger diagnostics; the whole log is {source} ...]\n".encode()
        )
        src.seek(size - tail)
        _copy_part(src, out, tail)


def _copy_part(src: Any, out: Any, length: int) -> None:
    while length > 0 and (chunk := src.read(min(_CHUNK, length))):
        out.write(chunk)
        length -= len(chunk)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _timing(attempt: int, result: dict[str, Any]) -> dict[str, Any]:
    started, finished = result.get("started_at"), result.get("finished_at")
    duration = round(finished - started, 3) if started is not None and finished is not None else None
    return {
        "attempt": attempt,
        "started_at": started,
        "finished_at": finished,
        "duration_s": duration,
        "reason": result.get("reason"),
        "exit_code": result.get("exit_code"),
        "error_signature": result.get("error_signature", ""),
    }


def _environment(workdir: Path, step: Step) -> dict[str, Any]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {
        "python": sys.version.split()[0],
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "host": hostname(),
        "user": user,
        "cwd": str(workdir),
        "PATH": os.environ.get("PATH", ""),
        "tool": step.tool,
        "tool_path": shutil.which(step.tool) if step.tool not in ("shell", "python") else None,
        "step_env_keys": sorted(step.env),  # names only: values may be secrets
    }


def _summary(run: RunState, step: Step, timings: dict[str, Any], env: dict[str, Any]) -> str:
    lines = [
        f"run {run.run_id}, step {step.id}: {timings['state']}",
        f"attempts started: {timings['attempts_started']}",
    ]
    if "last_reason" in timings:
        lines.append(f"last failure: {timings['last_reason']} (exit code {timings['last_exit_code']})")
    what = f"action: {timings['action']}" if "action" in timings else f"tasks: {'; '.join(step.tasks)}"
    lines += [
        f"tool: {step.tool}; {what}",
        f"host {env['host']}, python {env['python']}, cwd {env['cwd']}",
        f"step env names: {', '.join(env['step_env_keys']) or '(none)'}",
        "",
    ]
    for a in timings["attempts"]:
        lines.append(f"attempt {a['attempt']}: {a['reason']} exit={a['exit_code']} in {a['duration_s']}s")
        lines.append(f"  signature: {a['error_signature']}")
    return "\n".join(lines) + "\n"
