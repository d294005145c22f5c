"""`stepledger worktrees list|prune` and bad input of git isolation: subprocesses on real repositories."""

from __future__ import annotations

import json
from pathlib import Path

from gitkit import git, make_repo, only_run, run_ids, stepledger, worktree_paths, write_workstream


def failed_run(tmp_path: Path) -> tuple[Path, Path, str]:
    """A run whose step `bad` failed (worktree kept) and `good` passed (worktree removed)."""
    repo = make_repo(tmp_path / "repo")
    steps = [
        {"id": "good", "tool": "shell", "tasks": ["echo g > g.txt"]},
        {"id": "bad", "tool": "shell", "tasks": ["echo half > half.txt; exit 3"]},
    ]
    db = tmp_path / "log.db"
    done = stepledger("run", str(write_workstream(repo, steps, isolation="worktree")), cwd=repo, db=db)
    assert done.returncode == 1, done.stdout + done.stderr
    return repo, db, only_run(db)


def test_list_shows_the_failed_step_s_kept_worktree(tmp_path: Path) -> None:
    repo, db, run_id = failed_run(tmp_path)
    done = stepledger("worktrees", "list", "--json", cwd=repo, db=db)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    by_step = {row["step_id"]: row for row in rows}
    assert set(by_step) == {"bad", ""}  # the failed step's and the integration worktree
    assert by_step["bad"]["state"] == "tripped"
    assert by_step["bad"]["branch"] == f"stepledger-steps/{run_id}/bad"
    assert (Path(by_step["bad"]["path"]) / "half.txt").read_text() == "half\n"
    table = stepledger("worktrees", "list", run_id[:12], cwd=repo, db=db)
    assert table.returncode == 0 and "bad" in table.stdout and "tripped" in table.stdout


def test_prune_removes_kept_worktrees_and_step_branches_but_not_the_integration_branch(
    tmp_path: Path,
) -> None:
    repo, db, run_id = failed_run(tmp_path)
    done = stepledger("worktrees", "prune", run_id, cwd=repo, db=db)
    assert done.returncode == 0, done.stderr
    assert "removed 2 worktrees" in done.stdout
    assert worktree_paths(repo) == [str(repo)]
    assert git(repo, "branch", "--list", "stepledger-steps/*").strip() == ""
    assert git(repo, "branch", "--list", f"stepledger/{run_id}").strip() == f"stepledger/{run_id}"
    assert not (repo / ".worktrees" / run_id).exists()
    again = stepledger("worktrees", "prune", cwd=repo, db=db)
    assert again.returncode == 0 and "nothing to prune" in again.stdout


def test_worktrees_outside_a_repository_is_one_line_and_exit_2(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    done = stepledger("worktrees", "list", cwd=plain, db=tmp_path / "log.db")
    assert done.returncode == 2
    assert "is in no git repository" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr


def test_worktree_isolation_outside_a_repository_records_nothing(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    ws = write_workstream(plain, [{"id": "a", "tool": "shell", "tasks": ["true"]}], isolation="worktree")
    db = tmp_path / "log.db"
    done = stepledger("run", str(ws), cwd=plain, db=db)
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert "needs a git repository" in line and 'set execution.isolation to "none"' in line
    assert run_ids(db) == []


def test_bad_merge_into_values_are_refused_before_anything_is_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    db = tmp_path / "log.db"
    isolated = write_workstream(repo, [{"id": "a", "tool": "shell", "tasks": ["true"]}], isolation="worktree")
    for bad in ("-x", "a..b", "HEAD", "stepledger/run-1"):
        done = stepledger("run", str(isolated), "--merge-into", bad, cwd=repo, db=db)
        assert done.returncode == 2, (bad, done.stderr)
        assert "is not a branch stepledger may merge into" in done.stderr
    plain = make_repo(tmp_path / "plain")
    not_isolated = write_workstream(plain, [{"id": "a", "tool": "shell", "tasks": ["true"]}])
    done = stepledger("run", str(not_isolated), "--merge-into", "main", cwd=plain, db=db)
    assert done.returncode == 2 and "needs git isolation" in done.stderr
    # With --detach, the same checks, made before the background run starts.
    detached = stepledger("run", str(isolated), "--merge-into", "HEAD", "--detach", cwd=repo, db=db)
    assert detached.returncode == 2 and "is not a branch stepledger may merge into" in detached.stderr
    detached = stepledger("run", str(not_isolated), "--merge-into", "main", "--detach", cwd=plain, db=db)
    assert detached.returncode == 2 and "needs git isolation" in detached.stderr
    assert run_ids(db) == []


def test_a_detached_run_merges_into_the_branch_it_was_given(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    db = tmp_path / "log.db"
    step = {"id": "a", "tool": "shell", "tasks": ["echo made > made.txt"], "files_scope": ["made.txt"]}
    isolated = write_workstream(repo, [step], isolation="worktree")
    git(repo, "branch", "target")
    detached = stepledger(
        "run", str(isolated), "--merge-into", "target", "--detach", "--json", cwd=repo, db=db
    )
    assert detached.returncode == 0, detached.stdout + detached.stderr
    run_id = json.loads(detached.stdout)["run_id"]
    followed = stepledger("logs", run_id, "--follow", cwd=repo, db=db)  # returns when the run has ended
    assert followed.returncode == 0, followed.stderr
    assert git(repo, "show", "target:made.txt").strip() == "made"


def test_a_repository_without_commits_is_refused(tmp_path: Path) -> None:
    repo = tmp_path / "empty"
    repo.mkdir()
    git(repo, "init", "-q")
    ws = write_workstream(repo, [{"id": "a", "tool": "shell", "tasks": ["true"]}], isolation="workstream")
    done = stepledger("run", str(ws), cwd=repo, db=tmp_path / "log.db")
    assert done.returncode == 2 and "has no commit yet" in done.stderr


def test_an_unknown_isolation_is_a_validation_error(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    ws = write_workstream(repo, [{"id": "a", "tool": "shell", "tasks": ["true"]}], isolation="sandbox")
    done = stepledger("validate", str(ws), cwd=repo, db=tmp_path / "log.db")
    assert done.returncode == 2
    assert "isolation" in done.stdout + done.stderr


def test_a_cwd_with_a_per_attempt_placeholder_is_refused(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": "a", "tool": "shell", "cwd": "${worktree_path}/sub", "tasks": ["true"]}]
    db = tmp_path / "log.db"
    done = stepledger("run", str(write_workstream(repo, steps, isolation="worktree")), cwd=repo, db=db)
    assert done.returncode == 2
    assert "step 'a': cwd '${worktree_path}/sub' uses a placeholder filled per attempt" in done.stderr
    assert run_ids(db) == [] and not (repo / "${worktree_path}").exists()
