"""execution.isolation "worktree": each step in its own git worktree, merged back in completion order.

Every test makes a real git repository, runs `stepledger run` as a subprocess in it, and reads the
log and the repository afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path

from gitkit import (
    events,
    files_on,
    git,
    make_repo,
    only_run,
    state,
    stepledger,
    worktree_paths,
    write_workstream,
)


def run(repo: Path, ws: Path, *extra: str) -> tuple[int, str, str]:
    done = stepledger("run", str(ws), *extra, cwd=repo, db=repo.parent / "log.db")
    return done.returncode, done.stdout, done.stderr


def test_parallel_steps_editing_different_files_merge_cleanly(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [
        {"id": name, "tool": "shell", "tasks": [f"echo {name} > {name}.txt"]} for name in ("a", "b", "c")
    ]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    branch = f"stepledger/{run_id}"
    assert files_on(repo, branch) == {"README.md", "a.txt", "b.txt", "c.txt"}
    # Each attempt recorded its branch, base commit and resulting commit, and one merge each.
    initial = git(repo, "rev-parse", "main").strip()
    for name in ("a", "b", "c"):
        (created,) = events(db, run_id, "worktree.created", name)
        assert created.payload["branch"] == f"stepledger-steps/{run_id}/{name}"
        assert created.payload["path"] == str(repo / ".worktrees" / run_id / name)
        (committed,) = events(db, run_id, "worktree.committed", name)
        assert committed.payload["files"] == [f"{name}.txt"]
        assert committed.payload["base_commit"] == created.payload["base_commit"]
        (merged,) = events(db, run_id, "worktree.merged", name)
        assert merged.payload["into"] == branch
        parents = git(repo, "rev-list", "--parents", "-n1", merged.payload["merge_commit"]).split()
        assert committed.payload["commit"] in parents[1:]
    first_base = events(db, run_id, "worktree.run_branch_created")[0].payload["base_commit"]
    assert first_base == initial
    # The checkout was not touched: its branch, its files; the worktrees of passed steps are gone.
    assert git(repo, "rev-parse", "main").strip() == initial
    assert not (repo / "a.txt").exists()
    assert worktree_paths(repo) == [str(repo)]
    assert git(repo, "branch", "--list", "stepledger-steps/*").strip() == ""
    assert git(repo, "status", "--porcelain", "--untracked-files=all", "--", ".worktrees").strip() == ""


def test_two_steps_editing_the_same_lines_conflict_and_the_second_fails_merge_conflict(
    tmp_path: Path,
) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "one\ntwo\n"})
    # `late` finishes only once `early`'s merge is on the integration branch: the order is fixed.
    wait = "until git log --format=%s \"${run_branch}\" | grep -q 'merge step early'; do sleep 0.02; done"
    steps = [
        {"id": "early", "tool": "shell", "tasks": ["printf 'EARLY\\ntwo\\n' > shared.txt"]},
        {"id": "late", "tool": "shell", "tasks": [f"printf 'LATE\\ntwo\\n' > shared.txt; {wait}"]},
    ]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 1, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    run_state = state(db, run_id)
    assert run_state.steps["early"].state == "passed"
    assert run_state.steps["late"].state == "tripped"
    assert run_state.steps["late"].last_reason == "merge_conflict"
    assert "shared.txt" in run_state.steps["late"].last_error
    (conflict,) = events(db, run_id, "worktree.merge_conflicted", "late")
    assert conflict.payload["files"] == ["shared.txt"]
    assert conflict.payload["conflicting_steps"] == ["early"]
    # The integration branch holds early's work only, with no half merge; late's worktree is kept.
    assert git(repo, "show", f"stepledger/{run_id}:shared.txt") == "EARLY\ntwo\n"
    kept = repo / ".worktrees" / run_id / "late"
    assert (kept / "shared.txt").read_text() == "LATE\ntwo\n"
    assert str(kept) in worktree_paths(repo)
    assert str(repo / ".worktrees" / run_id / "early") not in worktree_paths(repo)
    run_wt = repo / ".worktrees" / run_id / ".run"
    assert git(run_wt, "rev-parse", "-q", "--verify", "MERGE_HEAD", check=False) == ""


def test_a_dependent_sees_its_dependency_and_not_a_sibling_still_running(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    mark = tmp_path / "dependent-done"
    steps = [
        {"id": "dep", "tool": "shell", "tasks": ["echo dep > dep.txt"]},
        # The sibling writes its file, then waits until the dependent has looked.
        {"id": "sibling", "tool": "shell",
         "tasks": [f"echo s > sibling.txt; until [ -f {mark} ]; do sleep 0.02; done"]},
        {"id": "dependent", "tool": "shell", "depends_on": ["dep"],
         "tasks": [f"test -f dep.txt && test ! -f sibling.txt && touch {mark}"]},
    ]  # fmt: skip
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    assert files_on(repo, f"stepledger/{only_run(tmp_path / 'log.db')}") >= {"dep.txt", "sibling.txt"}


def test_a_retry_starts_from_a_fresh_worktree(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # Attempt 1 leaves a file and fails; attempt 2 fails if it finds that file.
    task = 'test ! -f leftover.txt || exit 7; echo x > leftover.txt; test "$STEPLEDGER_ATTEMPT" = 2'
    steps = [{"id": "flaky", "tool": "shell", "tasks": [task],
              "retry": {"initial_delay": 0.01}, "circuit_breaker": {"max_attempts": 2}}]  # fmt: skip
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    created = events(db, run_id, "worktree.created", "flaky")
    assert [e.payload["attempt"] for e in created] == [1, 2]
    failed = events(db, run_id, "step.failed", "flaky")
    assert [e.payload["exit_code"] for e in failed] == [1]  # not 7: the leftover was gone


def test_the_three_variables_are_filled_in_tasks_env_and_acceptance_tests(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{
        "id": "vars", "tool": "shell", "env": {"MY_BRANCH": "${step_branch}"},
        "tasks": ['echo "${worktree_path}|${run_branch}|$MY_BRANCH" > vars.txt'],
        "acceptance_tests": ['test "$(pwd)" = "${worktree_path}"',
                             'test "$STEPLEDGER_STEP_BRANCH" = "${step_branch}"'],
    }]  # fmt: skip
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    run_id = only_run(tmp_path / "log.db")
    text = git(repo, "show", f"stepledger/{run_id}:vars.txt").strip()
    assert text == f"{repo}/.worktrees/{run_id}/vars|stepledger/{run_id}|stepledger-steps/{run_id}/vars"


def test_merge_into_the_checked_out_branch_brings_the_work_into_the_checkout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": n, "tool": "shell", "tasks": [f"echo {n} > {n}.txt"]} for n in ("a", "b")]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"), "--merge-into", "main")
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    assert (repo / "a.txt").read_text() == "a\n" and (repo / "b.txt").read_text() == "b\n"
    assert git(repo, "rev-parse", "main").strip() == git(repo, "rev-parse", f"stepledger/{run_id}").strip()
    (merged,) = events(db, run_id, "worktree.run_merged")
    assert merged.payload["into"] == "main" and merged.payload["how"] == "fast_forward"
    cleaned = events(db, run_id, "worktree.cleaned_up")[0].payload
    assert sorted(cleaned["removed"]) == [".run", "a", "b"] and cleaned["kept"] == []
    assert not (repo / ".worktrees" / run_id).exists()


def test_merge_into_a_new_branch_creates_it_from_the_workstream_setting(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": "a", "tool": "shell", "tasks": ["echo a > a.txt"]}]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree", merge_into="feature/x"))
    assert code == 0, out + err
    assert files_on(repo, "feature/x") == {"README.md", "a.txt"}
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"


def test_seed_shape_three_coding_tools_that_commit_like_aider(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"src/app.py": "print('app')\n"})
    tool = tmp_path / "fake_aider.py"
    # A stand-in coding tool: it edits a file and commits the change itself, as Aider does, and
    # leaves a second edit uncommitted for stepledger to commit.
    tool.write_text(
        "import pathlib, subprocess, sys\n"
        "name = sys.argv[1]\n"
        "pathlib.Path(f'src/{name}.py').write_text(f'def {name}():\\n    return {name!r}\\n')\n"
        "subprocess.run(['git', 'add', f'src/{name}.py'], check=True)\n"
        "subprocess.run(['git', '-c', 'user.name=aider', '-c', 'user.email=a@a', 'commit', '-q', '-m',\n"
        "                f'aider: add {name}'], check=True)\n"
        "pathlib.Path(f'notes-{name}.md').write_text('uncommitted notes\\n')\n"
    )
    steps = [
        {"id": f"ws-{n}", "tool": "shell", "tasks": [f"python3 {tool} {n}"],
         "acceptance_tests": [f"python3 -c 'import sys; sys.path.insert(0, \"src\"); import {n}'"]}
        for n in ("parser", "lexer", "printer")
    ] + [{"id": "integrate", "tool": "shell", "depends_on": ["ws-parser", "ws-lexer", "ws-printer"],
          "tasks": ["ls src/parser.py src/lexer.py src/printer.py notes-parser.md"]}]  # fmt: skip
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    run_id = only_run(tmp_path / "log.db")
    log = git(repo, "log", "--format=%s", f"stepledger/{run_id}")
    for n in ("parser", "lexer", "printer"):
        assert f"aider: add {n}" in log
        assert f"stepledger: run {run_id}, step ws-{n}, attempt 1" in log
        assert f"stepledger: merge step ws-{n} (run {run_id}, attempt 1)" in log
    assert files_on(repo, f"stepledger/{run_id}") >= {"src/parser.py", "src/lexer.py", "src/printer.py"}


def test_isolation_none_is_the_default_and_uses_no_git(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": "a", "tool": "shell", "tasks": ['echo "${worktree_path}" > a.txt']}]
    code, out, err = run(repo, write_workstream(repo, steps))
    assert code == 0, out + err
    assert (repo / "a.txt").read_text().strip() == str(repo)  # the run's folder itself
    assert git(repo, "branch", "--list", "stepledger*").strip() == ""
    assert not (repo / ".worktrees").exists()


def test_workstream_isolation_runs_every_step_in_one_worktree_off_the_checkout(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [
        {"id": "a", "tool": "shell", "tasks": ["echo a > a.txt"]},
        {
            "id": "b",
            "tool": "shell",
            "depends_on": ["a"],
            "tasks": ['test -f a.txt && echo "${step_branch}" > b.txt'],
        },
    ]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="workstream"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    assert git(repo, "show", f"stepledger/{run_id}:b.txt").strip() == f"stepledger/{run_id}"
    subjects = git(repo, "log", "--format=%s", f"stepledger/{run_id}").splitlines()
    assert subjects[:2] == [
        f"stepledger: run {run_id}, step b, attempt 1",
        f"stepledger: run {run_id}, step a, attempt 1",
    ]
    assert not (repo / "a.txt").exists()
    assert [e.payload["files"] for e in events(db, run_id, "worktree.committed")] == [["a.txt"], ["b.txt"]]
    assert worktree_paths(repo) == [str(repo)]


def test_a_step_id_that_looks_like_an_option_or_a_path_is_a_safe_name(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    ids = ["--upload-pack=touch pwned", "../../escape", "a b/c"]
    steps = [{"id": sid, "tool": "shell", "tasks": ['echo x > "$STEPLEDGER_ATTEMPT.txt"']} for sid in ids]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    for sid in ids:
        (created,) = events(db, run_id, "worktree.created", sid)
        path = Path(created.payload["path"])
        assert path.parent == repo / ".worktrees" / run_id
        assert not path.name.startswith(("-", "."))
        assert git(repo, "check-ref-format", f"refs/heads/{created.payload['branch']}", check=False) == ""
    assert not (tmp_path / "pwned").exists() and not (repo / "pwned").exists()
    assert not (tmp_path / "escape").exists()


def test_the_log_replays_and_verifies(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": "a", "tool": "shell", "tasks": ["echo a > a.txt"]}]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    done = stepledger("replay", only_run(db), "--verify", cwd=repo, db=db)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = stepledger("events", only_run(db), "--json", cwd=repo, db=db)
    types = [json.loads(line)["type"] for line in listed.stdout.splitlines()]
    assert types.index("worktree.created") < types.index("worktree.committed") < types.index("step.passed")


def test_a_worktree_removed_under_a_passing_step_fails_that_step_and_the_run_goes_on(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [
        {"id": "vanish", "tool": "shell", "tasks": ['cd / && rm -rf "$STEPLEDGER_WORKTREE_PATH"']},
        {"id": "fine", "tool": "shell", "tasks": ["echo ok > ok.txt"]},
    ]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 1, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    run_state = state(db, run_id)
    assert run_state.steps["fine"].state == "passed"
    assert run_state.steps["vanish"].last_reason == "error"
    assert "could not be committed or merged" in run_state.steps["vanish"].last_error
    assert "Traceback" not in out + err


def test_a_worktree_that_cannot_be_made_fails_the_attempt_with_the_reason(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    # Attempt 1 deletes the integration branch (as a careless tool might) and fails: its retry's
    # worktree has nothing to start from.
    task = 'git update-ref -d "refs/heads/${run_branch}"; exit 1'
    steps = [{"id": "careless", "tool": "shell", "tasks": [task],
              "retry": {"initial_delay": 0.01}, "circuit_breaker": {"max_attempts": 2}}]  # fmt: skip
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 1, out + err
    db = tmp_path / "log.db"
    failed = events(db, only_run(db), "step.failed", "careless")
    assert [e.payload["attempt"] for e in failed] == [1, 2]
    assert failed[1].payload["reason"] == "error"
    assert "the step's worktree could not be made" in failed[1].payload["output_excerpt"]
    assert "Traceback" not in out + err


def test_merge_into_a_branch_that_moved_on_conflicting_leaves_it_as_it_was(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"shared.txt": "one\n"})
    # While the step runs, someone commits a different first line on main, in the checkout.
    elsewhere = (f"printf 'MAIN\\n' > {repo}/shared.txt && git -C {repo} -c user.name=m -c user.email=m@m "
                 f"commit -qam 'main moved'")  # fmt: skip
    steps = [{"id": "edit", "tool": "shell", "tasks": [f"printf 'STEP\\n' > shared.txt; {elsewhere}"]}]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"), "--merge-into", "main")
    assert code == 0, out + err  # the run passed; its work waits on its branch
    assert "was not merged into main: conflicts with it in shared.txt; merge it by hand" in out + err
    db = tmp_path / "log.db"
    (merged,) = events(db, only_run(db), "worktree.run_merged")
    assert merged.payload["how"] == "conflict" and merged.payload["files"] == ["shared.txt"]
    assert git(repo, "log", "-1", "--format=%s", "main").strip() == "main moved"
    assert (repo / "shared.txt").read_text() == "MAIN\n"
    assert git(repo, "status", "--porcelain", "--untracked-files=no").strip() == ""


def test_merge_into_refused_by_uncommitted_changes_in_the_checkout_is_recorded(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", {"a.txt": "a\n"})
    (repo / "a.txt").write_text("my uncommitted edit\n")
    steps = [{"id": "edit", "tool": "shell", "tasks": ["echo step > a.txt"]}]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"), "--merge-into", "main")
    assert code == 0, out + err
    assert "was not merged into main" in out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    (merged,) = events(db, run_id, "worktree.run_merged")
    assert merged.payload["how"] == "refused" and merged.payload["error"]
    assert (repo / "a.txt").read_text() == "my uncommitted edit\n"
    assert git(repo, "show", f"stepledger/{run_id}:a.txt") == "step\n"
    assert worktree_paths(repo) == [str(repo)]  # the clean-up went on


def scoped_run(tmp_path: Path, strict: bool) -> tuple[int, Path, str]:
    repo = make_repo(tmp_path / "repo")
    task = "echo a > a.py; mkdir -p pkg && echo b > pkg/b.py; echo n > ../notes.txt"
    steps = [
        {"id": "scoped", "tool": "shell", "cwd": "src", "files_scope": ["a.py", "pkg/"], "tasks": [task]}
    ]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree", files_scope_strict=strict))
    assert "Traceback" not in out + err
    db = tmp_path / "log.db"
    return code, db, only_run(db)


def test_files_changed_outside_the_scope_are_reported(tmp_path: Path) -> None:
    code, db, run_id = scoped_run(tmp_path, strict=False)
    assert code == 0
    (violation,) = events(db, run_id, "worktree.scope_violated", "scoped")
    assert violation.payload["files"] == ["notes.txt"]
    assert violation.payload["scope"] == ["src/a.py", "src/pkg"]
    assert violation.payload["fatal"] is False
    assert events(db, run_id, "worktree.merged", "scoped")


def test_with_files_scope_strict_a_step_outside_its_scope_fails_unmerged(tmp_path: Path) -> None:
    code, db, run_id = scoped_run(tmp_path, strict=True)
    assert code == 1
    step = state(db, run_id).steps["scoped"]
    assert step.last_reason == "scope_violation" and "notes.txt" in step.last_error
    assert events(db, run_id, "worktree.merged", "scoped") == []
    assert events(db, run_id, "worktree.scope_violated", "scoped")[0].payload["fatal"] is True


def test_audit_shows_each_attempt_s_branch_base_and_resulting_commit(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    steps = [{"id": "a", "tool": "shell", "tasks": ["echo a > a.txt"]}]
    code, out, err = run(repo, write_workstream(repo, steps, isolation="worktree"))
    assert code == 0, out + err
    db = tmp_path / "log.db"
    run_id = only_run(db)
    listed = stepledger("events", run_id, "--json", cwd=repo, db=db).stdout.splitlines()
    committed = next(json.loads(e) for e in listed if json.loads(e)["type"] == "worktree.committed")
    made = committed["payload"]
    timeline = stepledger("audit", "timeline", run_id, "--json", cwd=repo, db=db)
    [row] = [json.loads(line) for line in timeline.stdout.splitlines()]
    assert (row["branch"], row["base_commit"], row["commit"]) == (
        made["branch"],
        made["base_commit"],
        made["commit"],
    )
    assert len(row["commit"]) == 40 and row["commit"] != row["base_commit"]
    why = json.loads(stepledger("audit", "why", run_id, "a", "--json", cwd=repo, db=db).stdout)
    details = [e["detail"] for e in why["events"]]
    assert f"⎇ [a] committed {made['commit'][:10]} on {made['branch']} (1 file)" in details
    assert any(d.startswith("⎇ [a] worktree on ") for d in details)
    assert any(d.startswith("⎇ [a] merged ") for d in details)
