"""What worktree isolation costs per step, on a repository of 1,000 files / 50 MB, and what dominates it.

Two measurements on a repository made here (1,000 files of 50 KB of random bytes, one commit):

- `phases`: the engine's own git operations, called in-process as the reactor calls them, for
  `--steps` steps one after another: a fresh worktree (`git worktree add`: the checkout of every
  file), the commit of one changed file (`git add -A` scans the whole worktree), the merge into
  the integration branch (in its own worktree), and the removal at the run's end (`git worktree
  remove`: deleting every file). Median, min and max of each phase per step.
- `run`: `stepledger run` of `--steps` parallel steps each changing one file, with isolation
  "none" and "worktree" on the same repository; the difference per step is the overhead a run
  really pays (the git operations run in the reactor's thread, one at a time).

    .venv/bin/python benchmarks/bench_worktrees.py [--files 1000] [--size-mb 50] [--steps 8]
        [--skip-run] [--keep]

Figures and their reading go in docs/performance.md and docs/worktrees.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from stepledger.engine.worktrees import operations as ops
from stepledger.engine.worktrees.names import RunNames

ENV = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
       "GIT_COMMITTER_EMAIL": "b@b"}  # fmt: skip


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, env=ENV, check=True, capture_output=True, text=True
    ).stdout


def make_repository(path: Path, files: int, size_mb: float) -> Path:
    """A repository of `files` files of random bytes, `size_mb` MB in all, in 20 folders, one commit."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    each = int(size_mb * 1024 * 1024 / files)
    for i in range(files):
        folder = path / f"pkg{i % 20:02d}"
        folder.mkdir(exist_ok=True)
        (folder / f"file{i:04d}.bin").write_bytes(os.urandom(each))
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "the benchmark's repository")
    return path


def timed(fn, *args):  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def phases(repo: Path, steps: int) -> dict[str, list[float]]:
    """Seconds of each git operation of isolation, per step, as the reactor performs them."""
    names = RunNames(repo, "bench-phases")
    times: dict[str, list[float]] = {"add": [], "commit": [], "merge": [], "remove": []}
    setup, _ = timed(ops.ensure_run_branch, names)
    print(f"integration branch and its worktree (once per run): {setup * 1000:.0f} ms")
    made = []
    for i in range(steps):
        sid = f"step{i}"
        seconds, (path, _branch, _base) = timed(ops.fresh_step_worktree, names, sid)
        times["add"].append(seconds)
        (path / "pkg00" / f"step{i}.txt").write_text(f"work of {sid}\n")
        seconds, commit = timed(ops.commit_all, path, f"bench: {sid}")
        times["commit"].append(seconds)
        seconds, outcome = timed(ops.merge_step, names, commit, ops.merge_message("bench", sid, sid, 1))
        assert not outcome.conflicted
        times["merge"].append(seconds)
        made.append((path, names.step_branch(sid)))
    for path, branch in made:
        seconds, _ = timed(ops.discard_worktree, repo, path, branch)
        times["remove"].append(seconds)
    ops.discard_worktree(repo, names.run_worktree)
    return times


def run_seconds(repo: Path, steps: int, isolation: str, scratch: Path) -> float:
    """Wall time of `stepledger run` of `steps` parallel one-file steps with `isolation`."""
    ws = scratch / f"ws-{isolation}.json"
    body = {
        "id": f"bench-{isolation}",
        "execution": {"isolation": isolation, "max_workers": 4},
        "steps": [{"id": f"s{i}", "tool": "shell", "tasks": [f"echo {i} > pkg01/s{i}-{isolation}.txt"]}
                  for i in range(steps)],
    }  # fmt: skip
    ws.write_text(json.dumps(body))
    db = scratch / f"log-{isolation}.db"
    env = {**ENV, "STEPLEDGER_DB": f"sqlite:///{db}"}
    stepledger = str(Path(sys.executable).with_name("stepledger"))
    start = time.perf_counter()
    done = subprocess.run([stepledger, "run", str(ws)], cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"the {isolation} run failed:\n{done.stdout}\n{done.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--size-mb", type=float, default=50.0)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip-run", action="store_true", help="only the in-process phases")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="bench-worktrees-"))
    try:
        seconds, repo = timed(make_repository, scratch / "repo", args.files, args.size_mb)
        print(f"repository: {args.files} files, {args.size_mb:g} MB (made in {seconds:.1f} s); "
              f"git {git(repo, 'version').split()[-1]}")  # fmt: skip
        times = phases(repo, args.steps)
        print(f"\nper step, {args.steps} steps (ms)    median      min      max")
        for phase, values in times.items():
            print(f"  {phase:<8}                   {statistics.median(values) * 1000:8.0f} "
                  f"{min(values) * 1000:8.0f} {max(values) * 1000:8.0f}")  # fmt: skip
        per_step = sum(statistics.median(v) for v in times.values())
        dominant = max(times, key=lambda p: statistics.median(times[p]))
        share = statistics.median(times[dominant]) / per_step
        print(f"  total                    {per_step * 1000:8.0f}   ({dominant} is {share:.0%} of it)")
        if not args.skip_run:
            git(repo, "checkout", "-q", "main")
            none = run_seconds(repo, args.steps, "none", scratch)
            isolated = run_seconds(repo, args.steps, "worktree", scratch)
            more = (isolated - none) / args.steps * 1000
            print(f"\nstepledger run, {args.steps} parallel steps: none {none:.2f} s, "
                  f"worktree {isolated:.2f} s: {more:.0f} ms more per step")  # fmt: skip
    finally:
        if args.keep:
            print(f"kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
