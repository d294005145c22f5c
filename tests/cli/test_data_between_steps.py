"""Data between steps, end to end: outputs read by dependents, run parameters, conditions, matrices.

Every test runs `stepledger` as a subprocess against a real SQLite log.
"""

from __future__ import annotations

from pathlib import Path

from failure_scripts import cli, only_run_id, write_workstream, writes_outputs

from stepledger.store.connect import open_store

EVIL = 'x"; touch pwned; "'


def _events(db: str, run_id: str) -> list[tuple[str, str | None, dict]]:
    store = open_store(db)
    try:
        return [(e.type, e.step_id, e.payload) for e in store.read_run(run_id)]
    finally:
        store.close()


def test_outputs_travel_down_a_chain_into_tasks_env_cwd_and_tests(tmp_path: Path, sqlite_url: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "chain",
            "steps": [
                {"id": "build", "tool": "shell", "tasks": [writes_outputs(version="1.2.3", folder="out")]},
                {
                    "id": "pack",
                    "tool": "shell",
                    "depends_on": ["build"],
                    "cwd": "${steps.build.outputs.folder}",
                    "env": {"VERSION": "v${steps.build.outputs.version}"},
                    "tasks": [
                        "echo packed ${steps.build.outputs.version} > pack.txt",
                        'echo "{\\"artifact\\": \\"app-$VERSION.tar\\"}" > "$STEPLEDGER_OUTPUTS"',
                    ],
                    "acceptance_tests": ["grep -qx 'packed 1.2.3' pack.txt"],
                },
                {
                    # An indirect dependency is readable too.
                    "id": "ship",
                    "tool": "shell",
                    "depends_on": ["pack"],
                    "tasks": [
                        "echo ${steps.pack.outputs.artifact} ${steps.build.outputs.version} > ship.txt"
                    ],
                },
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "out" / "pack.txt").read_text() == "packed 1.2.3\n"
    assert (tmp_path / "ship.txt").read_text() == "app-v1.2.3.tar 1.2.3\n"
    passed = {
        sid: p["outputs"]
        for t, sid, p in _events(sqlite_url, only_run_id(sqlite_url, tmp_path))
        if t == "step.passed"
    }
    assert passed["pack"] == {"artifact": "app-v1.2.3.tar"}


def test_an_output_that_looks_like_shell_code_arrives_as_text(tmp_path: Path, sqlite_url: str) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "evil",
            "steps": [
                {"id": "make", "tool": "shell", "tasks": [writes_outputs(name=EVIL)]},
                {
                    "id": "use",
                    "tool": "shell",
                    "depends_on": ["make"],
                    "tasks": [
                        "echo ${steps.make.outputs.name} > bare.txt",
                        'echo "${steps.make.outputs.name}" > double.txt',
                        "echo '${steps.make.outputs.name}' > single.txt",
                    ],
                    "acceptance_tests": [
                        'test -z "$(ls pwned 2>/dev/null)" && echo ${steps.make.outputs.name}'
                    ],
                },
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not (tmp_path / "pwned").exists()
    for name in ("bare.txt", "double.txt", "single.txt"):
        assert (tmp_path / name).read_text() == EVIL + "\n", name


def test_a_python_return_value_feeds_a_dependent(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "tasks17.py").write_text(
        "def version():\n    return {'version': '4.5'}\n\n"
        "def record(text):\n    open('got.txt', 'w').write(text)\n"
    )
    ws = write_workstream(
        tmp_path,
        {
            "id": "py",
            "env": {"PYTHONPATH": str(tmp_path)},
            "steps": [
                {"id": "ask", "tool": "python", "tasks": ["tasks17:version"]},
                {
                    "id": "tell",
                    "tool": "python",
                    "depends_on": ["ask"],
                    "tasks": ["tasks17:record 'v ${steps.ask.outputs.version}'"],
                },
            ],
        },
    )
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "got.txt").read_text() == "v 4.5"


def test_reading_a_step_that_is_not_a_dependency_is_refused_with_its_path(
    tmp_path: Path, sqlite_url: str
) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "stray",
            "steps": [
                {"id": "a", "tool": "shell", "tasks": ["true"]},
                {"id": "b", "tool": "shell", "env": {"X": "${steps.a.outputs.x}"}, "tasks": ["true"]},
            ],
        },
    )
    done = cli("validate", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 2
    assert "steps[1].env.X" in done.stderr and "does not depend on" in done.stderr
    assert "Traceback" not in done.stderr
    run = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert run.returncode == 2 and len(run.stderr.strip().splitlines()) == 1, run.stderr
