"""Data between steps, end to end: outputs read by dependents, run parameters, conditions, matrices.

Every test runs `stepledger` as a subprocess against a real SQLite log.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from failure_scripts import cli, only_run_id, write_workstream, writes_outputs

from stepledger.store.connect import open_store

EVIL = "x'\"; touch pwned; \"'"  # both quotes: it must break out of neither quoting


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


PARAMETERS = {
    "target": {"type": "string", "choices": ["staging", "prod"], "default": "staging"},
    "replicas": {"type": "integer", "description": "how many"},
    "dry": {"type": "boolean", "default": True},
}


def _params_workstream(tmp_path: Path) -> Path:
    return write_workstream(
        tmp_path,
        {
            "id": "deploy",
            "parameters": PARAMETERS,
            "steps": [
                {
                    "id": "plan",
                    "tool": "shell",
                    "env": {"T": "${params.target}"},
                    "tasks": ['echo "$T" > plan.txt'],
                },
                {
                    "id": "apply",
                    "tool": "shell",
                    "depends_on": ["plan"],
                    "timeout": "${params.replicas}0",
                    "env": {"T": "${params.target}", "N": "${params.replicas}", "DRY": "${params.dry}"},
                    "tasks": ['echo "$T $N $DRY" > apply.txt'],
                },
            ],
        },
    )


def test_parameters_are_recorded_shown_and_reused_by_resume(tmp_path: Path, sqlite_url: str) -> None:
    ws = _params_workstream(tmp_path)
    (tmp_path / "params.yaml").write_text("target: prod\nreplicas: 2\n")
    # Killed (SIGKILL) once `apply` is recorded as started but before it is dispatched.
    first = cli("run", str(ws), "--params-file", "params.yaml", "--param", "replicas=3",
                cwd=tmp_path, db=sqlite_url, kill_at="after_append:2")  # fmt: skip
    assert first.returncode == -9, first.stdout + first.stderr
    assert (tmp_path / "plan.txt").read_text() == "prod\n" and not (tmp_path / "apply.txt").exists()
    run_id = only_run_id(sqlite_url, tmp_path)
    # The resumer is given no parameters: the run keeps the ones it was started with.
    resumed = cli("resume", run_id, cwd=tmp_path, db=sqlite_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (tmp_path / "apply.txt").read_text() == "prod 3 true\n"
    started = next(p for t, _, p in _events(sqlite_url, run_id) if t == "run.started")
    assert started["params"] == {"target": "prod", "replicas": 3, "dry": True}
    assert started["workstream"]["steps"][1]["timeout"] == 30
    status = cli("status", run_id, cwd=tmp_path, db=sqlite_url)
    assert "target=prod replicas=3 dry=true" in status.stdout
    runs = cli("runs", "--json", cwd=tmp_path, db=sqlite_url)
    assert json.loads(runs.stdout.splitlines()[0])["params"] == started["params"]


def test_a_bad_parameter_is_one_line_and_records_nothing(tmp_path: Path, sqlite_url: str) -> None:
    ws = _params_workstream(tmp_path)
    for args, said in [
        (["--param", "replicas=many"], "parameter `replicas` must be an integer, got 'many'"),
        (["--param", "replicas=1", "--param", "target=dev"], "parameter `target` is 'dev', not one of"),
        ([], "parameter `replicas` is required"),
        (["--param", "replicas"], "--param 'replicas' is not NAME=VALUE"),
        (["--param", "replicas=1", "--param", "colour=red"], "parameter `colour` is given but not declared"),
    ]:
        done = cli("run", str(ws), *args, cwd=tmp_path, db=sqlite_url)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert said in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert cli("runs", "--json", cwd=tmp_path, db=sqlite_url).stdout.strip() == ""
    assert not (tmp_path / "plan.txt").exists()


def test_validate_and_plan_take_parameters(tmp_path: Path, sqlite_url: str) -> None:
    ws = _params_workstream(tmp_path)
    assert cli("validate", str(ws), cwd=tmp_path, db=sqlite_url).returncode == 2
    ok = cli("validate", str(ws), "-p", "replicas=2", cwd=tmp_path, db=sqlite_url)
    assert ok.returncode == 0 and ok.stdout.startswith("ok:"), ok.stderr
    plan = cli("plan", str(ws), "--param", "replicas=2", "--json", cwd=tmp_path, db=sqlite_url)
    assert plan.returncode == 0, plan.stderr


def test_a_false_condition_skips_the_step_and_on_skip_decides_for_its_dependents(
    tmp_path: Path, sqlite_url: str
) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "cond",
            "tool": "shell",
            "parameters": {"target": {"default": "staging"}},
            "steps": [
                {"id": "scan", "tasks": [writes_outputs(areas=["docs"], changed="false")]},
                {"id": "deploy", "depends_on": ["scan"], "when": "params.target == 'prod'",
                 "on_skip": "skip", "tasks": ["touch deployed"]},
                {"id": "announce", "depends_on": ["deploy"], "tasks": ["touch announced"]},
                {"id": "docs", "depends_on": ["scan"], "tasks": ["touch docs"],
                 "when": "'docs' in steps.scan.outputs.areas and steps.scan.outputs.changed != 'true'"},
                {"id": "lint", "depends_on": ["scan"], "when": "${env.NO_SUCH_VARIABLE == 'yes'}",
                 "tasks": ["touch linted"]},
                {"id": "report", "depends_on": ["lint", "docs"], "tasks": ["touch report"]},
            ],
        },
    )  # fmt: skip
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    made = {p.name for p in tmp_path.iterdir()}
    assert {"docs", "report"} <= made and not {"deployed", "announced", "linted"} & made
    skipped = {
        sid: p["reason"]
        for t, sid, p in _events(sqlite_url, only_run_id(sqlite_url, tmp_path))
        if t == "step.skipped"
    }
    # deploy's on_skip: skip carries on to announce; lint's default (run) lets report run.
    assert skipped == {
        "deploy": "condition",
        "announce": "condition: deploy was skipped",
        "lint": "condition",
    }
    again = cli("run", str(ws), "--param", "target=prod", cwd=tmp_path, db=sqlite_url)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "deployed").exists() and (tmp_path / "announced").exists()


def test_a_matrix_runs_one_step_per_combination_and_validate_plan_graph_show_them(
    tmp_path: Path, sqlite_url: str
) -> None:
    ws = write_workstream(
        tmp_path,
        {
            "id": "matrix",
            "tool": "shell",
            "steps": [
                {"id": "setup", "tasks": ["true"]},
                {
                    "id": "test",
                    "depends_on": ["setup"],
                    "matrix": {"python": ["3.11", "3.12"], "db": ["sqlite", "pg"]},
                    "env": {"DB": "${matrix.db}"},
                    "when": "not (matrix.python == '3.11' and matrix.db == 'pg')",
                    "tasks": ['echo "${matrix.python} $DB" > "t-${matrix.python}-${matrix.db}.txt"',
                              writes_outputs(ok="yes")],
                },
                {"id": "report", "depends_on": ["test"],
                 "tasks": ["cat t-*.txt > report.txt",
                           "echo ${steps.test[python=3.12,db=pg].outputs.ok} >> report.txt"]},
            ],
        },
    )  # fmt: skip
    expansions = ["test[python=3.11,db=sqlite]", "test[python=3.11,db=pg]", "test[python=3.12,db=sqlite]",
                  "test[python=3.12,db=pg]"]  # fmt: skip
    validate = cli("validate", str(ws), cwd=tmp_path, db=sqlite_url)
    assert validate.stdout.startswith(f"ok: {ws} (matrix: 6 steps, 8 dependencies)"), validate.stderr
    graph = cli("graph", str(ws), cwd=tmp_path, db=sqlite_url).stdout
    plan = cli("plan", str(ws), "--json", cwd=tmp_path, db=sqlite_url).stdout
    assert all(e in graph and e in plan for e in expansions)
    done = cli("run", str(ws), cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "report.txt").read_text() == "3.11 sqlite\n3.12 pg\n3.12 sqlite\nyes\n"
    events = _events(sqlite_url, only_run_id(sqlite_url, tmp_path))
    assert {sid for t, sid, _ in events if t == "step.passed"} == {"setup", "report", *expansions} - {
        expansions[1]
    }
    assert [sid for t, sid, _ in events if t == "step.skipped"] == [expansions[1]]


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("example", "args", "skipped"),
    [
        ("outputs-chain.yaml", [], 0),
        ("parameters.yaml", ["--param", "replicas=3"], 0),
        (
            "parameters.yaml",
            ["--param", "target=prod", "--param", "replicas=2", "--param", "dry_run=false"],
            0,
        ),
        ("conditions.yaml", [], 3),
        ("conditions.yaml", ["--param", "target=prod"], 1),
        ("matrix.yaml", [], 1),
        ("fan-out.yaml", [], 0),
    ],
)
def test_the_documented_examples_run_as_written(
    tmp_path: Path, sqlite_url: str, example: str, args: list[str], skipped: int
) -> None:
    (tmp_path / "examples").mkdir()
    shutil.copy(REPO / "examples" / example, tmp_path / "examples" / example)
    done = cli("run", f"examples/{example}", *args, cwd=tmp_path, db=sqlite_url)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{skipped} skipped" in done.stdout
    assert not list(tmp_path.rglob("pwned"))


def test_a_resumed_run_fills_references_from_the_recorded_outputs(tmp_path: Path, sqlite_url: str) -> None:
    # `make` writes a new value each time it runs: the resumed dependent must read the recorded one.
    ws = write_workstream(
        tmp_path,
        {
            "id": "resume-outputs",
            "tool": "shell",
            "steps": [
                {"id": "make", "tasks": ['echo "{\\"v\\": \\"$(date +%s%N)\\"}" > "$STEPLEDGER_OUTPUTS"']},
                {"id": "use", "depends_on": ["make"], "tasks": ["echo ${steps.make.outputs.v} > used.txt"]},
            ],
        },
    )
    first = cli("run", str(ws), cwd=tmp_path, db=sqlite_url, kill_at="after_append:2")
    assert first.returncode == -9, first.stdout + first.stderr
    assert not (tmp_path / "used.txt").exists()
    run_id = only_run_id(sqlite_url, tmp_path)
    resumed = cli("resume", run_id, cwd=tmp_path, db=sqlite_url)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    recorded = next(
        p["outputs"]["v"] for t, sid, p in _events(sqlite_url, run_id) if t == "step.passed" and sid == "make"
    )
    assert (tmp_path / "used.txt").read_text() == f"{recorded}\n"
    assert [sid for t, sid, _ in _events(sqlite_url, run_id) if t == "step.started"].count("make") == 1
