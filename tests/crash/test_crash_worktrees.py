"""kill -9 around every git operation of worktree isolation, then resume: nothing merged twice, nothing lost.

The diamond workstream runs with `execution.isolation: "worktree"` in a real repository, each step
writing a file of its own in its worktree. The orchestrator dies by SIGKILL at a kill point around
`git worktree add`, the commit of a passed attempt, the merge into the integration branch (between
`git merge --no-commit` and its commit: an interrupted merge) or the end-of-run merge into `main`;
`resume` carries the run to its end. Then `CrashRun.check` asserts the engine's promises (every
step passed once, `replay --verify` clean) and this module asserts git's side: every step's work
is on the integration branch, merged exactly once, no merge is left half done, and no worktree is
left behind.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from crashkit import CrashRun, count, diamond

# (point, pass): worktree_add/after_worktree_add pass 1 is the run's own worktree, later passes the
# attempts'; in_merge/after_merge/before_commit/after_commit pass once per passed step.
POINTS = [
    ("worktree_add", 1), ("worktree_add", 3),
    ("after_worktree_add", 1), ("after_worktree_add", 2),
    ("before_commit", 1), ("after_commit", 2),
    ("in_merge", 1), ("in_merge", 4),
    ("after_merge", 1), ("after_merge", 3),
    ("after_merge_into", 1),
]  # fmt: skip
CASES = [pytest.param("sqlite", p, n, id=f"sqlite-{p}:{n}") for p, n in POINTS] + [
    pytest.param("postgres", "in_merge", 2, id="postgres-in_merge:2", marks=pytest.mark.postgres)
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


def isolated_run(workdir: Path, url: str) -> CrashRun:
    """The diamond in a fresh repository, each step writing `<step>.txt` in its worktree."""
    workdir.mkdir(parents=True)
    git(workdir, "init", "-q", "-b", "main")
    (workdir / "README.md").write_text("crash\n")
    git(workdir, "add", "README.md")
    git(workdir, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "initial")
    run = CrashRun(workdir, url, diamond(0.1))
    body = json.loads(run.ws_path.read_text())
    body["execution"].update(isolation="worktree", merge_into="main")
    for step in body["steps"]:
        step["tasks"] = [f'echo "$STEPLEDGER_STEP_ID" > "$STEPLEDGER_STEP_ID.txt"; {step["tasks"][0]}']
    run.ws_path.write_text(json.dumps(body, indent=1))
    return run


def check_git(run: CrashRun) -> None:
    """Every step's work merged exactly once, into the integration branch and main; nothing left over."""
    repo = run.workdir
    branch = f"stepledger/{run.run_id}"
    names = {s.id for s in run.specs}
    files = set(git(repo, "ls-tree", "--name-only", branch).split())
    assert {f"{n}.txt" for n in names} <= files
    step_trailer = "--format=%(trailers:key=Stepledger-Step,valueonly)"
    trailers = git(repo, "log", "--first-parent", "--merges", step_trailer, branch).split()
    assert sorted(trailers) == sorted(names), f"merged per step: {trailers}"
    assert git(repo, "rev-parse", "main") == git(repo, "rev-parse", branch)
    worktrees = [
        line
        for line in git(repo, "worktree", "list", "--porcelain").splitlines()
        if line.startswith("worktree ")
    ]
    assert worktrees == [f"worktree {repo}"], worktrees
    assert git(repo, "branch", "--list", "stepledger-steps/*").strip() == ""
    for name in names:
        merged = run.events("worktree.merged", name)
        assert merged and all(e.payload["merge_commit"] for e in merged), name


@pytest.mark.parametrize(("db", "point", "nth"), CASES)
def test_kill_around_a_git_operation_then_resume(
    tmp_path: Path, db: str, point: str, nth: int, tally: dict[str, int], request: pytest.FixtureRequest
) -> None:
    url = str(request.getfixturevalue("sqlite_url" if db == "sqlite" else "pg_url"))
    run = isolated_run(tmp_path / "repo", url)
    code = run.run(kill_at=f"{point}:{nth}")
    assert code == -9, f"the plan {point}:{nth} never fired (exit {code}):\n{run.output()}"
    if point == "in_merge":  # killed between `git merge --no-commit` and its commit: a half merge
        run_worktree = tmp_path / "repo" / ".worktrees" / run.run_id / ".run"
        assert (Path(git(run_worktree, "rev-parse", "--git-dir").strip()) / "MERGE_HEAD").exists()
    run.resume_to_end()
    run.check()
    check_git(run)
    count(tally, run)
